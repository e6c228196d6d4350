/** Jest setup: starts tfjs' cpu backend quietly, so its "install tfjs-node" banner does not repeat in every suite's log. */
import * as tf from '@tensorflow/tfjs';

const warn = console.warn;
console.warn = () => undefined;
try {
  tf.scalar(0).dispose();  // the banner is printed on the cpu backend's first write
} finally {
  console.warn = warn;
}
