/**
 * Reads Keras 3's model.weights.h5 (h5wasm) and puts its variables in each layer's weight order.
 *
 * Keras stores a layer's variables at `layers/<object>/vars/<i>` and those of the objects it owns
 * below it (`layers/<mha>/query_dense/vars/0`, `layers/<lstm>/cell/vars/1`,
 * `layers/<bidirectional>/forward_layer/cell/vars/0`). `<object>` follows Keras' object naming
 * (the snake-cased class name, `_1`, `_2`, ... for repeats), not the layer's name; each `vars`
 * group carries the owner's name as its `name` attribute (Keras 3.15), which is what a layer is
 * matched by, with the object naming as the fallback. A layer's values come in its own order:
 * its own vars, then its sub-objects in the order Keras creates their weights.
 */
import {ValueError} from '../errors';
import {loadHdf5} from './hdf5_library';
import type {KerasLayerSpec} from './normalize_keras_config';

/** One variable's values. `path` is where it was found (e.g. `layers/dense/vars/0`). */
export interface WeightValue {
  path: string;
  shape: number[];
  values: Float32Array;
}

/** A group of the file: its `vars` (in index order), its `vars` name attribute and its sub-groups. */
interface H5Node {
  path: string;
  varsName: string|null;
  vars: WeightValue[];
  children: Map<string, H5Node>;
}

/** Sub-objects whose weights Keras creates in a fixed order (not the file's alphabetical one). */
const CHILD_ORDER: {[className: string]: string[]} = {
  MultiHeadAttention: ['query_dense', 'key_dense', 'value_dense', 'output_dense'],
  Bidirectional: ['forward_layer', 'backward_layer'],
};

let fileCounter = 0;

/** Keras' naming.to_snake_case. */
export function kerasSnakeCase(name: string): string {
  return name.replace(/\W+/g, '').replace(/(.)([A-Z][a-z]+)/g, '$1_$2').replace(/([a-z])([A-Z])/g, '$1_$2').toLowerCase();
}

type H5 = Awaited<ReturnType<typeof loadHdf5>>;
type H5Group = InstanceType<H5['Group']>;

function readNode(h5: H5, group: H5Group, path: string, file: string): H5Node {
  const node: H5Node = {path, varsName: null, vars: [], children: new Map()};
  for (const key of group.keys()) {
    const entry = group.get(key);
    if (!(entry instanceof h5.Group)) continue;
    if (key === 'vars') {
      const nameAttr = entry.attrs.name?.value;
      node.varsName = typeof nameAttr === 'string' ? nameAttr : null;
      const indices = entry.keys().map(Number).sort((a, b) => a - b);
      for (const index of indices) {
        const dataset = entry.get(String(index));
        const varPath = `${path}/vars/${index}`;
        if (!(dataset instanceof h5.Dataset)) throw new ValueError(`The weights file ${file} has ${varPath}, which is not a dataset.`);
        const value = dataset.value;
        if (!(ArrayBuffer.isView(value) || typeof value === 'number') || typeof value === 'bigint') {
          throw new ValueError(`The weights file ${file} has a non-numeric variable ${varPath}. Received: dtype=${String(dataset.dtype)}`);
        }
        const values = value instanceof Float32Array ? value :
            Float32Array.from(typeof value === 'number' ? [value] : Array.from(value as ArrayLike<number>, Number));
        node.vars.push({path: varPath, shape: dataset.shape ?? [], values});
      }
    } else {
      node.children.set(key, readNode(h5, entry, `${path}/${key}`, file));
    }
  }
  return node;
}

/** The values under a node in Keras' weight order: its own vars, then its sub-objects'. */
function ordered(node: H5Node, className: string|null): WeightValue[] {
  const order = CHILD_ORDER[className ?? ''] ?? [];
  const children = [...node.children.keys()].sort((a, b) => {
    const [i, j] = [order.indexOf(a), order.indexOf(b)];
    if (i >= 0 || j >= 0) return (i < 0 ? Infinity : i) - (j < 0 ? Infinity : j);
    return a < b ? -1 : a > b ? 1 : 0;
  });
  return [...node.vars, ...children.flatMap(c => ordered(node.children.get(c)!, null))];
}

/**
 * Every layer's values from model.weights.h5's bytes, in the layer's weight order, keyed by layer
 * name. `layers` are the model's layers in config order (Functional: InputLayers included), which
 * gives Keras' object names for files whose `vars` groups carry no name.
 */
export async function readKerasH5Weights(bytes: Uint8Array, file: string, layers: KerasLayerSpec[]):
    Promise<Map<string, WeightValue[]>> {
  const h5 = await loadHdf5();
  const fs = h5.FS!;
  const temp = `keras_weights_${Date.now()}_${fileCounter++}.h5`;
  fs.writeFile(temp, bytes);
  let root: H5Node;
  try {
    let f: InstanceType<H5['File']>;
    try {
      f = new h5.File(temp, 'r');
    } catch (error) {
      throw new ValueError(`The weights file ${file} is not a readable HDF5 file: ${(error as Error).message}`);
    }
    try {
      const layersGroup = f.get('layers');
      if (!(layersGroup instanceof h5.Group)) {
        throw new ValueError(`The weights file ${file} has no \`layers\` group; it is not a Keras 3 model.weights.h5. Received: groups ${JSON.stringify(f.keys())}`);
      }
      root = readNode(h5, layersGroup, 'layers', file);
    } finally {
      f.close();
    }
  } finally {
    fs.unlink(temp);
  }
  const byVarsName = new Map<string, H5Node>();
  for (const node of root.children.values()) if (node.varsName != null) byVarsName.set(node.varsName, node);
  const counts = new Map<string, number>();
  const out = new Map<string, WeightValue[]>();
  for (const layer of layers) {
    const base = kerasSnakeCase(layer.className);
    const seen = counts.get(base) ?? 0;
    counts.set(base, seen + 1);
    const objectName = seen === 0 ? base : `${base}_${seen}`;
    const node = byVarsName.size > 0 ? byVarsName.get(layer.name) : root.children.get(objectName);
    out.set(layer.name, node == null ? [] : ordered(node, layer.className));
  }
  return out;
}
