/** writeFileAtomic: writes a file beside its target, flushes it, then renames it into place. */
import * as fs from 'fs';
import * as path from 'path';
import {fileError} from './fs_errors';
import {checkFileTarget, tempNameFor} from './save_target';

/**
 * A reader sees the old file or the new one, never half of one. The target is checked first
 * (checkFileTarget: `what` names it in the message, e.g. 'SVG'); a symbolic link to a file
 * has the file it points to replaced; an existing file keeps its mode. Failures are
 * ValueErrors that name the file and say why.
 */
export function writeFileAtomic(file: string, data: string|Buffer, what = 'file'): void {
  checkFileTarget(file, what);
  let target = path.resolve(file);
  let mode: number|null = null;
  try {
    target = fs.realpathSync(target);
    mode = fs.statSync(target).mode & 0o7777;
  } catch {
    // A new file.
  }
  const temp = path.join(path.dirname(target), tempNameFor(path.basename(target)));
  try {
    const fd = fs.openSync(temp, 'wx', mode ?? 0o666);
    try {
      fs.writeFileSync(fd, data);
      if (mode != null) fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, target);
  } catch (error) {
    fs.rmSync(temp, {force: true});
    throw fileError(`write the ${what}`, file, error);
  }
}
