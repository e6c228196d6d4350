/** npm run explain -- "<sentence>": the four steps of the model's attention, printed and drawn. */
import {checkFileTarget, selectBackend, writeFileAtomic} from './app/tfjs_attention_node';
import {ParsedOptions, runCommand} from './app/cli/arguments';
import {readingNotices} from './app/cli/format';
import {terminalSafe} from './app/cli/terminal_text';
import {attentionHeatmapSvg, explainSentence, meanOverHeads} from './app/park/explanation';
import {defaultModelDir, loadParkModel} from './app/park/park_files';
import {PARK_BACKEND} from './app/park/park_backend';
import {disposeParkModel} from './app/park/park_model';
import {predictNextWords} from './app/park/prediction';
import {terminalHeatmap} from './app/plots/terminal_heatmap';

const OPTIONS = {
  model: {type: 'string', help: 'Folder of a model saved by npm run train (default: models/park-play).'},
  svg: {type: 'string', help: 'Where to write the attention heatmap (default: attention-heatmap.svg).'},
  color: {type: 'boolean', help: 'Color the terminal heatmaps even when stdout is not a terminal.'},
} as const;

const TITLES = {
  scores: 'Step 1. Scores: each query word\'s dot product with each key word',
  scaled: 'Step 2. Scaled by 1/√d, so the softmax does not saturate',
  weights: 'Step 3. Attention weights: softmax over each row (rows sum to 1)',
  output: 'Step 4. Output: each row is a weighted sum of the value vectors',
};

async function main(options: ParsedOptions, sentence: string): Promise<void> {
  const svgPath = (options.svg as string|undefined) ?? 'attention-heatmap.svg';
  checkFileTarget(svgPath, 'SVG');  // a path that cannot be written fails here, before anything is printed
  const color = options.color === true || process.stdout.isTTY === true;
  await selectBackend(PARK_BACKEND);
  const park = await loadParkModel((options.model as string|undefined) ?? defaultModelDir());
  try {
    const explanation = explainSentence(park, sentence);
    for (const notice of readingNotices(explanation)) process.stderr.write(`${notice}\n`);
    const labels = explanation.labels;
    console.log(`Attention of the model's "attention" layer for "${terminalSafe(labels.join(' '))}"`);
    console.log(`${explanation.steps[0].shape[0]} heads, d = ${explanation.keyDim}, 1/√d = ${explanation.scale.toFixed(4)}\n`);
    for (const step of explanation.steps) {
      const [heads, rows, cols] = step.shape;
      console.log(`${TITLES[step.name]}\n  ${step.formula}    shape [${heads}, ${rows}, ${cols}] (heads, queries, ${step.name === 'output' ? 'value dims' : 'keys'})`);
      const columnLabels = step.name === 'output' ? Array.from({length: cols}, (_, i) => `v${i + 1}`) : labels;
      step.heads.forEach((matrix, head) => {
        console.log(`  head ${head + 1} of ${heads}`);  // counted from 1, as on the demo page
        console.log(indent(terminalHeatmap(matrix, labels, columnLabels, {color, digits: step.name === 'weights' ? 2 : 1})));
      });
      console.log('');
    }
    const weights = explanation.steps[2];
    console.log(`A, mean of the ${weights.shape[0]} heads (row "${terminalSafe(labels[labels.length - 1])}" is what predicts the next word):`);
    console.log(indent(terminalHeatmap(meanOverHeads(weights.heads), labels, labels, {color, digits: 2})));
    const top = predictNextWords(park, sentence, 3).predictions;
    console.log(`\nNext word: ${top.map(p => `${terminalSafe(p.word)} ${(p.probability * 100).toFixed(1)}%`).join(', ')}`);
    writeFileAtomic(svgPath, attentionHeatmapSvg(explanation), 'SVG');
    console.log(`Wrote the heatmap to ${svgPath}`);
  } finally {
    disposeParkModel(park);
  }
}

function indent(text: string): string {
  return text.split('\n').map(line => `  ${line}`).join('\n');
}

if (require.main === module) {
  runCommand({command: 'npm run explain -- "<sentence>" [options]', options: OPTIONS, takesSentence: true}, main);
}
