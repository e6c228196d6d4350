/** What the file-system tests inject and observe: fs errors as Node throws them, open descriptors, a dead pid. */
import {spawnSync} from 'child_process';
import * as fs from 'fs';

/** An fs error as Node throws it: the code decides, the message is raw errno text. */
export function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected`), {code});
}

/** The file descriptors this process has open (Linux). */
export function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** A pid that is not running: a child that has exited. */
export function deadPid(): number {
  const pid = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {encoding: 'utf8'}).stdout);
  expect(pid).toBeGreaterThan(0);
  return pid;
}
