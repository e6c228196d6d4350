/**
 * The package as its users get it: `npm pack` of this repo, unpacked into a consumer
 * project's node_modules/tfjs-attention, with the repo's installed packages (tfjs, bundlers)
 * linked next to it instead of installed from the network.
 */
import {spawn} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

export const REPO = path.resolve(__dirname, '..', '..');

export interface CommandResult {
  status: number|null;
  output: string;
  ms: number;
}

/**
 * Runs `command args` in `cwd` without a shell, as at a terminal: without jest's NODE_ENV=test
 * (under which `vite build` neither builds for production nor warns). stdout and stderr together in `output`.
 */
export function runIn(cwd: string, command: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  const started = Date.now();
  const env: NodeJS.ProcessEnv = {...process.env, FORCE_COLOR: '0', NO_COLOR: '1', NODE_OPTIONS: ''};
  delete env.NODE_ENV;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {cwd, env, stdio: ['ignore', 'pipe', 'pipe']});
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({status, output, ms: Date.now() - started});
    });
  });
}

/** `npm pack` of the repo (its prepack script included, if any) into `destination`; returns the tarball's path. */
export async function packRepo(destination: string): Promise<string> {
  fs.mkdirSync(destination, {recursive: true});
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = await runIn(REPO, npm, ['pack', '--pack-destination', destination], 300_000);
  const tarballs = fs.readdirSync(destination).filter((name) => name.endsWith('.tgz'));
  if (result.status !== 0 || tarballs.length !== 1) {
    throw new Error(`npm pack failed (status ${result.status}, tarballs ${JSON.stringify(tarballs)}):\n${result.output}`);
  }
  return path.join(destination, tarballs[0]);
}

/**
 * Unpacks `tarball` into `project`/node_modules/tfjs-attention, as `npm install <tarball>` would,
 * with its `dependencies` (fflate, h5wasm) beside it, linked from this repo's install; returns
 * the package's folder.
 */
export async function installTarball(tarball: string, project: string): Promise<string> {
  const target = path.join(project, 'node_modules', 'tfjs-attention');
  fs.mkdirSync(target, {recursive: true});
  const result = await runIn(project, 'tar', ['-xzf', tarball, '-C', target, '--strip-components=1']);
  if (result.status !== 0) throw new Error(`tar -xzf ${tarball} failed (status ${result.status}):\n${result.output}`);
  linkDependencies(target, project);
  return target;
}

/** Links the `dependencies` of the package unpacked at `installed` into `project`/node_modules, from this repo's install. */
export function linkDependencies(installed: string, project: string): void {
  const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  linkFromRepo(project, Object.keys(manifest.dependencies ?? {}));
}

/** Links the repo's installed `names` (e.g. '@tensorflow', 'vite') into `project`/node_modules. */
export function linkFromRepo(project: string, names: string[]): void {
  for (const name of names) {
    const from = path.join(REPO, 'node_modules', name);
    if (!fs.existsSync(from)) throw new Error(`${from} is missing: run npm ci in ${REPO}`);
    const to = path.join(project, 'node_modules', name);
    fs.mkdirSync(path.dirname(to), {recursive: true});
    fs.symlinkSync(from, to, 'dir');
  }
}
