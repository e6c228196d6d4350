/** npm run predict -- "<sentence>": the model's most likely next words, as a table or JSON. */
import {selectBackend} from '../src';
import {parseCommandLine, runMain, usage, UsageError} from '../src/cli/arguments';
import {predictionTable, readingNotices} from '../src/cli/format';
import {defaultModelDir, loadParkModel} from '../src/park/park_files';
import {disposeParkModel} from '../src/park/park_model';
import {predictNextWords} from '../src/park/prediction';

const OPTIONS = {
  k: {type: 'integer', min: 1, help: 'How many completions to print (default: 5).'},
  json: {type: 'boolean', help: 'Print [{"word", "probability"}, ...] and nothing else on stdout.'},
  model: {type: 'string', help: 'Folder of a model saved by npm run train (default: models/park-play).'},
} as const;
const USAGE = usage('npm run predict -- "<sentence>" [options]', OPTIONS);

async function main(): Promise<void> {
  const {options, positionals} = parseCommandLine(process.argv.slice(2), OPTIONS);
  if (options.help) {
    console.log(USAGE);
    return;
  }
  if (positionals.length !== 1) {
    throw new UsageError(`Expected one sentence in quotes. Received: ${positionals.length} arguments`);
  }
  const sentence = positionals[0];
  const k = (options.k as number|undefined) ?? 5;
  const modelDir = (options.model as string|undefined) ?? defaultModelDir();
  await selectBackend('auto');
  const park = await loadParkModel(modelDir);
  try {
    const result = predictNextWords(park, sentence, k);
    for (const notice of readingNotices(result)) process.stderr.write(`${notice}\n`);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(result.predictions)}\n`);
    } else {
      console.log(`"${result.kept.join(' ')} ___"\n${predictionTable(result.predictions)}`);
    }
  } finally {
    disposeParkModel(park);
  }
}

if (require.main === module) runMain(main, USAGE);
