/**
 * Cropping1D: Keras' layer that cuts positions off the start and end of the time axis,
 * [B, T, d] -> [B, T - start - end, d]. tfjs-layers 4.22 has Cropping2D but no Cropping1D, so
 * Keras models that use it (and the park model as saveKerasModel writes it: LastPosition is
 * Cropping1D((T - 1, 0)) and a Reshape) would not load without it. Registered under Keras'
 * class name; its config is Keras' (`cropping: [start, end]`).
 */
import * as tf from '@tensorflow/tfjs';
import {invalidArgument, ValueError} from '../errors';
import type {LayerArgs, Shape} from './layer_types';

export interface Cropping1DArgs extends LayerArgs {
  /** Positions cut from the start and the end of the time axis: one number for both, or [start, end]. Default 1. */
  cropping?: number|[number, number];
}

function croppingPair(cropping: unknown): [number, number] {
  const pair = typeof cropping === 'number' ? [cropping, cropping] : cropping;
  if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((n) => Number.isInteger(n) && n >= 0)) {
    throw invalidArgument('cropping', 'a non-negative integer or a pair [start, end] of them', cropping);
  }
  return [pair[0], pair[1]];
}

export class Cropping1D extends tf.layers.Layer {
  static className = 'Cropping1D';
  readonly cropping: [number, number];

  constructor(args: Cropping1DArgs = {}) {
    super(args);
    this.cropping = croppingPair(args.cropping ?? 1);
    this.inputSpec = [{ndim: 3}];
  }

  /** The kept length, or an error naming the input's length when nothing would be left. */
  private keptLength(length: number|null): number|null {
    if (length == null) return null;
    const kept = length - this.cropping[0] - this.cropping[1];
    if (kept <= 0) {
      throw new ValueError(`Cropping1D \`${this.name}\` cannot crop [${this.cropping.join(', ')}] positions from an ` +
                           `input of length ${length}: nothing would be left. Received: input length ${length}`);
    }
    return kept;
  }

  override computeOutputShape(inputShape: Shape|Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    return [shape[0], this.keptLength(shape[1]), shape[2]];
  }

  override call(inputs: tf.Tensor|tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;  // [B, T, d]
    const kept = this.keptLength(x.shape[1] as number)!;
    return tf.slice(x, [0, this.cropping[0], 0], [-1, kept, -1]);  // [B, T - start - end, d]
  }

  /** Like Keras', the layer does not carry a padding mask on. */
  override computeMask(): tf.Tensor {
    return null as unknown as tf.Tensor;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), cropping: [...this.cropping]};
  }
}
tf.serialization.registerClass(Cropping1D);

/** Creates a Cropping1D layer (Keras' `keras.layers.Cropping1D`). */
export function cropping1D(args: Cropping1DArgs = {}): Cropping1D {
  return new Cropping1D(args);
}
