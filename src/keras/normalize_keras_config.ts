/**
 * Keras 3 (and tf.keras 2) model configs → the pythonic topology tfjs-layers 4.22's deserializer
 * reads: InputLayer `batch_shape` → `batch_input_shape`; Keras 3's `{args, kwargs}` inbound nodes
 * → tfjs' list form `[[layer, nodeIndex, tensorIndex, kwargs], ...]`; nested
 * `{module, class_name, config, registered_name}` objects → `{class_name, config}`; DTypePolicy
 * dtypes → strings; keys tfjs spells otherwise renamed (LeakyReLU's negative_slope → alpha); a single input/output triple → a list; a Keras 3 Sequential's InputLayer →
 * its first layer's `batch_input_shape`; tf.keras 2's MultiHeadAttention `value`/`key` keywords
 * (raw `[name, 0, 0]` references) → inputs. Structure only: what each layer's keys mean to tfjs
 * is checked by check_layer_configs.ts, masks by keras_masks.ts.
 */
import {formatValue, ValueError} from '../errors';
import {normalizeKerasObject} from '../layers/multi_head_attention_config';

export type Dict = {[key: string]: unknown};

/** One input of a node in tfjs' form: [layer, nodeIndex, tensorIndex, kwargs]. */
export type NodeInput = [string, number, number, Dict];

/** A layer of the model, normalized: its class, its pythonic config and its nodes (tfjs' list form). */
export interface KerasLayerSpec {
  name: string;
  className: string;
  config: Dict;
  /** One entry per call of the layer; each a list of inputs (empty for InputLayers and in Sequential models). */
  inboundNodes: NodeInput[][];
}

/** The model: tfjs' pythonic topology `{class_name, config}`, and its layers (the same objects). */
export interface NormalizedKerasModel {
  className: 'Functional'|'Sequential';
  name: string;
  /** Whether Keras 3 wrote the model (its hard_sigmoid differs from tf.keras 2's and tfjs'). */
  keras3: boolean;
  topology: {class_name: string; config: Dict};
  layers: KerasLayerSpec[];
  /** Functional models: the model's inputs and outputs as [layer, nodeIndex, tensorIndex]. */
  inputs: Array<[string, number, number]>;
  outputs: Array<[string, number, number]>;
}

/** Keys of a layer config that hold Keras objects (initializers, regularizers, constraints). */
const OBJECT_KEY = /(_initializer|_regularizer|_constraint|Initializer|Regularizer|Constraint)$/;
/** Keys of a layer config that hold an inner layer. */
const LAYER_KEYS = new Set(['layer', 'backward_layer', 'backwardLayer', 'cell']);
/** Keras 3 keys that tfjs-layers spells otherwise, per class (Keras key → tfjs' pythonic key). */
const KEY_RENAMES: {[className: string]: {[key: string]: string}} = {
  LeakyReLU: {negative_slope: 'alpha'},
};
/** Dtypes tfjs layers compute in (inputs may also be integer or bool). */
const DTYPES = new Set(['float32', 'int32', 'bool']);

function isDict(value: unknown): value is Dict {
  return value != null && typeof value === 'object' && !Array.isArray(value);
}

/** `where`: "layer `mha` (MultiHeadAttention)", for messages. */
export function layerLabel(name: string, className: string): string {
  return `layer \`${name}\` (${className})`;
}

/** A dtype given as a string or a Keras 3 DTypePolicy; mixed precision is refused by name. */
function normalizeDtype(value: unknown, where: string): unknown {
  if (value == null) return value;
  const name = typeof value === 'string' ? value : isDict(value) && isDict(value.config) ? value.config.name : undefined;
  if (typeof name !== 'string' || !DTYPES.has(name)) {
    throw new ValueError(
        `The ${where} has a dtype tfjs layers cannot compute in (they compute in float32; inputs may be int32 or ` +
        `bool). Received: dtype=${formatValue(value)}`);
  }
  return name;
}

/** A nested Keras object: Keras 3's {module, class_name, config, registered_name} → {class_name, config}. */
function normalizeObject(value: unknown): unknown {
  if (!isDict(value) || typeof (value.class_name ?? value.className) !== 'string') return value;
  const normalized = normalizeKerasObject(value) as {className: string; config: Dict};
  const config: Dict = {...normalized.config};
  delete config.sharedObjectId;
  return {class_name: normalized.className, config};
}

