/**
 * Turns loadKerasModel's `source` into bytes, a name for messages and a way to read the files
 * beside it (a converter model.json's weight shards): a path (Node, through kerasFileAccess), a
 * URL (fetch; `file://` URLs are read as paths), or the file's bytes (ArrayBuffer, Uint8Array,
 * Blob). Also tells the two formats apart by content.
 */
import {invalidArgument, ValueError} from '../errors';
import {kerasFileAccess} from './file_access';

/** A `.keras` archive or a converter model.json: a path (Node), a URL, or the file's bytes. */
export type KerasModelSource = string|ArrayBuffer|Uint8Array|Blob;

export interface KerasSourceBytes {
  bytes: Uint8Array;
  /** How messages name the source: "`/models/x.keras`", "`https://…/model.json`", "the given Uint8Array (1234 bytes)". */
  name: string;
  /** Reads a file given relative to the source (a shard beside model.json); null for bytes. */
  readSibling: ((relative: string) => Promise<Uint8Array>)|null;
}

const URL_PATTERN = /^(https?|file|blob|data):/i;

/** `file:///a/b` → `/a/b` (and `file:///C:/a` → `C:/a`), without Node's url module (this file is browser-safe). */
function fileUrlToPath(url: string): string {
  const path = decodeURIComponent(new URL(url).pathname);
  return /^\/[A-Za-z]:/.test(path) ? path.slice(1) : path;
}

/** The folder part of a path ('' when there is none), keeping its separator. */
function folderOf(path: string): string {
  const cut = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return cut < 0 ? '' : path.slice(0, cut + 1);
}

async function readPath(path: string): Promise<Uint8Array> {
  return kerasFileAccess(`Reading \`${path}\``).readFile(path);
}

async function fetchUrl(url: string): Promise<Uint8Array> {
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ValueError(`Cannot fetch \`${url}\`: ${(error as Error).message}`);
  }
  if (!response.ok) throw new ValueError(`Cannot fetch \`${url}\`: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

function siblingOf(source: string): (relative: string) => Promise<Uint8Array> {
  if (/^file:/i.test(source)) {
    const folder = folderOf(fileUrlToPath(source));
    return relative => readPath(folder + relative);
  }
  if (URL_PATTERN.test(source)) return relative => fetchUrl(new URL(relative, source).href);
  const folder = folderOf(source);
  return relative => readPath(folder + relative);
}

/** Reads `source` (see KerasModelSource); a ValueError names `source` and what it received for a bad type. */
export async function readKerasSource(source: KerasModelSource): Promise<KerasSourceBytes> {
  if (typeof source === 'string') {
    if (source.length === 0) throw invalidArgument('source', 'a path or URL of a .keras archive or a converter model.json', source);
    const name = `\`${source}\``;
    if (/^file:/i.test(source)) return {bytes: await readPath(fileUrlToPath(source)), name, readSibling: siblingOf(source)};
    if (URL_PATTERN.test(source)) return {bytes: await fetchUrl(source), name, readSibling: siblingOf(source)};
    return {bytes: await readPath(source), name, readSibling: siblingOf(source)};
  }
  if (source instanceof Uint8Array) {
    return {bytes: source, name: `the given Uint8Array (${source.length} bytes)`, readSibling: null};
  }
  if (source instanceof ArrayBuffer) {
    return {bytes: new Uint8Array(source), name: `the given ArrayBuffer (${source.byteLength} bytes)`, readSibling: null};
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const bytes = new Uint8Array(await source.arrayBuffer());
    const fileName = (source as Blob & {name?: unknown}).name;
    return {bytes, name: typeof fileName === 'string' ? `\`${fileName}\`` : `the given Blob (${bytes.length} bytes)`, readSibling: null};
  }
  throw invalidArgument(
      'source', 'a path or URL (string), an ArrayBuffer, a Uint8Array or a Blob holding a .keras archive or a ' +
      'converter model.json', describe(source));
}

function describe(value: unknown): unknown {
  if (value == null || typeof value !== 'object') return value;
  const ctor = (value as object).constructor?.name;
  return ctor != null && ctor !== 'Object' ? `a ${ctor}` : value;
}

/** What the bytes are: a zip (a .keras archive), a converter model.json, or something else (refused by name). */
export function detectFormat(bytes: Uint8Array, name: string): {format: 'archive'}|{format: 'converter'; modelJson: {[key: string]: unknown}} {
  if (bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04) {
    return {format: 'archive'};
  }
  if (bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x48 && bytes[2] === 0x44 && bytes[3] === 0x46) {
    throw new ValueError(
        `${capitalize(name)} is an HDF5 file (a legacy .h5 model or a bare model.weights.h5); loadKerasModel reads ` +
        'a .keras archive or a tensorflowjs_converter model.json.');
  }
  let parsed: unknown = undefined;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    // not JSON: refused below
  }
  if (parsed != null && typeof parsed === 'object' && 'modelTopology' in parsed) {
    return {format: 'converter', modelJson: parsed as {[key: string]: unknown}};
  }
  const start = Array.from(bytes.subarray(0, 4), b => b.toString(16).padStart(2, '0')).join(' ');
  throw new ValueError(
      `${capitalize(name)} is neither a .keras archive (a zip, starting with "PK\\x03\\x04") nor a converter ` +
      `model.json (JSON with \`modelTopology\`). Received: ${bytes.length} bytes` +
      (parsed !== undefined ? ' of JSON without modelTopology' : bytes.length > 0 ? ` starting ${start}` : ''));
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
