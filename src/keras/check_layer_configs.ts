/**
 * Checks every layer of a normalized Keras model against what tfjs-layers 4.22 does with it,
 * before any tensor exists: the class must be registered with tfjs (its own layers, and this
 * project's MultiHeadAttention); each layer is constructed from its config (constructors make no
 * weights) and its getConfig() compared with the file's. A key tfjs keeps must have the file's
 * value; a key tfjs does not know is dropped only where its value keeps Keras' semantics (e.g.
 * `rms_scaling: false`), otherwise the error names the layer, its class, the key and the value.
 */
import * as tf from '@tensorflow/tfjs';
import {formatValue, ValueError} from '../errors';
import {Dict, KerasLayerSpec, layerLabel, NormalizedKerasModel} from './normalize_keras_config';

/** tfjs' convertPythonicToTs (utils/serialization_utils.ts): keys and string values camel-cased, `name` kept. */
export function pythonicToTs(value: unknown, key?: string): unknown {
  if (value == null) return value;
  if (typeof value === 'string') return camel(value);
  if (Array.isArray(value)) {
    return value.map((item, i) =>
      (key === 'inboundNodes' || key === 'outputLayers' || key === 'inputLayers') && i === 0 && typeof item === 'string' ?
          item : pythonicToTs(item, key));
  }
  if (typeof value !== 'object') return value;
  const out: Dict = {};
  for (const [k, v] of Object.entries(value as Dict)) {
    if (k === 'name' && typeof v === 'string') out[k] = v;
    else out[camel(k)] = pythonicToTs(v, camel(k));
  }
  return out;
}

/** tfjs' toCamelCase. */
function camel(identifier: string): string {
  if (identifier.length <= 1 || identifier.indexOf('_') === -1) return identifier;
  return identifier.replace(/[_]+(\w|$)/g, (_, c: string) => c.toUpperCase());
}

/**
 * Keras keys tfjs has no counterpart for, with the values that keep Keras' semantics (camelCase).
 * `seed` only seeds training-time randomness; `zeroOutputForMask` matters only where a mask
 * reaches the layer, which keras_masks.ts checks.
 */
const NEUTRAL: {[key: string]: (value: unknown) => boolean} = {
  seed: () => true,
  quantizationConfig: v => v == null,
  loraRank: v => v == null || v === 0,
  loraAlpha: v => v == null,
  loraEnabled: v => v == null || v === false,
  useGate: v => v == null || v === false,
  slidingWindow: v => v == null,
  rmsScaling: v => v === false,
  zeroOutputForMask: () => true,
  sparse: v => v === false,
  ragged: v => v === false,
  optional: v => v === false,
  synchronized: v => v === false,
  renorm: v => v === false,
  renormClipping: v => v == null,
  renormMomentum: () => true,  // used only with renorm
  virtualBatchSize: v => v == null,
  adjustment: v => v == null,
  fused: () => true,  // a speed choice
  groups: v => v === 1,
  keepdims: v => v === false,
  dataFormat: v => v === 'channelsLast',
  implementation: () => true,  // tf.keras 2's RNN kernel choice: the same math
  timeMajor: v => v === false,
  activityRegularizer: v => v == null,
  inputLength: () => true,  // tf.keras 2 Embedding: only the input shape, which the input layer gives
  useCudnn: () => true,
  flashAttention: () => true,
  negativeSlope: v => v === 0,  // Keras 3 ReLU: tfjs' ReLU has max_value only
  threshold: v => v === 0,
  autocast: () => true,
  // tf.keras 2's MultiHeadAttention build shapes: the layer is built from its inputs.
  queryShape: () => true,
  keyShape: () => true,
  valueShape: () => true,
};

/** Keys never compared: identity and tfjs' own additions. */
const SKIPPED = new Set(['name', 'dtype', 'trainable', 'batchInputShape', 'inputShape', 'batchSize', 'inputDType', 'customObjects']);
/** Keys whose values are Keras objects (initializers, regularizers, constraints): they shape training, not outputs. */
const OBJECT_KEY = /(Initializer|Regularizer|Constraint)$/;

/** Values tfjs keeps but implements only in part: the constructors would refuse them with no layer name. */
const SUPPORTED_VALUES: {[className: string]: {[key: string]: (value: unknown) => boolean}} = {
  GRU: {resetAfter: v => v == null || v === false},
  GRUCell: {resetAfter: v => v == null || v === false},
};

