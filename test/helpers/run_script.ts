/** Test helper: runs the repo's scripts (npm run train/predict/explain) as child processes. */
import {spawn} from 'child_process';
import * as path from 'path';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');

export interface ScriptResult {
  /** Exit code, or null when the process was killed (see `signal`). */
  status: number|null;
  signal: NodeJS.Signals|null;
  stdout: string;
  /** What the process wrote to stderr, less TensorFlow's own informational log lines (see `tensorFlowLog`). */
  stderr: string;
  /** The lines removed from stderr: TensorFlow's start-up log, when the process loaded tfjs-node. */
  tensorFlowLog: string[];
  ms: number;
}

/**
 * TensorFlow's informational lines, which tfjs-node's native library writes to stderr when it starts (the
 * oneDNN notice, the CPU-feature notice and absl's preamble): absl's format with severity I or W
 * ("I0000 00:00:1796038959.803478   30926 port.cc:153] …"), TensorFlow's older one ("2026-11-30
 * 11:40:00.123456: I tensorflow/…"), and the two fixed lines. Errors (severity E or F) are kept.
 */
const TENSORFLOW_LOG_LINE = new RegExp([
  String.raw`^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] `,
  String.raw`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] (?:external|tensorflow)/`,
  String.raw`^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$`,
  String.raw`^To enable the following instructions: [\w ,]+ in other operations, rebuild TensorFlow with the appropriate compiler flags\.$`,
].join('|'));

/** Splits `stderr` into TensorFlow's informational log lines and everything else (which keeps its line breaks). */
export function splitTensorFlowLog(stderr: string): {rest: string; log: string[]} {
  const log: string[] = [];
  const rest = stderr.split(/(?<=\n)/).filter(line => {
    const isLog = TENSORFLOW_LOG_LINE.test(line.replace(/\r?\n$/, ''));
    if (isLog) log.push(line.replace(/\r?\n$/, ''));
    return !isLog;
  });
  return {rest: rest.join(''), log};
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
      const {rest, log} = splitTensorFlowLog(stderr);
      resolve({status, signal, stdout, stderr: rest, tensorFlowLog: log, ms: Date.now() - started});
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
  return `exit ${r.status}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}` +
      (r.tensorFlowLog.length > 0 ? `\n--- TensorFlow's log (removed from stderr) ---\n${r.tensorFlowLog.join('\n')}` : '');
}
