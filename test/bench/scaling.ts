import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { acquireTestBroker, infraTestInstance } from '../support/broker.js';
import { benchPartitions, fillTopic } from './consumeRate.js';
import { deleteTopics, measurePipelineRate, type PipelineRate } from './pipelineRate.js';
import { median } from './stats.js';

/**
 * `npm run bench:scaling`: where the machine, not the design, limits throughput. The same pre-filled topic is
 * trained end to end (`streamgrad run`, 1 server, the bench model) with the broker and every streamgrad process
 * pinned to one core (`taskset`), then on all cores, with 1 and 2 workers; runs alternate. Prints the rates, the
 * cores each process kept busy, the CPU seconds each role spends per 100,000 samples, and what those costs allow on
 * more cores. Needs the infra/ broker (its process is pinned too) and Linux `taskset`.
 *
 * Env: SCALING_RECORDS (default 200,000), SCALING_RUNS (default 2).
 */
const total = Number(process.env.SCALING_RECORDS ?? 200_000);
const runs = Number(process.env.SCALING_RUNS ?? 2);
const log = (line: string) => console.error(`[scaling] ${line}`);
const allCores = `0-${availableParallelism() - 1}`;

/** Pins a process and all its threads to `cpus`; the children it starts later inherit it. */
function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

interface Setting {
  readonly name: string;
  readonly cpus: string;
  readonly workers: number;
}

const settings: readonly Setting[] = [
  { name: '1 core, 1 worker', cpus: '0', workers: 1 },
  { name: `${availableParallelism()} cores, 1 worker`, cpus: allCores, workers: 1 },
  { name: `${availableParallelism()} cores, 2 workers`, cpus: allCores, workers: 2 },
];

/** CPU seconds per 100,000 samples by role: the workers together, the server, the broker. */
function costOf(measured: PipelineRate, seconds: number): Record<string, number> {
  const per = (cores: number) => (cores * seconds * 100_000) / total;
  const workers = Object.entries(measured.coresUsed).filter(([name]) => name.startsWith('worker-')).reduce((sum, [, cores]) => sum + cores, 0);
  return { workers: per(workers), ps: per(measured.coresUsed.ps ?? 0), broker: per(measured.coresUsed.broker ?? 0) };
}

const broker = await acquireTestBroker();
if (broker.source !== 'infra') throw new Error('bench:scaling pins the broker process: it needs the infra/ broker (unset KAFKA_BROKERS)');
const brokerPid = Number(readFileSync(`${infraTestInstance.dataDir}/node1/pid`, 'utf8').trim());
const brokers = broker.brokers.split(',');
const kafka = createKafka({ clientId: 'streamgrad-bench-scaling', brokers });
const results = new Map<string, { rates: number[]; costs: Array<Record<string, number>>; cores: Array<Readonly<Record<string, number>>> }>();
try {
  const topic = `bench-scaling-${randomUUID().slice(0, 8)}`;
  log(`filling ${topic} with ${total.toLocaleString('en-US')} samples over ${benchPartitions} partitions …`);
  await fillTopic(kafka, topic, total);
  for (let run = 0; run < runs; run++) {
    for (const setting of settings) {
      pin(brokerPid, setting.cpus);
      pin(process.pid, setting.cpus);
      log(`${setting.name} (run ${run + 1}/${runs}) …`);
      const started = Date.now();
      const measured = await measurePipelineRate(kafka, brokers, topic, total, setting.workers, { brokerPid });
      const seconds = (Date.now() - started) / 1000;
      const entry = results.get(setting.name) ?? { rates: [], costs: [], cores: [] };
      entry.rates.push(measured.rate);
      entry.costs.push(costOf(measured, seconds));
      entry.cores.push(measured.coresUsed);
      results.set(setting.name, entry);
      log(`  ${Math.round(measured.rate)} samples/s; cores used: ${Object.entries(measured.coresUsed).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
    }
  }
  await deleteTopics(kafka, [topic]);
} finally {
  pin(brokerPid, allCores);
  pin(process.pid, allCores);
  await broker.stop();
}

const medianCost = (costs: Array<Record<string, number>>, role: string) => median(costs.map((cost) => cost[role]!));
console.log(`\n| setting | samples/s (median of ${runs}) | runs | CPU s per 100k samples: workers / server / broker |`);
console.log('| --- | ---: | --- | --- |');
for (const [name, { rates, costs }] of results) {
  console.log(`| ${name} | ${Math.round(median(rates))} | ${rates.map(Math.round).join(', ')} | ${['workers', 'ps', 'broker'].map((role) => medianCost(costs, role).toFixed(2)).join(' / ')} |`);
}
const [oneCore, allOne, allTwo] = settings.map((setting) => median(results.get(setting.name)!.rates));
console.log(`\n${settings[1]!.name} / 1 core: ${(allOne! / oneCore!).toFixed(2)}; ${settings[2]!.name} / 1 core: ${(allTwo! / oneCore!).toFixed(2)}`);
// What the costs measured with 2 workers allow: each role gets the cores it needs, workers scale with partitions.
const two = results.get(settings[2]!.name)!.costs;
const perSample = ['workers', 'ps', 'broker'].map((role) => medianCost(two, role) / 100_000);
const total1 = perSample.reduce((sum, cost) => sum + cost, 0);
console.log(`CPU per sample, all roles: ${(total1 * 1e6).toFixed(1)} µs; so at most ${Math.round(1 / total1).toLocaleString('en-US')} samples/s per core of the machine, ` + `${Math.round(4 / total1).toLocaleString('en-US')} on 4 cores and ${Math.round(8 / total1).toLocaleString('en-US')} on 8 if every role scaled out (workers with partitions, the server with shards)`);
