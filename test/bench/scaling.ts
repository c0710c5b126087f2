import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { cpuSecondsOf } from '../../pipeline/commands/runProcesses.js';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { acquireTestBroker } from '../support/broker.js';
import { benchPartitions, fillTopic, softmaxBenchSample } from './consumeRate.js';
import { deleteTopics, measurePipelineRate, type PipelineRate } from './pipelineRate.js';
import { median } from './stats.js';
import { measureStepRate, stepModels } from './stepRate.js';

/**
 * `npm run bench:scaling`: where the machine, not the design, limits throughput. The same pre-filled topic is
 * trained end to end (`streamgrad run`, 1 server, the bench model) with the broker and every streamgrad process
 * pinned to one core (`taskset`), then on all cores, with 1 and 2 workers; runs alternate. Prints the rates, the
 * cores each process kept busy, the CPU seconds each role spends per 100,000 samples between 10% and 90% of the topic
 * (sampled from /proc), and what those costs allow on more cores: among them the cores that the rate goals of
 * `npm run bench` would take (one worker at 0.8 of the model's isolated step rate, measured here first; two workers
 * at 1.6 times one). Needs the infra/ broker (its process is pinned too) and Linux `taskset`.
 *
 * Env: SCALING_RECORDS (default 400,000), SCALING_RUNS (default 3), SCALING_MODEL (`mlp16`, the default, or
 * `softmax64`: the bench's two models).
 */
const total = Number(process.env.SCALING_RECORDS ?? 400_000);
const runs = Number(process.env.SCALING_RUNS ?? 3);
const modelName = process.env.SCALING_MODEL ?? 'mlp16';
if (!(modelName in stepModels)) throw new Error(`SCALING_MODEL must be one of ${Object.keys(stepModels).join(', ')}, got '${modelName}'`);
const model = stepModels[modelName as keyof typeof stepModels];
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

type Role = 'workers' | 'ps' | 'broker';
const roles: readonly Role[] = ['workers', 'ps', 'broker'];