/** Refuses, before tfjs' constructor does (without the layer's name), a value tfjs keeps but does not implement; inner layers too. */
function checkSupportedValues(config: Dict, className: string, where: string): void {
  const supported = SUPPORTED_VALUES[className] ?? {};
  for (const [pyKey, pyValue] of Object.entries(config)) {
    const key = camel(pyKey);
    if (key in supported && !supported[key](pyValue)) {
      throw new ValueError(
          `The ${where} has \`${pyKey}\`=${formatValue(pyValue)}, which tfjs-layers 4.22's ${className} does not ` +
          `implement. Received: ${pyKey}=${formatValue(pyValue)}`);
    }
    if ((key === 'layer' || key === 'cell') && pyValue != null && typeof pyValue === 'object' && !Array.isArray(pyValue)) {
      const inner = pyValue as Dict;
      const innerClass = String(inner.class_name);
      checkSupportedValues((inner.config ?? {}) as Dict, innerClass,
                           `${where}'s inner ${layerLabel(String((inner.config as Dict|undefined)?.name), innerClass)}`);
    }
  }
}

/** Activation keys, and inner-layer keys to look into. */
const ACTIVATION_KEYS = new Set(['activation', 'recurrent_activation']);

/**
 * Refuses Keras 3's hard_sigmoid, relu6(x + 3) / 6, which tfjs' hardSigmoid (tf.keras 2's
 * 0.2·x + 0.5, clipped) is not.
 */
function checkActivations(config: Dict, where: string): void {
  for (const [key, value] of Object.entries(config)) {
    if (ACTIVATION_KEYS.has(key) && value === 'hard_sigmoid') {
      throw new ValueError(
          `The ${where} uses Keras 3's hard_sigmoid, relu6(x + 3) / 6, for \`${key}\`; tfjs-layers 4.22's hardSigmoid ` +
          `is tf.keras 2's 0.2 * x + 0.5 (clipped), which would change its output. Received: ${key}="hard_sigmoid"`);
    }
    if ((key === 'layer' || key === 'cell') && value != null && typeof value === 'object' && !Array.isArray(value)) {
      const inner = value as Dict;
      checkActivations((inner.config ?? {}) as Dict, `${where}'s inner ${layerLabel(String((inner.config as Dict|undefined)?.name), String(inner.class_name))}`);
    }
  }
}

/** Whether two config values mean the same: numbers, strings, booleans; a scalar equals an array of copies of it. */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a == null || b == null) return a == b;  // eslint-disable-line eqeqeq
  if (typeof a === 'string' && typeof b === 'string') return camel(a) === camel(b);
  if (Array.isArray(a) || Array.isArray(b)) {
    const [x, y] = [Array.isArray(a) ? a : null, Array.isArray(b) ? b : null];
    if (x != null && y != null) return x.length === y.length && x.every((v, i) => sameValue(v, y[i]));
    const list = (x ?? y)!;
    const scalar = x == null ? a : b;
    return list.length > 0 && list.every(v => sameValue(v, scalar));
  }
  if (typeof a === 'object' && typeof b === 'object') {
    const [x, y] = [a as Dict, b as Dict];
    return Object.keys({...x, ...y}).every(k => sameValue(x[k], y[k]));
  }
  return false;
}

/** What a checked layer tells the mask analysis. */
export interface CheckedLayer {
  spec: KerasLayerSpec;
  /** The tfjs layer built from the config (no weights: never applied). */
  layer: tf.layers.Layer;
  /** Whether Keras would zero masked steps' outputs (zero_output_for_mask, here or in an inner layer). */
  zeroOutputForMask: boolean;
}

function isLayerClass(className: string): boolean {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap[className];
  return entry != null && entry[0].prototype instanceof tf.layers.Layer;
}

/** Builds one tfjs layer from a ts config, errors naming the layer. */
function construct(className: string, tsConfig: Dict, where: string): tf.layers.Layer {
  const [cls, fromConfig] = tf.serialization.SerializationMap.getMap().classNameMap[className];
  try {
    return fromConfig(cls, tsConfig as tf.serialization.ConfigDict) as unknown as tf.layers.Layer;
  } catch (error) {
    throw new ValueError(`tfjs-layers cannot build the ${where} from its config: ${(error as Error).message}`);
  }
}

/**
 * Compares a layer's (or inner layer's) pythonic config with tfjs' getConfig of the layer built
 * from it; drops neutral Keras-only keys from `config` (in place). Returns whether a
 * `zero_output_for_mask: true` was dropped.
 */
