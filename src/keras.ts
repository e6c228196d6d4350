/**
 * tfjs-attention/keras: Keras models in TensorFlow.js and back.
 *  - loadKerasModel(source): a Keras 3 (or tf.keras 2) model, from a `.keras` archive or a
 *    tensorflowjs_converter folder's model.json, as a tf.LayersModel;
 *  - saveKerasModel(model, path?): a tfjs model as a `.keras` archive that Keras 3 opens
 *    without custom objects.
 * Browser-safe, like the main entry; in Node, package.json's `exports` picks src/keras_node.ts,
 * which adds file paths. The HDF5 and zip libraries live behind this subpath only.
 */
import './index';

export {loadKerasModel} from './keras/load_keras_model';
export type {KerasModelSource} from './keras/load_keras_model';
export {saveKerasModel} from './keras/save_keras_model';
