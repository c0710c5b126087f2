import { readdirSync, readFileSync } from 'node:fs';
import { cpuSecondsOf } from '../../pipeline/commands/runProcesses.js';

/** Every process's CPU seconds at one moment (Linux `/proc`; empty elsewhere), by pid, with a short name. */
export type CpuSnapshot = ReadonlyMap<number, { readonly name: string; readonly seconds: number }>;

function nameOf(pid: number): string {
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const program = (args[0] ?? '').split('/').at(-1) ?? '';
    if (program === 'java') return 'java (Kafka broker)';
    // A node process: the script and its first two arguments (`cli.js ingest mqtt`, `tsx test/bench/…`).
    if (program === 'node') return ['node', ...args.slice(1).filter((arg) => !arg.startsWith('-')).slice(0, 3).map((arg) => arg.split('/').at(-1))].join(' ');
    return program || readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export function cpuSnapshot(): CpuSnapshot {
  const snapshot = new Map<number, { name: string; seconds: number }>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry));
  } catch {
    return snapshot;
  }
  for (const entry of entries) {
    const seconds = cpuSecondsOf(Number(entry));
    if (seconds !== undefined) snapshot.set(Number(entry), { name: nameOf(Number(entry)), seconds });
  }
  return snapshot;
}

/**
 * The cores each process used between `before` and now (CPU seconds over `wallSeconds`), by name, largest first,
 * those above 0.02 only: where the machine's CPU went during a measurement, whoever spent it.
 */
export function coresSince(before: CpuSnapshot, wallSeconds: number): Array<{ readonly name: string; readonly cores: number }> {
  const byName = new Map<string, number>();
  for (const [pid, { name, seconds }] of cpuSnapshot()) {
    const spent = seconds - (before.get(pid)?.seconds ?? 0);
    if (spent > 0) byName.set(name, (byName.get(name) ?? 0) + spent / wallSeconds);
  }
  return [...byName].map(([name, cores]) => ({ name, cores })).filter(({ cores }) => cores > 0.02).sort((a, b) => b.cores - a.cores);
}

export function formatCores(cores: ReadonlyArray<{ readonly name: string; readonly cores: number }>): string {
  return cores.map(({ name, cores: used }) => `${name} ${used.toFixed(2)}`).join(', ');
}
