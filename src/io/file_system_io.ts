/**
 * A file:// IOHandler with tfjs-node's on-disk layout (model.json + a weights file). A save
 * writes into the target folder itself and touches nothing there but the files it writes
 * and the weights files of the model it replaces; a load sees the old model or the new one.
 */
import {createHash} from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {invalidArgument, ValueError} from '../errors';
import {DEFAULT_LOCK_TIMEOUT_MS, FolderLock, lockFolder} from './folder_lock';
import {errorCode, fileError, fsErrorReason} from './fs_errors';
import {checkSaveTarget, isWeightsFile, MODEL_JSON, modelTempFilePid, SaveTargetOptions, tempNameFor} from './save_target';

type ModelArtifacts = tf.io.ModelArtifacts;
type SaveResult = tf.io.SaveResult;
type WeightsManifestConfig = tf.io.WeightsManifestConfig;
type IORouter = Parameters<typeof tf.io.registerSaveRouter>[0];

/** The steps of a save, in order, at which the test hook is called. */
export type SaveStep =
    'weights-written'|'weights-renamed'|'model-json-written'|'model-json-renamed'|'old-weights-deleted';

let saveStepHookForTest: ((step: SaveStep, file: string) => void)|null = null;
/**
 * Test hook: called at each step of a save with the file concerned; throwing from it makes
 * the save fail there (throwing at 'weights-written' is the weights rename failing, at
 * 'model-json-written' the model.json rename failing).
 */
export function setSaveStepHookForTest(hook: ((step: SaveStep, file: string) => void)|null): void {
  saveStepHookForTest = hook;
}

/** How often a load starts again when a save replaced the model while it read it. */
const LOAD_ATTEMPTS = 5;

/** 'file:///a/b' or 'file://a/b' -> '/a/b' or 'a/b'; a plain path stays as it is. */
function pathFromUrl(url: string): string {
  return url.startsWith('file://') ? url.slice('file://'.length) : url;
}

export interface FileSystemIOOptions extends SaveTargetOptions {
  /** How long a save waits for another save of the same folder to finish. Defaults to 30 s. */
  lockTimeoutMs?: number;
}

/**
 * An IOHandler that saves to and loads from a folder: `model.json` (topology, weights
 * manifest, training config, user metadata) and `weights-<hash>.bin`, in the layout tfjs-node
 * writes and reads. A URL may also name model.json itself when loading.
 */
export class FileSystemIO implements tf.io.IOHandler {
  readonly folder: string;
  private readonly modelJsonPath: string;
  /** The URL as given, when it names a .json file: loading reads it, saving refuses it. */
  private readonly jsonUrl: string|null;
  private readonly options: FileSystemIOOptions;

  constructor(url: string, options: FileSystemIOOptions = {}) {
    if (typeof url !== 'string' || pathFromUrl(url).trim() === '') {
      throw new ValueError(`Argument \`url\` must be a file:// URL or a path. Received: url=${JSON.stringify(url)}`);
    }
    const target = path.resolve(pathFromUrl(url));
    const namesJson = path.basename(target).endsWith('.json');
    this.jsonUrl = namesJson ? url : null;
    this.folder = namesJson ? path.dirname(target) : target;
    this.modelJsonPath = namesJson ? target : path.join(target, MODEL_JSON);
    this.options = options;
  }

