/**
 * FileSystemIO in this process, on raw model artifacts: what model.json holds for each artifact field, the save's
 * failures (each fs step, injected by spies on the fs module itself) with the whole message and the previous model
 * left in place, the folder flushed after the renames, dead savers' temporary files, no file descriptor left open,
 * and loads: the retry when a save replaces model.json meanwhile (and only then, at most 5 times), and each corrupt
 * model.json or weights file named in its error.
 */
import {createHash} from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {fileSystem, setSaveStepHookForTest} from '../src/io/file_system_io';
import {deadPid, errno, openFds} from './helpers/fs_failures';
import {scratchFolders} from './helpers/scratch_folders';

// The module itself (its namespace copy here is read-only): spies on it reach src/io.
const nodeFs = require('fs') as typeof fs;

const scratch = scratchFolders('tfjs-attention-fsio-edge-');

/** weights-<first 16 hex of the sha256 of the bytes>.bin, hashed here. */
function weightsNameOf(bytes: Buffer): string {
  return `weights-${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.bin`;
}

/** Artifacts of a "model" with one float32 weight of 3 values. */
function artifacts(values: number[], extra: Partial<tf.io.ModelArtifacts> = {}): tf.io.ModelArtifacts {
  return {
    modelTopology: {class_name: 'Sequential', values},
    weightSpecs: [{name: 'w', shape: [values.length], dtype: 'float32'}],
    weightData: new Float32Array(values).buffer,
    ...extra,
  };
}

const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** Every entry of a folder with its bytes. */
function snapshot(folder: string): {[name: string]: string} {
  return Object.fromEntries(fs.readdirSync(folder).sort().map(name => [name, fs.readFileSync(path.join(folder, name)).toString('base64')]));
}

afterEach(() => {
  jest.restoreAllMocks();
  setSaveStepHookForTest(null);
});

describe('FileSystemIO: the URL', () => {
  it.each<[string, unknown, string]>([
    ['blank', '   ', '"   "'],
    ['file:// alone', 'file://', '"file://"'],
    ['file:// and blanks', 'file://  ', '"file://  "'],
    ['not a string', undefined, 'undefined'],
  ])('refuses a URL that is %s, naming what was received', (_what, url, shown) => {
    expect(() => fileSystem(url as string)).toThrow(`Argument \`url\` must be a file:// URL or a path. Received: url=${shown}`);
  });
});

describe('FileSystemIO.save: model.json from the artifacts', () => {
  it('a binary (graph) topology is refused before anything is created', async () => {
    const folder = path.join(scratch.root(), 'graph-model');
    await expect(fileSystem(folder).save({modelTopology: new ArrayBuffer(8)})).rejects.toThrow(
        'FileSystemIO saves Layers models only; it received a binary (graph) model topology.');
    expect(fs.existsSync(folder)).toBe(false);
  });

  it('defaults: format layers-model, convertedBy null; absent and null fields are not written', async () => {
    const folder = scratch.folder('defaults');
    const given = artifacts([1, 2, 3], {trainingConfig: null, userDefinedMetadata: null, signature: null, modelInitializer: null} as
                                        unknown as Partial<tf.io.ModelArtifacts>);
    const result = await fileSystem(folder).save(given);
    const name = weightsNameOf(Buffer.from(new Float32Array([1, 2, 3]).buffer));
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', name]);
    expect(readJson(path.join(folder, 'model.json'))).toEqual({
      modelTopology: {class_name: 'Sequential', values: [1, 2, 3]},
      format: 'layers-model',
      convertedBy: null,
      weightsManifest: [{paths: [name], weights: [{name: 'w', shape: [3], dtype: 'float32'}]}],
    });
    expect(Object.keys(readJson(path.join(folder, 'model.json')))).toEqual(['modelTopology', 'format', 'convertedBy', 'weightsManifest']);
    expect(result.modelArtifactsInfo).toEqual({
      dateSaved: expect.any(Date),
      modelTopologyType: 'JSON',
      modelTopologyBytes: JSON.stringify({class_name: 'Sequential', values: [1, 2, 3]}).length,
      weightSpecsBytes: JSON.stringify([{name: 'w', shape: [3], dtype: 'float32'}]).length,
      weightDataBytes: 12,
    });
  });

  it('every field given is written as given and loaded back', async () => {
    const folder = scratch.folder('fields');
    const fields = {
      format: 'my-format', generatedBy: 'gen 1', convertedBy: 'conv 2', trainingConfig: {loss: 'mse'} as tf.io.TrainingConfig,
      userDefinedMetadata: {a: 1}, signature: {inputs: {x: 1}}, modelInitializer: {init: 2},
    };
    await fileSystem(folder).save(artifacts([4, 5, 6], fields));
    const json = readJson(path.join(folder, 'model.json'));
    expect(json).toEqual(expect.objectContaining(fields));
    const loaded = await fileSystem(folder).load();
    expect(loaded).toEqual(expect.objectContaining(fields));
    expect(Array.from(new Float32Array(loaded.weightData as ArrayBuffer))).toEqual([4, 5, 6]);
  });

  it('no weights at all: an empty weights file named by the sha256 of nothing, and an empty manifest', async () => {
    const folder = scratch.folder('no-weights');
    const result = await fileSystem(folder).save({modelTopology: {class_name: 'Sequential'}});
    // sha256 of no bytes: e3b0c442 98fc1c14 ...
    expect(fs.readdirSync(folder).sort()).toEqual(['model.json', 'weights-e3b0c44298fc1c14.bin']);
    expect(fs.statSync(path.join(folder, 'weights-e3b0c44298fc1c14.bin')).size).toBe(0);
    expect(readJson(path.join(folder, 'model.json')).weightsManifest).toEqual([{paths: ['weights-e3b0c44298fc1c14.bin'], weights: []}]);
    expect(result.modelArtifactsInfo.weightSpecsBytes).toBe(2);  // "[]"
    expect(result.modelArtifactsInfo.weightDataBytes).toBe(0);
  });
});

