/**
 * folder_lock.ts on its own, in this process: taking a free lock, waiting for a live holder until the deadline and
 * the message that names it, stealing the lock of a dead holder (or of one that died before writing its name), the
 * races with other savers (released, stolen or replaced meanwhile), each fs failure named in words, assertHeld and
 * release. fs and process.kill failures are injected by spies on the modules themselves.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {lockFolder} from '../src/io/folder_lock';
import {deadPid, errno, openFds} from './helpers/fs_failures';
import {scratchFolders} from './helpers/scratch_folders';

// The modules themselves (their namespace copies here are read-only): spies on them reach src/io.
const nodeFs = require('fs') as typeof fs;

const scratch = scratchFolders('tfjs-attention-lock-');

function writeLock(folder: string, holder: unknown): string {
  const file = path.join(folder, '.model.lock');
  fs.writeFileSync(file, typeof holder === 'string' ? holder : JSON.stringify(holder));
  return file;
}

const realRename = nodeFs.renameSync;

/**
 * Another saver's lock replacing the one in place, by a rename over it: the new file never gets the old one's inode
 * (a file removed and written again may).
 */
function replaceLock(folder: string, holder: unknown): number {
  const next = path.join(folder, 'next-lock');
  fs.writeFileSync(next, JSON.stringify(holder));
  const ino = fs.statSync(next).ino;
  realRename(next, path.join(folder, '.model.lock'));
  return ino;
}

/** The message lockFolder gives up with, for a holder described as `who`. */
function timeoutMessage(folder: string, who: string, seconds: string): string {
  return `Cannot save a model to ${folder}: another save holds its lock ${path.join(folder, '.model.lock')} (${who}) ` +
      `and did not finish within ${seconds} s. If no save is running, delete that file.`;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

afterEach(() => {
  jest.restoreAllMocks();
});

describe('lockFolder: a free lock', () => {
  it('is taken at once: the lock file holds this process\'s pid, host and start time; release removes it', async () => {
    const folder = scratch.folder('free');
    const before = Date.now();
    const lock = await lockFolder(folder, 1000);
    expect(lock.file).toBe(path.join(folder, '.model.lock'));
    const holder = JSON.parse(fs.readFileSync(lock.file, 'utf8'));
    expect(Object.keys(holder).sort()).toEqual(['host', 'pid', 'time']);
    expect({pid: holder.pid, host: holder.host}).toEqual({pid: process.pid, host: os.hostname()});
    expect(Date.parse(holder.time)).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(Date.parse(holder.time)).toBeLessThanOrEqual(Date.now());
    expect(() => lock.assertHeld()).not.toThrow();
    lock.release();
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('in a folder that a failed first save removed meanwhile: the folders are created again, nested', async () => {
    const folder = path.join(scratch.folder('gone'), 'a', 'b');
    const lock = await lockFolder(folder, 1000);
    expect(fs.readdirSync(folder)).toEqual(['.model.lock']);
    lock.release();
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('leaves no file descriptor open: taking, waiting for and releasing locks', async () => {
    const folder = scratch.folder('fds');
    const before = openFds();
    const first = await lockFolder(folder, 1000);
    await expect(lockFolder(folder, 100)).rejects.toThrow(/did not finish within 0\.1 s/);
    first.release();
    expect(openFds()).toBe(before);
  });
});

describe('lockFolder: a lock held by a live process', () => {
  it('a holder with its pid only: "an unknown host", "an unknown time"; the wait said to 0.1 s', async () => {
    const folder = scratch.folder('pid-only');
    writeLock(folder, {pid: process.pid});
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, `process ${process.pid} on an unknown host, since an unknown time`, '0.1'));
  });

  it('host and time that are not strings are not shown', async () => {
    const folder = scratch.folder('odd-fields');
    writeLock(folder, {pid: process.pid, host: 5, time: 7});
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, `process ${process.pid} on an unknown host, since an unknown time`, '0.1'));
  });

  it('a pid that is not a number counts as no name written yet (a recent file: waited for)', async () => {
    const folder = scratch.folder('pid-string');
    writeLock(folder, {pid: String(process.pid), host: os.hostname(), time: 'x'});
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, 'a process that has not written its name yet', '0.1'));
  });

  it('an empty lock file written just now is waited for, not stolen', async () => {
    const folder = scratch.folder('empty-recent');
    const file = writeLock(folder, '');
    const before = fs.statSync(file).ino;
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, 'a process that has not written its name yet', '0.1'));
    expect(fs.statSync(file).ino).toBe(before);
  });

  it('gives up exactly at the deadline, a whole number of seconds said without decimals', async () => {
    const folder = scratch.folder('deadline');
    writeLock(folder, {pid: process.pid, host: os.hostname(), time: 't'});
    const start = Date.now();
    // The deadline is start + 1000 ms; every later clock reading is exactly the deadline.
    jest.spyOn(Date, 'now').mockReturnValueOnce(start).mockReturnValue(start + 1000);
    const outcome = await Promise.race([
      lockFolder(folder, 1000).then(() => 'locked', (error: Error) => error.message),
      sleep(300).then(() => 'still waiting'),
    ]);
    expect(outcome).toBe(timeoutMessage(folder, `process ${process.pid} on ${os.hostname()}, since t`, '1'));
  });

  it('a holder that exists but belongs to another user (kill says EPERM) is alive: waited for', async () => {
    const folder = scratch.folder('eperm');
    const pid = deadPid();
    writeLock(folder, {pid, host: os.hostname(), time: 't'});
    jest.spyOn(process, 'kill').mockImplementation(() => {
      throw errno('EPERM');
    });
    await expect(lockFolder(folder, 100)).rejects.toThrow(timeoutMessage(folder, `process ${pid} on ${os.hostname()}, since t`, '0.1'));
  });
});

