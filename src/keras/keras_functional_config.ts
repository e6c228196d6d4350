/**
 * The Keras 3 functional config (config.json of a `.keras` archive) of the converted layers:
 * {module, class_name: "Functional", config: {name, trainable, layers, input_layers,
 * output_layers}, registered_name, build_config, compile_config}, each layer with its one node
 * as Keras 3 writes it ({args: [__keras_tensor__ …], kwargs}).
 */
import {Dict, KerasLayerSpec, KerasTensor} from './keras_layer_spec';
import {isKerasTensor} from './keras_layer_order';
import {dtypePolicy} from './keras_values';

function kerasTensor(tensor: KerasTensor): Dict {
  return {
    class_name: '__keras_tensor__',
    config: {shape: tensor.shape, dtype: tensor.dtype, keras_history: [tensor.layer, 0, tensor.index]},
  };
}

function serializeArgument(value: unknown): unknown {
  if (isKerasTensor(value)) return kerasTensor(value);
  if (Array.isArray(value)) return value.map(serializeArgument);
  return value;
}

function layerEntry(spec: KerasLayerSpec): Dict {
  const isInput = spec.className === 'InputLayer';
  const config = isInput ? {...spec.config, name: spec.name} :
      {name: spec.name, trainable: spec.trainable, dtype: dtypePolicy(), ...spec.config};
  const entry: Dict = {module: 'keras.layers', class_name: spec.className, config, registered_name: null};
  if (spec.buildConfig != null && !isInput) entry.build_config = spec.buildConfig;
  entry.name = spec.name;
  const kwargs: Dict = {};
  for (const [key, value] of Object.entries(spec.kwargs)) kwargs[key] = serializeArgument(value);
  const args = spec.args.map(kerasTensor);
  entry.inbound_nodes = isInput ? [] : [{args: spec.listArgument ? [args] : args, kwargs}];
  return entry;
}

/** A list of [layer, node, tensor] triples, or the one triple alone as Keras writes a single input or output. */
function triples(tensors: KerasTensor[]): unknown {
  const list = tensors.map(t => [t.layer, 0, t.index]);
  return list.length === 1 ? list[0] : list;
}

/** config.json's content for a model named `name` whose layers are `ordered` (Keras' order). */
export function functionalConfig(name: string, trainable: boolean, ordered: KerasLayerSpec[], inputs: KerasTensor[],
                                 outputs: KerasTensor[]): Dict {
  return {
    module: 'keras.src.models.functional',
    class_name: 'Functional',
    config: {name, trainable, layers: ordered.map(layerEntry), input_layers: triples(inputs), output_layers: triples(outputs)},
    registered_name: 'Functional',
    build_config: {input_shape: null},
    compile_config: null,
  };
}
