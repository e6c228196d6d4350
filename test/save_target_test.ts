/**
 * save_target.ts on its own: which names a model folder may hold (the save's own hidden files, the lock, a lock being
 * stolen, companions' temporary files) and which are in the way; each refusal of checkSaveTarget and checkFileTarget
 * with its whole message; fs failures (injected by spies on the fs module itself) said in words.
 */
import * as fs from 'fs';
import * as path from 'path';
import {checkFileTarget, checkSaveTarget, isWeightsFile, modelTempFilePid, tempNameFor} from '../src/io/save_target';
import {errno} from './helpers/fs_failures';
import {scratchFolders} from './helpers/scratch_folders';

// The module itself (its namespace copy here is read-only): spies on it reach src/io.
const nodeFs = require('fs') as typeof fs;

const scratch = scratchFolders('tfjs-attention-target-');

const HEX16 = '0123456789abcdef';

/** A folder holding a saved model's files (model.json and a weights file), plus `others`. */
function modelFolder(name: string, others: string[] = []): string {
  const folder = scratch.folder(name);
  for (const file of ['model.json', `weights-${HEX16}.bin`, ...others]) fs.writeFileSync(path.join(folder, file), file);
  return folder;
}

const inTheWay = (folder: string, listed: string, companions: string[] = []) =>
  `Cannot save a model to ${folder}: it holds 1 entry that is not part of a saved model (${listed}). A model folder ` +
  `holds only ${['model.json', 'weights-<hex>.bin (or weights.bin)', ...companions].join(', ')}, and saving touches nothing else: give a new or empty ` +
  `folder, or one holding only a model saved before.`;

afterEach(() => {
  jest.restoreAllMocks();
});

describe('the names of a model\'s files', () => {
  it('isWeightsFile: weights.bin and weights-<16 hex>.bin only', () => {
    expect(['weights.bin', `weights-${HEX16}.bin`].map(isWeightsFile)).toEqual([true, true]);
    expect(['my-weights.bin', 'weights.bin.bak', 'weights-0123.bin', `weights-${HEX16.toUpperCase()}.bin`, 'weights-.bin']
        .map(isWeightsFile)).toEqual([false, false, false, false, false]);
  });

  it('modelTempFilePid: the pid in a save\'s temporary file name, else null', () => {
    expect(modelTempFilePid('.model.json.1234-9af.tmp')).toBe(1234);
    expect(modelTempFilePid('.weights.bin.56-0.tmp')).toBe(56);
    expect(modelTempFilePid(`.weights-${HEX16}.bin.78-abc.tmp`)).toBe(78);
    for (const name of ['x.model.json.12-ab.tmp', '.model.json.12-ab.tmp.bak', '.model.json.12-xy.tmp', '.model.json.ab-12.tmp',
                        '.weights-0123.bin.12-ab.tmp', '.other.json.12-ab.tmp']) {
      expect([name, modelTempFilePid(name)]).toEqual([name, null]);
    }
  });

  it('tempNameFor: a hidden name with this pid and a random hex part, different each time', () => {
    const names = Array.from({length: 4}, () => tempNameFor('model.json'));
    for (const name of names) {
      expect(name).toMatch(new RegExp(`^\\.model\\.json\\.${process.pid}-[0-9a-f]+\\.tmp$`));
      expect(modelTempFilePid(name)).toBe(process.pid);
    }
    expect(new Set(names).size).toBe(4);
  });
});

