/** Test helper: runs the repo's scripts (npm run train/predict/explain) as child processes. */
import {spawn} from 'child_process';
import * as path from 'path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface ScriptResult {
  /** Exit code, or null when the process was killed (see `signal`). */
  status: number|null;
  signal: NodeJS.Signals|null;
  stdout: string;
  stderr: string;
  ms: number;
}

const TSX = path.join(REPO_ROOT, 'node_modules', '.bin', process.platform === 'win32' ? 'tsx.cmd' : 'tsx');

/**
 * Runs `command args` in the repo root, like a user at a terminal (no TTY). `tsx` runs the
 * local tsx, i.e. what `npx tsx` and the package.json scripts run.
 */
export function runCommand(command: string, args: string[], timeoutMs = 180000): Promise<ScriptResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command === 'tsx' ? TSX : command, args, {
      cwd: REPO_ROOT,
      env: {...process.env, FORCE_COLOR: '0', NO_COLOR: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({status, signal, stdout, stderr, ms: Date.now() - started});
    });
  });
}

/** Runs `tsx scripts/<script>.ts args`. */
export function runScript(script: 'train'|'predict'|'explain', args: string[], timeoutMs?: number): Promise<ScriptResult> {
  return runCommand('tsx', [path.join('scripts', `${script}.ts`), ...args], timeoutMs);
}

/**
 * Runs the jobs with at most `limit` at a time (the scripts are CPU-bound at start-up, so
 * a few in parallel use both cores without starving each other), in the jobs' order.
 */
export async function runLimited<T>(jobs: Array<() => Promise<T>>, limit = 3): Promise<T[]> {
  const results = new Array<T>(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      results[i] = await jobs[i]();
    }
  };
  await Promise.all(Array.from({length: Math.min(limit, jobs.length)}, worker));
  return results;
}

/** A readable summary of a result for assertion messages. */
export function describeResult(r: ScriptResult): string {
  return `exit ${r.status}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}
