/**
 * The backend the park scripts (npm run train, predict, explain) use unless `--backend` names one.
 *
 * wasm, not selectBackend('auto') (which takes tfjs-node's `tensorflow` when it loads): the park
 * model is tiny (a window of a few words, d = 32, 2 heads, batches of 32), where each op's fixed
 * cost dominates, and tfjs-node's is higher. Measured on the 2-core machine, 2026-11-30,
 * `npm run train` (20 epochs, seed 42) alternating backends, three runs each: wasm 4.8, 5.3 and
 * 5.6 s, tensorflow 6.6, 7.8 and 6.8 s (an earlier pair: 4.5, 4.7 against 6.7, 7.0 s; the issue
 * measured 8.1-9.5 against 11.5-15.9 s on a busier machine); both reach 100% held-out accuracy.
 * Prediction and explanation are inference on one sentence, where wasm's fused kernel runs the
 * layer about 2× faster than tensorflow at the bench's smallest point (0.65 against 1.28 ms at
 * B, T, d, H = 32, 16, 64, 1) and TensorFlow's start-up is saved.
 */
import type {BackendName} from '../tfjs_attention';

export const PARK_BACKEND: BackendName = 'wasm';