describe('lockFolder: stealing a stale lock', () => {
  it('an empty lock file older than 10 s is stolen (its creator died before writing its name); exactly 10 s is not', async () => {
    const folder = scratch.folder('empty-old');
    const file = writeLock(folder, '');
    const now = Math.floor(Date.now() / 1000) * 1000;
    fs.utimesSync(file, (now - 10000) / 1000, (now - 10000) / 1000);
    expect(fs.statSync(file).mtimeMs).toBe(now - 10000);
    jest.spyOn(Date, 'now').mockReturnValue(now);
    await expect(lockFolder(folder, 0)).rejects.toThrow(
        timeoutMessage(folder, 'a process that has not written its name yet', '0.0'));
    jest.restoreAllMocks();

    fs.utimesSync(file, (now - 10001) / 1000, (now - 10001) / 1000);
    jest.spyOn(Date, 'now').mockReturnValue(now);
    const lock = await lockFolder(folder, 0);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(process.pid);
    lock.release();
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('a dead holder\'s lock is renamed aside under a new random name each time, and nothing is left over', async () => {
    const folder = scratch.folder('steal-names');
    const renamed: string[] = [];
    const rename = nodeFs.renameSync;
    jest.spyOn(nodeFs, 'renameSync').mockImplementation((from, to) => {
      renamed.push(path.basename(String(to)));
      rename(from, to);
    });
    const pid = deadPid();
    for (let i = 0; i < 2; i++) {
      writeLock(folder, {pid, host: os.hostname(), time: 't'});
      const lock = await lockFolder(folder, 1000);
      lock.release();
    }
    expect(renamed).toHaveLength(2);
    for (const name of renamed) expect(name).toMatch(new RegExp(`^\\.model\\.lock\\.stale-${process.pid}-[0-9a-f]+$`));
    expect(renamed[0]).not.toBe(renamed[1]);
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('another stealer renamed the stale lock first (ENOENT): the lock is taken', async () => {
    const folder = scratch.folder('steal-race');
    const file = writeLock(folder, {pid: deadPid(), host: os.hostname(), time: 't'});
    jest.spyOn(nodeFs, 'renameSync').mockImplementationOnce(() => {
      fs.rmSync(file);  // the other stealer's rename, then its release
      throw errno('ENOENT');
    });
    const lock = await lockFolder(folder, 1000);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('the stale lock cannot be renamed: an error naming it, in words', async () => {
    const folder = scratch.folder('steal-eacces');
    const file = writeLock(folder, {pid: deadPid(), host: os.hostname(), time: 't'});
    jest.spyOn(nodeFs, 'renameSync').mockImplementationOnce(() => {
      throw errno('EACCES');
    });
    await expect(lockFolder(folder, 1000)).rejects.toThrow(`Cannot remove the stale lock file ${file}: permission denied`);
  });

  it('what was renamed aside is a live saver\'s new lock (the stale one was replaced meanwhile): it is put back and waited for', async () => {
    const folder = scratch.folder('steal-replaced');
    const file = writeLock(folder, {pid: deadPid(), host: os.hostname(), time: 'old'});
    let liveIno = 0;
    jest.spyOn(nodeFs, 'renameSync').mockImplementationOnce((from, to) => {
      // Between our reading of the stale lock and our rename, another saver stole it and wrote its own.
      liveIno = replaceLock(folder, {pid: process.pid, host: os.hostname(), time: 'new'});
      realRename(from, to);
    });
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, `process ${process.pid} on ${os.hostname()}, since new`, '0.1'));
    expect(fs.readdirSync(folder)).toEqual(['.model.lock']);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).time).toBe('new');
    expect(fs.statSync(file).ino).toBe(liveIno);  // the live saver's own file, linked back
  });

  it('putting it back finds a third saver\'s lock in place (EEXIST): that one stays and is waited for', async () => {
    const folder = scratch.folder('steal-put-back-eexist');
    writeLock(folder, {pid: deadPid(), host: os.hostname(), time: 'old'});
    jest.spyOn(nodeFs, 'renameSync').mockImplementationOnce((from, to) => {
      replaceLock(folder, {pid: process.pid, host: os.hostname(), time: 'second'});
      realRename(from, to);
      writeLock(folder, {pid: process.pid, host: os.hostname(), time: 'third'});
    });
    const link = jest.spyOn(nodeFs, 'linkSync');
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        timeoutMessage(folder, `process ${process.pid} on ${os.hostname()}, since third`, '0.1'));
    expect(link).toHaveBeenCalledTimes(1);  // the second saver's lock was put back, and found the third's
    expect(fs.readdirSync(folder)).toEqual(['.model.lock']);
  });

  it('putting it back fails otherwise: an error naming the lock file, in words, and the aside file removed', async () => {
    const folder = scratch.folder('steal-put-back-eperm');
    const file = writeLock(folder, {pid: deadPid(), host: os.hostname(), time: 'old'});
    jest.spyOn(nodeFs, 'renameSync').mockImplementationOnce((from, to) => {
      replaceLock(folder, {pid: process.pid, host: os.hostname(), time: 'new'});
      realRename(from, to);
    });
    jest.spyOn(nodeFs, 'linkSync').mockImplementationOnce(() => {
      throw errno('EPERM');
    });
    await expect(lockFolder(folder, 100)).rejects.toThrow(`Cannot put back the lock file ${file}: the operation is not permitted`);
    expect(fs.readdirSync(folder)).toEqual([]);
  });
});

describe('lockFolder: fs failures', () => {
  it('a folder below a file: "a part of its path is a file"', async () => {
    const file = path.join(scratch.folder('below-file'), 'f');
    fs.writeFileSync(file, 'x');
    const folder = path.join(file, 'model');
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        `Cannot create the lock file ${path.join(folder, '.model.lock')}: a part of its path is a file, not a folder`);
  });

  it('a missing folder that cannot be created again (a dangling link): the mkdir failure, in words', async () => {
    const parent = scratch.folder('dangling');
    const folder = path.join(parent, 'model');
    fs.symlinkSync(path.join(parent, 'nowhere'), folder);
    await expect(lockFolder(folder, 100)).rejects.toThrow(
        `Cannot create the lock file ${path.join(folder, '.model.lock')}: it (or a folder on its path) does not exist`);
  });

  it('the lock file cannot be created for a reason other than a missing folder (EACCES): one attempt, the reason in words', async () => {
    const folder = scratch.folder('create-eacces');
    const file = path.join(folder, '.model.lock');
    const open = nodeFs.openSync;
    let attempts = 0;
    jest.spyOn(nodeFs, 'openSync').mockImplementation((target, flags, mode) => {
      if (target === file && flags === 'wx') {
        ++attempts;
        throw errno('EACCES');
      }
      return open(target, flags, mode);
    });
    await expect(lockFolder(folder, 1000)).rejects.toThrow(`Cannot create the lock file ${file}: permission denied`);
    expect(attempts).toBe(1);  // no folder is created again and nothing retried: only ENOENT means a removed folder
  });

  it('a missing folder whose creation again fails (EACCES): that failure in words, not the first "does not exist"', async () => {
    const folder = path.join(scratch.folder('mkdir-eacces'), 'model');
    const file = path.join(folder, '.model.lock');
    jest.spyOn(nodeFs, 'mkdirSync').mockImplementation(() => {
      throw errno('EACCES');
    });
    await expect(lockFolder(folder, 1000)).rejects.toThrow(`Cannot create the lock file ${file}: permission denied`);
    expect(fs.existsSync(folder)).toBe(false);
  });

  it('the holder released the lock between our attempt and our read (ENOENT): taken at once', async () => {
    const folder = scratch.folder('released-meanwhile');
    const file = writeLock(folder, {pid: process.pid, host: os.hostname(), time: 't'});
    const open = nodeFs.openSync;
    jest.spyOn(nodeFs, 'openSync').mockImplementation((target, flags, mode) => {
      if (target === file && flags === 'r' && fs.existsSync(file)) {
        fs.rmSync(file);
        throw errno('ENOENT');
      }
      return open(target, flags, mode);
    });
    const lock = await lockFolder(folder, 0);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).pid).toBe(process.pid);
    lock.release();
  });

  it('the lock file cannot be read: an error naming it, in words', async () => {
    const folder = scratch.folder('unreadable');
    const file = writeLock(folder, {pid: process.pid, host: os.hostname(), time: 't'});
    const open = nodeFs.openSync;
    jest.spyOn(nodeFs, 'openSync').mockImplementation((target, flags, mode) => {
      if (target === file && flags === 'r') throw errno('EACCES');
      return open(target, flags, mode);
    });
    await expect(lockFolder(folder, 1000)).rejects.toThrow(`Cannot read the lock file ${file}: permission denied`);
  });
});

