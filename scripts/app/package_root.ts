/** Finds the repository's root folder (where models/ and trained/ are), from the example app under scripts/app/. */
import * as fs from 'fs';
import * as path from 'path';

/** The nearest folder above this file that holds package.json. */
export function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}
