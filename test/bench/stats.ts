import { percentile } from '../../pipeline/common/percentile.js';

/** The median of some measurements: what the benchmarks report, since single runs on a shared machine are noisy. */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of no values');
  return percentile(values, 50);
}

/** Runs `body` `runs` times and returns each run's rate in items per second. */
export function rates(runs: number, items: number, body: () => void): number[] {
  const result: number[] = [];
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    body();
    result.push((items / (performance.now() - started)) * 1000);
  }
  return result;
}

/** `--runs N` among a bench's arguments: how many runs give its medians (`fallback` without it). */
export function runsArgument(argv: readonly string[], fallback: number): number {
  const at = argv.indexOf('--runs');
  if (at < 0) return fallback;
  const runs = Number(argv[at + 1]);
  if (!(Number.isInteger(runs) && runs > 0)) throw new Error(`--runs: expected a positive integer, got ${argv[at + 1]}`);
  return runs;
}
