/**
 * The example app's way into the library in Node: ./tfjs_attention plus the package's Node entry
 * (src/node.ts: the file:// handler, the second attention thread and backend loading register on
 * import, as `require('tfjs-attention')` does) and the file-saving internals the CLIs share with
 * the library's file:// handler.
 */
export * from './tfjs_attention';
export {fileSystem, FileSystemIO} from '../../src/node';

// Internals, for the app only (not part of the package's API).
export {checkFileTarget, checkSaveTarget, tempNameFor} from '../../src/io/save_target';
export {fileError} from '../../src/io/fs_errors';
export {writeFileAtomic} from '../../src/io/write_file_atomic';

// The Keras entry (tfjs-attention/keras in Node), for `npm run export`.
export {saveKerasModel} from '../../src/keras_node';