describe('a held lock', () => {
  it('assertHeld throws once another process has taken the lock or removed it', async () => {
    const folder = scratch.folder('taken');
    const lock = await lockFolder(folder, 1000);
    const message = `Cannot save a model to ${folder}: another process took its lock ${lock.file} meanwhile`;
    replaceLock(folder, {pid: 1, host: 'other', time: 't'});
    expect(() => lock.assertHeld()).toThrow(message);
    lock.release();  // not ours: left in place
    expect(JSON.parse(fs.readFileSync(lock.file, 'utf8')).host).toBe('other');
    fs.rmSync(lock.file);
    expect(() => lock.assertHeld()).toThrow(message);
  });

  it('release when the lock file vanished after its inode was checked (a stealer removed it): no error', async () => {
    const folder = scratch.folder('release-vanished');
    const lock = await lockFolder(folder, 1000);
    const stat = nodeFs.statSync;
    jest.spyOn(nodeFs, 'statSync').mockImplementation(((target: fs.PathLike, options?: fs.StatSyncOptions) => {
      const stats = stat(target, options);
      if (target === lock.file) fs.rmSync(lock.file);  // gone right after the check said it is ours
      return stats;
    }) as typeof fs.statSync);
    expect(() => lock.release()).not.toThrow();
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('release removes the lock once; a second release leaves a later lock alone, even one with the same inode', async () => {
    const folder = scratch.folder('release-twice');
    const lock = await lockFolder(folder, 1000);
    const keep = path.join(scratch.folder('inode-keeper'), 'lock');
    fs.linkSync(lock.file, keep);  // holds the inode, so a later lock file can have the same one
    lock.release();
    expect(fs.existsSync(lock.file)).toBe(false);
    fs.linkSync(keep, lock.file);  // the next saver's lock, on the same inode
    lock.release();
    expect(fs.existsSync(lock.file)).toBe(true);
    expect(() => lock.assertHeld()).not.toThrow();  // it is the same inode: only release's memory tells them apart
    fs.rmSync(keep);
  });
});
