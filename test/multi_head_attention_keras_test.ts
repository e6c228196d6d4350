/**
 * MultiHeadAttention against Keras 3.15 itself: for each fixture made by Keras
 * (test/fixtures/keras/<case>/, scripts/fixtures/make_keras_fixtures.py), the equivalent tfjs
 * model is built by hand from the fixture's model config (the MultiHeadAttention layer from its
 * Keras config as saved, snake_case), Keras' weights are set layer by layer in Keras' order,
 * and the predictions are compared with Keras' within 1e-4 (relative for large values), on
 * cpu and wasm (and tensorflow with tfjs-node). Loading the .keras / model.json files
 * themselves is the loader's job (tfjs-attention/keras), not tested here.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import '../src';  // registers MultiHeadAttention with tfjs' serialization
import type {MultiHeadAttention} from '../src';
import {camelCase} from '../src/layers/multi_head_attention_config';
import {comparableValues} from './helpers/keras_predictions';
import {withNative} from './helpers/native';
import {expectClose, runTestsOn} from './helpers/tensors';
import {inputTensors, readConverterModelJson, readKerasExpected, readKerasInputs,
        readKerasWeights, toTensor} from './helpers/keras_fixtures';

type Dict = {[key: string]: any};  // eslint-disable-line @typescript-eslint/no-explicit-any
type Sym = tf.SymbolicTensor;

const TOL = {abs: 1e-4, rel: 1e-4};

/** What tfjs' deserializer does with a layer config: the registered class's fromConfig. */
function fromConfig(config: unknown): MultiHeadAttention {
  const [cls, make] = tf.serialization.SerializationMap.getMap().classNameMap.MultiHeadAttention;
  return make(cls, config as tf.serialization.ConfigDict) as unknown as MultiHeadAttention;
}

/** The layer name of a Keras 3 `__keras_tensor__` argument, and its output index. */
function history(arg: Dict): [string, number] {
  const [layer, , index] = arg.config.keras_history as [string, number, number];
  return [layer, index];
}

/** The tfjs model equivalent to a fixture's Keras model, built by hand layer by layer, with Keras' weights. */
function buildModel(name: string): tf.LayersModel {
  const config = readConverterModelJson(name).modelTopology.model_config.config;
  const outputs: {[layer: string]: Sym[]} = {};
  const ref = (arg: Dict): Sym => {
    const [layer, index] = history(arg);
    return outputs[layer][index];
  };
  const layers: tf.layers.Layer[] = [];
  for (const spec of config.layers as Dict[]) {
    const c = spec.config as Dict;
    const node = spec.inbound_nodes[0];
    const args: Dict[] = node?.args ?? [];
    let layer: tf.layers.Layer|null = null;
    let out: Sym|Sym[];
    switch (spec.class_name) {
      case 'InputLayer':
        out = tf.input({batchShape: c.batch_shape ?? c.batch_input_shape, dtype: c.dtype, name: c.name});
        break;
      case 'MultiHeadAttention': {
        layer = fromConfig(c);  // Keras' own config: snake_case, nested objects, DTypePolicy
        if (Array.isArray(node)) {  // tf.keras 2: [[query, 0, 0, {value: [value, 0, 0]}]]
          const [[query, , , kwargs]] = node as [[string, number, number, Dict]];
          out = layer.apply(outputs[query][0], {value: outputs[kwargs.value[0]][0]}) as Sym;
        } else {
          const inputs = args.map(ref);
          const kwargs: Dict = {};
          for (const [key, value] of Object.entries(node.kwargs as Dict)) {
            if (key === 'key') inputs.push(ref(value));
            else kwargs[camelCase(key)] = value;
          }
          out = layer.apply(inputs, kwargs) as Sym|Sym[];
        }
        break;
      }
      case 'Embedding':
        layer = tf.layers.embedding({inputDim: c.input_dim, outputDim: c.output_dim, maskZero: c.mask_zero, name: c.name});
        out = layer.apply(ref(args[0])) as Sym;
        break;
      case 'Dropout':
        layer = tf.layers.dropout({rate: c.rate, name: c.name});
        out = layer.apply(ref(args[0])) as Sym;
        break;
      case 'Add':
        layer = tf.layers.add({name: c.name});
        out = layer.apply((args[0] as unknown as Dict[]).map(ref)) as Sym;
        break;
      case 'LayerNormalization':
        expect(c.rms_scaling).toBe(false);
        layer = tf.layers.layerNormalization({epsilon: c.epsilon, axis: -1, name: c.name});
        out = layer.apply(ref(args[0])) as Sym;
        break;
      case 'Dense':
        layer = tf.layers.dense({units: c.units, activation: c.activation, useBias: c.use_bias, name: c.name});
        out = layer.apply(ref(args[0])) as Sym;
        break;
      case 'LSTM':
        layer = tf.layers.lstm(lstmArgs(c));
        out = layer.apply(ref(args[0])) as Sym;
        break;
      case 'Bidirectional':
        layer = tf.layers.bidirectional({layer: tf.layers.lstm(lstmArgs(c.layer.config)) as never, mergeMode: c.merge_mode, name: c.name});
        out = layer.apply(ref(args[0])) as Sym;
        break;
      default:
        throw new Error(`fixture ${name}: no hand-built equivalent for ${spec.class_name}`);
    }
    outputs[c.name] = Array.isArray(out) ? out : [out];
    if (layer != null) layers.push(layer);
  }
  const triples = (x: unknown): Array<[string, number, number]> =>
    (Array.isArray((x as unknown[])[0]) ? x : [x]) as Array<[string, number, number]>;
  const model = tf.model({
    inputs: triples(config.input_layers).map(([layer]) => outputs[layer][0]),
    outputs: triples(config.output_layers).map(([layer, , index]) => outputs[layer][index]),
  });
  // Keras' weights, layer by layer, in each layer's own order (the order is part of what is tested).
  const weights = readKerasWeights(name);
  for (const layer of layers) {
    const own = weights.filter(w => w.layer === layer.name);
    if (own.length === 0) continue;
    const tensors = own.map(toTensor);
    layer.setWeights(tensors);
    tf.dispose(tensors);
  }
  return model;
}

