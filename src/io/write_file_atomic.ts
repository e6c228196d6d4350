/** writeFileAtomic: writes a file beside its target, then renames it into place. */
import * as fs from 'fs';
import * as path from 'path';

/** A reader sees the old file or the new one, never half of one. */
export function writeFileAtomic(file: string, data: string|Buffer): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(temp, data);
    fs.renameSync(temp, file);
  } catch (error) {
    fs.rmSync(temp, {force: true});
    throw error;
  }
}
