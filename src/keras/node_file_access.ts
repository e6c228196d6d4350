/** Node's file system for the Keras entry: reads a file, or writes one atomically (src/io/write_file_atomic.ts). */
import * as fs from 'fs';
import {fileError} from '../io/fs_errors';
import {writeFileAtomic} from '../io/write_file_atomic';
import {KerasFileAccess} from './file_access';

export const nodeKerasFileAccess: KerasFileAccess = {
  async readFile(file: string): Promise<Uint8Array> {
    try {
      const bytes = await fs.promises.readFile(file);
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (error) {
      throw fileError('read', file, error);
    }
  },
  async writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
    writeFileAtomic(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'Keras archive');
  },
};