function lstmArgs(c: Dict): Parameters<typeof tf.layers.lstm>[0] {
  return {units: c.units, returnSequences: c.return_sequences, activation: c.activation,
          recurrentActivation: c.recurrent_activation, useBias: c.use_bias, name: c.name};
}

const MODEL_CASES = [
  'self_attention', 'cross_attention', 'output_shape', 'no_bias', 'causal', 'return_scores', 'dropout',
  'embedding_mask', 'embedding_mask_scores', 'attention_axes_2d', 'transformer_block', 'bidirectional_lstm',
  'tf_keras2_cross_attention',
];

describe.each(withNative(['cpu', 'wasm'] as const))('Keras 3.15 fixtures on %s', (backend) => {
  runTestsOn(backend);

  it.each(MODEL_CASES)('%s: the hand-built tfjs model predicts as Keras (within 1e-4)', (name) => {
    const model = buildModel(name);
    const inputs = inputTensors(name);
    const before = tf.memory().numTensors;
    const predicted = model.predict(inputs.length === 1 ? inputs[0] : inputs);
    const list = Array.isArray(predicted) ? predicted : [predicted];
    const expected = readKerasExpected(name);
    expect(list.length).toBe(expected.length);
    list.forEach((actual, i) => {
      const [ours, keras] = comparableValues(name, actual, expected[i]);
      expectClose(ours, keras, TOL);
    });
    tf.dispose(list);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(inputs);
    model.dispose();
  });

  it('attention_mask: the mask as Keras\' attention_mask call argument (an eager tensor here)', () => {
    const name = 'attention_mask';
    const config = readConverterModelJson(name).modelTopology.model_config.config;
    const spec = (config.layers as Dict[]).find(l => l.class_name === 'MultiHeadAttention')!;
    const layer = fromConfig(spec.config);
    const inputs = Object.fromEntries(readKerasInputs(name).map(t => [t.name, toTensor(t)]));
    tf.dispose(layer.apply([inputs.query, inputs.value]) as tf.Tensor);
    const weights = readKerasWeights(name).filter(w => w.layer === 'mha').map(toTensor);
    layer.setWeights(weights);
    const out = layer.apply([inputs.query, inputs.value], {attentionMask: inputs.attention_mask}) as tf.Tensor;
    const [ours, keras] = comparableValues(name, out, readKerasExpected(name)[0]);
    expectClose(ours, keras, TOL);
    tf.dispose([out, weights, Object.values(inputs)]);
    layer.dispose();
  });

  it('attention_mask: the mask as the last input of a model node (attentionMaskInput), as Keras', () => {
    const {model, layer, symbols, spec, weights} = attentionMaskModel();
    const name = 'attention_mask';
    const inputs = inputTensors(name);
    expectAttentionMaskPredictions(model, inputs);
    // Eager, the layer takes its node's form: the last of three inputs is the mask.
    const eager = layer.apply(inputs) as tf.Tensor;
    const [ours, keras] = comparableValues(name, eager, readKerasExpected(name)[0]);
    expectClose(ours, keras, TOL);
    eager.dispose();
    expect(() => fromConfig(spec.config).apply(symbols.slice(0, 1), {attentionMaskInput: true}))
        .toThrow(/With `attentionMaskInput`, the inputs must be \[query, value, mask\].*Received: 1 inputs/);
    expect(() => layer.apply(inputs, {attentionMaskInput: true, attentionMask: inputs[2]}))
        .toThrow(/`attentionMask` was given both as the last input and as an option/);
    tf.dispose([weights, inputs]);
    model.dispose();
  });
});