describe('FileSystemIO.save: failures leave the previous model in place', () => {
  /** A folder with a model saved (values 1, 2, 3), and its snapshot. */
  async function savedModel(name: string): Promise<{folder: string; before: {[name: string]: string}}> {
    const folder = scratch.folder(name);
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    return {folder, before: snapshot(folder)};
  }

  it('the model folder cannot be created: said in words, nothing created', async () => {
    const folder = path.join(scratch.folder('mkdir-fails'), 'model');
    jest.spyOn(nodeFs, 'mkdirSync').mockImplementation(() => {
      throw errno('ENOSPC');
    });
    await expect(fileSystem(folder).save(artifacts([1, 2, 3]))).rejects.toThrow(`Cannot create the model folder ${folder}: the disk is full`);
    expect(fs.existsSync(folder)).toBe(false);
  });

  it('the weights file\'s temporary file cannot be created: the weights file named, in words; no file left, no lock', async () => {
    const {folder, before} = await savedModel('open-fails');
    const open = nodeFs.openSync;
    jest.spyOn(nodeFs, 'openSync').mockImplementation((file, flags, mode) => {
      if (flags === 'wx' && /\.weights-[0-9a-f]{16}\.bin\.\d+-[0-9a-f]+\.tmp$/.test(String(file))) throw errno('ENOSPC');
      return open(file, flags, mode);
    });
    const name = weightsNameOf(Buffer.from(new Float32Array([7, 8, 9]).buffer));
    await expect(fileSystem(folder).save(artifacts([7, 8, 9]))).rejects.toThrow(`Cannot write ${path.join(folder, name)}: the disk is full`);
    expect(snapshot(folder)).toEqual(before);
  });

  it('model.json cannot be written (disk full): the temporary file removed, the new weights file too', async () => {
    const {folder, before} = await savedModel('write-fails');
    const write = nodeFs.writeFileSync;
    jest.spyOn(nodeFs, 'writeFileSync').mockImplementation((file, data, options) => {
      if (typeof file === 'number' && typeof data === 'string' && data.includes('"modelTopology"')) throw errno('ENOSPC');
      return write(file, data, options);
    });
    const fdsBefore = openFds();
    await expect(fileSystem(folder).save(artifacts([7, 8, 9]))).rejects.toThrow(`Cannot write ${path.join(folder, 'model.json')}: the disk is full`);
    expect(openFds()).toBe(fdsBefore);
    expect(snapshot(folder)).toEqual(before);
  });

  it.each([['the new weights file', /^weights-[0-9a-f]{16}\.bin$/], ['model.json', /^model\.json$/]])(
      'the rename of %s itself fails: an error naming it, in words; the previous model in place, whole and loadable', async (_what, target) => {
        const {folder, before} = await savedModel('swap-fails');
        const rename = nodeFs.renameSync;
        const renamed: string[] = [];
        jest.spyOn(nodeFs, 'renameSync').mockImplementation((from, to) => {
          if (target.test(path.basename(String(to)))) throw errno('EIO');
          renamed.push(path.basename(String(to)));
          rename(from, to);
        });
        const name = weightsNameOf(Buffer.from(new Float32Array([7, 8, 9]).buffer));
        const failed = target.test('model.json') ? 'model.json' : name;
        await expect(fileSystem(folder).save(artifacts([7, 8, 9]))).rejects.toThrow(
            `Cannot write ${path.join(folder, failed)}: an input/output error`);
        expect(renamed).toEqual(failed === 'model.json' ? [name] : []);
        jest.restoreAllMocks();
        expect(snapshot(folder)).toEqual(before);
        const loaded = await fileSystem(folder).load();
        expect(Array.from(new Float32Array(loaded.weightData as ArrayBuffer))).toEqual([1, 2, 3]);
      });

  it('a failure reported by the hook at a rename is named with the file it concerns', async () => {
    const {folder, before} = await savedModel('rename-fails');
    setSaveStepHookForTest(step => {
      if (step === 'model-json-written') throw new Error('simulated rename failure');
    });
    await expect(fileSystem(folder).save(artifacts([7, 8, 9]))).rejects.toThrow(
        new RegExp(`^Cannot write ${path.join(folder, 'model.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: simulated rename failure$`));
    expect(snapshot(folder)).toEqual(before);
  });

  it('the lock was taken by another process before model.json\'s rename: refused, the previous model in place', async () => {
    const {folder, before} = await savedModel('lock-taken');
    const lock = path.join(folder, '.model.lock');
    setSaveStepHookForTest(step => {
      if (step !== 'model-json-written') return;
      fs.writeFileSync(`${lock}.new`, JSON.stringify({pid: 1, host: 'other', time: 't'}));
      fs.renameSync(`${lock}.new`, lock);  // another process judged our lock stale and took it
    });
    await expect(fileSystem(folder).save(artifacts([7, 8, 9]))).rejects.toThrow(
        `Cannot save a model to ${folder}: another process took its lock ${lock} meanwhile`);
    fs.rmSync(lock);  // the other process's lock: left alone by our release
    expect(snapshot(folder)).toEqual(before);
  });

  it('after a failed first save into new folders, the ones it created are removed, not the empty parent that was there', async () => {
    const parent = scratch.folder('created');
    setSaveStepHookForTest(step => {
      if (step === 'weights-written') throw new Error('simulated');
    });
    await expect(fileSystem(path.join(parent, 'a', 'b')).save(artifacts([1, 2, 3]))).rejects.toThrow(/simulated/);
    expect(fs.readdirSync(parent)).toEqual([]);
  });
  it('after a failed first save whose folder another process removed meanwhile, the parents it created are removed too', async () => {
    const parent = scratch.folder('created-removed');
    const folder = path.join(parent, 'a', 'b');
    setSaveStepHookForTest(step => {
      if (step === 'weights-written') throw new Error('simulated');
    });
    const rmdir = nodeFs.rmdirSync;
    jest.spyOn(nodeFs, 'rmdirSync').mockImplementation((target, options) => {
      if (target === folder) {
        fs.rmSync(folder, {recursive: true});  // the other process
        throw errno('ENOENT');
      }
      return rmdir(target, options);
    });
    await expect(fileSystem(folder).save(artifacts([1, 2, 3]))).rejects.toThrow(/simulated/);
    expect(fs.readdirSync(parent)).toEqual([]);
  });
});

