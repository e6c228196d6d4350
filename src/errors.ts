/** The one error class of tfjs-attention, and helpers that word messages in the Keras style. */

/**
 * Thrown for every bad argument, input, shape, option or file. Messages say what was
 * wrong, what was expected and what was received, e.g.
 * "Received an invalid value for argument `keyDim`, expected a positive integer. Received: keyDim=1.5".
 */
export class ValueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValueError';
    Object.setPrototypeOf(this, ValueError.prototype);
  }
}

/** Formats a received value for a message: numbers and strings as written, the rest as JSON. */
export function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return `[${value.map(formatValue).join(', ')}]`;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** "Received an invalid value for argument `name`, expected <expected>. Received: name=<value>". */
export function invalidArgument(name: string, expected: string, received: unknown): ValueError {
  return new ValueError(
      `Received an invalid value for argument \`${name}\`, expected ${expected}. ` +
      `Received: ${name}=${formatValue(received)}`);
}

/** Throws unless `value` is an integer >= 1. */
export function checkPositiveInteger(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw invalidArgument(name, 'a positive integer', value);
  }
}

/** Throws unless `value` is a finite number > 0. */
export function checkPositiveFinite(name: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalidArgument(name, 'a positive finite number', value);
  }
}

/** Throws unless `value` is a rate in [0, 1). */
export function checkRate(name: string, value: unknown): void {
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw invalidArgument(name, 'a number in [0, 1)', value);
  }
}
