/** Scratch folders for the file-system tests: one temporary folder per test file, a fresh numbered folder per call. */
import {spawnSync} from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface ScratchFolders {
  /** A fresh, empty folder `<n>-<name>` under root(). */
  folder(name: string): string;
  /** The test file's temporary folder (real path, made in beforeAll). */
  root(): string;
}

/**
 * Makes a temporary folder `<os tmpdir>/<prefix>XXXXXX` before the test file's tests and removes it after them,
 * write bits restored first (tests write-protect folders). Call it at the top level of a test file.
 */
export function scratchFolders(prefix: string): ScratchFolders {
  let root = '';
  let counter = 0;
  beforeAll(() => {
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  });
  afterAll(() => {
    if (!root) return;
    spawnSync('chmod', ['-R', 'u+w', root]);
    fs.rmSync(root, {recursive: true, force: true});
  });
  return {
    folder(name: string): string {
      if (!root) throw new Error(`scratchFolders(${JSON.stringify(prefix)}).folder(${JSON.stringify(name)}): called before beforeAll`);
      const folder = path.join(root, `${++counter}-${name}`);
      fs.mkdirSync(folder, {recursive: true});
      return folder;
    },
    root: () => root,
  };
}
