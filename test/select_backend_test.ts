/**
 * selectBackend(name): makes a backend active and returns its name; 'auto' takes tfjs-node
 * when it loads, else wasm, else cpu (the order with injected availability, down to the cpu
 * fallback, is tested in attention_plan_test.ts's chooseBackend cases). The same tests exist on
 * every machine: tfjs-node's cases are skipped with the reason where it is not installed, and
 * fail instead under REQUIRE_TFJS_NODE=1, as in .ci/run; its absence is simulated through the
 * package loader, so the "not installed" error is tested on every machine too.
 */
import * as tf from '@tensorflow/tfjs';
import {BACKEND_NAMES, selectBackend} from '../src/node';
import {setBackendPackageLoader} from '../src/backend/select_backend';
import {NATIVE, reportNativeMissing} from './helpers/native';

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

  const autoExpected = NATIVE.loaded ? 'tensorflow' : 'wasm';
  it(`'auto' (and no argument) picks the fastest that loads: '${autoExpected}' on this machine`, async () => {
    await selectBackend('cpu');
    await expect(selectBackend('auto')).resolves.toBe(autoExpected);
    expectWorkingBackend(autoExpected);
    await selectBackend('cpu');
    await expect(selectBackend()).resolves.toBe(autoExpected);
  });

  reportNativeMissing("'tensorflow' starting tfjs-node");
  (NATIVE.loaded ? it : it.skip)("'tensorflow' starts tfjs-node and returns 'tensorflow'", async () => {
    await expect(selectBackend('tensorflow')).resolves.toBe('tensorflow');
    expectWorkingBackend('tensorflow');
  });

  it("'tensorflow' without tfjs-node installed: a clear error that says to install it; the active backend stays", async () => {
    await selectBackend('cpu');
    const before = tf.memory().numTensors;
    const installed = setBackendPackageLoader(async (id) => {
      if (id === '@tensorflow/tfjs-node') throw Object.assign(new Error(`Cannot find module '${id}'`), {code: 'MODULE_NOT_FOUND'});
      return import(id);
    });
    try {
      if (tf.findBackendFactory('tensorflow') != null) tf.removeBackend('tensorflow');  // as if never loaded
      await expect(selectBackend('tensorflow')).rejects.toThrow(
          /^Backend "tensorflow" could not be started here \(is @tensorflow\/tfjs-node installed\?\)\. Received: name="tensorflow"$/);
    } finally {
      setBackendPackageLoader(installed);
    }
    expect(tf.getBackend()).toBe('cpu');
    expect(tf.memory().numTensors).toBe(before);
  });

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
