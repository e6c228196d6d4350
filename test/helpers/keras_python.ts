/**
 * Test helper: Keras 3 itself, in one long-lived Python process (scripts/keras/predict_keras.py),
 * that loads `.keras` files with keras.saving.load_model (no custom objects, safe mode) and
 * returns their predictions. Python and TensorFlow take seconds to start, so a test file starts
 * one process and sends it every model. Without the venv the tests fail, saying how to make it.
 */
import {ChildProcessWithoutNullStreams, spawn} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import {strFromU8, unzipSync} from 'fflate';
import {REPO_ROOT} from './run_script';

export const KERAS_PYTHON = path.join(REPO_ROOT, '.venv-keras', 'bin', 'python');

export interface KerasArray {
  data: number[];
  shape: number[];
  dtype?: 'float32'|'int32';
}

export interface KerasReply {
  outputs: Array<{data: number[]; shape: number[]}>;
  layers: string[];
  /** Each layer's `get_config()` as Keras writes it, by layer name. */
  configs: {[name: string]: {[key: string]: unknown}};
}

/** Throws, naming the script that makes it, when the Python environment with Keras is missing. */
export function requireKerasPython(python = KERAS_PYTHON): void {
  if (!fs.existsSync(python)) {
    throw new Error(`Python with Keras 3 is missing (${python} does not exist): run \`bash scripts/fixtures/python_env.sh\` ` +
                    'to create .venv-keras, then run the tests again.');
  }
}

export class KerasPython {
  private readonly child: ChildProcessWithoutNullStreams;
  private buffer = '';
  private stderr = '';
  private readonly waiting: Array<{resolve: (line: string) => void; reject: (error: Error) => void}> = [];

  constructor() {
    requireKerasPython();
    this.child = spawn(KERAS_PYTHON, [path.join(REPO_ROOT, 'scripts', 'keras', 'predict_keras.py')], {
      env: {...process.env, TF_CPP_MIN_LOG_LEVEL: '3', PYTHONWARNINGS: 'ignore'},
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      this.buffer += chunk;
      let newline: number;
      while ((newline = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, newline);
        this.buffer = this.buffer.slice(newline + 1);
        this.waiting.shift()?.resolve(line);
      }
    });
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.child.on('exit', code => {
      for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`Keras' Python exited (${code}): ${this.stderr}`));
    });
  }

  /** Keras' predictions of the model in `file` for `inputs`; a Keras error rejects with Keras' message. */
  async predict(file: string, inputs: KerasArray[]): Promise<KerasReply> {
    const line = await new Promise<string>((resolve, reject) => {
      this.waiting.push({resolve, reject});
      this.child.stdin.write(`${JSON.stringify({model: file, inputs})}\n`);
    });
    const reply = JSON.parse(line) as KerasReply & {error?: string};
    if (reply.error != null) throw new Error(`Keras could not load or run ${file}: ${reply.error}`);
    return reply;
  }

  close(): void {
    this.child.stdin.end();
  }
}

/**
 * Each layer's config in the archive has the keys Keras 3.15 writes for that layer once loaded
 * (`layer.get_config()`), and the same values wherever the value is not a nested object
 * (initializers and the like, which Keras writes with extra bookkeeping).
 */
export function expectConfigsAsKerasWrites(bytes: Uint8Array, kerasConfigs: {[name: string]: {[key: string]: unknown}}): void {
  const archive = JSON.parse(strFromU8(unzipSync(bytes)['config.json'])) as
      {config: {layers: Array<{name: string; config: {[key: string]: unknown}}>}};
  for (const {name, config} of archive.config.layers) {
    const keras = kerasConfigs[name];
    expect({name, keys: Object.keys(config).sort()}).toEqual({name, keys: Object.keys(keras).sort()});
    for (const [key, value] of Object.entries(keras)) {
      if (value != null && typeof value === 'object' && !Array.isArray(value)) continue;
      expect({name, key, value: config[key]}).toEqual({name, key, value});
    }
  }
}
