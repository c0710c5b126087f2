import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The parts of a V8 CPU profile (`node --cpu-prof`) that a summary needs. */
interface CpuProfile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: { readonly functionName: string; readonly url: string } }>;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Where a function's own time goes, by the code it is in. First match wins. */
const categories: ReadonlyArray<readonly [string, (frame: { functionName: string; url: string }) => boolean]> = [
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

/** The role of the process a profile came from, by the code it ran. */
function roleOf(profile: CpuProfile): string {
  const urls = profile.nodes.map((node) => node.callFrame.url);
  if (urls.some((url) => /pipeline\/worker\/worker\.(js|ts)$/.test(url))) return 'worker';
  if (urls.some((url) => /pipeline\/server\//.test(url))) return 'server';
  return 'bench';
}

/** Each category's share of a profile's time, and the seconds profiled. */
export function summarizeProfile(profile: CpuProfile): { seconds: number; shares: Map<string, number> } {
  const categoryOf = new Map<number, string>();
  for (const node of profile.nodes) categoryOf.set(node.id, categories.find(([, test]) => test(node.callFrame))![0]);
  const micros = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const category = categoryOf.get(id) ?? 'node internals and native code';
    micros.set(category, (micros.get(category) ?? 0) + delta);
    total += delta;
  });
  return { seconds: total / 1e6, shares: new Map([...micros].map(([category, us]) => [category, us / Math.max(total, 1)])) };
}

/**
 * Lines that say where each worker's CPU went, for the profiles written in `dir` since `sinceMs`: each category's
 * share of the busy time, and its CPU seconds per 100,000 of the `samples` the run trained (over all workers).
 */
export function describeProfiles(dir: string, sinceMs: number, samples: number): string[] {
  const lines: string[] = [];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.cpuprofile')).sort()) {
    const path = join(dir, file);
    if (statSync(path).mtimeMs < sinceMs) continue;
    const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
    const role = roleOf(profile);
    if (role !== 'worker') continue;
    const { seconds, shares } = summarizeProfile(profile);
    const busy = 1 - (shares.get('idle') ?? 0);
    const perHundredThousand = (share: number) => ((share * seconds * 100_000) / samples).toFixed(2).padStart(5);
    lines.push(`${role} ${file}: ${seconds.toFixed(1)} s profiled, ${(busy * 100).toFixed(0)}% busy (${perHundredThousand(busy).trim()} CPU-s per 100k samples); of the busy time:`);
    for (const [category, share] of [...shares].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1])) {
      lines.push(`  ${((share / busy) * 100).toFixed(1).padStart(5)}%  ${perHundredThousand(share)} CPU-s  ${category}`);
    }
  }
  return lines;
}
