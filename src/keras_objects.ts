/** Resolves initializers, regularizers and constraints given by name, instance or config, and serializes them back. */
import * as tf from '@tensorflow/tfjs';
import {invalidArgument} from './errors';

/** What tfjs-layers accepts for an initializer, regularizer or constraint argument. */
export type ObjectIdentifier<T> = T|string|{className: string; config?: tf.serialization.ConfigDict};

export type Initializer = ReturnType<typeof tf.initializers.zeros>;
export type Regularizer = ReturnType<typeof tf.regularizers.l1l2>;
export type Constraint = ReturnType<typeof tf.constraints.nonNeg>;

interface Serializable {
  getClassName(): string;
  getConfig(): tf.serialization.ConfigDict;
}

/** The registered classes of each kind (tfjs does not export their base classes). */
const INITIALIZERS = new Set([
  'Zeros', 'Ones', 'Constant', 'RandomUniform', 'RandomNormal', 'TruncatedNormal', 'Identity', 'VarianceScaling',
  'GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LeCunNormal', 'LeCunUniform', 'Orthogonal',
]);
const REGULARIZERS = new Set(['L1L2']);
const CONSTRAINTS = new Set(['MaxNorm', 'UnitNorm', 'NonNeg', 'MinMaxNorm']);

/**
 * Turns 'glorotUniform' / 'glorot_uniform' / 'GlorotUniform', a {className, config} object
 * or an instance into an instance, looking classes up in tfjs' serialization registry.
 * `kind` holds the class names the result may have.
 */
function resolve<T>(
    argName: string, identifier: unknown, kind: Set<string>, expected: string): T|null {
  if (identifier == null) return null;
  if (identifier instanceof tf.serialization.Serializable) {
    if (kind.has(identifier.getClassName())) return identifier as T;
    throw invalidArgument(argName, expected, identifier.getClassName());
  }
  const registry = tf.serialization.SerializationMap.getMap().classNameMap;
  let className: string|undefined;
  let config: tf.serialization.ConfigDict = {};
  if (typeof identifier === 'string') {
    const wanted = identifier.replace(/_/g, '').toLowerCase();
    className = [...kind].find(name => name.toLowerCase() === wanted);
  } else if (typeof identifier === 'object' && typeof (identifier as {className?: unknown}).className === 'string') {
    className = (identifier as {className: string}).className;
    config = (identifier as {config?: tf.serialization.ConfigDict}).config ?? {};
  }
  const entry = className == null || !kind.has(className) ? undefined : registry[className];
  if (entry != null) {
    const [cls, fromConfig] = entry;
    return fromConfig(cls, config) as unknown as T;
  }
  throw invalidArgument(argName, expected, identifier);
}

export function resolveInitializer(argName: string, identifier: unknown, fallback: string): Initializer {
  return resolve<Initializer>(argName, identifier ?? fallback, INITIALIZERS,
                              'an initializer name (e.g. "glorotUniform"), instance or {className, config}')!;
}

export function resolveRegularizer(argName: string, identifier: unknown): Regularizer|null {
  return resolve<Regularizer>(argName, identifier, REGULARIZERS,
                              'a regularizer name (e.g. "l1l2"), instance or {className, config}');
}

export function resolveConstraint(argName: string, identifier: unknown): Constraint|null {
  return resolve<Constraint>(argName, identifier, CONSTRAINTS,
                             'a constraint name (e.g. "maxNorm"), instance or {className, config}');
}

/** The {className, config} form that tfjs-layers writes into a layer's config. */
export function serializeObject(object: Serializable|null): tf.serialization.ConfigDict|null {
  if (object == null) return null;
  return {className: object.getClassName(), config: object.getConfig()};
}
