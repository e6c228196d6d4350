/**
 * Times the fused backward kernel (attend_backward_4x8) of the plain build (KERNELS_WASM) against
 * its relaxed-SIMD build (KERNELS_RELAXED_WASM: f32x4.relaxed_madd, see
 * src/backend/kernels/madd_wasmsimd.h) in headless Chromium, the runtime where the library picks
 * the relaxed build (Node 20 has relaxed SIMD only behind --experimental-wasm-relaxed-simd), and
 * checks that the two give the same gradients within float32 rounding:
 *
 *   npx tsx scripts/relaxed_simd_browser.ts [T=1024] [d=64]
 *
 * Both modules run on one memory in the page, interleaved, one thread, the kernel called alone
 * on packed operands (one pair, T = S, no mask); medians of 31 calls after 3 warm-up rounds.
 * Uses Debian's Chromium (/usr/bin/chromium, or CHROMIUM_PATH), never a downloaded browser.
 */
import {chromium} from 'playwright-core';
import {FUSED_BACKWARD_KEY_BLOCK, KERNELS_RELAXED_WASM, KERNELS_WASM} from './app/tfjs_attention';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

interface PageResult {
  userAgent: string;
  relaxedValid: boolean;
  plainMs: number;
  relaxedMs: number;
  maxRelativeDifference: number;
}

/** Runs in the page: both builds on one memory, the backward of one pair timed interleaved. */
function timeInPage({plain, relaxed, T, d, block}: {plain: string; relaxed: string; T: number; d: number; block: number}): PageResult {
  const bytes = (base64: string): Uint8Array<ArrayBuffer> => Uint8Array.from(atob(base64), c => c.charCodeAt(0));
  const relaxedBytes = bytes(relaxed);
  const relaxedValid = WebAssembly.validate(relaxedBytes);
  const floats = 16 * T * d + 64 * 1024;
  const memory = new WebAssembly.Memory({initial: Math.ceil((4 * floats) / 65536) + 1});
  type Backward = (...args: number[]) => void;
  const instantiate = (b: Uint8Array<ArrayBuffer>) => new WebAssembly.Instance(new WebAssembly.Module(b), {env: {memory}}).exports;
  const plainBackward = instantiate(bytes(plain)).attend_backward_4x8 as Backward;
  const relaxedBackward = relaxedValid ? instantiate(relaxedBytes).attend_backward_4x8 as Backward : plainBackward;
  const heap = new Float32Array(memory.buffer);
  // Operands (float offsets): q, k, v, dout packed, their rows, lse, delta; then two sets of gradients and a scratch.
  const n = T * d;
  const [q, k, v, dout, qRows, kRows, doutRows] = [0, 1, 2, 3, 4, 5, 6].map(i => 64 + i * n);
  const [lse, delta] = [64 + 7 * n, 64 + 7 * n + T];
  const grads = [64 + 7 * n + 2 * T, 64 + 10 * n + 2 * T];
  const scratch = 64 + 13 * n + 2 * T;
  for (let i = 0; i < 7 * n; i++) heap[64 + i] = Math.sin(i * 0.37) * 0.5;
  // The log-sum-exp of each query's scaled scores, so that the weights are a softmax: scores are at most d/4 here.
  for (let t = 0; t < T; t++) heap[lse + t] = Math.log(T) + 0.125 * d / 4;
  for (let t = 0; t < T; t++) heap[delta + t] = 0.01 * Math.cos(t);
  const call = (backward: Backward, set: number) => backward(
      4 * q, 4 * k, 4 * v, 4 * dout, 4 * qRows, 4 * kRows, 4 * doutRows, 4 * lse, 4 * delta, 4 * grads[set], 4 * (grads[set] + n),
      4 * (grads[set] + 2 * n), 4 * scratch, T, T, block, d, d, 0.125, 0, 0, 0, 0, 0, 0);
  const times: number[][] = [[], []];
  for (let round = 0; round < 34; round++) {
    [plainBackward, relaxedBackward].forEach((backward, set) => {
      const started = performance.now();
      call(backward, set);
      if (round >= 3) times[set].push(performance.now() - started);
    });
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1];
  let maxRelativeDifference = 0;
  let scale = 0;
  for (let i = 0; i < 3 * n; i++) scale = Math.max(scale, Math.abs(heap[grads[0] + i]));
  for (let i = 0; i < 3 * n; i++) {
    maxRelativeDifference = Math.max(maxRelativeDifference, Math.abs(heap[grads[0] + i] - heap[grads[1] + i]) / scale);
  }
  return {userAgent: navigator.userAgent, relaxedValid, plainMs: median(times[0]), relaxedMs: median(times[1]), maxRelativeDifference};
}

async function main(): Promise<void> {
  const [T, d] = [Number(process.argv[2] ?? 1024), Number(process.argv[3] ?? 64)];
  if (!(T % 4 === 0 && T > 0 && d % 8 === 0 && d > 0)) throw new Error(`T must be a positive multiple of 4 and d of 8. Received: T=${T}, d=${d}`);
  const browser = await chromium.launch({executablePath: CHROMIUM, headless: true, args: ARGS});
  try {
    const page = await browser.newPage();
    await page.evaluate('globalThis.__name = f => f');  // tsx names functions with a helper that the page lacks
    const block = Math.min(FUSED_BACKWARD_KEY_BLOCK, T);  // as the library calls it (backwardLayoutOf)
    const result = await page.evaluate(timeInPage, {plain: KERNELS_WASM, relaxed: KERNELS_RELAXED_WASM, T, d, block});
    console.log(result.userAgent);
    if (!result.relaxedValid) {
      console.log('This Chromium has no relaxed SIMD: the library runs the plain kernels here.');
      return;
    }
    console.log(`attend_backward_4x8, one pair, T = S = ${T}, d = ${d}, blocks of ${block} keys, one thread, medians of 31 calls:`);
    console.log(`  plain (f32x4.mul + f32x4.add): ${result.plainMs.toFixed(2)} ms`);
    console.log(`  relaxed (f32x4.relaxed_madd):  ${result.relaxedMs.toFixed(2)} ms (${(result.plainMs / result.relaxedMs).toFixed(2)}× faster)`);
    console.log(`  largest difference of the gradients: ${result.maxRelativeDifference.toExponential(2)} of the largest gradient`);
  } finally {
    await browser.close();
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
