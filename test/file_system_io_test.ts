/**
 * Saving touches only what it writes (issue 9, findings 1 to 5): targets refused before
 * anything is written (the root, home, the working directory and its ancestors, files,
 * dangling links, folders with other things, write-protected models), modes kept, old
 * weights files replaced, the lock between savers, and weights that are symbolic links out
 * of the folder refused. Everything runs on scratch folders under os.tmpdir(). (Loads under
 * concurrent saves from other processes: concurrent_save_load_test.ts.)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '../src/node';
import {fileSystem} from '../src/io/file_system_io';
import {checkFileTarget, checkSaveTarget} from '../src/io/save_target';
import {writeFileAtomic} from '../src/io/write_file_atomic';
import {checkParkModelTarget, loadParkModel, PARK_COMPANION_FILES} from '../scripts/app/park/park_files';
import {escapeRegExp} from './helpers/tensors';
import {deadPid} from './helpers/fs_failures';
import {scratchFolders} from './helpers/scratch_folders';
import {constantModel} from './helpers/save_load_model';

const REPO = path.resolve(__dirname, '..');
const scratch = scratchFolders('tfjs-attention-fsio-');

/** Every weight of a loaded model, flattened. */
function weightValues(model: tf.LayersModel): number[] {
  return model.getWeights().flatMap(w => Array.from(w.dataSync()));
}

/** Name, type, mode, inode, mtime and bytes of everything under `folder`: "as it was" checked exactly. */
function tree(folder: string): {[name: string]: string} {
  const out: {[name: string]: string} = {};
  const walk = (dir: string, prefix: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const file = path.join(dir, name);
      const stats = fs.lstatSync(file);
      const common = `mode ${(stats.mode & 0o777).toString(8)} ino ${stats.ino} mtime ${stats.mtimeMs}`;
      if (stats.isSymbolicLink()) out[prefix + name] = `link to ${fs.readlinkSync(file)} ${common}`;
      else if (stats.isDirectory()) {
        out[`${prefix}${name}/`] = common;
        walk(file, `${prefix}${name}/`);
      } else out[prefix + name] = `${common} ${fs.readFileSync(file).toString('base64')}`;
    }
  };
  walk(folder, '');
  return out;
}

/** The folder's own mode, inode and mtime, and its listing. */
function folderState(folder: string): object {
  const stats = fs.statSync(folder);
  return {mode: stats.mode & 0o777, ino: stats.ino, mtimeMs: stats.mtimeMs, entries: fs.readdirSync(folder).sort()};
}

function weightsPathsOf(folder: string): string[] {
  return JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8')).weightsManifest.flatMap((g: {paths: string[]}) => g.paths);
}

async function expectNoLeak(body: () => Promise<unknown>): Promise<void> {
  const before = tf.memory().numTensors;
  await body();
  expect(tf.memory().numTensors).toBe(before);
}

/** Saving `model` to `folder` is refused with `message`, leaks nothing, and `folder` (if any) is exactly as it was. */
async function expectRefused(model: tf.LayersModel, folder: string, message: RegExp, url = `file://${folder}`): Promise<void> {
  const before = fs.existsSync(folder) ? tree(folder) : null;
  await expectNoLeak(async () => {
    await expect(model.save(url)).rejects.toThrow(message);
  });
  if (before != null) expect(tree(folder)).toEqual(before);
  else expect(fs.existsSync(folder)).toBe(false);
}

const saveRefusal = (folder: string, why: string) => new RegExp(`^Cannot save a model to ${escapeRegExp(folder).source}: ${why}`);

let model: tf.LayersModel;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = constantModel(1);
});

afterAll(() => {
  model?.dispose();
});

