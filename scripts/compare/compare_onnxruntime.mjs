/**
 * onnxruntime-web's side of `npm run compare`: the ONNX models that compare_attention.py exports, run
 * forward on onnxruntime-web's wasm backend in Node, on --threads threads (ort.env.wasm.numThreads,
 * fixed once per process, so the driver runs one process per thread count).
 *
 * onnxruntime-web is not a dependency of this project: install it into a throwaway prefix
 * (`npm install --prefix /tmp/ortweb onnxruntime-web`) and pass that folder with --ort or ORT_WEB_DIR.
 *
 * Usage: node scripts/compare/compare_onnxruntime.mjs --models DIR [--threads 1] [--reps 15]
 *            [--large-reps 5] [--warmup 5] [--ort /tmp/ortweb] [--json FILE]
 */
import * as fs from 'fs';
import {createRequire} from 'module';
import * as path from 'path';
import {parseArgs} from 'util';

const LARGE_T = 4096;  // from this length on: --large-reps timed calls and one warm-up round, as in the bench

const {values} = parseArgs({
  options: {
    models: {type: 'string'}, threads: {type: 'string', default: '1'}, reps: {type: 'string', default: '15'},
    'large-reps': {type: 'string', default: '5'}, warmup: {type: 'string', default: '5'},
    ort: {type: 'string', default: process.env.ORT_WEB_DIR ?? '/tmp/ortweb'}, json: {type: 'string'},
  },
});
if (values.models == null) {
  console.error('compare_onnxruntime: --models DIR (the folder of compare_attention.py --export-onnx) is required');
  process.exit(2);
}
const count = name => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < (name === 'warmup' ? 0 : 1)) {
    console.error(`Received an invalid value for option \`--${name}\`, expected a positive integer. Received: --${name} ${values[name]}`);
    process.exit(2);
  }
  return n;
};
const [threads, reps, largeReps, warmup] = ['threads', 'reps', 'large-reps', 'warmup'].map(count);

// The package from the throwaway prefix, or the folder of the package itself.
const prefix = path.resolve(values.ort);
const packageDir = fs.existsSync(path.join(prefix, 'node_modules', 'onnxruntime-web')) ?
  path.join(prefix, 'node_modules', 'onnxruntime-web') : prefix;
if (!fs.existsSync(path.join(packageDir, 'package.json'))) {
  console.error(`compare_onnxruntime: no onnxruntime-web in ${prefix}; run \`npm install --prefix ${prefix} onnxruntime-web\``);
  process.exit(2);
}
const require = createRequire(path.join(packageDir, 'package.json'));
const ort = require(packageDir);
const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version;
ort.env.wasm.numThreads = threads;
ort.env.logLevel = 'error';

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** scripts/app/bench/flops.ts' forwardFlops. */
function forwardFlops({batch: B, length: T, dModel: d, heads: H}) {
  const dk = d / H;
  return 2 * B * T * d * H * (3 * dk) + 2 * B * H * T * T * (2 * dk);
}

/** One timed call: on the wasm backend outputs come back as CPU tensors, read as part of the call. */
async function timeRun(session, x) {
  const start = performance.now();
  const out = await session.run({x});
  out.y.data;
  return performance.now() - start;
}

const manifest = JSON.parse(fs.readFileSync(path.join(values.models, 'manifest.json'), 'utf8'));
const models = [];
for (const model of manifest.models) {
  const session = await ort.InferenceSession.create(path.join(values.models, model.file),
      {executionProviders: ['wasm'], graphOptimizationLevel: 'all'});
  const size = model.batch * model.length * model.dModel;
  const data = Float32Array.from({length: size}, (_, i) => Math.sin(i * 12.9898) * 0.5);
  models.push({model, session, x: new ort.Tensor('float32', data, [model.batch, model.length, model.dModel])});
}
// A fresh process runs onnxruntime's wasm in V8's baseline tier first and optimises it in the
// background: calls take 2-5× their settled time for the first second or so (measured on the
// 2-core machine, with process.cpuUsage far below the wall time). So before timing anything,
// every model runs in turn for WARMUP_MS at least (the project's bench runs in a process that is
// already warm, and PyTorch's kernels are native).
const WARMUP_MS = 3000;
const warmStart = performance.now();
while (performance.now() - warmStart < WARMUP_MS) {
  for (const {session, x} of models) await timeRun(session, x);
}
const rows = [];
for (const {model, session, x} of models) {
  const large = model.length >= LARGE_T;
  const times = [];
  for (let round = 0; round < (large ? Math.min(warmup, 1) : warmup) + (large ? largeReps : reps); round++) {
    const ms = await timeRun(session, x);
    if (round >= (large ? Math.min(warmup, 1) : warmup)) times.push(ms);
  }
  await session.release();
  const ms = median(times);
  const gflops = forwardFlops(model) / ms / 1e6;
  rows.push({batch: model.batch, length: model.length, dModel: model.dModel, heads: model.heads, pass: 'forward', threads,
    medianMs: ms, gflops, timesMs: times});
  console.log(`onnxruntime-web ${threads} thread(s) (${model.batch}, ${model.length}, ${model.dModel}, ${model.heads}) forward: ` +
      `${ms.toFixed(2)} ms, ${gflops.toFixed(1)} GFLOP/s`);
}
if (values.json != null) fs.writeFileSync(values.json, `${JSON.stringify({runtime: 'onnxruntime-web', version, rows}, null, 2)}\n`);
process.exit(0);  // the wasm backend's worker threads would keep Node alive
