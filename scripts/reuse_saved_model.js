// Predicts the next word with the saved park model, importing only @tensorflow/tfjs and tfjs-attention.
// Run from the repository root after `npm run build`: node scripts/reuse_saved_model.js "i like to go to the park and play"
const tf = require('@tensorflow/tfjs');
require('tfjs-attention');  // registers ScaledDotProductAttention (and a file:// loader when tfjs-node is absent)

async function main(sentence) {
  const model = await tf.loadLayersModel('file://models/park-play/model.json');
  const {vocabulary, window} = model.getUserDefinedMetadata();  // saved by `npm run train`
  const ids = new Map(vocabulary.words.map((word, id) => [word, id]));
  const words = sentence.toLowerCase().match(/[a-z0-9']+/g).slice(-window);
  const input = [...Array(window - words.length).fill(0), ...words.map(word => ids.get(word) ?? 1)];  // 0 = <pad>, 1 = <unk>
  const probabilities = tf.tidy(() => model.predict(tf.tensor2d([input], [1, window], 'int32')).dataSync());
  const best = [...probabilities.keys()].filter(id => id > 1).sort((a, b) => probabilities[b] - probabilities[a]);
  for (const id of best.slice(0, 3)) console.log(`${vocabulary.words[id]} ${probabilities[id].toFixed(3)}`);
}

main(process.argv[2] ?? 'i like to go to the park and play');