describe('refused before anything is written', () => {
  it('an empty path', async () => {
    expect(() => checkSaveTarget('')).toThrow('Cannot save a model to "": an empty path names no folder.');
    expect(() => fileSystem('')).toThrow(/`url`.*Received: url=""/);
  });

  it('the working directory, as "." and as its path: the folder and its files are unchanged', async () => {
    const cwd = scratch.folder('cwd');
    fs.writeFileSync(path.join(cwd, 'package.json'), '{}');
    fs.mkdirSync(path.join(cwd, 'src'));
    const before = {state: folderState(cwd), tree: tree(cwd)};
    const previous = process.cwd();
    process.chdir(cwd);
    try {
      expect(() => checkSaveTarget('.')).toThrow(`Cannot save a model to "." (${cwd}): it is the working directory.`);
      await expectRefused(model, cwd, /it is the working directory\.$/, 'file://.');
      await expectRefused(model, cwd, saveRefusal(cwd, 'it is the working directory\\.$'));
    } finally {
      process.chdir(previous);
    }
    expect({state: folderState(cwd), tree: tree(cwd)}).toEqual(before);
  });

  it('an ancestor of the working directory', async () => {
    const top = scratch.folder('ancestor');
    const cwd = path.join(top, 'a', 'b');
    fs.mkdirSync(cwd, {recursive: true});
    const previous = process.cwd();
    process.chdir(cwd);
    try {
      await expectRefused(model, top, saveRefusal(top, `it holds the working directory \\(${escapeRegExp(cwd).source}\\)\\.$`));
      await expectRefused(model, path.join(top, 'a'), /it holds the working directory/, 'file://..');
    } finally {
      process.chdir(previous);
    }
  });

  it('the home folder: refused, its listing and time unchanged', async () => {
    const home = os.homedir();
    const before = folderState(home);
    expect(() => checkSaveTarget(home)).toThrow(`Cannot save a model to ${home}: it is the home folder.`);
    await expectNoLeak(async () => {
      await expect(model.save(`file://${home}`)).rejects.toThrow(saveRefusal(fs.realpathSync(home), 'it is the home folder\\.$'));
    });
    expect(folderState(home)).toEqual(before);
  });

  it('a folder holding the home folder (a scratch home, through os.homedir())', async () => {
    const home = path.join(scratch.folder('home'), 'me');
    fs.mkdirSync(home);
    fs.writeFileSync(path.join(home, '.bashrc'), 'keep');
    const nodeOs = require('os') as {homedir: () => string};  // the module itself: its namespace copy is read-only
    const homedir = nodeOs.homedir;
    nodeOs.homedir = () => home;
    try {
      expect(os.homedir()).toBe(home);
      await expectRefused(model, home, saveRefusal(home, 'it is the home folder\\.$'));
      await expectRefused(model, path.dirname(home), new RegExp(`it holds the home folder \\(${escapeRegExp(home).source}\\)\\.$`));
    } finally {
      nodeOs.homedir = homedir;
    }
  });

  it('the root of the file system: refused by the check and by save, and / is unchanged', async () => {
    const before = {entries: fs.readdirSync('/').sort(), mtimeMs: fs.statSync('/').mtimeMs};
    expect(() => checkSaveTarget('/')).toThrow('Cannot save a model to /: it is the root of the file system.');
    await expectNoLeak(async () => {
      await expect(model.save('file:///')).rejects.toThrow('Cannot save a model to /: it is the root of the file system.');
    });
    expect({entries: fs.readdirSync('/').sort(), mtimeMs: fs.statSync('/').mtimeMs}).toEqual(before);
  });

  it('a folder holding other things: the first five named, with the count; nothing touched', async () => {
    const folder = scratch.folder('crowded');
    for (const name of ['b.txt', 'a.txt', 'notes.md', 'model.json.bak', 'weights.bin.old', '.git']) {
      fs.writeFileSync(path.join(folder, name), name);
    }
    fs.mkdirSync(path.join(folder, 'data'));
    fs.writeFileSync(path.join(folder, 'data', 'big.bin'), Buffer.alloc(1000));
    await expectRefused(model, folder, saveRefusal(folder,
        'it holds 7 entries that are not part of a saved model \\(\\.git, a\\.txt, b\\.txt, data/, model\\.json\\.bak, …\\)\\. ' +
        'A model folder holds only model\\.json, weights-<hex>\\.bin \\(or weights\\.bin\\), and saving touches nothing else'));
  });

  it('a folder named model.json or a weights file name that is a folder is in the way too', async () => {
    const folder = scratch.folder('dir-named-model-json');
    fs.mkdirSync(path.join(folder, 'model.json'));
    await expectRefused(model, folder, /it holds 1 entry that is not part of a saved model \(model\.json\/\)/);
  });

  it('a path whose parent is a file, and a dangling symbolic link (the folder or a weights file)', async () => {
    const parent = scratch.folder('parent-file');
    fs.writeFileSync(path.join(parent, 'file'), 'x');
    const below = path.join(parent, 'file', 'model');
    await expectRefused(model, below, saveRefusal(below, `${escapeRegExp(path.join(parent, 'file')).source} is a file, so the folder cannot be created\\.$`));

    const links = scratch.folder('dangling');
    const link = path.join(links, 'model');
    fs.symlinkSync(path.join(links, 'nowhere'), link);
    await expectRefused(model, link, saveRefusal(link, `it is a symbolic link to ${escapeRegExp(path.join(links, 'nowhere')).source}, which does not exist\\.$`));
    expect(fs.existsSync(path.join(links, 'nowhere'))).toBe(false);

    const folder = scratch.folder('dangling-weights');
    await model.save(`file://${folder}`);
    fs.symlinkSync('/nonexistent-target', path.join(folder, 'weights.bin'));
    await expectRefused(model, folder, /weights\.bin in it is a symbolic link to \/nonexistent-target, which does not exist\.$/);
  });

  it('a write-protected model (folder 555, files 444): refused, the files, modes and times unchanged, still loadable', async () => {
    const folder = scratch.folder('protected');
    const old = constantModel(7);
    await old.save(`file://${folder}`);
    for (const name of fs.readdirSync(folder)) fs.chmodSync(path.join(folder, name), 0o444);
    fs.chmodSync(folder, 0o555);
    const before = {state: folderState(folder), tree: tree(folder)};
    try {
      await expectRefused(model, folder, saveRefusal(folder, 'it is write-protected \\(mode 555\\); the model there is left as it was\\.$'));
      expect({state: folderState(folder), tree: tree(folder)}).toEqual(before);
      const loaded = await tf.loadLayersModel(`file://${folder}/model.json`);
      expect(new Set(weightValues(loaded))).toEqual(new Set([7]));
      loaded.dispose();
    } finally {
      fs.chmodSync(folder, 0o755);
    }
    // A writable folder with a write-protected model.json, and a protected parent for a new folder.
    await expectRefused(model, folder, /model\.json in it is write-protected \(mode 444\); the model there is left as it was\.$/);
    const lockedParent = scratch.folder('protected-parent');
    fs.chmodSync(lockedParent, 0o555);
    try {
      const inside = path.join(lockedParent, 'model');
      await expectRefused(model, inside, new RegExp(`${escapeRegExp(lockedParent).source} is write-protected \\(mode 555\\), so the folder cannot be created in it\\.$`));
    } finally {
      fs.chmodSync(lockedParent, 0o755);
    }
    old.dispose();
  });
});