/** A nested layer ({module, class_name, config, registered_name, build_config}) → {class_name, config}. */
function normalizeInnerLayer(value: unknown, where: string): unknown {
  if (!isDict(value)) return value;
  const className = value.class_name ?? value.className;
  if (typeof className !== 'string' || !isDict(value.config)) {
    throw new ValueError(`The ${where} holds an inner layer without a class_name and config. Received: ${formatValue(value)}`);
  }
  const name = typeof value.config.name === 'string' ? value.config.name : className;
  return {class_name: className, config: normalizeLayerConfig(name, className, value.config)};
}

/** A layer's config with nested objects, inner layers and the dtype normalized (keys keep their spelling). */
export function normalizeLayerConfig(name: string, className: string, config: Dict): Dict {
  const where = layerLabel(name, className);
  const out: Dict = {};
  const renames = KEY_RENAMES[className] ?? {};
  for (const [given, value] of Object.entries(config)) {
    const key = renames[given] ?? given;
    if (key === 'shared_object_id' || key === 'build_config' || key === 'compile_config') continue;
    if (key === 'dtype') out[key] = normalizeDtype(value, where);
    else if (LAYER_KEYS.has(key)) out[key] = normalizeInnerLayer(value, where);
    else if (OBJECT_KEY.test(key)) out[key] = normalizeObject(value);
    else out[key] = value;
  }
  if (className === 'InputLayer' && 'batch_shape' in out) {
    if ('batch_input_shape' in out && formatValue(out.batch_input_shape) !== formatValue(out.batch_shape)) {
      throw new ValueError(
          `The ${where} has both \`batch_shape\` and \`batch_input_shape\`, and they differ. Received: ` +
          `batch_shape=${formatValue(out.batch_shape)}, batch_input_shape=${formatValue(out.batch_input_shape)}`);
    }
    out.batch_input_shape = out.batch_shape;
    delete out.batch_shape;
  }
  return out;
}

/** A [layer, nodeIndex, tensorIndex] reference from a Keras 3 `__keras_tensor__` or a tf.keras 2 list. */
function tensorRef(value: unknown): [string, number, number]|null {
  if (isDict(value) && value.class_name === '__keras_tensor__' && isDict(value.config)) {
    const history = value.config.keras_history;
    if (Array.isArray(history) && typeof history[0] === 'string') return [history[0], Number(history[1]), Number(history[2])];
  }
  if (Array.isArray(value) && value.length >= 3 && typeof value[0] === 'string' &&
      typeof value[1] === 'number' && typeof value[2] === 'number') {
    return [value[0], value[1], value[2]];
  }
  return null;
}

function isKerasTensor(value: unknown): boolean {
  return isDict(value) && value.class_name === '__keras_tensor__';
}

/** MultiHeadAttention's tensor call arguments, which become inputs. */
interface ExtraInputs {value?: [string, number, number]; key?: [string, number, number]; mask?: [string, number, number]}

/**
 * A node's keyword arguments for tfjs: `mask` (tfjs propagates masks itself) and
 * `training: false` dropped; MultiHeadAttention's `key` (Keras 3), `value`/`key` (tf.keras 2
 * raw references) and `attention_mask` returned as extra inputs (the mask last, with
 * `attention_mask_input: true`, the layer's form for it). Any other tensor argument is refused:
 * tfjs' model graphs pass call arguments as plain JSON, never as tensors.
 */
function nodeKwargs(kwargs: Dict, where: string, className: string): {kwargs: Dict; extra: ExtraInputs} {
  const out: Dict = {};
  const extra: ExtraInputs = {};
  for (const [key, value] of Object.entries(kwargs)) {
    if (key === 'mask' && value == null) continue;
    if (key === 'training') {
      if (value === true) {
        throw new ValueError(
            `The ${where} is called with training=true in the model, so Keras runs it in training mode even at ` +
            `inference (e.g. dropout stays active); tfjs cannot keep a call argument in a model. Received: training=true`);
      }
      continue;
    }
    const ref = (key === 'value' || key === 'key' || key === 'attention_mask') && className === 'MultiHeadAttention' ?
        tensorRef(value) : null;
    if (ref != null) {
      extra[key === 'attention_mask' ? 'mask' : key as 'value'|'key'] = ref;
      continue;
    }
    if (isKerasTensor(value) || key === 'mask') {
      throw new ValueError(
          `The ${where} gets a tensor as the call argument \`${key}\`; tfjs model graphs pass call arguments as ` +
          `plain values, never as tensors, so such a model cannot be rebuilt in tfjs. Received: ${key}=${formatValue(value)}`);
    }
    out[key] = value;
  }
  return {kwargs: out, extra};
}

