/** The command line of `npm run bench`. */
import {parseArgs} from 'util';
import {BACKEND_NAMES} from '../tfjs_attention';
import type {BackendName} from '../tfjs_attention';
import {parseIntegerOption, UsageError} from '../cli/arguments';
import type {BenchOptions} from './run_bench';

export const BENCH_USAGE = `Usage: npm run bench -- [options]

Times the ScaledDotProductAttention layer (forward, and forward+backward with gradients for
the input and every weight) against the naive literal version and a plain 1024×1024 matMul.

Options:
  --backend <name>[,<name>]   tfjs backend(s), repeatable: ${BACKEND_NAMES.filter(b => b !== 'webgl').join(', ')} (default: auto)
  --reps <n>                  timed repetitions per row for T < 4096 (default: 15, cpu 5)
  --large-reps <n>            timed repetitions per row for T >= 4096 (default: 5)
  --warmup <n>                untimed rounds before timing (default: 5, cpu 2; 1 for T >= 4096)
  --quick                     the tiny grid of the tests (1 repetition)
  --lengths <T>[,<T>]         only the grid's points of these sequence lengths, e.g. --lengths 16,128,4096
  --masks                     only the mask rows: padding, causal and explicit masks at T = 8192 on the
                              memory-efficient path, each against the same call unmasked (target 6)
  --json <file>               also write all results to this JSON file
  --help                      show this help`;

export interface BenchCommandLine extends BenchOptions {
  json: string|null;
  help: boolean;
}

/** Counts are read like every script's integer options (see parseIntegerOption): 1e3 is 1000. */
function count(name: string, raw: string|undefined, min: number): number|undefined {
  return raw == null ? undefined : parseIntegerOption(name, raw, {min});
}

/** Parses the arguments after the script's name. */
export function parseBenchArgs(argv: string[]): BenchCommandLine {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: false, strict: true,
      options: {
        'backend': {type: 'string', multiple: true}, 'reps': {type: 'string'}, 'large-reps': {type: 'string'},
        'warmup': {type: 'string'}, 'lengths': {type: 'string', multiple: true}, 'quick': {type: 'boolean'}, 'masks': {type: 'boolean'}, 'json': {type: 'string'},
        'help': {type: 'boolean'},
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values as {[name: string]: string|string[]|boolean|undefined};
  const backends = ((values.backend as string[]|undefined) ?? []).flatMap(b => b.split(',')).map(b => b.trim()).filter(b => b !== '');
  for (const name of backends) {
    if (!BACKEND_NAMES.includes(name as BackendName)) {
      throw new UsageError(`Received an invalid value for option \`--backend\`, expected one of ${BACKEND_NAMES.join(', ')}. Received: --backend ${name}`);
    }
  }
  const lengths = ((values.lengths as string[]|undefined) ?? []).flatMap(l => l.split(',')).map(l => l.trim()).filter(l => l !== '')
      .map(l => parseIntegerOption('lengths', l, {min: 1}));
  return {
    backends: backends as BackendName[],
    lengths,
    reps: count('reps', values.reps as string|undefined, 1),
    largeReps: count('large-reps', values['large-reps'] as string|undefined, 1),
    warmup: count('warmup', values.warmup as string|undefined, 0),
    quick: values.quick === true,
    masks: values.masks === true,
    json: (values.json as string|undefined) ?? null,
    help: values.help === true,
  };
}
