/**
 * The order in which Keras 3.15 lists a functional model's layers (`model.layers`), and so the
 * names under which `model.weights.h5` keeps their weights: Keras names each layer's group by
 * its class in snake_case, numbered in that order when a class repeats (`dense`, `dense_1`, …),
 * whatever the layer's own name. Ported from keras/src/ops/function.py (map_graph, _build_map)
 * and keras/src/saving/saving_lib.py (_get_unique_name), for graphs of one node per layer.
 */
import {KerasLayerSpec, KerasTensor} from './keras_layer_spec';

/** Every tensor argument of a node, in Keras' order (positional arguments, then keyword arguments). */
export function nodeInputs(spec: KerasLayerSpec): KerasTensor[] {
  const kwargTensors = Object.values(spec.kwargs).filter(isKerasTensor);
  return [...spec.args, ...kwargTensors];
}

export function isKerasTensor(value: unknown): value is KerasTensor {
  return typeof value === 'object' && value != null && 'layer' in value && 'index' in value && 'shape' in value;
}

/** The layers in `model.layers` order: by depth from the outputs (deepest first), ties in DFS discovery order. */
export function kerasLayerOrder(layers: KerasLayerSpec[], outputs: KerasTensor[]): KerasLayerSpec[] {
  const byName = new Map(layers.map(layer => [layer.name, layer]));
  const discovery = new Map<string, number>();
  const finished = new Set<string>();
  const postOrder: string[] = [];
  const visit = (name: string): void => {
    if (finished.has(name)) return;
    if (!discovery.has(name)) discovery.set(name, discovery.size);
    for (const input of nodeInputs(byName.get(name)!)) visit(input.layer);
    finished.add(name);
    postOrder.push(name);
  };
  for (const output of outputs) visit(output.layer);
  const depth = new Map<string, number>();
  for (const name of [...postOrder].reverse()) {
    const d = depth.get(name) ?? 0;
    depth.set(name, d);
    for (const input of nodeInputs(byName.get(name)!)) depth.set(input.layer, Math.max(d + 1, depth.get(input.layer) ?? 0));
  }
  return [...depth.keys()].map(name => byName.get(name)!)
      .sort((a, b) => depth.get(b.name)! - depth.get(a.name)! || discovery.get(a.name)! - discovery.get(b.name)!);
}

/** Keras' naming.to_snake_case. */
export function toSnakeCase(name: string): string {
  return name.replace(/\W+/g, '')
      .replace(/(.)([A-Z][a-z]+)/g, '$1_$2')
      .replace(/([a-z])([A-Z])/g, '$1_$2')
      .toLowerCase();
}

/** The weights group of each layer (in `ordered`, Keras' order): `layers/<snake class>[_<n>]`. */
export function checkpointNames(ordered: KerasLayerSpec[]): string[] {
  const used = new Map<string, number>();
  return ordered.map(layer => {
    const base = toSnakeCase(layer.className);
    const count = used.get(base);
    used.set(base, count == null ? 0 : count + 1);
    return count == null ? base : `${base}_${count + 1}`;
  });
}