  /**
   * Saves into the folder (created if missing; an existing one keeps its mode), after
   * checkSaveTarget: the weights go to `weights-<first 16 hex of their sha256>.bin`, then
   * model.json, each written to a hidden temporary file, flushed and renamed into place, so
   * model.json switches from the old model to the new one in one step. Then the weights
   * files that model.json no longer lists are deleted; nothing else in the folder is
   * touched. Saves to one folder, from any process, take turns (a lock file in the folder).
   * A failure before model.json is renamed leaves the previous model as it was.
   */
  async save(artifacts: ModelArtifacts): Promise<SaveResult> {
    if (this.jsonUrl != null) {
      throw invalidArgument('url', 'a folder to save model.json and its weights in, not a path ending in .json', this.jsonUrl);
    }
    if (artifacts.modelTopology instanceof ArrayBuffer) {
      throw new ValueError('FileSystemIO saves Layers models only; it received a binary (graph) model topology.');
    }
    const folder = this.folder;
    checkSaveTarget(folder, this.options);
    const weightData = Buffer.from(artifacts.weightData == null ? new ArrayBuffer(0) :
        tf.io.concatenateArrayBuffers(Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData]));
    const weightsName = `weights-${createHash('sha256').update(weightData).digest('hex').slice(0, 16)}.bin`;
    const manifest: WeightsManifestConfig = [{paths: [weightsName], weights: artifacts.weightSpecs ?? []}];
    const modelJson: {[key: string]: unknown} = {
      modelTopology: artifacts.modelTopology,
      format: artifacts.format ?? 'layers-model',
      generatedBy: artifacts.generatedBy,
      convertedBy: artifacts.convertedBy ?? null,
      weightsManifest: manifest,
    };
    if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
    if (artifacts.userDefinedMetadata != null) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
    if (artifacts.signature != null) modelJson.signature = artifacts.signature;
    if (artifacts.modelInitializer != null) modelJson.modelInitializer = artifacts.modelInitializer;

    let created: string|undefined;
    try {
      created = fs.mkdirSync(folder, {recursive: true});
    } catch (error) {
      throw fileError('create the model folder', folder, error);
    }
    try {
      const lock = await lockFolder(folder, this.options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
      try {
        checkSaveTarget(folder, this.options);  // again, now that no other save can change it
        removeDeadSaversTempFiles(folder);
        writeModelFiles(folder, weightsName, weightData, JSON.stringify(modelJson), lock);
      } finally {
        lock.release();
      }
    } catch (error) {
      if (created != null) removeEmptyFolders(folder, created);
      throw error;
    }
    return {
      modelArtifactsInfo: {
        dateSaved: new Date(),
        modelTopologyType: 'JSON',
        modelTopologyBytes: Buffer.byteLength(JSON.stringify(artifacts.modelTopology)),
        weightSpecsBytes: Buffer.byteLength(JSON.stringify(artifacts.weightSpecs ?? [])),
        weightDataBytes: weightData.byteLength,
      },
    };
  }

  /**
   * Reads model.json and the weights files it lists, naming the file at fault in every error.
   * When a listed weights file is missing because a save replaced model.json meanwhile, it
   * reads the new model.json and starts again, so it returns the old model or the new one.
   */
  async load(): Promise<ModelArtifacts> {
    const modelJsonPath = this.modelJsonPath;
    for (let attempt = 1; ; attempt++) {
      const text = readModelJson(modelJsonPath);
      let modelJson: tf.io.ModelJSON;
      try {
        modelJson = JSON.parse(text);
      } catch (error) {
        throw new ValueError(`Cannot parse ${modelJsonPath} as JSON: ${(error as Error).message}`);
      }
      // null has no properties; any other JSON value that is not an object has no modelTopology either.
      if ((modelJson as tf.io.ModelJSON|null)?.modelTopology == null) {
        throw new ValueError(`${modelJsonPath} has no \`modelTopology\`: it is not a tfjs model.json`);
      }
      let weights: [tf.io.WeightsManifestEntry[], ArrayBuffer];
      try {
        weights = readWeights(modelJsonPath, modelJson.weightsManifest);
      } catch (error) {
        const replaced = error instanceof MissingWeightsError && attempt < LOAD_ATTEMPTS &&
            readModelJsonOrNull(modelJsonPath) !== text;
        if (replaced) continue;
        throw error;
      }
      return tf.io.getModelArtifactsForJSON(modelJson, async () => weights);
    }
  }
}

