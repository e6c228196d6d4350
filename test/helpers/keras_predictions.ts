/** Compares a model's predictions on a Keras fixture's inputs with Keras' own outputs (expected.json). */
import * as tf from '@tensorflow/tfjs';
import {FixtureTensor, inputTensors, readKerasCase, readKerasExpected} from './keras_fixtures';
import {expectClose} from './tensors';

/** 1e-4, relative where values are large. */
export const KERAS_TOLERANCE = {abs: 1e-4, rel: 1e-4};

/** Keras' values and ours, leaving out the query rows the case says not to compare (padded rows on Keras' fused path). */
export function comparableValues(name: string, actual: tf.Tensor, expected: FixtureTensor): [number[], number[]] {
  const info = readKerasCase(name);
  const skip = info.compare === 'unpadded_query_rows' ? info.padded_query_rows ?? [] : [];
  expect(actual.shape).toEqual(expected.shape);
  const values = Array.from(actual.dataSync());
  if (skip.length === 0) return [values, expected.values];
  const rowSize = expected.shape.slice(2).reduce((a, b) => a * b, 1);
  const keep = (_: number, i: number) => {
    const row = Math.floor(i / rowSize);
    const [b, t] = [Math.floor(row / expected.shape[1]), row % expected.shape[1]];
    return !skip.some(([pb, pt]) => pb === b && pt === t);
  };
  return [values.filter(keep), expected.values.filter(keep)];
}

/** Predicts the case's inputs with `model` and compares every output with Keras'. */
export function expectKerasPredictions(name: string, model: tf.LayersModel): void {
  const inputs = inputTensors(name);
  const predicted = model.predict(inputs.length === 1 ? inputs[0] : inputs);
  const outputs = Array.isArray(predicted) ? predicted : [predicted];
  const expected = readKerasExpected(name);
  expect(outputs).toHaveLength(expected.length);
  outputs.forEach((actual, i) => {
    const [ours, keras] = comparableValues(name, actual, expected[i]);
    expectClose(ours, keras, KERAS_TOLERANCE);
  });
  tf.dispose([...outputs, ...inputs]);
}

