/**
 * The checks made before anything is written: a model folder (checkSaveTarget) or a single
 * output file (checkFileTarget) that saving may not touch is refused with a message naming
 * the path and saying why. Also the names of the files a saved model is made of.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {ValueError} from '../errors';
import {errorCode, fsErrorReason} from './fs_errors';

export const MODEL_JSON = 'model.json';
/** The lock that serializes saves to one folder (folder_lock.ts). */
export const LOCK_FILE = '.model.lock';

const WEIGHTS_PATTERN = /^weights(-[0-9a-f]{16})?\.bin$/;
/** Temporary files of a save (`.model.json.<pid>-<random>.tmp`), and a lock being stolen. */
const MODEL_TEMP_PATTERN = /^\.(model\.json|weights(-[0-9a-f]{16})?\.bin)\.(\d+)-[0-9a-f]+\.tmp$/;
const STALE_LOCK_PATTERN = /^\.model\.lock\.stale-\d+-[0-9a-f]+$/;

/** `weights.bin` or `weights-<16 hex>.bin`: a weights file that a save of this format may replace. */
export function isWeightsFile(name: string): boolean {
  return WEIGHTS_PATTERN.test(name);
}

/** The pid in the name of a save's temporary file, or null when `name` is not one. */
export function modelTempFilePid(name: string): number|null {
  const match = MODEL_TEMP_PATTERN.exec(name);
  return match == null ? null : Number(match[3]);
}

/** A unique hidden name beside `name` for writing it: `.<name>.<pid>-<random>.tmp`. */
export function tempNameFor(name: string): string {
  return `.${name}.${process.pid}-${Math.floor(Math.random() * 0x100000000).toString(16)}.tmp`;
}

/** A hidden file of ours: a save's temporary file, the lock, a lock being stolen, or a companion's temporary file. */
function isOwnHiddenFile(name: string, companions: ReadonlySet<string>): boolean {
  if (modelTempFilePid(name) != null || name === LOCK_FILE || STALE_LOCK_PATTERN.test(name)) return true;
  const temp = /^\.(.+)\.\d+-[0-9a-f]+\.tmp$/.exec(name);
  return temp != null && companions.has(temp[1]);
}

export interface SaveTargetOptions {
  /**
   * Files that the caller writes into the model folder itself, besides the model (the park
   * app's plots): a folder that holds them is accepted, and they are left alone by saving.
   */
  companionFiles?: readonly string[];
}

/**
 * Throws a ValueError, before anything is written, unless `folder` is a place where a model
 * can be saved without touching anything else: a new folder whose parent can be created, an
 * empty folder, or a folder holding only a previous model of this format (model.json,
 * weights.bin / weights-<hex>.bin, the save's own hidden files) and `companionFiles`.
 * Refused: an empty path, a path ending in .json, a file, a dangling symbolic link, the root
 * of a file system, the home folder, the working directory or any folder holding it, a folder
 * holding anything else (named in the message), and a write-protected folder or model file
 * (no owner write bit, or not writable by this user), so a protected model stays as it was.
 */
export function checkSaveTarget(folder: string, options: SaveTargetOptions = {}): void {
  const refuse = (why: string) => new ValueError(`Cannot save a model to ${shown(folder)}: ${why}.`);
  if (typeof folder !== 'string' || folder.trim() === '') throw refuse('an empty path names no folder');
  const resolved = path.resolve(folder);
  if (path.basename(resolved).endsWith('.json')) {
    throw refuse('the path ends in .json; give the folder to hold model.json, not the file');
  }
  const existing = nearestExisting(resolved, refuse);
  // The real path of what exists, then the part still to be created (none when the folder exists).
  const real = path.join(realpathOf(existing, refuse), path.relative(existing, resolved));
  if (real === path.parse(real).root) throw refuse('it is the root of the file system');
  const cwd = realpathOrSelf(process.cwd());
  const home = realpathOrSelf(os.homedir());
  if (real === cwd) throw refuse('it is the working directory');
  if (real === home) throw refuse('it is the home folder');
  if (cwd.startsWith(real + path.sep)) throw refuse(`it holds the working directory (${cwd})`);
  if (home.startsWith(real + path.sep)) throw refuse(`it holds the home folder (${home})`);

  if (existing !== resolved) {
    const stats = statOf(existing, refuse);
    if (!stats.isDirectory()) throw refuse(`${existing} is a file, so the folder cannot be created`);
    const protectedWhy = writeProtection(existing, stats);
    if (protectedWhy != null) throw refuse(`${existing} is ${protectedWhy}, so the folder cannot be created in it`);
    return;
  }
  const stats = statOf(resolved, refuse);
  if (!stats.isDirectory()) throw refuse('it is a file, not a folder');
  const protectedWhy = writeProtection(resolved, stats);
  if (protectedWhy != null) throw refuse(`it is ${protectedWhy}; the model there is left as it was`);

  const companions = new Set(options.companionFiles ?? []);
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(resolved, {withFileTypes: true});
  } catch (error) {
    throw refuse(`its contents cannot be listed: ${fsErrorReason(error)}`);
  }
  const inTheWay: string[] = [];
  for (const entry of entries) {
    const name = entry.name;
    const known = name === MODEL_JSON || isWeightsFile(name) || companions.has(name) || isOwnHiddenFile(name, companions);
    if (!known || entry.isDirectory()) {
      inTheWay.push(entry.isDirectory() ? `${name}/` : name);
      continue;
    }
    if (name.startsWith('.')) continue;
    const file = path.join(resolved, name);
    let fileStats: fs.Stats;
    try {
      fileStats = fs.statSync(file);
    } catch (error) {
      if (entry.isSymbolicLink() && errorCode(error) === 'ENOENT') {
        throw refuse(`${name} in it is a symbolic link to ${fs.readlinkSync(file)}, which does not exist`);
      }
      if (errorCode(error) === 'ENOENT') continue;  // an old weights file that a concurrent save just deleted
      throw refuse(`${name} in it cannot be read: ${fsErrorReason(error)}`);
    }
    if (fileStats.isDirectory()) {
      inTheWay.push(`${name}/`);
      continue;
    }
    const fileProtected = writeProtection(file, fileStats);
    if (fileProtected != null) throw refuse(`${name} in it is ${fileProtected}; the model there is left as it was`);
  }
  if (inTheWay.length > 0) {
    inTheWay.sort();
    const listed = inTheWay.slice(0, 5).join(', ') + (inTheWay.length > 5 ? ', …' : '');
    const accepted = [MODEL_JSON, 'weights-<hex>.bin (or weights.bin)', ...companions].join(', ');
    throw refuse(
        `it holds ${inTheWay.length} ${inTheWay.length === 1 ? 'entry' : 'entries'} that ` +
        `${inTheWay.length === 1 ? 'is' : 'are'} not part of a saved model (${listed}). A model folder holds only ` +
        `${accepted}, and saving touches nothing else: give a new or empty folder, or one holding only a model saved before`);
  }
}