function compareConfig(config: Dict, tsConfig: Dict, tfjsConfig: Dict, className: string, where: string): boolean {
  let zeroOutput = false;
  for (const [pyKey, pyValue] of Object.entries(config)) {
    const key = camel(pyKey);
    if (SKIPPED.has(key)) continue;
    const value = tsConfig[key];
    if (!(key in tfjsConfig)) {
      if ((key in NEUTRAL && NEUTRAL[key](value)) || (OBJECT_KEY.test(key) && value == null)) {
        if (key === 'zeroOutputForMask' && value === true) zeroOutput = true;
        delete config[pyKey];
        continue;
      }
      throw new ValueError(
          `The ${where} has \`${pyKey}\`=${formatValue(pyValue)}, which tfjs-layers 4.22's ${className} cannot ` +
          `honour (it has no such option${key in NEUTRAL ? '; only the value that keeps Keras\' default behaviour can be dropped' : ''}). ` +
          `Received: ${pyKey}=${formatValue(pyValue)}`);
    }
    if (OBJECT_KEY.test(key)) continue;
    const inner = tfjsConfig[key];
    if ((key === 'layer' || key === 'cell') && value != null && typeof value === 'object' && inner != null && typeof inner === 'object') {
      const pyInner = pyValue as Dict;
      const innerClass = String(pyInner.class_name);
      zeroOutput = compareConfig(pyInner.config as Dict, (value as Dict).config as Dict, (inner as Dict).config as Dict, innerClass,
                                 `${where}'s inner ${layerLabel(String((pyInner.config as Dict).name), innerClass)}`) || zeroOutput;
      continue;
    }
    if (!sameValue(value, inner)) {
      throw new ValueError(
          `The ${where} has \`${pyKey}\`=${formatValue(pyValue)}, but tfjs-layers 4.22 builds it with ` +
          `${key}=${formatValue(inner)}, which would change its output. Received: ${pyKey}=${formatValue(pyValue)}`);
    }
  }
  return zeroOutput;
}

/**
 * A Bidirectional's `backward_layer`: tfjs makes the backward layer from the forward one with
 * go_backwards flipped; Keras' must be exactly that (apart from its name).
 */
function checkBackwardLayer(config: Dict, where: string): void {
  const backward = config.backward_layer as Dict|undefined;
  if (backward == null) return;
  const forward = config.layer as Dict;
  const strip = (c: Dict, flip: boolean) => {
    const {name: _name, go_backwards: goBackwards, ...rest} = c;
    return {...rest, go_backwards: flip ? !goBackwards : goBackwards};
  };
  if (backward.class_name !== forward.class_name ||
      JSON.stringify(strip(backward.config as Dict, true)) !== JSON.stringify(strip(forward.config as Dict, false))) {
    throw new ValueError(
        `The ${where} has a backward_layer that is not its forward layer run backwards; tfjs' Bidirectional ` +
        `always builds it from the forward layer. Received: backward_layer=${formatValue(backward)}`);
  }
  delete config.backward_layer;
}

/**
 * Checks every layer (see the file's docstring) and drops neutral keys from the configs in place.
 * Throws a ValueError naming the first layer tfjs cannot run as Keras does.
 */
export function checkLayerConfigs(model: NormalizedKerasModel): CheckedLayer[] {
  const names = new Set<string>();
  return model.layers.map(spec => {
    const where = layerLabel(spec.name, spec.className);
    if (names.has(spec.name)) throw new ValueError(`Two layers of the model are named \`${spec.name}\`; layer names must be unique.`);
    names.add(spec.name);
    if (['Functional', 'Model', 'Sequential'].includes(spec.className)) {
      throw new ValueError(
          `The ${where} is a model used as a layer; loadKerasModel reads flat models (save the inner model's ` +
          `layers into the outer one). Received: class_name=${formatValue(spec.className)}`);
    }
    if (!isLayerClass(spec.className)) {
      throw new ValueError(
          `The ${where} has a class tfjs cannot run: tfjs-layers 4.22 has no ${spec.className} layer (and it is not ` +
          `MultiHeadAttention, which tfjs-attention adds). Received: class_name=${formatValue(spec.className)}`);
    }
    if (spec.className === 'Bidirectional') checkBackwardLayer(spec.config, where);
    checkSupportedValues(spec.config, spec.className, where);
    if (model.keras3) checkActivations(spec.config, where);
    const tsConfig = pythonicToTs(spec.config) as Dict;
    // fromConfig may rewrite its argument (Bidirectional puts the inner layer instance in): give it a copy.
    const layer = construct(spec.className, pythonicToTs(spec.config) as Dict, where);
    const zeroOutputForMask = compareConfig(spec.config, tsConfig, layer.getConfig() as Dict, spec.className, where);
    return {spec, layer, zeroOutputForMask};
  });
}