describe('checkSaveTarget: what a model folder may hold', () => {
  const companions = ['plot.svg'];
  const accepted = ['.model.json.12-ab.tmp', '.weights.bin.34-cd.tmp', `.weights-${HEX16}.bin.56-ef0.tmp`, '.model.lock',
                    '.model.lock.stale-12-abc', '.plot.svg.12-abc.tmp', 'plot.svg', 'weights.bin'];

  it('a model with the save\'s own hidden files (write-protected ones too: they are not checked) and companions', () => {
    const folder = modelFolder('accepted', accepted);
    for (const name of accepted.filter(n => n.startsWith('.'))) fs.chmodSync(path.join(folder, name), 0o444);
    expect(() => checkSaveTarget(folder, {companionFiles: companions})).not.toThrow();
  });

  it.each([
    'a.model.json.1-a.tmp', '.model.json.1-a.tmp.bak', 'xweights.bin', `weights-${HEX16}.bin.old`,
    'x.model.lock.stale-1-a', '.model.lock.stale-1-a.bak', '.model.lock.stale-x-a', '.model.lock.stale-1-g', '.model.lock.stale-1-',
    'x.plot.svg.12-abc.tmp', '.plot.svg.12-abc.tmp.bak', '.plot.svg.x-abc.tmp', '.plot.svg.12-xyz.tmp', '.other.svg.12-abc.tmp',
  ])('%s is in the way', name => {
    const folder = modelFolder('refused', [name]);
    expect(() => checkSaveTarget(folder, {companionFiles: companions})).toThrow(inTheWay(folder, name, companions));
  });

  it('exactly five entries in the way are all listed, sorted, without "…"', () => {
    const folder = modelFolder('five', ['e', 'd', 'c', 'b', 'a']);
    const readdir = nodeFs.readdirSync;
    // Listed in reverse order, whatever the file system's own order.
    jest.spyOn(nodeFs, 'readdirSync').mockImplementation(((dir: fs.PathLike, options: {withFileTypes: true}) =>
      (readdir(dir, options) as fs.Dirent[]).sort((x, y) => (x.name < y.name ? 1 : -1))) as typeof fs.readdirSync);
    expect(() => checkSaveTarget(folder)).toThrow(
        `Cannot save a model to ${folder}: it holds 5 entries that are not part of a saved model (a, b, c, d, e). A model folder`);
  });

  it('weights.bin that is a symbolic link to a folder is in the way, as a folder', () => {
    const folder = modelFolder('weights-dir');
    fs.mkdirSync(path.join(folder, 'store'));
    fs.rmSync(path.join(folder, `weights-${HEX16}.bin`));
    fs.symlinkSync('store', path.join(folder, 'weights.bin'));
    expect(() => checkSaveTarget(folder)).toThrow(
        `Cannot save a model to ${folder}: it holds 2 entries that are not part of a saved model (store/, weights.bin/).`);
  });

  it('weights.bin that is a loop of symbolic links cannot be read: said in words', () => {
    const folder = modelFolder('weights-loop');
    fs.symlinkSync('weights.bin', path.join(folder, 'weights.bin'));
    expect(() => checkSaveTarget(folder)).toThrow(
        `Cannot save a model to ${folder}: weights.bin in it cannot be read: it has too many levels of symbolic links.`);
  });

  it('a weights file deleted by a concurrent save between listing and stat is skipped; another stat failure is said', () => {
    const folder = modelFolder('stat-race');
    const weights = path.join(folder, `weights-${HEX16}.bin`);
    const stat = nodeFs.statSync;
    jest.spyOn(nodeFs, 'statSync').mockImplementation(((file: fs.PathLike, options?: fs.StatSyncOptions) => {
      if (file === weights) throw errno('ENOENT');
      return stat(file, options);
    }) as typeof fs.statSync);
    expect(() => checkSaveTarget(folder)).not.toThrow();
    jest.restoreAllMocks();

    const modelJson = path.join(folder, 'model.json');
    jest.spyOn(nodeFs, 'statSync').mockImplementation(((file: fs.PathLike, options?: fs.StatSyncOptions) => {
      if (file === modelJson) throw errno('EIO');
      return stat(file, options);
    }) as typeof fs.statSync);
    expect(() => checkSaveTarget(folder)).toThrow(
        `Cannot save a model to ${folder}: model.json in it cannot be read: an input/output error.`);
  });

  it('a folder whose contents cannot be listed', () => {
    const folder = modelFolder('unlistable');
    const readdir = nodeFs.readdirSync;
    jest.spyOn(nodeFs, 'readdirSync').mockImplementation(((dir: fs.PathLike, options?: object) => {
      if (dir === folder) throw errno('EACCES');
      return readdir(dir, options as {withFileTypes: true});
    }) as typeof fs.readdirSync);
    expect(() => checkSaveTarget(folder)).toThrow(`Cannot save a model to ${folder}: its contents cannot be listed: permission denied.`);
  });
});

