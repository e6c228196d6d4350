/** PositionEmbedding: adds a learned vector per position to a sequence, [B, T, d] -> [B, T, d]. */
import * as tf from '@tensorflow/tfjs';
import {checkPositiveInteger, ValueError} from '../errors';
import {Initializer, ObjectIdentifier, resolveInitializer, serializeObject} from '../keras_objects';
import type {LayerArgs, LayerVariable, Shape} from './layer_types';

export interface PositionEmbeddingArgs extends LayerArgs {
  /** The longest sequence the layer accepts, T_max; the weight is [T_max, d]. Required. */
  sequenceLength: number;
  /** Initializer of the position vectors. Defaults to 'randomUniform' (-0.05 to 0.05, like Embedding). */
  embeddingsInitializer?: ObjectIdentifier<Initializer>;
}

/**
 * Adds position t's learned vector P[t] to x[:, t, :], like keras_nlp's PositionEmbedding
 * followed by an add. Without it, attention cannot tell word order apart. Input masks
 * (e.g. from `embedding({maskZero: true})`) pass through unchanged.
 *
 * Input shape: [B, T, d] with T <= sequenceLength. Output shape: [B, T, d].
 */
export class PositionEmbedding extends tf.layers.Layer {
  static className = 'PositionEmbedding';

  readonly sequenceLength: number;
  private readonly embeddingsInitializer: Initializer;
  private positions: LayerVariable|null = null;

  constructor(args: PositionEmbeddingArgs) {
    super(args);
    checkPositiveInteger('sequenceLength', args?.sequenceLength);
    this.sequenceLength = args.sequenceLength;
    this.embeddingsInitializer = resolveInitializer('embeddingsInitializer', args.embeddingsInitializer, 'randomUniform');
    this.supportsMasking = true;
  }

  override build(inputShape: Shape|Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    if (shape.length !== 3 || shape[2] == null) {
      throw new ValueError(`Argument \`inputs\` must have shape [B, T, d]. Received: inputs.shape=[${shape.join(', ')}]`);
    }
    if (this.positions == null) {
      this.positions = this.addWeight(
          'positions', [this.sequenceLength, shape[2]], 'float32', this.embeddingsInitializer);
    }
    this.built = true;
  }

  override call(inputs: tf.Tensor|tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;  // [B, T, d]
      const length = x.shape[1] as number;
      if (length > this.sequenceLength) {
        throw new ValueError(
            `Sequence length ${length} exceeds the layer's sequenceLength ${this.sequenceLength}. ` +
            `Received: inputs.shape=[${x.shape.join(', ')}]`);
      }
      const table = this.positions!.read();                   // [T_max, d]
      const positions = length === this.sequenceLength ? table : table.slice([0, 0], [length, -1]);  // [T, d]
      return tf.add(x, positions);                            // [B, T, d]
    });
  }

  override computeOutputShape(inputShape: Shape|Shape[]): Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  }

  override computeMask(inputs: tf.Tensor|tf.Tensor[], mask?: tf.Tensor|tf.Tensor[]): tf.Tensor|tf.Tensor[] {
    return mask as tf.Tensor;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      sequenceLength: this.sequenceLength,
      embeddingsInitializer: serializeObject(this.embeddingsInitializer),
    };
  }
}
tf.serialization.registerClass(PositionEmbedding);

/** Creates a PositionEmbedding layer; see the class for the arguments. */
export function positionEmbedding(args: PositionEmbeddingArgs): PositionEmbedding {
  return new PositionEmbedding(args);
}
