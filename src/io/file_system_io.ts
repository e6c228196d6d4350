/** A file:// IOHandler with tfjs-node's on-disk format (model.json + weights.bin), atomic on save. */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import {invalidArgument, ValueError} from '../errors';

const MODEL_JSON = 'model.json';
const WEIGHTS_BIN = 'weights.bin';

type ModelArtifacts = tf.io.ModelArtifacts;
type SaveResult = tf.io.SaveResult;
type WeightsManifestConfig = tf.io.WeightsManifestConfig;
type IORouter = Parameters<typeof tf.io.registerSaveRouter>[0];

let afterFileWrittenForTest: ((file: string) => void)|null = null;
/** Test hook: called after each file is written into the temporary folder, before the swap. */
export function setAfterFileWrittenForTest(hook: ((file: string) => void)|null): void {
  afterFileWrittenForTest = hook;
}

/** 'file:///a/b' or 'file://a/b' -> '/a/b' or 'a/b'; a plain path stays as it is. */
function pathFromUrl(url: string): string {
  return url.startsWith('file://') ? url.slice('file://'.length) : url;
}

/**
 * An IOHandler that saves to and loads from a folder: `model.json` (topology, weights
 * manifest, training config, user metadata) and `weights.bin`, the same files tfjs-node writes.
 * A URL may also name model.json itself when loading.
 */
export class FileSystemIO implements tf.io.IOHandler {
  readonly folder: string;
  private readonly modelJsonPath: string;
  /** The URL as given, when it names a .json file: loading reads it, saving refuses it. */
  private readonly jsonUrl: string|null;

  constructor(url: string) {
    if (typeof url !== 'string' || pathFromUrl(url).trim() === '') {
      throw new ValueError(`Argument \`url\` must be a file:// URL or a path. Received: url=${JSON.stringify(url)}`);
    }
    const target = path.resolve(pathFromUrl(url));
    const namesJson = path.basename(target).endsWith('.json');
    this.jsonUrl = namesJson ? url : null;
    this.folder = namesJson ? path.dirname(target) : target;
    this.modelJsonPath = namesJson ? target : path.join(target, MODEL_JSON);
  }

  /**
   * Writes the model into a temporary folder beside the target, then swaps it in with
   * renames, so a failure part way leaves the previous model as it was. Other files in an
   * existing target folder (plots, notes) are carried over. A URL that names a .json file
   * is refused: saving writes a folder, and would replace the one that holds that file.
   */
  async save(artifacts: ModelArtifacts): Promise<SaveResult> {
    if (this.jsonUrl != null) {
      throw invalidArgument('url', 'a folder to save model.json and weights.bin in, not a path ending in .json', this.jsonUrl);
    }
    if (artifacts.modelTopology instanceof ArrayBuffer) {
      throw new ValueError('FileSystemIO saves Layers models only; it received a binary (graph) model topology.');
    }
    const parent = path.dirname(this.folder);
    fs.mkdirSync(parent, {recursive: true});
    const temp = fs.mkdtempSync(path.join(parent, `.${path.basename(this.folder)}.saving-`));
    fs.chmodSync(temp, 0o755);  // mkdtemp makes it private; a saved model is an ordinary folder
    try {
      const weightData = artifacts.weightData == null ? new ArrayBuffer(0) :
          tf.io.concatenateArrayBuffers(Array.isArray(artifacts.weightData) ? artifacts.weightData : [artifacts.weightData]);
      const manifest: WeightsManifestConfig = [{paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? []}];
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

      writeFileDurably(path.join(temp, WEIGHTS_BIN), Buffer.from(weightData));
      afterFileWrittenForTest?.(WEIGHTS_BIN);
      const modelJsonText = JSON.stringify(modelJson);
      writeFileDurably(path.join(temp, MODEL_JSON), modelJsonText);
      afterFileWrittenForTest?.(MODEL_JSON);
      swapIn(temp, this.folder);
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: Buffer.byteLength(JSON.stringify(artifacts.modelTopology)),
          weightSpecsBytes: Buffer.byteLength(JSON.stringify(artifacts.weightSpecs ?? [])),
          weightDataBytes: weightData.byteLength,
        },
      };
    } catch (error) {
      fs.rmSync(temp, {recursive: true, force: true});
      throw error;
    }
  }

  /** Reads model.json and its weight files, naming the file at fault in every error. */
  async load(): Promise<ModelArtifacts> {
    const modelJsonPath = this.modelJsonPath;
    if (!fs.existsSync(modelJsonPath)) {
      throw new ValueError(`Model file not found: ${modelJsonPath}`);
    }
    let modelJson: tf.io.ModelJSON;
    try {
      modelJson = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8'));
    } catch (error) {
      throw new ValueError(`Cannot parse ${modelJsonPath} as JSON: ${(error as Error).message}`);
    }
    if (modelJson == null || typeof modelJson !== 'object' || modelJson.modelTopology == null) {
      throw new ValueError(`${modelJsonPath} has no \`modelTopology\`: it is not a tfjs model.json`);
    }
    const folder = path.dirname(modelJsonPath);
    return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
      if (!Array.isArray(manifest)) {
        throw new ValueError(`${modelJsonPath} has an invalid \`weightsManifest\`: expected an array`);
      }
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of manifest) {
        let groupBytes = 0;
        for (const relative of group.paths) {
          const file = resolveInside(folder, relative, modelJsonPath);
          if (!fs.existsSync(file)) {
            throw new ValueError(`Weights file not found: ${file} (listed in ${modelJsonPath})`);
          }
          const data = fs.readFileSync(file);
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
      return [specs, joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength)];
    });
  }
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

