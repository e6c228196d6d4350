/** Command-line parsing for the scripts: typed options, one positional sentence, and usage errors. */
import {parseArgs} from 'util';
import {ValueError} from '../tfjs_attention';
import {terminalSafeLines} from './terminal_text';

/** A bad command line; the scripts print its message and the usage, and exit with code 2. */
export class UsageError extends ValueError {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
    Object.setPrototypeOf(this, UsageError.prototype);
  }
}

export interface OptionSpec {
  type: 'string'|'integer'|'boolean';
  /** For integers: the smallest value allowed. */
  min?: number;
  /** For integers: the largest value allowed. Defaults to Number.MAX_SAFE_INTEGER (2^53 - 1). */
  max?: number;
  /** For strings: the values allowed. */
  choices?: readonly string[];
  help: string;
}

export type ParsedOptions = {[name: string]: string|number|boolean|undefined};

// A decimal number, with an optional fraction and exponent: 12, +12, 1e9, 1.5e3, 2.0.
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/i;

/**
 * Reads an integer option the same way however it is written: `1000000000`, `1e9` and
 * `1.0e9` are the same number. Hex, `Infinity`, fractions (`1.5`) and values outside
 * [min, max] are a UsageError naming the option and the value; the default max is
 * 2^53 - 1, the largest integer a double holds exactly.
 */
export function parseIntegerOption(name: string, raw: string, range: {min?: number; max?: number} = {}): number {
  const min = range.min ?? -Number.MAX_SAFE_INTEGER;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const text = String(raw).trim();
  const value = Number(text);
  if (!DECIMAL.test(text) || !Number.isInteger(value) || value < min || value > max) {
    const bounds = range.max != null ? ` from ${min} to ${max}` : range.min != null ? ` >= ${min}` : '';
    throw new UsageError(
        `Received an invalid value for option \`--${name}\`, expected an integer${bounds}` +
        `${range.max == null ? ' (at most 2^53 - 1)' : ''}. Received: --${name} ${raw}`);
  }
  return value === 0 ? 0 : value;  // no -0
}

/** Parses `argv` (without node and the script) against `specs`; unknown options are errors. */
function parseCommandLine(argv: string[], specs: {[name: string]: OptionSpec}):
    {options: ParsedOptions; positionals: string[]} {
  const parseSpecs: {[name: string]: {type: 'string'|'boolean'}} = {help: {type: 'boolean'}};
  for (const [name, spec] of Object.entries(specs)) parseSpecs[name] = {type: spec.type === 'boolean' ? 'boolean' : 'string'};
  // "--epochs -1" would read -1 as an option; join such values so the range check can name them.
  const args = argv.reduce<string[]>((joined, arg) => {
    const previous = joined[joined.length - 1];
    const option = previous?.startsWith('--') && !previous.includes('=') ? specs[previous.slice(2)] : undefined;
    if (option != null && option.type !== 'boolean' && /^-\.?\d/.test(arg)) joined[joined.length - 1] = `${previous}=${arg}`;
    else joined.push(arg);
    return joined;
  }, []);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({args, options: parseSpecs, allowPositionals: true, strict: true});
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const options: ParsedOptions = {help: parsed.values.help as boolean|undefined};
  for (const [name, spec] of Object.entries(specs)) {
    const raw = parsed.values[name];
    if (raw == null) continue;
    if (spec.type === 'boolean') {
      options[name] = raw as boolean;
    } else if (spec.type === 'integer') {
      options[name] = parseIntegerOption(name, raw as string, spec);
    } else {
      if (spec.choices != null && !spec.choices.includes(raw as string)) {
        throw new UsageError(
            `Received an invalid value for option \`--${name}\`, expected one of ${spec.choices.join(', ')}. ` +
            `Received: --${name} ${raw}`);
      }
      options[name] = raw as string;
    }
  }
  return {options, positionals: parsed.positionals};
}

/** The usage text: the command line, then one line per option. */
export function usage(command: string, specs: {[name: string]: OptionSpec}): string {
  const lines = [`Usage: ${command}`, '', 'Options:'];
  for (const [name, spec] of Object.entries(specs)) {
    const value = spec.type === 'boolean' ? '' : spec.choices ? ` <${spec.choices.join('|')}>` : ` <${spec.type === 'integer' ? 'n' : 'value'}>`;
    lines.push(`  --${(name + value).padEnd(34)} ${spec.help}`);
  }
  lines.push(`  ${'--help'.padEnd(36)} Show this help.`);
  return lines.join('\n');
}

/**
 * Runs a script's main, printing errors without a stack trace: usage errors with the usage
 * (exit code 2), other errors alone (exit code 1).
 */
export function runMain(main: () => Promise<void>, usageText: string): void {
  main().catch((error: Error) => {
    if (error instanceof UsageError) {
      process.stderr.write(`Error: ${terminalSafeLines(error.message)}\n\n${usageText}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`Error: ${terminalSafeLines(error.message)}\n`);
      if (!(error instanceof ValueError) && process.env.DEBUG) process.stderr.write(`${error.stack}\n`);
      process.exitCode = 1;
    }
  });
}

/** What a script takes: its options, and whether it takes one quoted sentence. */
export interface CommandSpec<Specs extends {[name: string]: OptionSpec}> {
  /** The command line shown in the usage, e.g. 'npm run predict -- "<sentence>" [options]'. */
  command: string;
  options: Specs;
  takesSentence: boolean;
}

/**
 * The scripts' shared frame: parses process.argv, answers --help with the usage, checks the
 * positional arguments, then runs `main` under `runMain`'s error handling.
 */
export function runCommand<Specs extends {[name: string]: OptionSpec}>(
    spec: CommandSpec<Specs>, main: (options: ParsedOptions, sentence: string) => Promise<void>): void {
  const usageText = usage(spec.command, spec.options);
  runMain(async () => {
    const {options, positionals} = parseCommandLine(process.argv.slice(2), spec.options);
    if (options.help) {
      console.log(usageText);
      return;
    }
    if (spec.takesSentence && positionals.length !== 1) {
      throw new UsageError(`Expected one sentence in quotes. Received: ${positionals.length} arguments`);
    }
    if (!spec.takesSentence && positionals.length > 0) throw new UsageError(`Unexpected argument: ${positionals[0]}`);
    await main(options, positionals[0] ?? '');
  }, usageText);
}