describe('what a save touches', () => {
  it('a mode-700 folder stays 700 and keeps its inode, on the first save and on the next', async () => {
    const folder = path.join(scratch.folder('private'), 'model');
    fs.mkdirSync(folder, {mode: 0o700});
    fs.chmodSync(folder, 0o700);
    const ino = fs.statSync(folder).ino;
    await model.save(`file://${folder}`);
    const other = constantModel(2);
    await other.save(`file://${folder}`);
    expect(fs.statSync(folder).mode & 0o777).toBe(0o700);
    expect(fs.statSync(folder).ino).toBe(ino);
    other.dispose();
  });

  it('a re-save replaces model.json and deletes only the old weights file; the same weights again leave the files as they are', async () => {
    const folder = scratch.folder('resave');
    const first = constantModel(3);
    await first.save(`file://${folder}`);
    const [firstWeights] = weightsPathsOf(folder);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', firstWeights]);

    const second = constantModel(4);
    await second.save(`file://${folder}`);
    const [secondWeights] = weightsPathsOf(folder);
    expect(secondWeights).not.toBe(firstWeights);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', secondWeights]);
    const loaded = await tf.loadLayersModel(`file://${folder}/model.json`);
    expect(new Set(weightValues(loaded))).toEqual(new Set([4]));
    loaded.dispose();

    const before = tree(folder);
    await second.save(`file://${folder}`);  // the same model again
    expect(tree(folder)).toEqual(before);  // same inodes, times and bytes
    const again = constantModel(4);  // another model that reproduces the weights
    await again.save(`file://${folder}`);
    expect(tree(folder)[secondWeights]).toBe(before[secondWeights]);  // the weights file untouched
    [first, second, again].forEach(m => m.dispose());
  });

  it('a model saved as weights.bin (tfjs-node, earlier versions) is replaced, weights.bin deleted', async () => {
    const folder = scratch.folder('legacy');
    await model.save(`file://${folder}`);
    const [name] = weightsPathsOf(folder);
    const json = JSON.parse(fs.readFileSync(path.join(folder, 'model.json'), 'utf8'));
    json.weightsManifest[0].paths = ['weights.bin'];
    fs.renameSync(path.join(folder, name), path.join(folder, 'weights.bin'));
    fs.writeFileSync(path.join(folder, 'model.json'), JSON.stringify(json));
    const other = constantModel(5);
    await other.save(`file://${folder}`);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', ...weightsPathsOf(folder)].sort());
    expect(weightsPathsOf(folder)[0]).toMatch(/^weights-[0-9a-f]{16}\.bin$/);
    other.dispose();
  });

  it('the park app\'s plots beside the model are accepted as companions and left exactly as they were', async () => {
    const folder = scratch.folder('park');
    await model.save(`file://${folder}`, );
    for (const name of PARK_COMPANION_FILES) fs.writeFileSync(path.join(folder, name), `<svg>${name}</svg>`);
    const plots = () => Object.fromEntries(Object.entries(tree(folder)).filter(([name]) => name.endsWith('.svg')));
    const before = plots();
    expect(Object.keys(before)).toHaveLength(3);
    // Without the companions named, they are in the way.
    await expectRefused(model, folder, /it holds 3 entries that are not part of a saved model \(attention-bat\.svg, attention-heatmap\.svg, training-curve\.svg\)/);

    const other = constantModel(6);
    await other.save(fileSystem(folder, {companionFiles: PARK_COMPANION_FILES}));
    expect(plots()).toEqual(before);
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', ...weightsPathsOf(folder), ...PARK_COMPANION_FILES].sort());
    other.dispose();
  });

  it('the committed model\'s folder layout (a copy) is a valid park target', () => {
    const copy = path.join(scratch.folder('committed-copy'), 'park-play');
    fs.cpSync(path.join(REPO, 'models', 'park-play'), copy, {recursive: true});
    expect(() => checkParkModelTarget(copy)).not.toThrow();
    fs.writeFileSync(path.join(copy, 'README.txt'), 'mine');
    expect(() => checkParkModelTarget(copy)).toThrow(/it holds 1 entry that is not part of a saved model \(README\.txt\)/);
  });
});