/** Writes the weights, then model.json, each durably and atomically, then deletes the old weights files. */
function writeModelFiles(folder: string, weightsName: string, weightData: Buffer, modelJsonText: string, lock: FolderLock): void {
  const weightsFile = path.join(folder, weightsName);
  const modelJsonFile = path.join(folder, MODEL_JSON);
  // The same weights (a retrain that reproduces them) leave the file as it is.
  const existed = fs.existsSync(weightsFile);
  let committed = false;
  try {
    if (!sameContent(weightsFile, weightData)) replaceFile(weightsFile, weightData, 'weights');
    if (!sameContent(modelJsonFile, Buffer.from(modelJsonText))) {
      replaceFile(modelJsonFile, modelJsonText, 'model-json', lock, () => (committed = true));
    }
  } catch (error) {
    // Until model.json is renamed the previous model is in place: leave the folder as it was.
    if (!committed && !existed) fs.rmSync(weightsFile, {force: true});
    throw error;
  }
  syncFolder(folder);
  // The new model is saved whole; an old weights file that cannot be deleted goes with the next save.
  for (const name of listOrEmpty(folder)) {
    if (name === weightsName || !isWeightsFile(name)) continue;
    try {
      fs.unlinkSync(path.join(folder, name));
    } catch {
      // Left for the next save; the model is saved.
    }
  }
  saveStepHookForTest?.('old-weights-deleted', folder);
}

/**
 * Writes `data` to a hidden temporary file beside `file`, flushes it to disk and renames it
 * over `file`; on failure the temporary file is removed and `file` is as it was.
 */
function replaceFile(
    file: string, data: Buffer|string, step: 'weights'|'model-json', lock?: FolderLock, renamed?: () => void): void {
  const temp = path.join(path.dirname(file), tempNameFor(path.basename(file)));
  try {
    const fd = fs.openSync(temp, 'wx', 0o644);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    saveStepHookForTest?.(`${step}-written`, file);
    lock?.assertHeld();
    fs.renameSync(temp, file);
  } catch (error) {
    fs.rmSync(temp, {force: true});
    throw fileError('write', file, error);
  }
  renamed?.();
  saveStepHookForTest?.(`${step}-renamed`, file);
}

/** Whether `file` exists and holds exactly `data`. */
function sameContent(file: string, data: Buffer): boolean {
  try {
    if (fs.statSync(file).size !== data.byteLength) return false;
    return fs.readFileSync(file).equals(data);
  } catch {
    return false;
  }
}

/**
 * After a failed first save: removes `folder` and its parents up to `created`, those that are empty (one that another
 * process removed meanwhile counts as removed).
 */
function removeEmptyFolders(folder: string, created: string): void {
  for (let current = folder; ; current = path.dirname(current)) {
    try {
      fs.rmdirSync(current);  // fails, harmlessly, on a folder that is not empty
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') return;
    }
    if (current === created || path.dirname(current) === current) return;
  }
}

