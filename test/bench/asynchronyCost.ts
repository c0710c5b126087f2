/**
 * What asynchrony costs, apart from the order in which samples come (issue 14): the quality bench's simulated stream
 * (200,000 readings, 200 devices on 4 partitions by device, the bench model) trained in one process by
 * `InProcessJob` (real replicas and server shards, snapshots reaching the workers `delay` updates late), so that
 * staleness and order are exact and every run repeats. Each variant's served model scores the quality bench's holdout.
 *
 *   SEEDS=1,2,3 SHUFFLE=1 VARIANTS='[{"name":"sequential","workers":1,"delay":0,"sequential":true},
 *     {"name":"2 workers, 13 late","workers":2,"delay":13}]' npx tsx test/bench/asynchronyCost.ts
 *
 * A variant: `workers`, `delay`; `sequential` (one partition after another, as `replay --sync`) or each worker's
 * lanes in turn, `chunk` batches at a time, or with `mix` each batch 64 records of every partition; `model` overrides the
 * model spec; `share` each worker's share of the input, as a worker in a group of `workers` sets it (1 by default: no
 * averaging). SHUFFLE=1 shuffles the stream first: no daily cycle in the order of the samples. SEEDS: the
 * model seeds to take the median over.
 */
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { seededRandom, simulatedReading } from '../../pipeline/commands/simulator.js';
import { Replica } from '../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../schemas/index.js';
import { InProcessJob } from '../support/inProcessJob.js';
import { partitionOfDevice } from '../support/liveStream.js';

await selectBackend();
const fleet = { devices: 200, ratePerSecond: 1, seed: 11, dayMs: 60_000, dropoutRate: 0 };
const t0 = 1_790_000_000_000;
const total = Number(process.env.TOTAL ?? 200_000);
const random = seededRandom(fleet.seed);
const readings = Array.from({ length: total }, (_, i) => simulatedReading(i % fleet.devices, t0 + i * 10, random, fleet, t0));
const hr = seededRandom(fleet.seed + 1);
const holdout = Array.from({ length: 20_000 }, (_, k) => simulatedReading((total + k) % fleet.devices, t0 + (total + k) * 10, hr, fleet, t0));
if (process.env.SHUFFLE === '1') {
  const shuffle = seededRandom(5);
  for (let i = readings.length - 1; i > 0; i--) {
    const j = Math.floor(shuffle() * (i + 1));
    [readings[i], readings[j]] = [readings[j]!, readings[i]!];
  }
}
const partitions: TrainingSample[][] = [[], [], [], []];
readings.forEach((r) => partitions[partitionOfDevice(r)]!.push(r));

function run(model: object, workers: number, delay: number, sequentialOrder = false, chunk = 1, mix = false, share = 1): number {
  const spec = parseModelSpec({ kind: 'mlp', features: 16, shards: 2, layers: [{ units: 64 }, { units: 64 }], optimizer: { kind: 'adam', learningRate: 0.001 }, ...model });
  const job = new InProcessJob(spec, workers, delay);
  for (const replica of job.replicas) replica.setDataShare(share);
  const cursor = [0, 0, 0, 0];
  if (mix) {
    // One batch of 256 from all 4 partitions (64 each), worker w taking every workers-th batch.
    for (let s = 0, step = 0; s < partitions[0]!.length; s += 64, step++) {
      const batch = partitions.flatMap((part) => part.slice(s, s + 64));
      job.step(step % workers, batch, 0, step * 256);
    }
  } else if (sequentialOrder) {
    for (let p = 0; p < 4; p++) for (let s = 0; s < partitions[p]!.length; s += 256) job.step(0, partitions[p]!.slice(s, s + 256), p, s);
  } else {
    // Each worker owns partitions w, w + workers, …; in turn, each takes its next lane's next batch.
    const lanes = Array.from({ length: workers }, (_, w) => [0, 1, 2, 3].filter((p) => p % workers === w));
    const next = Array.from({ length: workers }, () => 0);
    let active = true;
    while (active) {
      active = false;
      for (let w = 0; w < workers; w++) {
        for (let tries = 0; tries < lanes[w]!.length; tries++) {
          const p = lanes[w]![Math.floor(next[w]! / chunk) % lanes[w]!.length]!;
          next[w]! += 1;
          if (cursor[p]! >= partitions[p]!.length) continue;
          job.step(w, partitions[p]!.slice(cursor[p]!, cursor[p]! + 256), p, cursor[p]!);
          cursor[p]! += 256;
          active = true;
          break;
        }
      }
    }
  }
  const served = Replica.served(spec, job.snapshots());
  let sum = 0;
  for (let s = 0; s < holdout.length; s += 1000) sum += served.lossSum(holdout.slice(s, s + 1000));
  served.dispose();
  job.dispose();
  return sum / holdout.length;
}

const variants = JSON.parse(process.env.VARIANTS ?? '[]') as Array<{ name: string; model?: object; workers: number; delay: number; sequential?: boolean; chunk?: number; mix?: boolean; share?: number }>;
const seeds = (process.env.SEEDS ?? '1').split(',').map(Number);
for (const v of variants) {
  const losses = seeds.map((seed) => run({ seed, ...(v.model ?? {}) }, v.workers, v.delay, v.sequential, v.chunk, v.mix, v.share));
  const sorted = [...losses].sort((a, b) => a - b);
  console.log(`${v.name}: median ${sorted[Math.floor(sorted.length / 2)]!.toExponential(3)} (${losses.map((l) => l.toExponential(2)).join(', ')})`);
}
