/** npm run train: trains the "park and play ___" model, saves it with its plots, and prints a summary. */
import * as path from 'path';
import {BACKEND_NAMES, BackendName, selectBackend, writeFileAtomic} from './app/tfjs_attention_node';
import {ParsedOptions, runCommand} from './app/cli/arguments';
import {accuracySummary, epochLine, predictionTable} from './app/cli/format';
import {defaultCorpusPath, loadCorpus} from './app/park/corpus';
import {attentionHeatmapSvg, explainSentence} from './app/park/explanation';
import {checkParkModelTarget, defaultTrainedDir, saveParkModel} from './app/park/park_files';
import {PARK_BACKEND} from './app/park/park_backend';
import {PARK_SENTENCE, disposeParkModel} from './app/park/park_model';
import {predictNextWords} from './app/park/prediction';
import {evaluateAccuracy, trainParkModel} from './app/park/training';
import {lineChartSvg} from './app/plots/line_chart_svg';

const DEFAULT_EPOCHS = 20;

const OPTIONS = {
  corpus: {type: 'string', help: 'Corpus file, one sentence per line (default: the built-in park corpus).'},
  epochs: {type: 'integer', min: 1, help: `Passes over the training sentences (default: ${DEFAULT_EPOCHS}).`},
  seed: {type: 'integer', min: 0, help: 'Seed of the initializers and shuffling (default: 42).'},
  backend: {type: 'string', choices: BACKEND_NAMES.filter(b => b !== 'webgl'), help: `tfjs backend (default: ${PARK_BACKEND}, the fastest for this small model).`},
  out: {type: 'string', help: 'Folder to save the model and its plots in (default: trained/park-play; the committed model is models/park-play).'},
} as const;

async function main(options: ParsedOptions, _: string): Promise<void> {
  const corpusPath = (options.corpus as string|undefined) ?? defaultCorpusPath();
  const epochs = (options.epochs as number|undefined) ?? DEFAULT_EPOCHS;
  const seed = (options.seed as number|undefined) ?? 42;
  // Default: trained/park-play in the package (git-ignored), whatever the working directory, so
  // that retraining never changes the committed models/park-play; made relative to the working
  // directory so that messages say trained/park-play when run from the package root.
  const out = (options.out as string|undefined) ?? (path.relative(process.cwd(), defaultTrainedDir()) || '.');

  checkParkModelTarget(out);  // a folder that saving may not touch fails here, before any training
  const corpus = loadCorpus(corpusPath);  // a bad corpus fails here, before any training
  const backend = await selectBackend((options.backend as BackendName|undefined) ?? PARK_BACKEND);
  console.log(
      `Training on ${corpus.train.length} sentences (${corpus.heldOut.length} held out) from ${corpusPath}\n` +
      `backend ${backend}, ${epochs} epochs, seed ${seed}`);

  const started = Date.now();
  let epochStarted = Date.now();
  const {park, history} = await trainParkModel(corpus, {
    epochs, seed,
    onEpochEnd: (epoch, logs) => {
      console.log(epochLine(epoch, epochs, logs.loss, logs.accuracy, (Date.now() - epochStarted) / 1000));
      epochStarted = Date.now();
    },
  });
  const seconds = (Date.now() - started) / 1000;
  const heldOut = evaluateAccuracy(park, corpus.heldOut);
  const trainAccuracy = evaluateAccuracy(park, corpus.train);
  const parkSentence = predictNextWords(park, PARK_SENTENCE, 5);

  park.model.setUserDefinedMetadata({
    ...park.model.getUserDefinedMetadata() as object, backend, heldOutAccuracy: heldOut, trainSeconds: seconds,
  });
  await saveParkModel(park, out);
  const curve = path.join(out, 'training-curve.svg');
  writeFileAtomic(curve, lineChartSvg([
    {name: 'loss', values: history.map(h => h.loss)},
    {name: 'accuracy', values: history.map(h => h.accuracy)},
  ], {title: 'Training loss and accuracy per epoch', xLabel: 'epoch'}), 'SVG');
  const explanation = explainSentence(park, PARK_SENTENCE);
  const heatmap = path.join(out, 'attention-heatmap.svg');
  writeFileAtomic(heatmap, attentionHeatmapSvg(explanation), 'SVG');

  console.log(`\n${accuracySummary(seconds, trainAccuracy, heldOut, corpus.heldOut.length)}`);
  console.log(`\n"${PARK_SENTENCE} ___"\n${predictionTable(parkSentence.predictions)}`);
  console.log(`\nSaved the model to ${path.join(out, 'model.json')}, the curves to ${curve} and the attention heatmap to ${heatmap}.`);
  const demo = path.basename(path.resolve(out)) === 'park-play' ? `, npm run demo -- --models ${path.dirname(out)}` : '';
  console.log(`Use it with: npm run predict -- "<sentence>" --model ${out} (and explain --model ${out}${demo}); ` +
              'without --model they use the committed models/park-play.');
  disposeParkModel(park);
}

if (require.main === module) {
  runCommand({command: 'npm run train -- [options]', options: OPTIONS, takesSentence: false}, main);
}