/** The attention_mask fixture as a tfjs model whose MultiHeadAttention node takes the mask as its last input. */
function attentionMaskModel() {
  const name = 'attention_mask';
  const config = readConverterModelJson(name).modelTopology.model_config.config;
  const spec = (config.layers as Dict[]).find(l => l.class_name === 'MultiHeadAttention')!;
  const symbols = readKerasInputs(name).map(t => tf.input({shape: t.shape.slice(1), dtype: t.dtype as tf.DataType, name: t.name}));
  const layer = fromConfig(spec.config);
  const y = layer.apply(symbols, {attentionMaskInput: true}) as Sym;  // [query, value, mask]
  expect(y.shape).toEqual([null, 5, 8]);
  const model = tf.model({inputs: symbols, outputs: y});
  const weights = readKerasWeights(name).filter(w => w.layer === 'mha').map(toTensor);
  layer.setWeights(weights);
  return {model, layer, symbols, spec, weights};
}

function expectAttentionMaskPredictions(model: tf.LayersModel, inputs: tf.Tensor[]): void {
  const out = model.predict(inputs) as tf.Tensor;
  const [ours, keras] = comparableValues('attention_mask', out, readKerasExpected('attention_mask')[0]);
  expectClose(ours, keras, TOL);
  out.dispose();
}

describe('attentionMaskInput through a tfjs save', () => {
  it('a model whose MultiHeadAttention takes the mask as an input saves with tfjs and reloads plainly, predicting as Keras', async () => {
    const {model, weights} = attentionMaskModel();
    let saved: tf.io.ModelArtifacts|null = null;
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const reloaded = await tf.loadLayersModel(tf.io.fromMemory(saved!));
    const inputs = inputTensors('attention_mask');
    expectAttentionMaskPredictions(reloaded, inputs);
    tf.dispose([weights, inputs]);
    model.dispose();
    reloaded.dispose();
  });
});

describe('Keras 3.15 configs of the fixtures', () => {
  it('build the same layer from the saved snake_case config and from its camel-cased form (as the converter writes)', () => {
    for (const name of MODEL_CASES) {
      const config = readConverterModelJson(name).modelTopology.model_config.config;
      for (const spec of (config.layers as Dict[]).filter(l => l.class_name === 'MultiHeadAttention')) {
        const snake = fromConfig(spec.config);
        const camel = fromConfig(Object.fromEntries(Object.entries(spec.config as Dict).map(([k, v]) => [camelCase(k), v])));
        expect(camel.getConfig()).toEqual(snake.getConfig());
        expect(snake.getConfig()).toEqual(expect.objectContaining({
          numHeads: spec.config.num_heads, keyDim: spec.config.key_dim, valueDim: spec.config.value_dim,
          useBias: spec.config.use_bias, dropout: spec.config.dropout,
        }));
      }
    }
  });
});
