/**
 * tfjs-attention for Node: everything of the browser-safe entry (src/index.ts), plus what only
 * Node can do, registered on import: a file:// handler for model.save and tf.loadLayersModel,
 * the second thread of the fused attention kernel (worker_threads), and selectBackend loading
 * @tensorflow/tfjs-node or @tensorflow/tfjs-backend-wasm by itself. package.json's `exports`
 * maps `tfjs-attention` to this file under the `node` condition, so Node apps need no extra
 * line; `tfjs-attention/node` names it explicitly.
 */
import * as workerThreads from 'worker_threads';
import {provideWorkerThreads} from './backend/attention_threads';
import {setBackendPackageLoader} from './backend/select_backend';
import {registerFileSystemRouters} from './io/file_system_io';

export * from './index';
export {fileSystem, FileSystemIO} from './io/file_system_io';

// Plain @tensorflow/tfjs in Node has no file:// handler; this gives model.save and
// tf.loadLayersModel one (it steps aside when tfjs-node is loaded).
registerFileSystemRouters();
// tfjs' wasm backend runs on one core in Node; the fused attention kernel starts a worker of its own.
provideWorkerThreads(workerThreads);
// selectBackend('tensorflow' | 'wasm' | 'auto') loads the installed package, resolved from here.
setBackendPackageLoader(id => import(id));