describe('the lock between saves', () => {
  it('a lock held by a live process: the save waits, then fails naming the folder, the holder and the lock file; nothing written', async () => {
    const folder = scratch.folder('locked');
    await model.save(`file://${folder}`);
    const lock = path.join(folder, '.model.lock');
    fs.writeFileSync(lock, JSON.stringify({pid: process.pid, host: os.hostname(), time: '2026-01-01T00:00:00.000Z'}));
    const before = tree(folder);
    const other = constantModel(8);
    const started = Date.now();
    await expect(other.save(fileSystem(folder, {lockTimeoutMs: 300}))).rejects.toThrow(new RegExp(
        `^Cannot save a model to ${escapeRegExp(folder).source}: another save holds its lock ${escapeRegExp(lock).source} ` +
        `\\(process ${process.pid} on ${escapeRegExp(os.hostname()).source}, since 2026-01-01T00:00:00.000Z\\) and did not finish within 0.3 s`));
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(tree(folder)).toEqual(before);
    other.dispose();
  });

  it('a lock left by a process that has died on this host is taken over; a lock from another host is not', async () => {
    const folder = scratch.folder('stale-lock');
    const dead = deadPid();
    const lock = path.join(folder, '.model.lock');
    fs.writeFileSync(lock, JSON.stringify({pid: dead, host: os.hostname(), time: '2026-01-01T00:00:00.000Z'}));
    await model.save(fileSystem(folder, {lockTimeoutMs: 2000}));
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', ...weightsPathsOf(folder)]);

    fs.writeFileSync(lock, JSON.stringify({pid: dead, host: `not-${os.hostname()}`, time: '2026-01-01T00:00:00.000Z'}));
    await expect(model.save(fileSystem(folder, {lockTimeoutMs: 100}))).rejects.toThrow(`on not-${os.hostname()}`);
    expect(fs.existsSync(lock)).toBe(true);
  });
});