/** Resolves a manifest path and refuses one that leads outside the model's folder. */
function resolveInside(folder: string, relative: string, modelJsonPath: string): string {
  const file = path.resolve(folder, relative);
  if (path.isAbsolute(relative) || (file !== folder && !file.startsWith(folder + path.sep))) {
    throw new ValueError(
        `${modelJsonPath} names a weights path outside the model's folder ${folder}, which is refused. ` +
        `Received: ${JSON.stringify(relative)}`);
  }
  return file;
}

function writeFileDurably(file: string, data: Buffer|string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Moves the finished temporary folder to `target`. A new target is a single rename. An
 * existing one is first moved aside, after its other files are linked into the new folder,
 * then replaced, then removed; if the second rename fails the old folder is put back.
 */
function swapIn(temp: string, target: string): void {
  if (!fs.existsSync(target)) {
    fs.renameSync(temp, target);
    return;
  }
  if (!fs.statSync(target).isDirectory()) {
    throw new ValueError(`Cannot save a model to ${target}: it exists and is not a folder`);
  }
  for (const entry of fs.readdirSync(target)) {
    if (entry === MODEL_JSON || entry === WEIGHTS_BIN) continue;
    const from = path.join(target, entry);
    const to = path.join(temp, entry);
    if (fs.statSync(from).isDirectory()) fs.cpSync(from, to, {recursive: true});
    else linkOrCopy(from, to);
  }
  const aside = `${temp}.previous`;
  fs.renameSync(target, aside);
  try {
    fs.renameSync(temp, target);
  } catch (error) {
    fs.renameSync(aside, target);
    throw error;
  }
  fs.rmSync(aside, {recursive: true, force: true});
}

function linkOrCopy(from: string, to: string): void {
  try {
    fs.linkSync(from, to);
  } catch {
    fs.copyFileSync(from, to);
  }
}

/** `tf.io` routers for file:// URLs, active only while tfjs-node (which has its own) is not loaded. */
function fileSystemRouter(url: string|string[]): tf.io.IOHandler|null {
  if (Array.isArray(url) || typeof url !== 'string' || !url.startsWith('file://')) return null;
  if (tf.findBackendFactory('tensorflow') != null) return null;  // tfjs-node handles file:// itself
  return new FileSystemIO(url);
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
export function fileSystem(url: string): FileSystemIO {
  return new FileSystemIO(url);
}