/** A Keras 3 `{args, kwargs}` node → tfjs' list of inputs. */
function keras3Node(node: Dict, where: string, className: string): NodeInput[] {
  const args = Array.isArray(node.args) ? node.args : [];
  const refs: Array<[string, number, number]> = [];
  const addArg = (arg: unknown) => {
    const ref = isKerasTensor(arg) ? tensorRef(arg) : null;
    if (ref == null) {
      throw new ValueError(
          `The ${where} is called with a positional argument that is not a tensor of the model; tfjs cannot ` +
          `rebuild such a call. Received: ${formatValue(arg)}`);
    }
    refs.push(ref);
  };
  for (const arg of args) {
    if (Array.isArray(arg)) arg.forEach(addArg);  // merge layers: one list of tensors
    else addArg(arg);
  }
  const {kwargs, extra} = nodeKwargs(isDict(node.kwargs) ? node.kwargs : {}, where, className);
  return withExtraInputs(refs, kwargs, extra, where);
}

/** The node's inputs with MultiHeadAttention's keyword tensors appended: value, key, then the attention mask. */
function withExtraInputs(refs: Array<[string, number, number]>, kwargs: Dict, extra: ExtraInputs, where: string): NodeInput[] {
  if (extra.value != null) refs.push(extra.value);
  if (extra.key != null) {
    if (refs.length < 2) throw new ValueError(`The ${where} gets \`key\` without \`value\`. Received: key=${formatValue(extra.key)}`);
    refs.push(extra.key);
  }
  if (extra.mask != null) {
    refs.push(extra.mask);
    kwargs = {...kwargs, attention_mask_input: true};
  }
  return refs.map(([layer, nodeIndex, tensorIndex]) => [layer, nodeIndex, tensorIndex, kwargs]);
}

/** A tf.keras 2 node (already a list) with MultiHeadAttention's `value`/`key` keywords moved into its inputs. */
function keras2Node(node: unknown[], where: string, className: string): NodeInput[] {
  const refs: Array<[string, number, number]> = [];
  let kwargs: Dict = {};
  let extra: ExtraInputs = {};
  for (const input of node) {
    const ref = tensorRef(input);
    if (ref == null) throw new ValueError(`The ${where} has an inbound node entry tfjs cannot read. Received: ${formatValue(input)}`);
    refs.push(ref);
    const given = (input as unknown[])[3];
    if (isDict(given)) ({kwargs, extra} = nodeKwargs(given, where, className));
  }
  return withExtraInputs(refs, kwargs, extra, where);
}

function triples(value: unknown, what: string): Array<[string, number, number]> {
  const list = Array.isArray(value) && typeof value[0] === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.some(t => tensorRef(t) == null)) {
    throw new ValueError(`The model config's \`${what}\` must be [layer, node, tensor] triples. Received: ${what}=${formatValue(value)}`);
  }
  return list.map(t => tensorRef(t)!);
}

function layerEntry(entry: unknown, index: number): {name: string; className: string; config: Dict; raw: Dict} {
  if (!isDict(entry) || typeof entry.class_name !== 'string' || !isDict(entry.config)) {
    throw new ValueError(`Layer ${index} of the model config has no class_name and config. Received: ${formatValue(entry)}`);
  }
  const name = typeof entry.name === 'string' ? entry.name : entry.config.name;
  if (typeof name !== 'string') throw new ValueError(`Layer ${index} (${entry.class_name}) of the model config has no name.`);
  return {name, className: entry.class_name, config: entry.config, raw: entry};
}

/**
 * Normalizes a Keras model config (`{class_name: 'Functional'|'Model'|'Sequential', config}`, as
 * in a `.keras` archive's config.json or a converter model.json's `model_config`); `keras3` says
 * whether Keras 3 wrote it.
 */
