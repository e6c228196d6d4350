/**
 * The Keras-made fixtures (test/fixtures/keras, from scripts/fixtures/make_keras_fixtures.py)
 * are self-consistent: every case has its files; the converter folder's manifest accounts for
 * every byte of its shard, and its weights equal weights.json's, value for value; the weight
 * shapes are the ones Keras' MultiHeadAttention documents for the case's arguments; the
 * .keras archives are sound zips (CRC-checked) holding config.json, metadata.json and an
 * HDF5 model.weights.h5, with the same layers as model.json. The zip and shard are read
 * here byte by byte, independently of any loader in src/.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import * as tf from '@tensorflow/tfjs';
import {
  ConverterModelJson, FixtureTensor, KERAS_FIXTURES_DIR, KerasCase, inputTensors, kerasCasePath, layerWeightTensors,
  listKerasCases, readConverterModelJson, readKerasCase, readKerasExpected, readKerasInputs, readKerasWeights, sizeOf,
  toFloat32,
} from './helpers/keras_fixtures';

/**
 * The list of cases, plus the explicit attention-mask input, the tf.keras 2 file, and two
 * models of layers beyond attention for the loader (conv_pool_gru, and a Sequential one).
 */
const REQUIRED_CASES = [
  'attention_axes_2d', 'attention_mask', 'bidirectional_lstm', 'causal', 'conv_pool_gru', 'cross_attention', 'dropout',
  'embedding_mask', 'embedding_mask_scores', 'masked_residual', 'no_bias', 'output_shape', 'return_scores', 'self_attention',
  'sequential_embedding_gru', 'tf_keras2_cross_attention', 'transformer_block',
];
const CASES = listKerasCases();
const KERAS3_CASES = CASES.filter((c) => readKerasCase(c).files.includes('model.keras'));
const BASE_FILES = ['case.json', 'weights.json', 'inputs.json', 'expected.json', 'tfjs/model.json'];

// ---------------------------------------------------------------------------------------------
// A minimal zip reader (end-of-central-directory record, central directory, local headers).
// ---------------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

interface ZipEntry {name: string; method: number; crc: number; data: Buffer}

