/** Keras 3.15 configs of tfjs' LayerNormalization and BatchNormalization. */
import {Converter, Dict} from './keras_layer_spec';
import {ownWeights, standardLayer} from './keras_layer_builder';
import {kerasConstraint, kerasInitializer, kerasRegularizer} from './keras_values';
import {layerConfig} from './tfjs_layer_config';

const layerNormalization: Converter = context => {
  const {layer} = context;
  const c = layerConfig(layer, ['axis', 'epsilon', 'center', 'scale', 'betaInitializer', 'gammaInitializer', 'betaRegularizer',
                                'gammaRegularizer', 'betaConstraint', 'gammaConstraint']);
  const config: Dict = {
    axis: c.axis, epsilon: c.epsilon, center: c.center, scale: c.scale, rms_scaling: false,
    beta_initializer: kerasInitializer(layer, 'betaInitializer', c.betaInitializer),
    gamma_initializer: kerasInitializer(layer, 'gammaInitializer', c.gammaInitializer),
    beta_regularizer: kerasRegularizer(layer, 'betaRegularizer', c.betaRegularizer),
    gamma_regularizer: kerasRegularizer(layer, 'gammaRegularizer', c.gammaRegularizer),
    beta_constraint: kerasConstraint(layer, 'betaConstraint', c.betaConstraint),
    gamma_constraint: kerasConstraint(layer, 'gammaConstraint', c.gammaConstraint),
  };
  return standardLayer(context, {className: 'LayerNormalization', config, weightGroups: ownWeights(layer)});
};

const batchNormalization: Converter = context => {
  const {layer} = context;
  const c = layerConfig(layer, ['axis', 'momentum', 'epsilon', 'center', 'scale', 'betaInitializer', 'gammaInitializer',
                                'movingMeanInitializer', 'movingVarianceInitializer', 'betaRegularizer', 'gammaRegularizer',
                                'betaConstraint', 'gammaConstraint']);
  const config: Dict = {
    axis: c.axis, momentum: c.momentum, epsilon: c.epsilon, center: c.center, scale: c.scale,
    beta_initializer: kerasInitializer(layer, 'betaInitializer', c.betaInitializer),
    gamma_initializer: kerasInitializer(layer, 'gammaInitializer', c.gammaInitializer),
    moving_mean_initializer: kerasInitializer(layer, 'movingMeanInitializer', c.movingMeanInitializer),
    moving_variance_initializer: kerasInitializer(layer, 'movingVarianceInitializer', c.movingVarianceInitializer),
    beta_regularizer: kerasRegularizer(layer, 'betaRegularizer', c.betaRegularizer),
    gamma_regularizer: kerasRegularizer(layer, 'gammaRegularizer', c.gammaRegularizer),
    beta_constraint: kerasConstraint(layer, 'betaConstraint', c.betaConstraint),
    gamma_constraint: kerasConstraint(layer, 'gammaConstraint', c.gammaConstraint),
    synchronized: false, renorm: false, renorm_clipping: null, renorm_momentum: 0.99,
  };
  return standardLayer(context, {className: 'BatchNormalization', config, weightGroups: ownWeights(layer)});
};

export const NORMALIZATION_LAYERS: {[className: string]: Converter} = {
  LayerNormalization: layerNormalization, BatchNormalization: batchNormalization,
};
