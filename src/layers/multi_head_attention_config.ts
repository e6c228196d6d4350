/**
 * Normalizes a Keras layer config, as tfjs may hand it to a constructor (snake_case or
 * camelCase keys, Keras 3's nested {module, class_name, config, registered_name} objects and
 * DTypePolicy dtypes), into the camelCase arguments of the MultiHeadAttention layer, refusing
 * unknown keys and values the layer cannot honour by name.
 */
import {formatValue, invalidArgument, ValueError} from '../errors';

type Dict = {[key: string]: unknown};

/** snake_case -> camelCase ('num_heads' -> 'numHeads'); camelCase stays. */
export function camelCase(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The layer's own arguments (camelCase). */
const LAYER_KEYS = new Set([
  'numHeads', 'keyDim', 'valueDim', 'dropout', 'useBias', 'outputShape', 'attentionAxes', 'kernelInitializer',
  'biasInitializer', 'kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'kernelConstraint',
  'biasConstraint', 'seed', 'queryShape', 'keyShape', 'valueShape',
]);
/** tfjs' LayerArgs. */
const BASE_KEYS = new Set(['name', 'trainable', 'dtype', 'inputShape', 'batchInputShape', 'batchSize', 'weights', 'inputDType']);
/** Keras arguments accepted only at the value that keeps Keras' semantics (or a pure speed hint). */
const NEUTRAL: {[key: string]: (value: unknown) => boolean} = {
  useGate: value => value === false || value == null,
  slidingWindow: value => value == null,
  flashAttention: () => true,  // Keras' speed hint; the planner chooses the path here
};
const OBJECT_KEYS = new Set([
  'kernelInitializer', 'biasInitializer', 'kernelRegularizer', 'biasRegularizer', 'kernelConstraint', 'biasConstraint',
]);

/** Keras' string values that tfjs spells differently (VarianceScaling's mode and distribution). */
const VALUE_SPELLINGS: Dict = {
  fan_in: 'fanIn', fan_out: 'fanOut', fan_avg: 'fanAvg', truncated_normal: 'truncatedNormal',
  untruncated_normal: 'normal',
};

/**
 * A Keras object (initializer, regularizer, constraint) as `{className, config}` with camelCase
 * config keys; Keras 3's L1 and L2 regularizers become tfjs' L1L2. Strings and instances pass.
 */
export function normalizeKerasObject(value: unknown): unknown {
  if (value == null || typeof value !== 'object' || Array.isArray(value)) return value;
  const object = value as Dict;
  const className = object.className ?? object.class_name;
  if (typeof className !== 'string') return value;  // an instance, or something the resolver will refuse by name
  const config: Dict = {};
  for (const [key, v] of Object.entries((object.config ?? {}) as Dict)) {
    config[camelCase(key)] = typeof v === 'string' && v in VALUE_SPELLINGS ? VALUE_SPELLINGS[v] : v;
  }
  if (className === 'L1') return {className: 'L1L2', config: {l1: config.l1 ?? 0.01, l2: 0}};
  if (className === 'L2') return {className: 'L1L2', config: {l1: 0, l2: config.l2 ?? 0.01}};
  return {className, config};
}

/** A dtype given as a string or a Keras 3 DTypePolicy object; only float32 is computed here. */
function normalizeDtype(value: unknown): unknown {
  if (value == null || typeof value === 'string') {
    if (value != null && value !== 'float32') throw invalidArgument('dtype', '"float32"', value);
    return value;
  }
  const policy = value as Dict;
  const name = (policy.config as Dict|undefined)?.name;
  if (name !== 'float32') throw invalidArgument('dtype', 'float32 (a "float32" DTypePolicy)', value);
  return 'float32';
}

/**
 * The layer's arguments from `args`, whichever spelling: keys camel-cased, nested objects and
 * the dtype normalized, neutral Keras-only arguments dropped. Throws a ValueError naming an
 * unknown key, a key given in both spellings with different values, or a value the layer
 * cannot honour (e.g. use_gate=true, a sliding_window).
 */
export function normalizeKerasArgs(args: Dict|null|undefined): Dict {
  if (args == null || typeof args !== 'object') {
    throw new ValueError(`MultiHeadAttention needs arguments {numHeads, keyDim, ...}. Received: ${formatValue(args)}`);
  }
  const out: Dict = {};
  for (const [key, value] of Object.entries(args)) {
    const name = camelCase(key);
    if (name === 'customObjects') continue;  // tfjs' deserializer adds it to every config
    if (name in NEUTRAL) {
      if (!NEUTRAL[name](value)) {
        throw new ValueError(
            `Received an unsupported value for argument \`${key}\`: this MultiHeadAttention computes Keras' ` +
            `plain attention only (use_gate=false, sliding_window=null). Received: ${key}=${formatValue(value)}`);
      }
      continue;
    }
    if (!LAYER_KEYS.has(name) && !BASE_KEYS.has(name)) {
      throw new ValueError(
          `MultiHeadAttention got an unknown argument \`${key}\`. It takes ${[...LAYER_KEYS].join(', ')} ` +
          `(or their snake_case spellings) and the base layer's ${[...BASE_KEYS].join(', ')}. Received: ${key}=${formatValue(value)}`);
    }
    const normalized = OBJECT_KEYS.has(name) ? normalizeKerasObject(value) : name === 'dtype' ? normalizeDtype(value) : value;
    if (name in out && name !== key && JSON.stringify(out[name]) !== JSON.stringify(normalized)) {
      throw new ValueError(
          `Argument \`${name}\` was given twice, as \`${name}\` and \`${key}\`, with different values. ` +
          `Received: ${name}=${formatValue(out[name])}, ${key}=${formatValue(value)}`);
    }
    if (!(name in out) || name === key) out[name] = normalized;
  }
  return out;
}
