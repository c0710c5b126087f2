import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { acquireTestBroker } from '../support/broker.js';
import { measureConsumeRates } from './consumeRate.js';
import { measureDecodeRate } from './decodeRate.js';
import { measureStepRate } from './stepRate.js';
import { measureWorkerRate } from './workerRate.js';
import { measureFreshness, measurePsApplyRate } from './serverRates.js';

/**
 * `npm run bench [-- --quick]`: runs the benchmarks in one process against one
 * broker (KAFKA_BROKERS, else the infra/ broker, started and stopped here),
 * prints a Markdown table of medians, and writes bench-results/latest.json.
 */
const quick = process.argv.includes('--quick');
const started = new Date();
const results: Record<string, unknown> = {};

console.error(`streamgrad bench (${quick ? 'quick' : 'full'})`);
console.error('decode + validation, one core …');
Object.assign(results, measureDecodeRate({ quick }));
console.error('gradient steps, 16-64-64-1 MLP, batch 256, default backend …');
Object.assign(results, await measureStepRate({ quick }));
console.error('updates applied by one server shard (Adam), no Kafka …');
Object.assign(results, measurePsApplyRate({ quick }));

const broker = await acquireTestBroker();
try {
  console.error(`fromKafka → decode vs raw kafkajs consume (broker ${broker.brokers}, from ${broker.source}) …`);
  Object.assign(results, await measureConsumeRates(broker.brokers, { quick }));
  console.error('one worker on a pre-filled topic …');
  Object.assign(results, await measureWorkerRate(broker.brokers, { quick }));
  results.workerRatio = Number(results.workerRate) / Math.min(Number(results.stepRate), Number(results.rawConsumeRate));
  const freshnessAt = Math.round(Number(results.workerRate) / 2);
  console.error(`freshness at half the worker rate (${freshnessAt} samples/s), one worker, one server …`);
  Object.assign(results, await measureFreshness(broker.brokers, freshnessAt, { quick }));
} finally {
  await broker.stop();
}

const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version, platform: `${process.platform}-${process.arch}` };
const report = {
  timestamp: started.toISOString(),
  quick,
  machine,
  setup: 'one process; the Kafka broker runs on the same machine and shares its cores',
  results,
};
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/latest.json', `${JSON.stringify(report, null, 2)}\n`);

const fmt = (n: unknown) => Math.round(Number(n)).toLocaleString('en-US');
console.log(`\n| key | median | goal |\n| --- | ---: | --- |`);
console.log(`| decodeRate (samples/s, 1 core, no Kafka) | ${fmt(results.decodeRate)} | ≥ 1,000,000 |`);
console.log(`| stepRate (samples/s, ${String(results.backend)} backend, no Kafka) | ${fmt(results.stepRate)} | |`);
console.log(`| rawConsumeRate (records/s, no-op kafkajs eachBatch) | ${fmt(results.rawConsumeRate)} | |`);
console.log(`| sourceDecodeRate (records/s, fromKafka → decode → count) | ${fmt(results.sourceDecodeRate)} | |`);
console.log(`| sourceDecodeRate / rawConsumeRate | ${Number(results.sourceDecodeRatio).toFixed(2)} | ≥ 0.85 |`);
console.log(`| workerRate (samples/s, one worker, exactly-once, no server) | ${fmt(results.workerRate)} | |`);
console.log(`| workerRate / min(stepRate, rawConsumeRate) | ${Number(results.workerRatio).toFixed(2)} | ≥ 0.8 |`);
console.log(`| psApplyRate (updates/s, one shard, 16-64-64-1 MLP, Adam, no Kafka) | ${fmt(results.psApplyRate)} | |`);
console.log(`| freshnessP50Ms / freshnessP99Ms (at ${fmt(results.freshnessRate)} samples/s) | ${fmt(results.freshnessP50Ms)} / ${fmt(results.freshnessP99Ms)} | p99 ≤ 1,000 |`);
console.log(`\n${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; ${report.setup}. Full results: bench-results/latest.json`);
