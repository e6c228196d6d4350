/**
 * tfjs-attention/keras for Node: src/keras.ts, plus paths for loadKerasModel and
 * saveKerasModel (read from, and written atomically to, the file system), and the Node entry
 * (src/node.ts) registered as `require('tfjs-attention')` does.
 */
import './node';
import {setKerasFileAccess} from './keras/file_access';
import {nodeKerasFileAccess} from './keras/node_file_access';

export * from './keras';

setKerasFileAccess(nodeKerasFileAccess);
