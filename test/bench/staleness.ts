/**
 * What staleness costs a model, without Kafka: the real worker replicas (`Replica`, deltas, feature scaling) and
 * server shards (`ShardState`, the served average) on the quality benchmark's simulated readings, with snapshots
 * reaching the workers a fixed number of updates late. Each worker reads its share of the 4 partitions, one batch of
 * 256 from each in turn; which worker steps next is drawn at random (seeded). It prints the holdout loss of the
 * served model and of the weights per setting, so remedies can be compared on identical samples in a minute.
 *
 * `npx tsx test/bench/staleness.ts [--total N]`; STALENESS_VARIANTS (JSON: [{name, workers, delay, model}]) replaces
 * the default settings.
 */
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { seededRandom, simulatedReading } from '../../pipeline/commands/simulator.js';
import { Replica } from '../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../schemas/types.js';
import { InProcessJob } from '../support/inProcessJob.js';
import { simulatorBenchModel } from './pipelineRate.js';

interface Variant {
  readonly name: string;
  readonly workers: number;
  /** Updates applied at the server before a snapshot reaches the workers. */
  readonly delay: number;
  /** Model settings over the bench model's. */
  readonly model?: object;
}

const defaults: Variant[] = [
  { name: '1 worker', workers: 1, delay: 8 },
  ...[8, 16, 32].flatMap((delay) => [
    { name: `2 workers, ${delay} late, keep`, workers: 2, delay, model: { asyncMomentum: 'keep' } },
    { name: `2 workers, ${delay} late, lower`, workers: 2, delay },
  ]),
];

const fleet = { devices: 200, ratePerSecond: 1, seed: 11, dayMs: 60_000, dropoutRate: 0 };
const t0 = 1_790_000_000_000;
const partitions = 4;
const batchSize = 256;

function readings(count: number, seed: number, first: number): TrainingSample[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, (_, k) => simulatedReading((first + k) % fleet.devices, t0 + (first + k) * 10, random, { ...fleet, featureScales: 'unit' }, t0));
}

/** Each device's readings in one partition, as a keyed producer would put them. */
function byPartition(samples: readonly TrainingSample[]): TrainingSample[][] {
  const partitioned: TrainingSample[][] = Array.from({ length: partitions }, () => []);
  for (const sample of samples) partitioned[(Math.imul(Number(sample.deviceId.slice('device-'.length)) + 7, 2654435761) >>> 20) % partitions]!.push(sample);
  return partitioned;
}

function meanLoss(replica: Replica, samples: readonly TrainingSample[]): number {
  let sum = 0;
  for (let start = 0; start < samples.length; start += 1_000) sum += replica.lossSum(samples.slice(start, start + 1_000));
  return sum / samples.length;
}

/** Trains one variant; returns the holdout loss of the served model and of the weights, and each worker's foreign staleness. */
function train(variant: Variant, input: readonly TrainingSample[][], holdout: readonly TrainingSample[]): { served: number; weights: number; foreign: number[] } {
  const job = new InProcessJob(parseModelSpec({ ...simulatorBenchModel, ...variant.model }), variant.workers, variant.delay);
  const workers = job.replicas.map((_, k) => ({
    lanes: input.map((samples, partition) => ({ partition, samples, next: 0 })).filter(({ partition }) => partition % variant.workers === k),
    turn: 0,
  }));
  const random = seededRandom(99);
  for (;;) {
    const active = workers.filter((w) => w.lanes.some((lane) => lane.next < lane.samples.length));
    if (active.length === 0) break;
    const worker = active[Math.floor(random() * active.length)]!;
    const lanes = worker.lanes.filter((lane) => lane.next < lane.samples.length);
    const lane = lanes[worker.turn++ % lanes.length]!;
    const first = lane.next;
    job.step(workers.indexOf(worker), lane.samples.slice(first, (lane.next += batchSize)), lane.partition, first);
  }
  const finals = job.snapshots();
  const served = Replica.served(job.spec, finals);
  const weights = new Replica(job.spec);
  for (const snapshot of finals) weights.applySnapshot(snapshot);
  const result = { served: meanLoss(served, holdout), weights: meanLoss(weights, holdout), foreign: job.replicas.map((r) => r.foreignStaleness()) };
  [served, weights].forEach((replica) => replica.dispose());
  job.dispose();
  return result;
}

const totalAt = process.argv.indexOf('--total');
const total = totalAt > 0 ? Number(process.argv[totalAt + 1]) : 200_000;
const variants = process.env.STALENESS_VARIANTS ? (JSON.parse(process.env.STALENESS_VARIANTS) as Variant[]) : defaults;
console.error(`backend ${await selectBackend()}; ${total.toLocaleString('en-US')} readings, holdout 20,000`);
const input = byPartition(readings(total, fleet.seed, 0));
const holdout = readings(20_000, fleet.seed + 1, total);
console.log('| setting | served model | weights | foreign staleness (per worker, at the end) |\n| --- | ---: | ---: | --- |');
for (const variant of variants) {
  const { served, weights, foreign } = train(variant, input, holdout);
  console.log(`| ${variant.name} | ${served.toExponential(3)} | ${weights.toExponential(3)} | ${foreign.map((f) => f.toFixed(1)).join(', ')} |`);
}