export function normalizeKerasModelConfig(modelConfig: unknown, keras3: boolean): NormalizedKerasModel {
  if (!isDict(modelConfig) || !isDict(modelConfig.config) || !Array.isArray(modelConfig.config.layers)) {
    throw new ValueError(
        `A Keras model config must be {class_name: "Functional" | "Sequential", config: {layers: [...]}}. ` +
        `Received: ${formatValue(isDict(modelConfig) ? Object.keys(modelConfig) : modelConfig)}`);
  }
  const className = modelConfig.class_name;
  const config = modelConfig.config;
  const name = typeof config.name === 'string' ? config.name : 'model';
  if (className === 'Sequential') return normalizeSequential(name, config, keras3);
  if (className !== 'Functional' && className !== 'Model') {
    throw new ValueError(`The model's class must be Functional, Model or Sequential. Received: class_name=${formatValue(className)}`);
  }
  const layers: KerasLayerSpec[] = (config.layers as unknown[]).map((entry, i) => {
    const {name: layerName, className: layerClass, config: layerConfig, raw} = layerEntry(entry, i);
    const where = layerLabel(layerName, layerClass);
    const nodes = Array.isArray(raw.inbound_nodes) ? raw.inbound_nodes : [];
    const inboundNodes = nodes.map((node: unknown) => {
      if (Array.isArray(node)) return keras2Node(node, where, layerClass);
      if (isDict(node)) return keras3Node(node, where, layerClass);
      throw new ValueError(`The ${where} has an inbound node tfjs cannot read. Received: ${formatValue(node)}`);
    });
    return {name: layerName, className: layerClass, config: normalizeLayerConfig(layerName, layerClass, layerConfig), inboundNodes};
  });
  const inputs = triples(config.input_layers, 'input_layers');
  const outputs = triples(config.output_layers, 'output_layers');
  const known = new Set(layers.map(l => l.name));
  for (const layer of layers) {
    for (const node of layer.inboundNodes) {
      for (const [from] of node) {
        if (!known.has(from)) {
          throw new ValueError(`The ${layerLabel(layer.name, layer.className)} takes the output of \`${from}\`, which is not a layer of the model.`);
        }
      }
    }
  }
  const topology = {
    class_name: 'Functional',
    config: {
      name,
      trainable: config.trainable ?? true,
      layers: layers.map(l => ({class_name: l.className, config: l.config, name: l.name, inbound_nodes: l.inboundNodes})),
      input_layers: inputs,
      output_layers: outputs,
    },
  };
  return {className: 'Functional', name, keras3, topology, layers, inputs, outputs};
}

/**
 * A Sequential model: Keras 3 lists an InputLayer first (or gives `build_input_shape`), tfjs wants
 * the first layer's `batch_input_shape`.
 */
function normalizeSequential(name: string, config: Dict, keras3: boolean): NormalizedKerasModel {
  const entries = (config.layers as unknown[]).map(layerEntry);
  let batchShape: unknown = config.build_input_shape ?? null;
  if (entries.length > 0 && entries[0].className === 'InputLayer') {
    const input = normalizeLayerConfig(entries[0].name, 'InputLayer', entries[0].config);
    batchShape = input.batch_input_shape;
    entries.shift();
  }
  if (entries.length === 0) throw new ValueError(`The Sequential model \`${name}\` has no layers.`);
  const layers: KerasLayerSpec[] = entries.map(({name: layerName, className, config: layerConfig}) =>
    ({name: layerName, className, config: normalizeLayerConfig(layerName, className, layerConfig), inboundNodes: []}));
  const first = layers[0].config;
  if (first.batch_input_shape == null && first.batch_shape == null) {
    if (batchShape == null) {
      throw new ValueError(`The Sequential model \`${name}\` has no input shape (no InputLayer, no build_input_shape): tfjs needs one.`);
    }
    first.batch_input_shape = batchShape;
  } else if (first.batch_shape != null) {
    first.batch_input_shape = first.batch_shape;
    delete first.batch_shape;
  }
  const topology = {
    class_name: 'Sequential',
    config: {name, layers: layers.map(l => ({class_name: l.className, config: l.config}))},
  };
  return {className: 'Sequential', name, keras3, topology, layers, inputs: [], outputs: []};
}
