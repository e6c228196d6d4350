/** Saving and loading park models on disk, with messages that say how to get a model. */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import '../index';  // registers the layers and the file:// handler
import {ValueError} from '../errors';
import {fileSystem} from '../io/file_system_io';
import {packageRoot} from '../package_root';
import {disposeParkModel, ParkModel, parkModelFromLoaded} from './park_model';

/** The committed model, `models/park-play` in this package. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'park-play');
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
    model = await tf.loadLayersModel(`file://${modelJson}`);
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
 * Saves atomically (a temporary folder beside `folder`, then a rename) with this package's
 * own handler, named explicitly: a file:// URL would go to tfjs-node's handler when tfjs-node
 * is loaded, since this package's file:// router then steps aside.
 */
export async function saveParkModel(park: ParkModel, folder: string): Promise<void> {
  await park.model.save(fileSystem(path.resolve(folder)));
}
