/** The tfjs-layers types that tfjs does not export by name, shared by this package's layers. */
import * as tf from '@tensorflow/tfjs';

/** The constructor arguments every tfjs layer takes (name, trainable, inputShape, …). */
export type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;
/** A layer's weight, as `addWeight` returns it. */
export type LayerVariable = ReturnType<tf.layers.Layer['addWeight']>;
/** A shape with `null` for a dimension not known yet (the batch). */
export type Shape = Array<number|null>;
/** The keyword arguments of `call`. */
export type Kwargs = {[key: string]: unknown};
