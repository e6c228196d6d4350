/**
 * The save/load tests' models: two stacked attention layers with deterministic inputs (save_load_test.ts,
 * save_load_child_test.ts), and a one-layer model of constant weights (file_system_io_test.ts, concurrent_save_load_test.ts).
 */
import * as tf from '@tensorflow/tfjs';
import {ScaledDotProductAttention} from '../../src/node';
import {randomArray} from './tensors';

export type Nested = number[][][];

/** A one-layer model whose every weight is `value`, so any mix of two saves shows. */
export function constantModel(value: number): tf.LayersModel {
  const model = tf.sequential({layers: [tf.layers.dense({
    units: 3, inputShape: [5], kernelInitializer: tf.initializers.constant({value}),
    biasInitializer: tf.initializers.constant({value}),
  })]});
  model.setUserDefinedMetadata({value});
  return model;
}

/** Two stacked attention layers (so weight names must stay unique), biases, causal, a regularizer. */
export function buildModel(seed: number): tf.LayersModel {
  const input = tf.input({shape: [4, 3]});
  const first = new ScaledDotProductAttention({
    numHeads: 2, keyDim: 2, valueDim: 3, useBias: true, outputDim: 4, causal: true,
    kernelInitializer: tf.initializers.glorotUniform({seed}),
    biasInitializer: tf.initializers.randomUniform({minval: -0.3, maxval: 0.3, seed: seed + 1}),
  }).apply(input) as tf.SymbolicTensor;
  const second = new ScaledDotProductAttention({
    keyDim: 3, scale: 0.5, kernelRegularizer: 'l1l2', kernelInitializer: tf.initializers.glorotUniform({seed: seed + 2}),
  }).apply(first) as tf.SymbolicTensor;
  const model = tf.model({inputs: input, outputs: second});
  model.compile({optimizer: tf.train.adam(0.02), loss: 'meanSquaredError'});
  return model;
}

// Deterministic numbers in [-1, 1).
export const INPUT = randomArray([2, 4, 3], 1) as Nested;
export const TRAIN_X = randomArray([8, 4, 3], 2) as Nested;
export const TRAIN_Y = randomArray([8, 4, 3], 3) as Nested;

export function predictArray(model: tf.LayersModel, input: Nested = INPUT): Nested {
  return tf.tidy(() => (model.predict(tf.tensor3d(input)) as tf.Tensor).arraySync() as Nested);
}
