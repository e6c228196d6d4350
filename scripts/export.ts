/** npm run export -- --model models/park-play --out park-play.keras: a park model as a Keras 3 `.keras` archive. */
import {checkFileTarget, saveKerasModel, selectBackend} from './app/tfjs_attention_node';
import {ParsedOptions, runCommand, UsageError} from './app/cli/arguments';
import {terminalSafe} from './app/cli/terminal_text';
import {defaultModelDir, loadParkModel} from './app/park/park_files';
import {PARK_BACKEND} from './app/park/park_backend';
import {disposeParkModel} from './app/park/park_model';

const OPTIONS = {
  model: {type: 'string', help: 'Folder of a model saved by npm run train (default: models/park-play).'},
  out: {type: 'string', help: 'The .keras file to write (required); Python: keras.saving.load_model(path).'},
} as const;

async function main(options: ParsedOptions): Promise<void> {
  const out = options.out as string|undefined;
  if (out == null) throw new UsageError('Option `--out` is required: the .keras file to write. Received: no --out');
  checkFileTarget(out, 'Keras archive');  // a path that cannot be written fails here, before the model loads
  const modelDir = (options.model as string|undefined) ?? defaultModelDir();
  await selectBackend(PARK_BACKEND);
  const park = await loadParkModel(modelDir);
  try {
    const bytes = await saveKerasModel(park.model, out);
    const layers = park.model.layers.map(layer => `${layer.name} (${layer.getClassName()})`);
    console.log(`Wrote ${terminalSafe(out)} (${bytes.byteLength} bytes), a Keras 3 model from ` +
                `${terminalSafe(modelDir)}: ${layers.length} tfjs layers, ${park.model.countParams()} parameters.`);
    console.log(`Layers: ${terminalSafe(layers.join(', '))}`);
    console.log(`Load it in Python: keras.saving.load_model(${JSON.stringify(out)}); inputs are ${park.window} token ids, ` +
                'left-padded with 0, as scripts/app/park encodes them.');
  } finally {
    disposeParkModel(park);
  }
}

if (require.main === module) {
  runCommand({command: 'npm run export -- --out <file.keras> [--model <folder>]', options: OPTIONS, takesSentence: false}, main);
}
