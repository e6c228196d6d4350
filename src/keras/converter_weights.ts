/**
 * The weights of a tensorflowjs_converter folder: its model.json's `weightsManifest` and the
 * shard files, split into each layer's values in manifest order. The converter names weights by
 * variable path (`mha/query/kernel`, `lstm/lstm_cell/kernel`, tf.keras 2's the same without
 * `:0`; a Keras 3 Sequential's start with the model's name: `seq/dense/kernel`), so a weight
 * belongs to the first layer its path names; within a layer the manifest keeps the layer's
 * weight order.
 */
import {formatValue, ValueError} from '../errors';
import type {WeightValue} from './read_keras_weights_h5';

export interface WeightsManifestGroup {
  paths: string[];
  weights: Array<{name: string; shape: number[]; dtype: string; quantization?: unknown}>;
}

/** Checks the manifest's form; returns the shard paths in order. */
export function manifestPaths(manifest: unknown, file: string): string[] {
  if (!Array.isArray(manifest) ||
      manifest.some(g => g == null || !Array.isArray(g.paths) || !Array.isArray(g.weights))) {
    throw new ValueError(
        `The model.json ${file} has no valid \`weightsManifest\` ([{paths, weights}, ...]). Received: weightsManifest=${formatValue(manifest)}`);
  }
  return (manifest as WeightsManifestGroup[]).flatMap(g => g.paths);
}

/**
 * Every layer's values, keyed by layer name. `shards` holds each path's bytes (as
 * manifestPaths lists them); `layerNames` are the model's layers; `file` names the model.json in messages.
 */
export function converterWeights(manifest: WeightsManifestGroup[], shards: Map<string, Uint8Array>, layerNames: Set<string>,
                                 file: string): Map<string, WeightValue[]> {
  const out = new Map<string, WeightValue[]>();
  for (const group of manifest) {
    const parts = group.paths.map(p => shards.get(p)!);
    const total = parts.reduce((n, p) => n + p.length, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
    }
    const expected = group.weights.reduce((n, w) => n + 4 * w.shape.reduce((a, b) => a * b, 1), 0);
    for (const w of group.weights) {
      if (w.dtype !== 'float32' || w.quantization != null) {
        throw new ValueError(
            `The model.json ${file} has weight \`${w.name}\` as ${w.quantization != null ? 'quantized ' : ''}${w.dtype}; ` +
            `loadKerasModel reads float32 weights only. Received: dtype=${formatValue(w.dtype)}`);
      }
    }
    if (total !== expected) {
      throw new ValueError(
          `The weight shards ${formatValue(group.paths)} of ${file} hold ${total} bytes, but the manifest's weights ` +
          `need ${expected} (float32). Received: ${total} bytes`);
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let offset = 0;
    for (const w of group.weights) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(n);
      for (let i = 0; i < n; i++) values[i] = view.getFloat32(offset + 4 * i, true);
      offset += 4 * n;
      const name = w.name.endsWith(':0') ? w.name.slice(0, -2) : w.name;
      const segments = name.split('/');
      const layer = segments.slice(0, -1).find(s => layerNames.has(s)) ?? segments[0];
      if (!out.has(layer)) out.set(layer, []);
      out.get(layer)!.push({path: name, shape: [...w.shape], values});
    }
  }
  return out;
}
