import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

/** The parts of a V8 CPU profile (`node --cpu-prof`) that a summary needs. */
interface CpuProfile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: CallFrame }>;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  /** µs on the monotonic clock, which every process on the machine shares. */
  readonly startTime: number;
}

/** Where a function's own time goes, by the code it is in. First match wins. */
const categories: ReadonlyArray<readonly [string, (frame: CallFrame) => boolean]> = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['garbage collection', (f) => f.functionName === '(garbage collector)'],
  ['start-up: loading modules and native libraries', (f) => /node:internal\/(modules|deps\/cjs-module-lexer)/.test(f.url) || ['dlopen', 'wrapSafe', 'compileFunction'].includes(f.functionName)],
  ['tensorflow native and tfjs-core', (f) => f.url.includes('@tensorflow') || f.url.includes('tfjs')],
  ['kafkajs', (f) => f.url.includes('kafkajs')],
  ['avsc (schema-driven decode, snapshots)', (f) => f.url.includes('avsc')],
  ['rxjs', (f) => f.url.includes('rxjs')],
  ['streamgrad: input decode (schemas/)', (f) => f.url.includes('/schemas/')],
  ['streamgrad: other', (f) => /\/(pipeline|operators)\//.test(f.url)],
  ['prom-client, zod, other packages', (f) => f.url.includes('node_modules')],
  ['node internals and native code', () => true],
];
const tensorflow = categories[3]![0];

/** One sample of a profile: when it was taken (µs, monotonic), how long it stood for, and the function it was in. */
interface Sample {
  readonly at: number;
  readonly us: number;
  readonly category: string;
  readonly frame: CallFrame;
}

function samplesOf(profile: CpuProfile): Sample[] {
  const frames = new Map(profile.nodes.map((node) => [node.id, { frame: node.callFrame, category: categories.find(([, test]) => test(node.callFrame))![0] }]));
  let at = profile.startTime;
  return profile.samples.map((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    at += us;
    const { frame, category } = frames.get(id)!;
    return { at, us, category, frame };
  });
}

/** A window of the monotonic clock, µs, from `from` up to (not including) `to`. */
interface Window {
  readonly from: number;
  readonly to: number;
}

/** Each category's share of the samples' time (in `window` if given), and the seconds it covers. */
function shareOf(samples: readonly Sample[], window?: Window): { seconds: number; shares: Map<string, number> } {
  const micros = new Map<string, number>();
  let total = 0;
  for (const { at, us, category } of samples) {
    if (window && (at < window.from || at >= window.to)) continue;
    micros.set(category, (micros.get(category) ?? 0) + us);
    total += us;
  }
  return { seconds: total / 1e6, shares: new Map([...micros].map(([category, us]) => [category, us / Math.max(total, 1)])) };
}

/**
 * The steady state of a run: from the first to the last second in which some worker spent at least a tenth of its
 * time in TensorFlow (its steps), so without start-up, the group join, the warm-up and the drain.
 */
function steadyWindow(workers: ReadonlyArray<readonly Sample[]>): Window | undefined {
  const second = 1e6;
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const samples of workers) {
    const bins = new Map<number, { all: number; steps: number }>();
    for (const { at, us, category } of samples) {
      const index = Math.floor(at / second);
      const bin = bins.get(index) ?? { all: 0, steps: 0 };
      bin.all += us;
      if (category === tensorflow) bin.steps += us;
      bins.set(index, bin);
    }
    for (const [index, { all, steps }] of bins) {
      if (steps < 0.1 * all) continue;
      from = Math.min(from, index * second);
      to = Math.max(to, (index + 1) * second);
    }
  }
  return to > from ? { from, to } : undefined;
}

/** A script's path from its package (`kafkajs/src/…`), or from the project (`pipeline/…`, with `dist/` dropped). */
function shortUrl(url: string): string {
  const inPackage = url.lastIndexOf('/node_modules/');
  if (inPackage >= 0) return url.slice(inPackage + '/node_modules/'.length);
  return url.replace(/^.*?\/(dist\/)?(?=(pipeline|operators|schemas|test)\/)/, '');
}

