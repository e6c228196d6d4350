/**
 * How the Keras entry reaches files by path: nothing in browsers (where a source is a URL or
 * bytes), Node's file system once src/keras_node.ts has registered it. One place decides, so
 * that the browser-safe entry imports no Node built-in.
 */
import {ValueError} from '../errors';

export interface KerasFileAccess {
  /** The file's bytes; errors name the file. */
  readFile(file: string): Promise<Uint8Array>;
  /** Writes `bytes` to `file` atomically (a temporary file renamed into place); errors name the file. */
  writeFileAtomic(file: string, bytes: Uint8Array): Promise<void>;
}

let fileAccess: KerasFileAccess|null = null;

export function setKerasFileAccess(access: KerasFileAccess|null): void {
  fileAccess = access;
}

/** The registered file access, or a ValueError naming `what` (e.g. "Reading `/a/b.keras`") when there is none. */
export function kerasFileAccess(what: string): KerasFileAccess {
  if (fileAccess == null) {
    throw new ValueError(`${what} needs a file system: paths work in Node, where \`tfjs-attention/keras\` ` +
                         `registers one; in a browser pass a URL or the file's bytes (ArrayBuffer, Uint8Array, Blob).`);
  }
  return fileAccess;
}