describe('FileSystemIO.save: durability, and what it cleans up', () => {
  it('flushes the folder (its fsync) after model.json is renamed into place; leaves no file descriptor open', async () => {
    const folder = scratch.folder('fsync');
    const log: string[] = [];
    const fdNames = new Map<number, string>();
    const open = nodeFs.openSync;
    const fsync = nodeFs.fsyncSync;
    const rename = nodeFs.renameSync;
    jest.spyOn(nodeFs, 'openSync').mockImplementation((file, flags, mode) => {
      const fd = open(file, flags, mode);
      fdNames.set(fd, path.basename(String(file)));
      return fd;
    });
    jest.spyOn(nodeFs, 'fsyncSync').mockImplementation(fd => {
      log.push(`fsync ${fdNames.get(fd as number)}`);
      fsync(fd);
    });
    jest.spyOn(nodeFs, 'renameSync').mockImplementation((from, to) => {
      log.push(`rename to ${path.basename(String(to))}`);
      rename(from, to);
    });
    const before = openFds();
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    expect(openFds()).toBe(before);
    const renamed = log.indexOf('rename to model.json');
    expect(renamed).toBeGreaterThan(0);
    expect(log.slice(renamed + 1)).toContain(`fsync ${path.basename(folder)}`);
  });

  it('removes the temporary files of savers that have died; keeps those of live ones and its own', async () => {
    const folder = scratch.folder('dead-savers');
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    const dead = deadPid();
    const names = {
      deadJson: `.model.json.${dead}-ab.tmp`, deadWeights: `.weights-0123456789abcdef.bin.${dead}-cd.tmp`,
      live: `.model.json.${process.ppid}-ab.tmp`, own: `.weights.bin.${process.pid}-ef.tmp`,
    };
    for (const name of Object.values(names)) fs.writeFileSync(path.join(folder, name), 'partial');
    await fileSystem(folder).save(artifacts([4, 5, 6]));
    const left = fs.readdirSync(folder);
    expect(left).not.toContain(names.deadJson);
    expect(left).not.toContain(names.deadWeights);
    expect(left).toEqual(expect.arrayContaining([names.live, names.own]));
  });

  it('keeps the temporary file of a saver that exists under another user (kill says EPERM)', async () => {
    const folder = scratch.folder('eperm-saver');
    const dead = deadPid();
    const name = `.model.json.${dead}-ab.tmp`;
    fs.writeFileSync(path.join(folder, name), 'partial');
    jest.spyOn(process, 'kill').mockImplementation(() => {
      throw errno('EPERM');
    });
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    expect(fs.readdirSync(folder)).toContain(name);
  });

  it('a dead saver\'s temporary file that is gone by the time it is removed (another cleanup was first): the save goes on', async () => {
    const folder = scratch.folder('dead-saver-gone');
    const temp = path.join(folder, `.model.json.${deadPid()}-ab.tmp`);
    fs.writeFileSync(temp, 'partial');
    const rm = nodeFs.rmSync;
    jest.spyOn(nodeFs, 'rmSync').mockImplementation((file, options) => {
      if (file === temp && fs.existsSync(temp)) fs.unlinkSync(temp);  // removed between the listing and this call
      return rm(file, options);
    });
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    expect(readJson(path.join(folder, 'model.json')).modelTopology.values).toEqual([1, 2, 3]);
    expect(fs.existsSync(temp)).toBe(false);
  });

  it('a dead saver\'s temporary file that cannot be removed: the save fails naming it, in words, and writes nothing', async () => {
    const folder = scratch.folder('rm-fails');
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    const temp = path.join(folder, `.model.json.${deadPid()}-ab.tmp`);
    fs.writeFileSync(temp, 'partial');
    const before = snapshot(folder);
    const rm = nodeFs.rmSync;
    jest.spyOn(nodeFs, 'rmSync').mockImplementation((file, options) => {
      if (file === temp) throw errno('EBUSY');
      return rm(file, options);
    });
    await expect(fileSystem(folder).save(artifacts([4, 5, 6]))).rejects.toThrow(
        `Cannot remove the temporary file ${temp}: it is busy (in use, or a mount point)`);
    expect(snapshot(folder)).toEqual(before);
  });
});

