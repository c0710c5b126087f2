import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { measureDecodeRate } from './decodeRate.js';

/**
 * `npm run bench [-- --quick]`: runs the benchmarks in one process, prints a
 * Markdown table of medians, and writes bench-results/latest.json.
 */
const quick = process.argv.includes('--quick');
const started = new Date();
const results: Record<string, number | number[]> = {};

console.error(`streamgrad bench (${quick ? 'quick' : 'full'}): decode + validation, one core …`);
Object.assign(results, measureDecodeRate({ quick }));

const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` };
const report = { timestamp: started.toISOString(), quick, machine, results };
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/latest.json', `${JSON.stringify(report, null, 2)}\n`);

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log(`\n| key | median | goal |\n| --- | ---: | --- |`);
console.log(`| decodeRate (samples/s, 1 core) | ${fmt(results.decodeRate as number)} | ≥ 1,000,000 |`);
console.log(`\n${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Full results: bench-results/latest.json`);
