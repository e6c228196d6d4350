/**
 * The native backend in the test process: loads @tensorflow/tfjs-node once per test file (it registers the
 * `tensorflow` backend and makes it active; the backend active before is restored, so suites keep the one they
 * chose) and tells suites whether to add `tensorflow` to their backends. When it is absent, the suite reports
 * its tensorflow cases as skipped, with the reason; with REQUIRE_TFJS_NODE=1 (set by .ci/run) its absence fails.
 */
import * as tf from '@tensorflow/tfjs';

export interface NativeStatus {
  loaded: boolean;
  /** Why it is not loaded; '' when it is. */
  reason: string;
}

function loadTfjsNode(): NativeStatus {
  try {
    require.resolve('@tensorflow/tfjs-node');
  } catch {
    return {loaded: false, reason: '@tensorflow/tfjs-node is not installed (`npm run setup:tfjs-node` installs it offline)'};
  }
  const before = tf.getBackend();
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require('@tensorflow/tfjs-node');
  } catch (error) {
    return {loaded: false, reason: `@tensorflow/tfjs-node does not load: ${(error as Error).message.split('\n')[0]}`};
  } finally {
    // tfjs-node makes itself active (and, at priority 3, tfjs' default): give the suite its backend back.
    void tf.setBackend(before);
  }
  if (tf.findBackend('tensorflow') == null && tf.findBackendFactory('tensorflow') == null) {
    return {loaded: false, reason: '@tensorflow/tfjs-node loaded but registered no `tensorflow` backend on this tfjs'};
  }
  return {loaded: true, reason: ''};
}

export const NATIVE: NativeStatus = loadTfjsNode();

/** Whether .ci/run asked for tfjs-node to be present (REQUIRE_TFJS_NODE=1). */
export const NATIVE_REQUIRED = process.env.REQUIRE_TFJS_NODE === '1';

/**
 * `backends` plus 'tensorflow' when tfjs-node loaded. When it did not, registers (where it is called) a test that is
 * skipped with the reason in its title, or, with REQUIRE_TFJS_NODE=1, one that fails with it.
 */
export function withNative<B extends string>(backends: readonly B[]): Array<B|'tensorflow'> {
  if (NATIVE.loaded) return [...backends, 'tensorflow'];
  reportNativeMissing();
  return [...backends];
}

/** The skipped (or, when required, failing) test that says why the tensorflow cases do not run. */
export function reportNativeMissing(what = 'the tensorflow backend cases'): void {
  if (NATIVE.loaded) return;
  if (NATIVE_REQUIRED) {
    test(`${what} need tfjs-node (REQUIRE_TFJS_NODE=1)`, () => {
      throw new Error(`REQUIRE_TFJS_NODE=1 but ${NATIVE.reason}`);
    });
  } else {
    test.skip(`${what}: skipped, ${NATIVE.reason}`, () => undefined);
    // Jest lists skipped tests by name only with --verbose: one line on stderr says it in any case.
    const file = (expect.getState().testPath ?? '').split(/[\\/]/).pop();
    process.stderr.write(`${file}: ${what} skipped: ${NATIVE.reason}\n`);
  }
}