/** Flushes the folder's entries (the renames) to disk, where the platform allows it. */
function syncFolder(folder: string): void {
  try {
    const fd = fs.openSync(folder, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Not supported for folders on this platform: the renames are still atomic.
  }
}

/** Temporary files left by saves whose process has died (saves to one folder take turns, under the lock). */
function removeDeadSaversTempFiles(folder: string): void {
  for (const name of listOrEmpty(folder)) {
    const pid = modelTempFilePid(name);
    if (pid == null || pid === process.pid || isAlive(pid)) continue;
    try {
      fs.rmSync(path.join(folder, name), {force: true});
    } catch (error) {
      throw fileError('remove the temporary file', path.join(folder, name), error);
    }
  }
}

/** The folder's entries, or none when it cannot be listed (then there is nothing to clean up). */
function listOrEmpty(folder: string): string[] {
  try {
    return fs.readdirSync(folder);
  } catch {
    return [];
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

function readModelJson(modelJsonPath: string): string {
  try {
    return fs.readFileSync(modelJsonPath, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') {
      throw new ValueError(`Model file not found: ${modelJsonPath}`);
    }
    throw fileError('read', modelJsonPath, error);
  }
}

function readModelJsonOrNull(modelJsonPath: string): string|null {
  try {
    return fs.readFileSync(modelJsonPath, 'utf8');
  } catch {
    return null;
  }
}

/** A listed weights file that does not exist (a concurrent save may have replaced the model). */
class MissingWeightsError extends ValueError {
  constructor(message: string) {
    super(message);
    Object.setPrototypeOf(this, MissingWeightsError.prototype);  // ValueError sets its own
  }
}

/** The weights that `manifest` lists, read from the files beside model.json. */
function readWeights(modelJsonPath: string, manifest: unknown): [tf.io.WeightsManifestEntry[], ArrayBuffer] {
  if (!Array.isArray(manifest)) {
    throw new ValueError(`${modelJsonPath} has an invalid \`weightsManifest\`: expected an array`);
  }
  const folder = path.dirname(modelJsonPath);
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: Buffer[] = [];
  for (const group of manifest as tf.io.WeightsManifestConfig) {
    let groupBytes = 0;
    for (const relative of group.paths) {
      const file = resolveInside(folder, relative, modelJsonPath);
      let data: Buffer;
      try {
        data = fs.readFileSync(file);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') {
          throw new MissingWeightsError(`Weights file not found: ${file} (listed in ${modelJsonPath})`);
        }
        throw new ValueError(`Cannot read the weights file ${file} (listed in ${modelJsonPath}): ${fsErrorReason(error)}`);
      }
      groupBytes += data.byteLength;
      buffers.push(data);
    }
    const expected = group.weights.reduce((sum, spec) => sum + weightBytes(spec), 0);
    if (groupBytes !== expected) {
      throw new ValueError(
          `Weights file ${resolveInside(folder, group.paths[group.paths.length - 1], modelJsonPath)} is ` +
          `${groupBytes < expected ? 'truncated' : 'too long'}: ${modelJsonPath} expects ${expected} bytes, ` +
          `the files hold ${groupBytes}`);
    }
    specs.push(...group.weights);
  }
  const joined = Buffer.concat(buffers);
  return [specs, joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength) as ArrayBuffer];
}

/** Bytes that a weight occupies in the .bin, after any quantization. */
function weightBytes(spec: tf.io.WeightsManifestEntry): number {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  if (spec.quantization != null) {
    const bytes = {uint8: 1, uint16: 2, float16: 2}[spec.quantization.dtype];
    return size * bytes;
  }
  if (spec.dtype === 'string') {
    throw new ValueError(`Weight ${spec.name} has dtype string, which this loader does not read`);
  }
  return size * 4;  // float32, int32 and bool are all stored in 4 bytes
}

/**
 * Resolves a manifest path and refuses one that leads outside the model's folder, by its
 * name or, through symbolic links, by its real path.
 */
function resolveInside(folder: string, relative: string, modelJsonPath: string): string {
  const file = path.resolve(folder, relative);
  // The folder itself ('.', '') is no file inside it either.
  if (path.isAbsolute(relative) || !file.startsWith(folder + path.sep)) {
    throw new ValueError(
        `${modelJsonPath} names a weights path outside the model's folder ${folder}, which is refused. ` +
        `Received: ${JSON.stringify(relative)}`);
  }
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    return file;  // missing: reading it says so
  }
  let realFolder: string;
  try {
    realFolder = fs.realpathSync(folder);
  } catch (error) {
    throw fileError('read the model folder', folder, error);
  }
  if (!real.startsWith(realFolder + path.sep)) {
    throw new ValueError(
        `${modelJsonPath} lists the weights file ${file}, a symbolic link that leads outside the model's folder ` +
        `(to ${real}), which is refused`);
  }
  return file;
}

/** The parts of tfjs-node's `NodeFileSystem` handler that the takeover below uses. */
interface NodeFileSystemLike extends tf.io.IOHandler {
  path: string|string[];
  loadJSONModel: unknown;
  createOrVerifyDirectory: unknown;
}

