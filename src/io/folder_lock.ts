/**
 * A lock file in a model folder that serializes saves to it, across processes: created
 * exclusively, holding the holder's pid, host and start time. A second saver waits; a lock
 * whose process has died on this host is stolen (by a rename, so two stealers cannot both win).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {ValueError} from '../errors';
import {errorCode, fileError} from './fs_errors';
import {LOCK_FILE} from './save_target';

/** How long a save waits for another save of the same folder, by default. */
export const DEFAULT_LOCK_TIMEOUT_MS = 30000;
const POLL_MS = 20;
/** A lock file still empty after this long was left by a process that died while creating it. */
const EMPTY_LOCK_STALE_MS = 10000;

interface Holder {
  pid?: number;
  host?: string;
  time?: string;
  ino: number;
  mtimeMs: number;
}

/** A held lock: check it before the step that makes a save visible, release it when done. */
export interface FolderLock {
  readonly file: string;
  /** Throws a ValueError if another process has taken the lock (only after it was judged stale). */
  assertHeld(): void;
  release(): void;
}

/** Takes the lock of `folder` (which exists), waiting up to `timeoutMs` for another saver. */
export async function lockFolder(folder: string, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): Promise<FolderLock> {
  const file = path.join(folder, LOCK_FILE);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ino = tryCreate(file);
    if (ino != null) return heldLock(file, ino);
    const holder = readHolder(file);
    if (holder == null) continue;  // released meanwhile: try again at once
    if (isStale(holder)) {
      steal(file, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      const who = holder.pid == null ? 'a process that has not written its name yet' :
          `process ${holder.pid} on ${holder.host ?? 'an unknown host'}, since ${holder.time ?? 'an unknown time'}`;
      throw new ValueError(
          `Cannot save a model to ${folder}: another save holds its lock ${file} (${who}) and did not finish ` +
          `within ${(timeoutMs / 1000).toFixed(timeoutMs < 1000 ? 1 : 0)} s. If no save is running, delete that file.`);
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS));
  }
}

/** Creates the lock file with our name in it; its inode, or null when it exists. */
function tryCreate(file: string): number|null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o644);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return null;
    if (errorCode(error) === 'ENOENT') {  // a failed first save removed the folder it had created
      try {
        fs.mkdirSync(path.dirname(file), {recursive: true});
        return tryCreate(file);
      } catch (again) {
        throw fileError('create the lock file', file, again);
      }
    }
    throw fileError('create the lock file', file, error);
  }
  try {
    fs.writeSync(fd, JSON.stringify({pid: process.pid, host: os.hostname(), time: new Date().toISOString()}));
    return fs.fstatSync(fd).ino;
  } finally {
    fs.closeSync(fd);
  }
}

function readHolder(file: string): Holder|null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw fileError('read the lock file', file, error);
  }
  try {
    const stats = fs.fstatSync(fd);
    const holder: Holder = {ino: stats.ino, mtimeMs: stats.mtimeMs};
    try {
      const parsed = JSON.parse(fs.readFileSync(fd, 'utf8'));
      if (typeof parsed?.pid === 'number') holder.pid = parsed.pid;
      if (typeof parsed?.host === 'string') holder.host = parsed.host;
      if (typeof parsed?.time === 'string') holder.time = parsed.time;
    } catch {
      // Empty or half written: its creator is still writing it, or died doing so.
    }
    return holder;
  } finally {
    fs.closeSync(fd);
  }
}

function isStale(holder: Holder): boolean {
  if (holder.pid == null) return Date.now() - holder.mtimeMs > EMPTY_LOCK_STALE_MS;
  return holder.host === os.hostname() && !isAlive(holder.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';  // it exists, owned by another user
  }
}

/**
 * Renames the stale lock away; only one stealer's rename finds it. If what was renamed is
 * no longer the stale lock (another stealer already replaced it with a live one), it is
 * linked back in place.
 */
function steal(file: string, stale: Holder): void {
  const aside = path.join(path.dirname(file),
                          `${LOCK_FILE}.stale-${process.pid}-${Math.floor(Math.random() * 0x100000000).toString(16)}`);
  try {
    fs.renameSync(file, aside);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;  // another stealer was first
    throw fileError('remove the stale lock file', file, error);
  }
  try {
    if (fs.statSync(aside).ino !== stale.ino) {
      try {
        fs.linkSync(aside, file);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw fileError('put back the lock file', file, error);
      }
    }
  } finally {
    fs.rmSync(aside, {force: true});
  }
}

function heldLock(file: string, ino: number): FolderLock {
  let released = false;
  const current = () => {
    try {
      return fs.statSync(file).ino;
    } catch {
      return null;
    }
  };
  return {
    file,
    assertHeld() {
      if (current() !== ino) {
        throw new ValueError(`Cannot save a model to ${path.dirname(file)}: another process took its lock ${file} meanwhile`);
      }
    },
    release() {
      if (released) return;
      released = true;
      if (current() === ino) fs.rmSync(file, {force: true});
    },
  };
}
