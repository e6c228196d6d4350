/**
 * loadKerasModel against Keras 3.15 itself: every fixture made by Keras
 * (test/fixtures/keras/<case>/, scripts/fixtures/make_keras_fixtures.py) is loaded from its
 * `.keras` archive and from its converter model.json, from a path, from bytes (Uint8Array,
 * ArrayBuffer, Blob) and from URLs (file:// and a local http server), on cpu and wasm; the
 * loaded model's predictions must equal Keras' expected.json within 1e-4 (relative where
 * values are large), leaving no tensor behind once disposed.
 */
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import {pathToFileURL} from 'url';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import {strFromU8, strToU8, unzipSync, zipSync} from 'fflate';
import {loadKerasModel, KerasModelSource} from '../src/keras_node';
import {runTestsOn} from './helpers/tensors';
import {KERAS_FIXTURES_DIR, kerasCasePath, listKerasCases, readKerasCase} from './helpers/keras_fixtures';
import {expectKerasPredictions} from './helpers/keras_predictions';
const CASES = listKerasCases();
const ARCHIVE_CASES = CASES.filter(c => readKerasCase(c).files.includes('model.keras'));

/** Loads `source`, checks the predictions of case `name`, disposes the model, and checks that no tensor is left. */
async function expectLoadsAndPredicts(name: string, source: KerasModelSource): Promise<void> {
  const before = tf.memory().numTensors;
  const model = await loadKerasModel(source);
  try {
    expectKerasPredictions(name, model);
  } finally {
    model.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

function fileBytes(name: string, file: string): Uint8Array {
  const buffer = fs.readFileSync(kerasCasePath(name, file));
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

describe.each(['cpu', 'wasm'])('loadKerasModel on %s', (backend) => {
  runTestsOn(backend);

  describe.each(CASES.map(c => [c]))('%s', (name) => {
    const files = readKerasCase(name).files;

    it('from the converter model.json by path predicts as Keras', async () => {
      await expectLoadsAndPredicts(name, kerasCasePath(name, 'tfjs/model.json'));
    });

    it('from the converter model.json as a file:// URL (shards read beside it) predicts as Keras', async () => {
      await expectLoadsAndPredicts(name, pathToFileURL(kerasCasePath(name, 'tfjs/model.json')).href);
    });

    if (files.includes('model.keras')) {
      it('from the .keras archive by path predicts as Keras', async () => {
        await expectLoadsAndPredicts(name, kerasCasePath(name, 'model.keras'));
      });

      it('from the .keras archive as a Uint8Array, an ArrayBuffer and a Blob predicts as Keras', async () => {
        const bytes = fileBytes(name, 'model.keras');
        await expectLoadsAndPredicts(name, bytes);
        await expectLoadsAndPredicts(name, bytes.slice().buffer);
        await expectLoadsAndPredicts(name, new Blob([bytes.slice().buffer]));
      });
    }
  });
});

describe('loadKerasModel from http URLs', () => {
  let server: http.Server;
  let base = '';
  const requested: string[] = [];

  beforeAll(async () => {
    server = http.createServer((request, response) => {
      const url = decodeURIComponent(request.url ?? '/');
      requested.push(url);
      const file = path.join(KERAS_FIXTURES_DIR, path.normalize(url));
      if (!file.startsWith(KERAS_FIXTURES_DIR) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        response.writeHead(404).end('not found');
        return;
      }
      response.writeHead(200, {'Content-Type': 'application/octet-stream'}).end(fs.readFileSync(file));
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    const address = server.address() as {port: number};
    base = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    await new Promise<void>(resolve => server.close(() => resolve()));
  });

  it.each(ARCHIVE_CASES.map(c => [c]))('%s: the .keras archive and the model.json (its shards fetched beside it) predict as Keras', async (name) => {
    requested.length = 0;
    await expectLoadsAndPredicts(name, `${base}/${name}/model.keras`);
    await expectLoadsAndPredicts(name, `${base}/${name}/tfjs/model.json`);
    expect(requested).toEqual([`/${name}/model.keras`, `/${name}/tfjs/model.json`, `/${name}/tfjs/group1-shard1of1.bin`]);
  });

  it('tf_keras2_cross_attention: the tf.keras 2 model.json from a URL predicts as Keras', async () => {
    await expectLoadsAndPredicts('tf_keras2_cross_attention', `${base}/tf_keras2_cross_attention/tfjs/model.json`);
  });

  it('a missing URL is an error naming it, with the HTTP status', async () => {
    await expect(loadKerasModel(`${base}/no_such_case/model.keras`))
        .rejects.toThrow(/Cannot fetch `http:\/\/127\.0\.0\.1:\d+\/no_such_case\/model\.keras`: HTTP 404/);
  });
});

describe('loadKerasModel: other forms of the same models', () => {
  it('a Keras 3 Sequential config without an InputLayer (build_input_shape instead) predicts as Keras', async () => {
    const name = 'sequential_embedding_gru';
    const members = unzipSync(fileBytes(name, 'model.keras'));
    const config = JSON.parse(strFromU8(members['config.json']));
    const input = config.config.layers.shift();
    expect(input.class_name).toBe('InputLayer');
    config.config.build_input_shape = input.config.batch_shape;
    await expectLoadsAndPredicts(name, zipSync({...members, 'config.json': strToU8(JSON.stringify(config))}, {level: 0}));
  });

  it.each(['transformer_block', 'attention_mask', 'sequential_embedding_gru', 'tf_keras2_cross_attention'].map(c => [c]))(
      '%s: a model.json that tfjs saved from the loaded model loads again and predicts as Keras', async (name) => {
        const loaded = await loadKerasModel(kerasCasePath(name, 'tfjs/model.json'));
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keras-resave-'));
        await loaded.save(tf.io.withSaveHandler(async (artifacts) => {
          const modelJson = {format: 'layers-model', modelTopology: artifacts.modelTopology,
                             weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}]};
          fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(modelJson));
          fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(artifacts.weightData as ArrayBuffer));
          return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
        }));
        loaded.dispose();
        await expectLoadsAndPredicts(name, path.join(dir, 'model.json'));
      });
});