/**
 * Throws a ValueError, before anything is written, unless `file` can be written by
 * writeFileAtomic: not empty, not a folder (the root included) or other non-regular file,
 * not a dangling symbolic link, not write-protected, in an existing folder that is writable.
 */
export function checkFileTarget(file: string, what = 'file'): void {
  const refuse = (why: string) => new ValueError(`Cannot write the ${what} ${shown(file)}: ${why}.`);
  if (typeof file !== 'string' || file.trim() === '') throw refuse('an empty path names no file');
  const resolved = path.resolve(file);
  if (resolved === path.parse(resolved).root) throw refuse('it is the root of the file system, a folder');
  if (file.endsWith('/') || file.endsWith(path.sep)) throw refuse('the path ends in a separator, so it names a folder');
  let stats: fs.Stats|null = null;
  try {
    stats = fs.statSync(resolved);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' && isSymlink(resolved)) {
      throw refuse(`it is a symbolic link to ${fs.readlinkSync(resolved)}, which does not exist`);
    }
    if (errorCode(error) !== 'ENOENT') throw refuse(fsErrorReason(error));
  }
  if (stats != null) {
    if (stats.isDirectory()) throw refuse('it is a folder');
    if (!stats.isFile()) throw refuse('it is not a regular file (a device, pipe or socket)');
    const protectedWhy = writeProtection(resolved, stats);
    if (protectedWhy != null) throw refuse(`it is ${protectedWhy}`);
  }
  const parent = path.dirname(stats != null && isSymlink(resolved) ? realpathOrSelf(resolved) : resolved);
  let parentStats: fs.Stats;
  try {
    parentStats = fs.statSync(parent);
  } catch (error) {
    throw refuse(`its folder ${parent} cannot be used: ${fsErrorReason(error)}`);
  }
  // A folder: had it been a file, statting the path below it would have said ENOTDIR above.
  const parentProtected = writeProtection(parent, parentStats);
  if (parentProtected != null) throw refuse(`its folder ${parent} is ${parentProtected}`);
}

/** Why `file` counts as write-protected ("write-protected (mode 555)"), or null. */
function writeProtection(file: string, stats: fs.Stats): string|null {
  const mode = (stats.mode & 0o777).toString(8).padStart(3, '0');
  // The owner write bit says what the owner means, even for root, whom access() never refuses.
  if ((stats.mode & 0o200) === 0) return `write-protected (mode ${mode})`;
  try {
    fs.accessSync(file, fs.constants.W_OK);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;  // gone meanwhile: nothing left to protect
    return `not writable by this user (mode ${mode}: ${fsErrorReason(error)})`;
  }
  return null;
}

/** The path itself, or the deepest existing folder above it; refuses a dangling symbolic link on the way. */
function nearestExisting(resolved: string, refuse: (why: string) => ValueError): string {
  for (let current = resolved; ; current = path.dirname(current)) {
    let lstats: fs.Stats|null = null;
    try {
      lstats = fs.lstatSync(current);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT' && errorCode(error) !== 'ENOTDIR') {
        throw refuse(`${current} cannot be read: ${fsErrorReason(error)}`);
      }
    }
    if (lstats != null) {
      if (lstats.isSymbolicLink() && !fs.existsSync(current)) {
        const where = current === resolved ? 'it' : current;
        throw refuse(`${where} is a symbolic link to ${fs.readlinkSync(current)}, which does not exist`);
      }
      return current;
    }
    if (path.dirname(current) === current) return current;
  }
}

function statOf(file: string, refuse: (why: string) => ValueError): fs.Stats {
  try {
    return fs.statSync(file);
  } catch (error) {
    throw refuse(`${file} cannot be read: ${fsErrorReason(error)}`);
  }
}

function realpathOf(file: string, refuse: (why: string) => ValueError): string {
  try {
    return fs.realpathSync(file);
  } catch (error) {
    throw refuse(`${file} cannot be resolved: ${fsErrorReason(error)}`);
  }
}

function realpathOrSelf(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return path.resolve(file);
  }
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** `"given" (/absolute/path)`, or the path alone when it is already absolute and normal. */
function shown(given: string): string {
  if (typeof given !== 'string' || given.trim() === '') return JSON.stringify(given);
  const resolved = path.resolve(given);
  return resolved === given ? given : `${JSON.stringify(given)} (${resolved})`;
}
