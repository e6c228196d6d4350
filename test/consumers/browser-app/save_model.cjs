/**
 * Node side of the browser consumer test: `node save_model.cjs <case.json> <modelDir>` builds
 * a small model from tfjs-attention's layers (as installed in this app's node_modules), sets
 * seeded weights, saves it with model.save('file://<modelDir>') and prints, after "RESULT ",
 * its prediction for the case's input on tfjs' cpu backend and where the package came from.
 * case.json: {input: [B, T, d], seed}.
 */
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const {lastPosition, positionEmbedding, scaledDotProductAttention} = require('tfjs-attention');

/** Deterministic values in [-1, 1] for a weight of `size` elements. */
function seeded(size, seed) {
  return Array.from({length: size}, (_, i) => Math.sin(12.9898 * (i + 1) + 78.233 * seed));
}

async function main() {
  const [casePath, modelDir] = process.argv.slice(2);
  const {input, seed} = JSON.parse(fs.readFileSync(casePath, 'utf8'));
  await tf.setBackend('cpu');
  const [T, d] = [input[0].length, input[0][0].length];
  const x = tf.input({shape: [T, d]});
  const positioned = positionEmbedding({sequenceLength: T}).apply(x);
  const attended = scaledDotProductAttention({numHeads: 2, keyDim: 4, useBias: true}).apply(positioned);
  const last = lastPosition().apply(attended);
  const probabilities = tf.layers.dense({units: 3, activation: 'softmax'}).apply(last);
  const model = tf.model({inputs: x, outputs: probabilities});
  model.setWeights(model.weights.map((w, i) => tf.tensor(seeded(w.shape.reduce((a, b) => a * b, 1), seed + i), w.shape)));
  await model.save(`file://${modelDir}`);
  const prediction = model.predict(tf.tensor3d(input)).arraySync();
  console.log('RESULT ' + JSON.stringify({
    prediction, backend: tf.getBackend(), resolved: require.resolve('tfjs-attention'),
    layers: model.layers.map((layer) => layer.getClassName()),
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