function isNodeFileSystem(handler: tf.io.IOHandler): handler is NodeFileSystemLike {
  const candidate = handler as Partial<NodeFileSystemLike>;
  return (typeof candidate.path === 'string' || Array.isArray(candidate.path)) &&
      typeof candidate.loadJSONModel === 'function' && typeof candidate.createOrVerifyDirectory === 'function';
}

/** Marks a NodeFileSystem prototype whose save and load are already this library's. */
const TAKEN_OVER = Symbol.for('tfjs-attention.nodeFileSystemTakenOver');

/**
 * Makes tfjs-node's file:// handler run this library's FileSystemIO for a single path (a folder to save
 * into, a model.json or its folder to load): the atomic save, the checks of the target and of symbolic
 * links, and errors that name the file. tfjs' router registry has no priorities and refuses two handlers
 * for one URL, so the library cannot answer file:// beside tfjs-node; it changes what tfjs-node's answer
 * does instead, on its class (the handler object is made inside tfjs). A pair of paths (a binary graph
 * model: .pb and weights manifest) keeps tfjs-node's own code.
 */
function takeOverNodeFileSystem(handler: NodeFileSystemLike): void {
  const proto = Object.getPrototypeOf(handler) as NodeFileSystemLike & {[TAKEN_OVER]?: boolean};
  if (proto[TAKEN_OVER]) return;
  const {save, load} = proto;
  if (typeof save !== 'function' || typeof load !== 'function') return;
  proto.save = function(this: NodeFileSystemLike, artifacts: ModelArtifacts): Promise<SaveResult> {
    return typeof this.path === 'string' ? new FileSystemIO(this.path).save(artifacts) : save.call(this, artifacts);
  };
  proto.load = function(this: NodeFileSystemLike): Promise<ModelArtifacts> {
    return typeof this.path === 'string' ? new FileSystemIO(this.path).load() : load.call(this);
  };
  Object.defineProperty(proto, TAKEN_OVER, {value: true});
}

/** True while the router asks tfjs which other routers answer a URL (it is one of them). */
let probing = false;

/**
 * The `tf.io` router for file:// URLs. Alone (plain tfjs in Node) it answers with a FileSystemIO. When
 * another router answers too, tfjs would refuse both ("Found more than one (2) save handlers"), so it
 * steps aside; when that router is tfjs-node's, its handler is taken over (above) so that saves and loads
 * still run this library's code.
 */
function fileSystemRouter(url: string|string[]): tf.io.IOHandler|null {
  if (probing || typeof url !== 'string' || !url.startsWith('file://')) return null;  // a pair of paths included
  let others: tf.io.IOHandler[];
  probing = true;
  try {
    others = tf.io.getLoadHandlers(url);  // tfjs-node registers its router for saving and loading alike
  } finally {
    probing = false;
  }
  if (others.length === 0) return new FileSystemIO(url);
  for (const handler of others) {
    if (isNodeFileSystem(handler)) takeOverNodeFileSystem(handler);
  }
  return null;
}

/**
 * The tfjs instances that have the routers, shared by every copy of this package in the
 * process: two copies on one tfjs (say, two versions installed side by side) would otherwise
 * both answer file:// and tfjs refuses to save with "Found more than one (2) save handlers".
 */
const ROUTED_KEY = Symbol.for('tfjs-attention.fileSystemRouters');
/** Registers the file:// save and load routers once per tfjs instance. Called when the package is imported. */
export function registerFileSystemRouters(): void {
  const holder = globalThis as unknown as {[ROUTED_KEY]?: WeakSet<object>};
  const routed = holder[ROUTED_KEY] ??= new WeakSet<object>();
  if (routed.has(tf.io)) return;
  routed.add(tf.io);
  // tfjs' IORouter type says it returns a handler, but its registry skips routers that return null.
  tf.io.registerSaveRouter(fileSystemRouter as IORouter);
  tf.io.registerLoadRouter(fileSystemRouter as IORouter);
}

/** Creates the IOHandler for a folder or file:// URL, whatever backend is loaded. */
export function fileSystem(url: string, options?: FileSystemIOOptions): FileSystemIO {
  return new FileSystemIO(url, options);
}