/** The functions with the most time of their own in `window`, as shares of the busy time there. */
function topFunctions(samples: readonly Sample[], window: Window, count: number): Array<{ share: number; name: string }> {
  const micros = new Map<string, number>();
  let busy = 0;
  for (const { at, us, category, frame } of samples) {
    if (at < window.from || at >= window.to || category === 'idle') continue;
    const where = frame.url ? ` ${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '';
    const name = `${frame.functionName || '(anonymous)'}${where}`;
    micros.set(name, (micros.get(name) ?? 0) + us);
    busy += us;
  }
  return [...micros]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => ({ share: us / Math.max(busy, 1), name }));
}

/**
 * The role of the process a profile came from, by where its own time went: every process of the CLI loads the worker's
 * and the server's modules, and only one of them runs.
 */
function roleOf(samples: readonly Sample[]): string {
  let worker = 0;
  let server = 0;
  for (const { us, frame } of samples) {
    if (/\/pipeline\/worker\//.test(frame.url)) worker += us;
    else if (/\/pipeline\/server\//.test(frame.url)) server += us;
  }
  if (worker === 0 && server === 0) return 'bench';
  return worker >= server ? 'worker' : 'server';
}

function categoryLines(shares: Map<string, number>, perHundredThousand: (share: number) => string): string[] {
  const busy = 1 - (shares.get('idle') ?? 0);
  return [...shares]
    .filter(([category]) => category !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .map(([category, share]) => `  ${((share / busy) * 100).toFixed(1).padStart(5)}%  ${perHundredThousand(share)} CPU-s  ${category}`);
}

/**
 * Lines that say where the workers' and the server's CPU went, for the profiles written in `dir` since `sinceMs`:
 * over each whole run, each category's share of the busy time and its CPU seconds per 100,000 of the `samples` the run
 * trained (over all workers); then over the steady state alone (see {@link steadyWindow}), how busy each process was,
 * the same shares, and the worker's busiest functions.
 */
export function describeProfiles(dir: string, sinceMs: number, samples: number): string[] {
  const profiles = readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .sort()
    .filter((name) => statSync(join(dir, name)).mtimeMs >= sinceMs)
    .map((file) => {
      const taken = samplesOf(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile);
      return { file, role: roleOf(taken), samples: taken };
    })
    .filter(({ role }) => role !== 'bench');
  const lines: string[] = [];
  for (const { file, role, samples: taken } of profiles) {
    const { seconds, shares } = shareOf(taken);
    const busy = 1 - (shares.get('idle') ?? 0);
    const perHundredThousand = (share: number) => ((share * seconds * 100_000) / samples).toFixed(2).padStart(5);
    lines.push(`${role} ${file}: ${seconds.toFixed(1)} s profiled, ${(busy * 100).toFixed(0)}% busy (${perHundredThousand(busy).trim()} CPU-s per 100k samples); of the busy time:`);
    lines.push(...categoryLines(shares, perHundredThousand));
  }
  const window = steadyWindow(profiles.filter(({ role }) => role === 'worker').map(({ samples: taken }) => taken));
  if (!window) return lines;
  lines.push(`steady state (${((window.to - window.from) / 1e6).toFixed(0)} s in which a worker stepped):`);
  for (const { file, role, samples: taken } of profiles) {
    const { seconds, shares } = shareOf(taken, window);
    const busy = 1 - (shares.get('idle') ?? 0);
    lines.push(`${role} ${file}: ${(busy * 100).toFixed(0)}% busy (${(busy * seconds).toFixed(1)} of ${seconds.toFixed(1)} s); of the busy time:`);
    lines.push(...categoryLines(shares, (share) => (share * seconds).toFixed(2).padStart(5)).map((line) => line.replace(' CPU-s ', ' s ')));
    if (role !== 'worker') continue;
    lines.push('  its busiest functions (own time, share of the busy time):');
    for (const { share, name } of topFunctions(taken, window, 12)) lines.push(`  ${(share * 100).toFixed(1).padStart(5)}%  ${name}`);
  }
  return lines;
}