/** The streamgrad processes this one started (at any depth), by role, from /proc. */
function streamgradProcesses(): Array<{ pid: number; role: Role }> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      parents.set(Number(entry), Number(readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const mine = (pid: number): boolean => {
    for (let at = parents.get(pid); at !== undefined && at > 1; at = parents.get(at)) if (at === process.pid) return true;
    return false;
  };
  const found: Array<{ pid: number; role: Role }> = [];
  for (const pid of parents.keys()) {
    if (!mine(pid)) continue;
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const command = args[args.findIndex((arg) => arg.endsWith('cli.js') || arg.endsWith('cli.ts')) + 1];
    if (command === 'worker') found.push({ pid, role: 'workers' });
    if (command === 'ps') found.push({ pid, role: 'ps' });
  }
  return found;
}

/** CPU seconds by role, sampled every 200 ms with the time, so that the steady state can be cut out afterwards. */
function sampleCpu(brokerPid: number): { samples: Array<{ at: number; cpu: Record<Role, number> }>; stop: () => void } {
  const samples: Array<{ at: number; cpu: Record<Role, number> }> = [];
  // A process's CPU is only known while it runs: keep the last reading of every pid seen, so none drops out.
  const last = new Map<number, { role: Role; seconds: number }>();
  const timer = setInterval(() => {
    for (const { pid, role } of streamgradProcesses()) {
      const seconds = cpuSecondsOf(pid);
      if (seconds !== undefined) last.set(pid, { role, seconds });
    }
    const cpu: Record<Role, number> = { workers: 0, ps: 0, broker: cpuSecondsOf(brokerPid) ?? 0 };
    for (const { role, seconds } of last.values()) cpu[role] += seconds;
    samples.push({ at: Date.now(), cpu });
  }, 200);
  return { samples, stop: () => clearInterval(timer) };
}

/** CPU seconds by role per 100,000 samples between the snapshots at 10% and 90% of the topic: the steady state. */
function steadyCost(samples: ReadonlyArray<{ at: number; cpu: Record<Role, number> }>, measured: PipelineRate): Record<Role, number> {
  const at = (time: number) => samples.reduce((best, sample) => (Math.abs(sample.at - time) < Math.abs(best.at - time) ? sample : best));
  const from = at(measured.window.from);
  const to = at(measured.window.to);
  const trained = (measured.rate * (to.at - from.at)) / 1000;
  return Object.fromEntries(roles.map((role) => [role, ((to.cpu[role] - from.cpu[role]) * 100_000) / trained])) as Record<Role, number>;
}

log(`isolated steps of ${modelName} …`);
const { stepRate, backend } = await measureStepRate({ quick: false, model: modelName as keyof typeof stepModels });
log(`  ${Math.round(stepRate)} samples/s on ${backend}`);
const broker = await acquireTestBroker();
const brokerPid = broker.pid;
if (brokerPid === undefined) throw new Error('bench:scaling pins the broker process: it needs the infra/ broker (unset KAFKA_BROKERS)');
const brokers = broker.brokers.split(',');
const kafka = createKafka({ brokers }, 'streamgrad-bench-scaling');
const results = new Map<string, { rates: number[]; costs: Array<Record<Role, number>>; cores: Array<Readonly<Record<string, number>>> }>();
try {
  const topic = `bench-scaling-${randomUUID().slice(0, 8)}`;
  log(`filling ${topic} with ${total.toLocaleString('en-US')} samples over ${benchPartitions} partitions …`);
  await fillTopic(kafka, topic, total, modelName === 'softmax64' ? softmaxBenchSample : undefined);
  for (let run = 0; run < runs; run++) {
    for (const setting of settings) {
      pin(brokerPid, setting.cpus);
      pin(process.pid, setting.cpus);
      log(`${setting.name} (run ${run + 1}/${runs}) …`);
      const cpu = sampleCpu(brokerPid);
      const measured = await measurePipelineRate(kafka, brokers, topic, total, setting.workers, { brokerPid, model }).finally(cpu.stop);
      const entry = results.get(setting.name) ?? { rates: [], costs: [], cores: [] };
      entry.rates.push(measured.rate);
      entry.costs.push(steadyCost(cpu.samples, measured));
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

const medianCost = (costs: ReadonlyArray<Record<Role, number>>, role: Role) => median(costs.map((cost) => cost[role]!));
console.log(`\n| setting | samples/s (median of ${runs}) | runs | CPU s per 100k samples, steady state: workers / server / broker |`);
console.log('| --- | ---: | --- | --- |');
for (const [name, { rates, costs }] of results) {
  console.log(`| ${name} | ${Math.round(median(rates))} | ${rates.map(Math.round).join(', ')} | ${roles.map((role) => medianCost(costs, role).toFixed(2)).join(' / ')} |`);
}
const [oneCore, allOne, allTwo] = settings.map((setting) => median(results.get(setting.name)!.rates));
console.log(`\n${settings[1]!.name} / 1 core: ${(allOne! / oneCore!).toFixed(2)}; ${settings[2]!.name} / 1 core: ${(allTwo! / oneCore!).toFixed(2)}`);
// What the costs allow: every role on cores of its own, workers scaling with partitions and the server with shards.
/** CPU seconds per sample of every role together, in the steady state of `setting`. */
const costPerSample = (setting: Setting) => roles.reduce((sum, role) => sum + medianCost(results.get(setting.name)!.costs, role) / 100_000, 0);
const cost = costPerSample(settings[2]!);
const upTo = (cores: number) => Math.round(cores / cost).toLocaleString('en-US');
const cores = availableParallelism();
console.log(`CPU per sample with 2 workers, all roles, steady state: ${(cost * 1e6).toFixed(1)} µs, so at most ${upTo(1)} samples/s per core: ${upTo(2)} on ${cores} cores, ${upTo(4)} on 4, ${upTo(8)} on 8, if every role scaled out (workers with partitions, the server with shards)`);
// The rate goals of `npm run bench`, at these costs: the cores they take, against the machine's.
const oneWorkerCost = costPerSample(settings[1]!);
const workerCost = medianCost(results.get(settings[1]!.name)!.costs, 'workers') / 100_000;
const stepGoal = 0.8 * stepRate;
console.log(
  `one worker, 0.8 of its isolated step rate (${Math.round(stepRate)} samples/s on ${backend}): ${Math.round(stepGoal)} samples/s, which takes ${(stepGoal * oneWorkerCost).toFixed(2)} cores ` +
    `(the worker ${(stepGoal * workerCost).toFixed(2)}) at ${(oneWorkerCost * 1e6).toFixed(1)} µs per sample; ${cores} cores allow ${Math.round(cores / oneWorkerCost)} (${(cores / oneWorkerCost / stepRate).toFixed(2)} of the step rate)`,
);
const twoGoal = 1.6 * allOne!;
console.log(`two workers at 1.6 times one (${Math.round(twoGoal)} samples/s) take ${(twoGoal * cost).toFixed(2)} cores at ${(cost * 1e6).toFixed(1)} µs per sample; ${cores} cores allow ${(cores / cost / allOne!).toFixed(2)} times one`);