describe('loads', () => {
  it('refuse a weights file that is a symbolic link to a file outside the model folder, naming model.json and the path', async () => {
    const folder = scratch.folder('link-out');
    await model.save(`file://${folder}`);
    const [name] = weightsPathsOf(folder);
    const outside = path.join(scratch.folder('outside'), 'stolen.bin');
    fs.renameSync(path.join(folder, name), outside);
    fs.symlinkSync(outside, path.join(folder, name));
    await expectNoLeak(async () => {
      await expect(tf.loadLayersModel(`file://${folder}/model.json`)).rejects.toThrow(
          `${path.join(folder, 'model.json')} lists the weights file ${path.join(folder, name)}, a symbolic link that leads ` +
          `outside the model's folder (to ${outside}), which is refused`);
    });
  });

  it('loadParkModel (predict, explain) refuses the committed model with weights.bin linked out, naming the path', async () => {
    const folder = path.join(scratch.folder('park-link-out'), 'park-play');
    fs.cpSync(path.join(REPO, 'models', 'park-play'), folder, {recursive: true});
    const outside = path.join(scratch.folder('park-outside'), 'weights.bin');
    fs.renameSync(path.join(folder, 'weights.bin'), outside);
    fs.symlinkSync(outside, path.join(folder, 'weights.bin'));
    await expectNoLeak(async () => {
      await expect(loadParkModel(folder)).rejects.toThrow(
          `The model at ${folder} cannot be loaded: ${path.join(folder, 'model.json')} lists the weights file ` +
          `${path.join(folder, 'weights.bin')}, a symbolic link that leads outside the model's folder (to ${outside}), which is refused`);
    });
  });

  it('accept a symbolic link that stays inside the folder, and a model folder reached through a link', async () => {
    const folder = scratch.folder('link-in');
    await model.save(`file://${folder}`);
    const [name] = weightsPathsOf(folder);
    fs.mkdirSync(path.join(folder, 'store'));
    fs.renameSync(path.join(folder, name), path.join(folder, 'store', name));
    fs.symlinkSync(path.join('store', name), path.join(folder, name));
    const viaLink = path.join(scratch.folder('via'), 'model');
    fs.symlinkSync(folder, viaLink);
    for (const url of [`file://${folder}/model.json`, `file://${viaLink}/model.json`]) {
      const loaded = await tf.loadLayersModel(url);
      expect(new Set(weightValues(loaded))).toEqual(new Set([1]));
      loaded.dispose();
    }
  });
});

describe('single output files (explain --svg, the plots): checkFileTarget and writeFileAtomic', () => {
  it.each<[string, () => string, RegExp]>([
    ['an empty path', () => '', /^Cannot write the SVG "": an empty path names no file\.$/],
    ['the root', () => '/', /^Cannot write the SVG \/: it is the root of the file system, a folder\.$/],
    ['a folder', () => scratch.folder('svg-folder'), /: it is a folder\.$/],
    ['a path ending in a separator', () => `${scratch.folder('svg-sep')}/`, /the path ends in a separator, so it names a folder\.$/],
    ['a missing parent folder', () => path.join(scratch.root(), 'no-such-folder', 'a.svg'),
      /its folder .*no-such-folder cannot be used: it \(or a folder on its path\) does not exist\.$/],
    ['a parent that is a file', () => {
      const file = path.join(scratch.folder('svg-parent-file'), 'f');
      fs.writeFileSync(file, 'x');
      return path.join(file, 'a.svg');
    }, /f\/a\.svg: a part of its path is a file, not a folder\.$/],
    ['a dangling symbolic link', () => {
      const link = path.join(scratch.folder('svg-dangling'), 'a.svg');
      fs.symlinkSync('/nonexistent-dir/a.svg', link);
      return link;
    }, /it is a symbolic link to \/nonexistent-dir\/a\.svg, which does not exist\.$/],
    ['a name too long for the file system', () => path.join(scratch.root(), `${'x'.repeat(300)}.svg`), /: the path is too long\.$/],
  ])('refuses %s, naming it, with no raw errno text, writing nothing', (_what, target, message) => {
    const file = target();
    const before = fs.readdirSync(scratch.root()).sort();
    expect(() => checkFileTarget(file, 'SVG')).toThrow(message);
    expect(() => writeFileAtomic(file, '<svg/>', 'SVG')).toThrow(message);
    expect(() => writeFileAtomic(file, '<svg/>', 'SVG')).not.toThrow(/E[A-Z]+:/);
    expect(fs.readdirSync(scratch.root()).sort()).toEqual(before);
  });

  it('refuses a write-protected file (444) and leaves it as it was', () => {
    const file = path.join(scratch.folder('svg-protected'), 'a.svg');
    fs.writeFileSync(file, 'old');
    fs.chmodSync(file, 0o444);
    const before = tree(path.dirname(file));
    expect(() => writeFileAtomic(file, 'new', 'SVG')).toThrow(`Cannot write the SVG ${file}: it is write-protected (mode 444).`);
    expect(tree(path.dirname(file))).toEqual(before);
  });

  it('replaces a file whole, keeping its mode, through a symbolic link the file it points to; no temporary file left', () => {
    const folder = scratch.folder('svg-ok');
    const file = path.join(folder, 'a.svg');
    fs.writeFileSync(file, 'old');
    fs.chmodSync(file, 0o600);
    writeFileAtomic(file, 'new');
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    fs.symlinkSync('a.svg', path.join(folder, 'link.svg'));
    writeFileAtomic(path.join(folder, 'link.svg'), 'via link');
    expect(fs.lstatSync(path.join(folder, 'link.svg')).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(file, 'utf8')).toBe('via link');
    expect(fs.readdirSync(folder).sort()).toEqual(['a.svg', 'link.svg']);
  });
});