describe('checkSaveTarget: refusals, each with its whole message', () => {
  it('a blank path or one that is not a string', () => {
    expect(() => checkSaveTarget('   ')).toThrow('Cannot save a model to "   ": an empty path names no folder.');
    expect(() => checkSaveTarget(undefined as unknown as string)).toThrow('Cannot save a model to undefined: an empty path names no folder.');
    expect(() => checkSaveTarget(42 as unknown as string)).toThrow('Cannot save a model to 42: an empty path names no folder.');
  });

  it('a path ending in .json, relative ones shown with their absolute path', () => {
    const file = path.join(scratch.folder('json'), 'model.json');
    expect(() => checkSaveTarget(file)).toThrow(
        `Cannot save a model to ${file}: the path ends in .json; give the folder to hold model.json, not the file.`);
    expect(() => checkSaveTarget('out/m.json')).toThrow(
        `Cannot save a model to "out/m.json" (${path.resolve('out/m.json')}): the path ends in .json;`);
    expect(() => checkSaveTarget(path.join(scratch.root(), 'a.json.d', 'm'))).not.toThrow();
  });

  it('a symbolic link to a folder is followed; a dangling link on the way is named', () => {
    const parent = scratch.folder('links');
    fs.mkdirSync(path.join(parent, 'real'));
    fs.symlinkSync('real', path.join(parent, 'link'));
    expect(() => checkSaveTarget(path.join(parent, 'link'))).not.toThrow();
    expect(() => checkSaveTarget(path.join(parent, 'link', 'new', 'model'))).not.toThrow();
    fs.symlinkSync(path.join(parent, 'nowhere'), path.join(parent, 'dangling'));
    const below = path.join(parent, 'dangling', 'model');
    expect(() => checkSaveTarget(below)).toThrow(
        `Cannot save a model to ${below}: ${path.join(parent, 'dangling')} is a symbolic link to ${path.join(parent, 'nowhere')}, ` +
        'which does not exist.');
  });

  it('a path that cannot be read on the way (a name too long): said in words', () => {
    const long = path.join(scratch.folder('long'), 'x'.repeat(300), 'model');
    expect(() => checkSaveTarget(long)).toThrow(`Cannot save a model to ${long}: ${long} cannot be read: the path is too long.`);
  });

  it('a folder with no owner write bit: its mode in three octal digits', () => {
    const folder = modelFolder('mode-055');
    fs.chmodSync(folder, 0o055);
    try {
      expect(() => checkSaveTarget(folder)).toThrow(
          `Cannot save a model to ${folder}: it is write-protected (mode 055); the model there is left as it was.`);
    } finally {
      fs.chmodSync(folder, 0o755);
    }
  });

  it('a folder this user cannot write to (access() refuses), and one removed meanwhile', () => {
    const folder = modelFolder('no-access');
    fs.chmodSync(folder, 0o755);
    const access = jest.spyOn(nodeFs, 'accessSync').mockImplementation(() => {
      throw errno('EACCES');
    });
    expect(() => checkSaveTarget(folder)).toThrow(
        `Cannot save a model to ${folder}: it is not writable by this user (mode 755: permission denied); the model there is left as it was.`);
    access.mockImplementation(() => {
      throw errno('ENOENT');
    });
    expect(() => checkSaveTarget(folder)).not.toThrow();
  });

  it('a folder that cannot be statted or resolved: said in words', () => {
    const folder = modelFolder('stat-fails');
    const stat = nodeFs.statSync;
    jest.spyOn(nodeFs, 'statSync').mockImplementation(((file: fs.PathLike, options?: fs.StatSyncOptions) => {
      if (file === folder) throw errno('EIO');
      return stat(file, options);
    }) as typeof fs.statSync);
    expect(() => checkSaveTarget(folder)).toThrow(`Cannot save a model to ${folder}: ${folder} cannot be read: an input/output error.`);
    const below = path.join(folder, 'new');
    expect(() => checkSaveTarget(below)).toThrow(`Cannot save a model to ${below}: ${folder} cannot be read: an input/output error.`);
    jest.restoreAllMocks();

    const realpath = nodeFs.realpathSync;
    jest.spyOn(nodeFs, 'realpathSync').mockImplementation(((file: fs.PathLike, options?: object) => {
      if (file === folder) throw errno('EACCES');
      return realpath(file, options as {encoding?: null});
    }) as typeof fs.realpathSync);
    expect(() => checkSaveTarget(folder)).toThrow(`Cannot save a model to ${folder}: ${folder} cannot be resolved: permission denied.`);
  });
});

describe('checkFileTarget: refusals, each with its whole message', () => {
  it('a blank path or one that is not a string; "file" when the caller names no kind', () => {
    expect(() => checkFileTarget('  ')).toThrow('Cannot write the file "  ": an empty path names no file.');
    expect(() => checkFileTarget(undefined as unknown as string)).toThrow('Cannot write the file undefined: an empty path names no file.');
  });

  it('a device', () => {
    expect(() => checkFileTarget('/dev/null', 'SVG')).toThrow('Cannot write the SVG /dev/null: it is not a regular file (a device, pipe or socket).');
  });

  it('a loop of symbolic links: said in words', () => {
    const file = path.join(scratch.folder('file-loop'), 'a.svg');
    fs.symlinkSync('a.svg', file);
    expect(() => checkFileTarget(file)).toThrow(`Cannot write the file ${file}: it has too many levels of symbolic links.`);
  });

  it('a new file in a write-protected folder, and a link to a file in one: the folder that would be written is named', () => {
    const locked = scratch.folder('locked');
    fs.writeFileSync(path.join(locked, 'a.svg'), 'old');
    const open = scratch.folder('open');
    fs.symlinkSync(path.join(locked, 'a.svg'), path.join(open, 'link.svg'));
    fs.symlinkSync(locked, path.join(open, 'dir-link'));
    fs.chmodSync(locked, 0o555);
    try {
      expect(() => checkFileTarget(path.join(locked, 'b.svg'), 'SVG')).toThrow(
          `Cannot write the SVG ${path.join(locked, 'b.svg')}: its folder ${locked} is write-protected (mode 555).`);
      expect(() => checkFileTarget(path.join(open, 'link.svg'), 'SVG')).toThrow(
          `Cannot write the SVG ${path.join(open, 'link.svg')}: its folder ${locked} is write-protected (mode 555).`);
      // A file reached through a linked folder: the folder as named (its own path is what is replaced).
      const viaDir = path.join(open, 'dir-link', 'a.svg');
      expect(() => checkFileTarget(viaDir, 'SVG')).toThrow(
          `Cannot write the SVG ${viaDir}: its folder ${path.join(open, 'dir-link')} is write-protected (mode 555).`);
    } finally {
      fs.chmodSync(locked, 0o755);
    }
    expect(() => checkFileTarget(path.join(open, 'link.svg'))).not.toThrow();
  });
});
