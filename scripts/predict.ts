/** npm run predict -- "<sentence>": the model's most likely next words, as a table or JSON. */
import {selectBackend} from './app/tfjs_attention_node';
import {ParsedOptions, runCommand} from './app/cli/arguments';
import {predictionTable, readingNotices} from './app/cli/format';
import {terminalSafe, terminalSafeJson} from './app/cli/terminal_text';
import {defaultModelDir, loadParkModel} from './app/park/park_files';
import {PARK_BACKEND} from './app/park/park_backend';
import {disposeParkModel} from './app/park/park_model';
import {predictNextWords} from './app/park/prediction';

const OPTIONS = {
  k: {type: 'integer', min: 1, help: 'How many completions to print (default: 5); above the vocabulary\'s size, all of them.'},
  json: {type: 'boolean', help: 'Print [{"word", "probability"}, ...] and nothing else on stdout.'},
  model: {type: 'string', help: 'Folder of a model saved by npm run train (default: models/park-play).'},
} as const;

async function main(options: ParsedOptions, sentence: string): Promise<void> {
  const k = (options.k as number|undefined) ?? 5;
  const modelDir = (options.model as string|undefined) ?? defaultModelDir();
  await selectBackend(PARK_BACKEND);
  const park = await loadParkModel(modelDir);
  try {
    const result = predictNextWords(park, sentence, k);
    for (const notice of readingNotices(result)) process.stderr.write(`${notice}\n`);
    if (options.json) {
      process.stdout.write(`${terminalSafeJson(result.predictions)}\n`);
    } else {
      console.log(`"${terminalSafe(result.kept.join(' '))} ___"\n${predictionTable(result.predictions)}`);
    }
  } finally {
    disposeParkModel(park);
  }
}

if (require.main === module) {
  runCommand({command: 'npm run predict -- "<sentence>" [options]', options: OPTIONS, takesSentence: true}, main);
}
