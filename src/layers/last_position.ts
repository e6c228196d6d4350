/** LastPosition: keeps the last position of a sequence, [B, T, d] -> [B, d], for next-word heads. */
import * as tf from '@tensorflow/tfjs';
import {ValueError} from '../errors';
import type {Shape} from './layer_types';

/**
 * Returns x[:, T-1, :]. It accepts (and consumes) an input mask, which tfjs' Cropping1D and
 * Flatten refuse; inputs are expected left-padded so that the last position is a real token.
 *
 * Input shape: [B, T, d]. Output shape: [B, d].
 */
export class LastPosition extends tf.layers.Layer {
  static className = 'LastPosition';

  constructor(args: NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]> = {}) {
    super(args);
    this.supportsMasking = true;
  }

  override call(inputs: tf.Tensor|tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;  // [B, T, d]
      if (x.rank !== 3) {
        throw new ValueError(`Argument \`inputs\` must have rank 3 [B, T, d]. Received: inputs.shape=[${x.shape.join(', ')}]`);
      }
      const [batch, length, depth] = x.shape as [number, number, number];
      return x.slice([0, length - 1, 0], [batch, 1, depth]).reshape([batch, depth]);  // [B, d]
    });
  }

  override computeOutputShape(inputShape: Shape|Shape[]): Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    return [shape[0], shape[2]];
  }

  override computeMask(): tf.Tensor {
    return null as unknown as tf.Tensor;  // the output has no time axis left to mask
  }
}
tf.serialization.registerClass(LastPosition);

/** Creates a LastPosition layer. */
export function lastPosition(args: NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]> = {}): LastPosition {
  return new LastPosition(args);
}
