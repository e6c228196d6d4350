/**
 * model.weights.h5 as Keras 3.15 reads it: each layer's weights under
 * `layers/<checkpoint name>/<object path>/vars/<i>` (float32 datasets), written with h5wasm in its
 * in-memory file system. Layers without weights need no group (Keras reads a missing one as empty).
 */
import {loadHdf5} from './hdf5_library';
import {KerasLayerSpec} from './keras_layer_spec';

let fileCount = 0;

/** The bytes of model.weights.h5 for `ordered` (Keras' layer order) named `names` (see checkpointNames). */
export async function kerasWeightsH5(ordered: KerasLayerSpec[], names: string[]): Promise<Uint8Array> {
  const h5 = await loadHdf5();
  const file = `/tfjs_attention_weights_${fileCount++}_${Math.random().toString(36).slice(2)}.h5`;
  const out = new h5.File(file, 'w');
  let closed = false;
  try {
    const groups = new Set<string>();
    const group = (path: string) => {
      const parts = path.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const prefix = parts.slice(0, i).join('/');
        if (!groups.has(prefix)) {
          out.create_group(prefix);
          groups.add(prefix);
        }
      }
      return out.get(path) as InstanceType<typeof h5.Group>;
    };
    ordered.forEach((spec, i) => {
      for (const {path, weights} of spec.weightGroups) {
        const vars = group(['layers', names[i], ...(path === '' ? [] : path.split('/')), 'vars'].join('/'));
        weights.forEach((weight, j) => {
          vars.create_dataset({name: String(j), data: weight.values, shape: weight.shape, dtype: '<f'});
        });
      }
    });
    out.close();
    closed = true;
    return new Uint8Array(h5.FS!.readFile(file));
  } finally {
    if (!closed) out.close();
    try {
      h5.FS!.unlink(file);
    } catch {
      // not created
    }
  }
}