function readZip(file: string): ZipEntry[] {
  const buf = fs.readFileSync(file);
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${file}: no zip end-of-central-directory record`);
  const count = buf.readUInt16LE(eocd + 10);
  let at = buf.readUInt32LE(eocd + 16);
  const entries: ZipEntry[] = [];
  for (let i = 0; i < count; i++) {
    if (buf.readUInt32LE(at) !== 0x02014b50) throw new Error(`${file}: bad central directory header at ${at}`);
    const method = buf.readUInt16LE(at + 10);
    const crc = buf.readUInt32LE(at + 16);
    const compressedSize = buf.readUInt32LE(at + 20);
    const size = buf.readUInt32LE(at + 24);
    const nameLength = buf.readUInt16LE(at + 28);
    const extraLength = buf.readUInt16LE(at + 30);
    const commentLength = buf.readUInt16LE(at + 32);
    const local = buf.readUInt32LE(at + 42);
    const name = buf.toString('utf8', at + 46, at + 46 + nameLength);
    if (buf.readUInt32LE(local) !== 0x04034b50) throw new Error(`${file}: bad local header for ${name}`);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(start, start + compressedSize);
    const data = method === 0 ? Buffer.from(raw) : method === 8 ? zlib.inflateRawSync(raw) : null;
    if (data == null) throw new Error(`${file}: ${name} uses compression method ${method}`);
    if (data.length !== size) throw new Error(`${file}: ${name} has ${data.length} bytes, its header says ${size}`);
    entries.push({name, method, crc, data});
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------

/** The shard's values, read as little-endian float32, split by the manifest (in its order). */
function shardWeights(name: string, model: ConverterModelJson): Map<string, {shape: number[]; values: Float32Array}> {
  const out = new Map<string, {shape: number[]; values: Float32Array}>();
  for (const group of model.weightsManifest) {
    const bytes = Buffer.concat(group.paths.map((p) => fs.readFileSync(kerasCasePath(name, path.join('tfjs', p)))));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    for (const w of group.weights) {
      const n = sizeOf(w.shape);
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = view.getFloat32(offset + 4 * i, true);
      offset += 4 * n;
      out.set(w.name, {shape: w.shape, values});
    }
  }
  return out;
}

function layersOf(model: ConverterModelJson): any[] {
  return model.modelTopology.model_config.config.layers;
}

function mhaConfigOf(model: ConverterModelJson): any {
  const layer = layersOf(model).find((l) => l.class_name === 'MultiHeadAttention');
  if (layer == null) throw new Error('no MultiHeadAttention layer');
  return layer.config;
}

/** The input shapes (without batch) by input layer name, from model.json's InputLayers. */
function inputShapes(model: ConverterModelJson): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const l of layersOf(model)) {
    if (l.class_name !== 'InputLayer') continue;
    const shape = l.config.batch_shape ?? l.config.batch_input_shape;
    shapes.set(l.name ?? l.config.name, shape.slice(1));
  }
  return shapes;
}

describe('Keras fixtures', () => {
  it('cover every case the issue asks for', () => {
    expect(CASES).toEqual([...REQUIRED_CASES].sort());
    expect(KERAS3_CASES).toEqual(CASES.filter((c) => c !== 'tf_keras2_cross_attention'));
  });

  it('stay small in bytes (under 1 MB in all)', () => {
    let total = 0;
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, {withFileTypes: true})) {
        if (e.isDirectory()) walk(path.join(dir, e.name));
        else total += fs.statSync(path.join(dir, e.name)).size;
      }
    };
    walk(KERAS_FIXTURES_DIR);
    expect(total).toBeLessThan(1024 * 1024);
  });

  describe.each(CASES.map((c) => [c]))('%s', (name) => {
    const info: KerasCase = readKerasCase(name);
    const model = readConverterModelJson(name);
    const weights = readKerasWeights(name);
    const inputs = readKerasInputs(name);
    const expected = readKerasExpected(name);

    it('has the files case.json lists, and at least the common ones', () => {
      expect(info.name).toBe(name);
      for (const f of BASE_FILES) expect(info.files.concat('case.json')).toContain(f);
      for (const f of info.files) expect(fs.statSync(kerasCasePath(name, f)).size).toBeGreaterThan(0);
    });

    it('model.json has the converter layout', () => {
      expect(model.format).toBe('layers-model');
      expect(model.generatedBy).toBe(`keras v${model.modelTopology.keras_version}`);
      expect(model.convertedBy).toMatch(/^TensorFlow\.js Converter v\d+\.\d+\.\d+$/);
      expect(model.modelTopology.backend).toBe('tensorflow');
      expect(model.modelTopology.model_config.class_name).toBe(info.model_class);
      const version = model.modelTopology.keras_version;
      if (name === 'tf_keras2_cross_attention') expect(version).toBe('2.15.0');
      else expect(version).toBe(info.keras_version);
      expect(model.weightsManifest).toHaveLength(1);
      expect(model.weightsManifest[0].paths).toEqual(['group1-shard1of1.bin']);
    });

    it("the manifest's sizes add up to the shard's bytes", () => {
      for (const group of model.weightsManifest) {
        const bytes = group.paths.reduce((n, p) => n + fs.statSync(kerasCasePath(name, path.join('tfjs', p))).size, 0);
        const declared = group.weights.reduce((n, w) => n + 4 * sizeOf(w.shape), 0);
        expect(group.weights.every((w) => w.dtype === 'float32')).toBe(true);
        expect(bytes).toBe(declared);
      }
      const names = model.weightsManifest.flatMap((g) => g.weights.map((w) => w.name));
      expect(new Set(names).size).toBe(names.length);
      expect(names.every((n) => !n.endsWith(':0'))).toBe(true);
    });

    it("weights.json holds the manifest's weights: same names, shapes and float32 values", () => {
      const shard = shardWeights(name, model);
      expect(weights.map((w) => w.name).sort()).toEqual([...shard.keys()].sort());
      for (const w of weights) {
        const fromShard = shard.get(w.name)!;
        expect({name: w.name, shape: w.shape}).toEqual({name: w.name, shape: fromShard.shape});
        expect(w.layer).toBe(w.name.split('/')[0]);
        const values = toFloat32(w);
        const mismatch = values.findIndex((v, i) => v !== fromShard.values[i]);
        expect({name: w.name, mismatch}).toEqual({name: w.name, mismatch: -1});
      }
    });

    it('inputs and outputs match the model: names, shapes, value counts, not near zero', () => {
      const shapes = inputShapes(model);
      const inputLayers = model.modelTopology.model_config.config.input_layers;
      const inputNames = inputLayers == null ?  // a Sequential model: its InputLayer
          layersOf(model).filter((l) => l.class_name === 'InputLayer').map((l) => l.config.name) :
          (Array.isArray(inputLayers[0]) ? inputLayers : [inputLayers]).map((l: unknown[]) => l[0]);
      expect(inputs.map((x) => x.name)).toEqual(inputNames);
      for (const x of inputs) {
        expect(x.shape.slice(1)).toEqual(shapes.get(x.name));
        expect(x.values.length).toBe(sizeOf(x.shape));
      }
      const outputLayers = model.modelTopology.model_config.config.output_layers;
      expect(expected).toHaveLength(outputLayers != null && Array.isArray(outputLayers[0]) ? outputLayers.length : 1);
      for (const y of expected) {
        expect(y.dtype).toBe('float32');
        expect(y.values.length).toBe(sizeOf(y.shape));
        expect(y.values.every(Number.isFinite)).toBe(true);
        expect(Math.max(...y.values.map(Math.abs))).toBeGreaterThan(0.1);
      }
    });

    // Every case but the Sequential one has a MultiHeadAttention layer named `mha`.
    if (weights.some((w) => w.layer === 'mha')) it("the attention weights have Keras' documented order and shapes for the case's arguments", () => {
      const args = info.layer as {num_heads: number; key_dim: number; value_dim?: number; use_bias?: boolean; output_shape?: number};
      const H = args.num_heads;
      const keyDim = args.key_dim;
      const valueDim = args.value_dim ?? keyDim;
      const useBias = args.use_bias ?? true;
      const mha = weights.filter((w) => w.layer === 'mha');
      const order = useBias ?
          ['query/kernel', 'query/bias', 'key/kernel', 'key/bias', 'value/kernel', 'value/bias', 'attention_output/kernel',
           'attention_output/bias'] :
          ['query/kernel', 'key/kernel', 'value/kernel', 'attention_output/kernel'];
      expect(mha.map((w) => w.name)).toEqual(order.map((n) => `mha/${n}`));
      const shape = (n: string) => mha.find((w) => w.name === `mha/${n}`)!.shape;
      const config = mhaConfigOf(model);
      expect(config).toMatchObject({num_heads: H, key_dim: keyDim, value_dim: valueDim, use_bias: useBias});
      // Projection kernels: [input features, heads, head size]; biases [heads, head size].
      const dq = shape('query/kernel')[0];
      expect(shape('query/kernel')).toEqual([dq, H, keyDim]);
      expect(shape('key/kernel').slice(1)).toEqual([H, keyDim]);
      expect(shape('value/kernel').slice(1)).toEqual([H, valueDim]);
      const out = args.output_shape ?? dq;
      expect(shape('attention_output/kernel')).toEqual([H, valueDim, out]);
      if (useBias) {
        expect([shape('query/bias'), shape('key/bias'), shape('value/bias'), shape('attention_output/bias')])
            .toEqual([[H, keyDim], [H, keyDim], [H, valueDim], [out]]);
      }
      // The first output is the attention's (or what follows it); return_attention_scores adds [B, H, ...].
      if (info.call.return_attention_scores === true) {
        expect(expected).toHaveLength(2);
        expect(expected[1].shape.slice(0, 2)).toEqual([inputs[0].shape[0], H]);
      }
    });

    it('the tensor helpers give the files\' shapes and dtypes, without leaking', () => {
      const before = tf.memory().numTensors;
      const xs = inputTensors(name);
      const layer = weights[0].layer;
      const ws = layerWeightTensors(name, layer);
      expect(xs.map((x) => [x.shape, x.dtype])).toEqual(inputs.map((x) => [x.shape, x.dtype]));
      expect(ws.map((w) => w.shape)).toEqual(weights.filter((w) => w.layer === layer).map((w) => w.shape));
      tf.dispose([...xs, ...ws]);
      expect(tf.memory().numTensors).toBe(before);
    });
  });

  describe.each(KERAS3_CASES.map((c) => [c]))('%s: model.keras', (name) => {
    it('is a sound zip of config.json, metadata.json and an HDF5 model.weights.h5, agreeing with model.json', () => {
      const info = readKerasCase(name);
      const entries = readZip(kerasCasePath(name, 'model.keras'));
      expect(entries.map((e) => e.name).sort()).toEqual(['config.json', 'metadata.json', 'model.weights.h5']);
      for (const e of entries) expect({name: e.name, crc: crc32(e.data)}).toEqual({name: e.name, crc: e.crc});
      const byName = new Map(entries.map((e) => [e.name, e.data]));
      const metadata = JSON.parse(byName.get('metadata.json')!.toString('utf8'));
      expect(metadata.keras_version).toBe(info.keras_version);
      expect(metadata.keras_version).toMatch(/^3\.15\./);
      // HDF5 format signature.
      expect([...byName.get('model.weights.h5')!.subarray(0, 8)]).toEqual([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
      const config = JSON.parse(byName.get('config.json')!.toString('utf8'));
      expect(config.class_name).toBe(info.model_class);
      const model = readConverterModelJson(name);
      const summary = (layers: any[]) => layers.map((l) => [l.name, l.class_name]);
      expect(summary(config.config.layers)).toEqual(summary(layersOf(model)));
      // The converter's topology is Keras' config without the layers' module/registered_name/build_config
      // (and without the shared_object_id that the .keras config gives objects several layers share).
      const strip = (l: any) => {
        const {module: _m, registered_name: _r, build_config: _b, ...rest} = l;
        return rest;
      };
      const withoutSharedIds = JSON.parse(JSON.stringify(config.config.layers),
                                          (key, value) => key === 'shared_object_id' ? undefined : value);
      expect(withoutSharedIds.map(strip)).toEqual(layersOf(model));
    });
  });

  describe('masked and tf.keras 2 cases', () => {
    it.each([['embedding_mask'], ['embedding_mask_scores'], ['masked_residual']])('%s: the padded query rows are the zero tokens', (name) => {
      const info = readKerasCase(name);
      const tokens = readKerasInputs(name)[0];
      const T = tokens.shape[1];
      const zeros: Array<[number, number]> = [];
      tokens.values.forEach((v, i) => {
        if (v === 0) zeros.push([Math.floor(i / T), i % T]);
      });
      expect(zeros.length).toBeGreaterThan(0);
      expect(info.padded_query_rows).toEqual(zeros);
      expect(info.embedding?.mask_zero).toBe(true);
    });

    it("embedding_mask_scores: Keras' explicit path gives padded keys weight 0, padded query rows all zeros", () => {
      const tokens = readKerasInputs('embedding_mask_scores')[0];
      const scores: FixtureTensor = readKerasExpected('embedding_mask_scores')[1];
      const [B, H, T, S] = scores.shape;
      const at = (b: number, h: number, t: number, s: number) => scores.values[((b * H + h) * T + t) * S + s];
      for (let b = 0; b < B; b++) {
        for (let h = 0; h < H; h++) {
          for (let t = 0; t < T; t++) {
            const queryPadded = tokens.values[b * T + t] === 0;
            let sum = 0;
            for (let s = 0; s < S; s++) {
              if (tokens.values[b * T + s] === 0) expect(at(b, h, t, s)).toBe(0);
              sum += at(b, h, t, s);
            }
            expect(sum).toBeCloseTo(queryPadded ? 0 : 1, 5);
          }
        }
      }
    });

    it('tf_keras2_cross_attention: tf.keras 2.15 layout (build shapes in the config, value as a keyword)', () => {
      const model = readConverterModelJson('tf_keras2_cross_attention');
      const layers = layersOf(model);
      expect(layers.map((l) => l.class_name)).toEqual(['InputLayer', 'InputLayer', 'MultiHeadAttention']);
      expect(layers[0].config.batch_input_shape).toEqual([null, 5, 8]);
      expect(layers[0].config.dtype).toBe('float32');
      const mha = layers[2];
      expect(mha.config).toMatchObject({query_shape: [null, 5, 8], key_shape: [null, 4, 6], value_shape: [null, 4, 6], dtype: 'float32'});
      expect(mha.inbound_nodes).toEqual([[['query', 0, 0, {value: ['value', 0, 0]}]]]);
      expect(model.modelTopology.model_config.config.output_layers).toEqual([['mha', 0, 0]]);
      expect(readKerasInputs('tf_keras2_cross_attention').map((x) => x.shape)).toEqual([[2, 5, 8], [2, 4, 6]]);
    });
  });

  it('the loader names the case and file it cannot find', () => {
    expect(() => readKerasCase('no_such_case')).toThrow(/no_such_case.*Known cases: attention_axes_2d/);
    expect(() => kerasCasePath('self_attention', 'nothing.json')).toThrow(/self_attention.*nothing\.json/);
    expect(() => toFloat32({name: 'w', shape: [2, 2], dtype: 'float32', values: [1, 2, 3]}))
        .toThrow(/`w` has 3 values for shape \[2, 2\] \(4 expected\)/);
  });
});
