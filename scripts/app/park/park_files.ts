/** Saving and loading park models on disk, with messages that say how to get a model. */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
// The Node entry registers the layers and the file:// handler.
import {ValueError, fileSystem, checkSaveTarget} from '../tfjs_attention_node';
import {packageRoot} from '../package_root';
import {disposeParkModel, ParkModel, parkModelFromLoaded} from './park_model';

/** The committed model, `models/park-play` in this package. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'park-play');
}

/**
 * Where `npm run train` saves by default: `trained/park-play` in this package (git-ignored),
 * so that retraining never changes the committed model. `--out models/park-play` replaces it.
 */
export function defaultTrainedDir(): string {
  return path.join(packageRoot(), 'trained', 'park-play');
}

/** The files that `npm run train` (and the README's figures) keep in a park model's folder besides the model. */
export const PARK_COMPANION_FILES = ['training-curve.svg', 'attention-heatmap.svg', 'attention-bat.svg'] as const;

/**
 * Throws a ValueError, before anything is written, unless a park model (with its plots) can
 * be saved in `folder`; see checkSaveTarget.
 */
export function checkParkModelTarget(folder: string): void {
  checkSaveTarget(folder, {companionFiles: PARK_COMPANION_FILES});
}

const HOW_TO_TRAIN = 'Train one with `npm run train` (or `npm run train -- --out <folder>`).';

/** Loads a model saved by `npm run train` from a folder (or its model.json). */
export async function loadParkModel(location: string): Promise<ParkModel> {
  const resolved = path.resolve(location);
  const modelJson = resolved.endsWith('.json') ? resolved : path.join(resolved, 'model.json');
  if (!fs.existsSync(modelJson)) {
    throw new ValueError(`No model found at ${location} (${modelJson} does not exist). ${HOW_TO_TRAIN}`);
  }
  let model: tf.LayersModel;
  try {
    // This package's handler even when tfjs-node is loaded: it refuses weights that lead out of the folder.
    model = await tf.loadLayersModel(fileSystem(modelJson));
  } catch (error) {
    throw new ValueError(`The model at ${location} cannot be loaded: ${(error as Error).message}. ${HOW_TO_TRAIN}`);
  }
  try {
    return parkModelFromLoaded(model, location);
  } catch (error) {
    disposeParkModel({model});
    throw error;
  }
}

/**
 * Saves with this package's own handler (see FileSystemIO.save: it touches nothing in the
 * folder but the model's files; the plots in PARK_COMPANION_FILES are accepted there), named
 * explicitly: a file:// URL would go to tfjs-node's handler when tfjs-node is loaded, since
 * this package's file:// router then steps aside.
 */
export async function saveParkModel(park: ParkModel, folder: string): Promise<void> {
  await park.model.save(fileSystem(path.resolve(folder), {companionFiles: PARK_COMPANION_FILES}));
}
