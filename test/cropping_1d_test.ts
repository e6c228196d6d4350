/** Cropping1D (Keras' layer, which tfjs-layers 4.22 lacks): what it keeps, its config, masks and refusals. */
import * as tf from '@tensorflow/tfjs';
import {Cropping1D, cropping1D} from '../src';

describe('Cropping1D', () => {
  const x = () => tf.tensor3d([[[0, 1], [2, 3], [4, 5], [6, 7]], [[8, 9], [10, 11], [12, 13], [14, 15]]]);  // [2, 4, 2]

  it('cuts [start, end] positions off the time axis: [B, T, d] -> [B, T - start - end, d]', () => {
    const before = tf.memory().numTensors;
    const input = x();
    const y = cropping1D({cropping: [1, 2]}).apply(input) as tf.Tensor;
    expect(y.shape).toEqual([2, 1, 2]);
    expect(y.arraySync()).toEqual([[[2, 3]], [[10, 11]]]);
    const last = cropping1D({cropping: [3, 0]}).apply(input) as tf.Tensor;  // the last position, as the park export uses it
    expect(last.arraySync()).toEqual([[[6, 7]], [[14, 15]]]);
    tf.dispose([input, y, last]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('takes one number for both ends, and defaults to 1 like Keras', () => {
    const input = x();
    expect((cropping1D({cropping: 1}).apply(input) as tf.Tensor).arraySync()).toEqual([[[2, 3], [4, 5]], [[10, 11], [12, 13]]]);
    expect(cropping1D().cropping).toEqual([1, 1]);
    input.dispose();
  });

  it('computes symbolic shapes, an unknown length staying unknown', () => {
    const layer = cropping1D({cropping: [2, 1]});
    expect((layer.apply(tf.input({shape: [6, 3]})) as tf.SymbolicTensor).shape).toEqual([null, 3, 3]);
    expect((cropping1D({cropping: [2, 1]}).apply(tf.input({shape: [null, 3]})) as tf.SymbolicTensor).shape).toEqual([null, null, 3]);
  });

  it('saves Keras\' config ({cropping: [start, end]}) and is registered under Keras\' class name', () => {
    const layer = cropping1D({cropping: [2, 0], name: 'crop'});
    expect(layer.getConfig()).toEqual(expect.objectContaining({name: 'crop', cropping: [2, 0]}));
    const cls = tf.serialization.SerializationMap.getMap().classNameMap.Cropping1D;
    expect(cls?.[0]).toBe(Cropping1D);
    const restored = tf.layers.Layer.fromConfig(Cropping1D, layer.getConfig()) as Cropping1D;
    expect(restored.cropping).toEqual([2, 0]);
  });

  it('takes a padding mask and, like Keras, carries none on', () => {
    const tokens = tf.input({shape: [4], dtype: 'int32'});
    const embedded = tf.layers.embedding({inputDim: 5, outputDim: 2, maskZero: true}).apply(tokens) as tf.SymbolicTensor;
    const cropped = cropping1D({cropping: [3, 0]}).apply(embedded) as tf.SymbolicTensor;
    const model = tf.model({inputs: tokens, outputs: tf.layers.flatten().apply(cropped) as tf.SymbolicTensor});
    const ids = tf.tensor2d([[0, 0, 1, 2]], [1, 4], 'int32');
    const y = model.predict(ids) as tf.Tensor;  // Flatten refuses a mask: none reached it
    expect(y.shape).toEqual([1, 2]);
    tf.dispose([ids, y]);
    model.dispose();
  });

  it('refuses a bad cropping, naming the argument and the value', () => {
    expect(() => cropping1D({cropping: -1})).toThrow('Received an invalid value for argument `cropping`, expected a non-negative integer or a pair [start, end] of them. Received: cropping=-1');
    expect(() => cropping1D({cropping: [1, 2, 3] as unknown as [number, number]})).toThrow(/argument `cropping`.*Received: cropping=\[1,\s?2,\s?3\]/);
    expect(() => cropping1D({cropping: [0.5, 1]})).toThrow(/argument `cropping`/);
  });

  it('refuses an input it would crop to nothing, naming the layer and the length, and leaks nothing', () => {
    const before = tf.memory().numTensors;
    const input = x();  // T = 4
    expect(() => cropping1D({cropping: [2, 2], name: 'crop'}).apply(input)).toThrow(
        'Cropping1D `crop` cannot crop [2, 2] positions from an input of length 4: nothing would be left. Received: input length 4');
    expect(() => cropping1D({cropping: [4, 1]}).apply(tf.input({shape: [4, 2]}))).toThrow(/input of length 4/);
    input.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses an input that is not rank 3', () => {
    const input = tf.zeros([2, 4]);
    expect(() => cropping1D().apply(input)).toThrow(/ndim=3/);
    input.dispose();
  });
});
