/**
 * selectBackend(name): makes a backend active and returns its name; 'auto' takes tfjs-node
 * when it loads, else wasm, else cpu. The expectations depend on whether tfjs-node can load
 * on this machine (it is an optional dependency whose install needs the internet), which is
 * found out in a separate Node process so that this file is right on both kinds of machine.
 */
import {spawnSync} from 'child_process';
import * as tf from '@tensorflow/tfjs';
import {BACKEND_NAMES, selectBackend} from '../src/node';

/** Whether `require('@tensorflow/tfjs-node')` succeeds: resolvable, and its native binding loads. */
function tfjsNodeLoads(): boolean {
  try {
    require.resolve('@tensorflow/tfjs-node');
  } catch {
    return false;
  }
  const child = spawnSync(process.execPath, ['-e', "require('@tensorflow/tfjs-node')"], {
    cwd: __dirname, encoding: 'utf8', timeout: 60000,
  });
  return child.status === 0;
}

const HAS_TFJS_NODE = tfjsNodeLoads();
let originalBackend = '';

beforeAll(async () => {
  await tf.ready();
  originalBackend = tf.getBackend();
});

afterAll(async () => {
  await tf.setBackend(originalBackend);
  expect(tf.getBackend()).toBe(originalBackend);
});

/** The active backend computes: a small matMul gives the right numbers on it. */
function expectWorkingBackend(name: string): void {
  expect(tf.getBackend()).toBe(name);
  const product = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).arraySync());
  expect(product).toEqual([[17], [39]]);
}

describe('selectBackend', () => {
  it('lists the five names it accepts', () => {
    expect([...BACKEND_NAMES]).toEqual(['auto', 'tensorflow', 'wasm', 'cpu', 'webgl']);
  });

  it("'cpu' makes tfjs' pure-JS backend active and returns 'cpu'", async () => {
    await expect(selectBackend('cpu')).resolves.toBe('cpu');
    expectWorkingBackend('cpu');
  });

  it("'wasm' loads @tensorflow/tfjs-backend-wasm and returns 'wasm'", async () => {
    await expect(selectBackend('wasm')).resolves.toBe('wasm');
    expectWorkingBackend('wasm');
  });

  const autoExpected = HAS_TFJS_NODE ? 'tensorflow' : 'wasm';
  it(`'auto' (and no argument) picks the fastest that loads: '${autoExpected}' on this machine`, async () => {
    await selectBackend('cpu');
    await expect(selectBackend('auto')).resolves.toBe(autoExpected);
    expectWorkingBackend(autoExpected);
    await selectBackend('cpu');
    await expect(selectBackend()).resolves.toBe(autoExpected);
  });

  if (HAS_TFJS_NODE) {
    it("'tensorflow' starts tfjs-node, which loads on this machine", async () => {
      await expect(selectBackend('tensorflow')).resolves.toBe('tensorflow');
      expectWorkingBackend('tensorflow');
    });
  } else {
    it("'tensorflow' without tfjs-node: a clear error that says to install it; the active backend stays", async () => {
      await selectBackend('cpu');
      const before = tf.memory().numTensors;
      await expect(selectBackend('tensorflow')).rejects.toThrow(
          /^Backend "tensorflow" could not be started here \(is @tensorflow\/tfjs-node installed\?\)\. Received: name="tensorflow"$/);
      expect(tf.getBackend()).toBe('cpu');
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("'webgl' cannot start in Node (no WebGL context): an error naming it; the active backend stays", async () => {
    await selectBackend('cpu');
    await expect(selectBackend('webgl')).rejects.toThrow(/^Backend "webgl" could not be started here\. Received: name="webgl"$/);
    expectWorkingBackend('cpu');
  });

  it.each([['gpu'], ['WASM'], [''], [42], [null]])(
      'an unknown name (%p) is refused in the Keras style, naming `name`; nothing changes', async (name) => {
        await selectBackend('cpu');
        const before = tf.memory().numTensors;
        await expect(selectBackend(name as never)).rejects.toThrow(new RegExp(
            '^Received an invalid value for argument `name`, expected one of auto, tensorflow, wasm, cpu, webgl\\. ' +
            `Received: name=${String(name === '' || typeof name === 'string' ? JSON.stringify(name) : name)}$`));
        expect(tf.getBackend()).toBe('cpu');
        expect(tf.memory().numTensors).toBe(before);
      });
});