describe('FileSystemIO.load: a save replacing the model meanwhile', () => {
  /** Two saved models' model.json texts, and a folder holding the first. */
  async function twoModels(name: string): Promise<{folder: string; modelJson: string; first: string; second: string}> {
    const folder = scratch.folder(name);
    await fileSystem(folder).save(artifacts([1, 2, 3]));
    const modelJson = path.join(folder, 'model.json');
    const first = fs.readFileSync(modelJson, 'utf8');
    await fileSystem(folder).save(artifacts([4, 5, 6]));
    const second = fs.readFileSync(modelJson, 'utf8');
    return {folder, modelJson, first, second};
  }

  /** Spies on reads of the weights files: `onRead(file)` runs before each, and the reads are counted. */
  function onWeightsRead(onRead: (file: string) => void): string[] {
    const reads: string[] = [];
    const read = nodeFs.readFileSync;
    jest.spyOn(nodeFs, 'readFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, options?: object) => {
      if (typeof file === 'string' && path.basename(file).startsWith('weights')) {
        reads.push(path.basename(file));
        if (reads.length > 20) throw new Error('read the weights more than 20 times');
        onRead(file);
      }
      return read(file, options as {encoding: null});
    }) as typeof fs.readFileSync);
    return reads;
  }

  it('the listed weights file is gone because model.json was replaced: the new model is read', async () => {
    const {folder, modelJson, first, second} = await twoModels('replaced');
    fs.writeFileSync(modelJson, first);  // lists the first weights file, deleted by the second save
    const reads = onWeightsRead(() => {
      if (fs.readFileSync(modelJson, 'utf8') === first) fs.writeFileSync(modelJson, second);
    });
    const loaded = await fileSystem(folder).load();
    expect(Array.from(new Float32Array(loaded.weightData as ArrayBuffer))).toEqual([4, 5, 6]);
    expect(reads).toHaveLength(2);
  });

  it('the listed weights file is missing and model.json unchanged: the error at once, after one read', async () => {
    const {folder, modelJson, first} = await twoModels('missing');
    fs.writeFileSync(modelJson, first);
    const reads = onWeightsRead(() => undefined);
    const weights = path.join(folder, JSON.parse(first).weightsManifest[0].paths[0]);
    await expect(fileSystem(folder).load()).rejects.toThrow(`Weights file not found: ${weights} (listed in ${modelJson})`);
    expect(reads).toHaveLength(1);
  });

  it('model.json replaced at every attempt, each listing a missing file: gives up after 5 attempts', async () => {
    const {folder, modelJson, first} = await twoModels('always-replaced');
    const missing = (i: number) => JSON.stringify({...JSON.parse(first), weightsManifest: [{paths: [`weights-${i}.bin`], weights: []}]});
    fs.writeFileSync(modelJson, missing(0));
    const reads = onWeightsRead(() => fs.writeFileSync(modelJson, missing(reads.length)));
    await expect(fileSystem(folder).load()).rejects.toThrow(`Weights file not found: ${path.join(folder, 'weights-4.bin')} (listed in ${modelJson})`);
    expect(reads).toEqual(['weights-0.bin', 'weights-1.bin', 'weights-2.bin', 'weights-3.bin', 'weights-4.bin']);
  });

  it('a truncated weights file is an error even when model.json changes meanwhile: no retry', async () => {
    const {folder, modelJson, second} = await twoModels('truncated');
    const weights = path.join(folder, JSON.parse(second).weightsManifest[0].paths[0]);
    fs.truncateSync(weights, 8);
    const reads = onWeightsRead(() => fs.writeFileSync(modelJson, `${second} `));
    await expect(fileSystem(folder).load()).rejects.toThrow(
        `Weights file ${weights} is truncated: ${modelJson} expects 12 bytes, the files hold 8`);
    expect(reads).toHaveLength(1);
  });
});

