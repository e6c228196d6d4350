/** Running a consumer's script in a child Node process, as the package tests do. */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/**
 * Writes `source` to `dir/file`, runs `node file` in `dir` (no NODE_PATH or NODE_OPTIONS from
 * jest) and returns the JSON it prints after "RESULT "; throws with its output otherwise.
 */
export function runNode(dir: string, file: string, source: string): Record<string, any> {
  fs.writeFileSync(path.join(dir, file), source);
  const child = spawnSync(process.execPath, [file], {
    cwd: dir, encoding: 'utf8', timeout: 90000, env: {...process.env, NODE_PATH: '', NODE_OPTIONS: ''},
  });
  const line = (child.stdout ?? '').split('\n').find(l => l.startsWith('RESULT '));
  if (child.status !== 0 || line == null) {
    throw new Error(`node ${file} failed (status ${child.status}):\n${child.stderr}\n${child.stdout}`);
  }
  return JSON.parse(line.slice('RESULT '.length));
}