describe('FileSystemIO.load: corrupt model files, each named', () => {
  function modelJsonWith(name: string, content: string): string {
    const folder = scratch.folder(name);
    fs.writeFileSync(path.join(folder, 'model.json'), content);
    return folder;
  }

  it.each([['null', 'null'], ['a string', '"text"'], ['a number', '7']])('model.json holding %s is not a model', async (_what, content) => {
    const folder = modelJsonWith('not-object', content);
    await expect(fileSystem(folder).load()).rejects.toThrow(
        `${path.join(folder, 'model.json')} has no \`modelTopology\`: it is not a tfjs model.json`);
  });

  it.each([['missing', {}], ['an object', {weightsManifest: {paths: []}}]])('a weightsManifest %s is refused', async (_what, extra) => {
    const folder = modelJsonWith('manifest', JSON.stringify({modelTopology: {}, ...extra}));
    await expect(fileSystem(folder).load()).rejects.toThrow(
        `${path.join(folder, 'model.json')} has an invalid \`weightsManifest\`: expected an array`);
  });

  it('model.json below a file: not found; model.json that is a folder: said in words', async () => {
    const file = path.join(scratch.folder('below-file'), 'f');
    fs.writeFileSync(file, 'x');
    await expect(fileSystem(path.join(file, 'model.json')).load()).rejects.toThrow(`Model file not found: ${path.join(file, 'model.json')}`);
    const folder = scratch.folder('json-folder');
    fs.mkdirSync(path.join(folder, 'model.json'));
    await expect(fileSystem(folder).load()).rejects.toThrow(`Cannot read ${path.join(folder, 'model.json')}: it is a folder`);
  });

  it('a weights path that is a folder: said in words', async () => {
    const folder = modelJsonWith('weights-folder', JSON.stringify({modelTopology: {}, weightsManifest: [{paths: ['store'], weights: []}]}));
    fs.mkdirSync(path.join(folder, 'store'));
    await expect(fileSystem(folder).load()).rejects.toThrow(
        `Cannot read the weights file ${path.join(folder, 'store')} (listed in ${path.join(folder, 'model.json')}): it is a folder`);
  });

  it.each(['.', ''])('a weights path naming the model folder itself (%j) is refused as not inside it (was: "a symbolic link")', async listed => {
    const folder = modelJsonWith('weights-is-folder', JSON.stringify({modelTopology: {}, weightsManifest: [{paths: [listed], weights: []}]}));
    await expect(fileSystem(folder).load()).rejects.toThrow(
        `${path.join(folder, 'model.json')} names a weights path outside the model's folder ${folder}, which is refused. ` +
        `Received: ${JSON.stringify(listed)}`);
  });

  it('quantized weights take 1 (uint8) or 2 (uint16, float16) bytes a value', async () => {
    for (const [dtype, bytes] of [['uint8', 1], ['uint16', 2], ['float16', 2]] as const) {
      const spec = {name: 'w', shape: [2, 3], dtype: 'float32', quantization: {dtype, scale: 1, min: 0}};
      const folder = modelJsonWith(`quantized-${dtype}`, JSON.stringify({modelTopology: {}, weightsManifest: [{paths: ['w.bin'], weights: [spec]}]}));
      fs.writeFileSync(path.join(folder, 'w.bin'), Buffer.alloc(6 * bytes));
      const loaded = await fileSystem(folder).load();
      expect((loaded.weightData as ArrayBuffer).byteLength).toBe(6 * bytes);
      fs.writeFileSync(path.join(folder, 'w.bin'), Buffer.alloc(6 * bytes + 1));
      await expect(fileSystem(folder).load()).rejects.toThrow(
          `Weights file ${path.join(folder, 'w.bin')} is too long: ${path.join(folder, 'model.json')} expects ${6 * bytes} bytes, the files hold ${6 * bytes + 1}`);
    }
  });

  it('a string weight is refused, named', async () => {
    const spec = {name: 'vocab', shape: [2], dtype: 'string'};
    const folder = modelJsonWith('string-weight', JSON.stringify({modelTopology: {}, weightsManifest: [{paths: ['w.bin'], weights: [spec]}]}));
    fs.writeFileSync(path.join(folder, 'w.bin'), Buffer.alloc(8));
    await expect(fileSystem(folder).load()).rejects.toThrow('Weight vocab has dtype string, which this loader does not read');
  });

  it('the model folder cannot be resolved while checking a weights file: said in words', async () => {
    const folder = modelJsonWith('realpath-fails', JSON.stringify({modelTopology: {}, weightsManifest: [{paths: ['w.bin'], weights: []}]}));
    fs.writeFileSync(path.join(folder, 'w.bin'), '');
    const realpath = nodeFs.realpathSync;
    jest.spyOn(nodeFs, 'realpathSync').mockImplementation(((file: fs.PathLike, options?: object) => {
      if (file === folder) throw errno('EACCES');
      return realpath(file, options as {encoding?: null});
    }) as typeof fs.realpathSync);
    await expect(fileSystem(folder).load()).rejects.toThrow(`Cannot read the model folder ${folder}: permission denied`);
  });
});
