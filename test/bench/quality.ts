/**
 * Model quality against a sequential learner (issue 14): the same pre-filled topic of simulated telemetry trained by
 * `streamgrad replay --sync` (one update at a time, each on the weights of the one before: a sequential learner) and by
 * `streamgrad run` with 1 and 2 worker processes; each model's mean loss on a holdout drawn from the same simulator,
 * and the staleness of every gradient the server applied, measured from the committed updates.
 *
 * Standalone: `npx tsx test/bench/quality.ts [--quick]` (KAFKA_BROKERS, else the infra/ broker); also part of
 * `npm run bench`. The experiment is the benchmark model with every other setting at its default.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kafka } from 'kafkajs';
import { parseExperiment, type ExperimentConfig } from '../../pipeline/common/config.js';
import { ConsoleDisplay } from '../../pipeline/common/console.js';
import { latestSnapshots } from '../../pipeline/common/modelStore.js';
import { percentile } from '../../pipeline/common/percentile.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { runReplay } from '../../pipeline/commands/replay.js';
import { seededRandom, simulatedReading, type SimulatorOptions } from '../../pipeline/commands/simulator.js';
import { runExperiment } from '../../pipeline/commands/supervisor.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { codecFor, type TrainingSample } from '../../schemas/index.js';
import { benchModel } from './pipelineRate.js';
import { median } from './stats.js';

/** The simulated fleet: readings 10 ms apart in event time, so the topic spans many simulated days. */
const fleet: SimulatorOptions = { devices: 200, ratePerSecond: 1, seed: 11, dayMs: 60_000, dropoutRate: 0 };
const t0 = 1_790_000_000_000;
const readingEveryMs = 10;
const partitions = 4;

/** Reading `i` of the stream (the topic's readings, or with another seed the holdout's). */
function reading(i: number, random: () => number): TrainingSample {
  return simulatedReading(i % fleet.devices, t0 + i * readingEveryMs, random, fleet, t0);
}

async function fillSimulated(kafka: Kafka, topic: string, total: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions }] });
  await admin.disconnect();
  const codec = codecFor('TrainingSample');
  const random = seededRandom(fleet.seed);
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  for (let start = 0; start < total; start += 5_000) {
    const messages = Array.from({ length: Math.min(5_000, total - start) }, (_, k) => {
      const sample = reading(start + k, random);
      // QUALITY_SPREAD=1: every partition gets readings of every device (round robin), instead of each device's own partition.
      return { key: sample.deviceId, value: codec.encode(sample), ...(process.env.QUALITY_SPREAD === '1' ? { partition: (start + k) % partitions } : {}) };
    });
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
}

/** The newest model of `namespace`: its mean loss per sample on `holdout`. */
async function holdoutLoss(kafka: Kafka, config: ExperimentConfig, holdout: readonly TrainingSample[]): Promise<number> {
  const replica = new Replica(config.model);
  try {
    const snapshots = await latestSnapshots(kafka, config.namespace);
    if (snapshots.size < config.model.shards) throw new Error(`${config.namespace}: snapshots of ${snapshots.size} of ${config.model.shards} shards`);
    for (const snapshot of snapshots.values()) replica.applySnapshot(snapshot);
    let sum = 0;
    for (let start = 0; start < holdout.length; start += 1_000) sum += replica.lossSum(holdout.slice(start, start + 1_000));
    return sum / holdout.length;
  } finally {
    replica.dispose();
  }
}

/**
 * The staleness of every update with samples, as the server counts it: how many updates with samples the shard took
 * in between the version the update was computed on and its own (the version counts every update record; dead-letter
 * counts leave the weights as they were).
 */
async function stalenessOf(kafka: Kafka, namespace: string): Promise<number[]> {
  const codec = codecFor('ParameterUpdate');
  // Per shard: at version v (v update records taken in), how many of them had samples.
  const withSamplesAt = new Map<number, number[]>();
  const staleness: number[] = [];
  await readTopic(kafka, topicsOf(namespace).updates, (record) => {
    const counts = withSamplesAt.get(record.partition) ?? [0];
    withSamplesAt.set(record.partition, counts);
    const now = counts[counts.length - 1]!;
    const update = codec.decode(record.value, record);
    const hasSamples = update.ok && update.value.sampleCount > 0;
    if (hasSamples) staleness.push(now - (counts[update.value.baseVersion] ?? now));
    counts.push(now + (hasSamples ? 1 : 0));
  });
  return staleness;
}

function experiment(brokers: string[], inputTopic: string): { config: ExperimentConfig; file: string } {
  // QUALITY_SETTINGS and QUALITY_MODEL (JSON) override experiment and model settings, for trying remedies.
  const input = { brokers, namespace: `quality-${randomUUID().slice(0, 8)}`, inputTopic, model: { ...benchModel, ...(JSON.parse(process.env.QUALITY_MODEL ?? '{}') as object) }, batchSize: 256, ...(JSON.parse(process.env.QUALITY_SETTINGS ?? '{}') as object) };
  const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-quality-')), 'experiment.json');
  writeFileSync(file, JSON.stringify(input));
  return { config: parseExperiment(input), file };
}

/** `streamgrad run` with `workers` worker processes until every shard accounts for `total` samples. */
async function trainWithRun(config: ExperimentConfig, file: string, workers: number, total: number): Promise<void> {
  let resolve: () => void = () => {};
  const accounted = new Promise<void>((r) => (resolve = r));
  await runExperiment({
    configFile: file,
    config,
    workers,
    display: new ConsoleDisplay('[quality]', process.env.BENCH_VERBOSE === undefined),
    until: accounted,
    progressIntervalMs: 250,
    onReport: (report) => {
      if (report.shards.length === config.model.shards && report.shards.every((s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered >= total)) resolve();
    },
  });
}

export interface Quality {
  /** Holdout loss of `run --workers 1` (and 2; medians of 3 runs, 1 with --quick) over that of `replay --sync`: 1 is as good as the sequential learner. */
  readonly qualityRatio1: number;
  readonly qualityRatio2: number;
  readonly holdoutLoss: { readonly sequential: number; readonly workers1: number; readonly workers2: number };
  /** The p99 staleness of the applied updates with 2 workers. */
  readonly stalenessP99: number;
  /** Samples/s of each run, from launch until every shard accounted for the topic. */
  readonly samplesPerSecond: { readonly workers1: number; readonly workers2: number };
  readonly staleness: { readonly workers1: { readonly p50: number; readonly p99: number; readonly max: number }; readonly workers2: { readonly p50: number; readonly p99: number; readonly max: number } };
}

/** One `run` with `workers` workers over the topic: its holdout loss, samples/s from launch, and the staleness of its updates. */
async function measureRun(kafka: Kafka, brokers: string[], topic: string, workers: number, total: number, holdout: readonly TrainingSample[]): Promise<{ loss: number; rate: number; staleness: number[] }> {
  const run = experiment(brokers, topic);
  const started = Date.now();
  await trainWithRun(run.config, run.file, workers, total);
  const rate = (total * 1000) / (Date.now() - started);
  return { loss: await holdoutLoss(kafka, run.config, holdout), rate, staleness: await stalenessOf(kafka, run.config.namespace) };
}

export async function measureQuality(kafka: Kafka, brokers: string[], options: { quick: boolean; log: (line: string) => void }): Promise<Quality> {
  const total = options.quick ? 60_000 : 200_000;
  const topic = `quality-${randomUUID().slice(0, 8)}`;
  options.log(`quality: filling ${topic} with ${total.toLocaleString('en-US')} simulated readings over ${partitions} partitions …`);
  await fillSimulated(kafka, topic, total);
  const holdoutRandom = seededRandom(fleet.seed + 1);
  // The holdout continues the stream in event time: the model must generalise, not remember.
  const holdout = Array.from({ length: 20_000 }, (_, k) => reading(total + k, holdoutRandom));

  const sequential = experiment(brokers, topic);
  options.log('quality: replay --sync (the sequential learner) …');
  await runReplay({ config: sequential.config, namespace: sequential.config.namespace, sync: true, range: {}, display: new ConsoleDisplay('[quality]', process.env.BENCH_VERBOSE === undefined) });
  const sequentialLoss = await holdoutLoss(kafka, sequential.config, holdout);
  const loss: Record<number, number> = {};
  const staleness: Record<number, { p50: number; p99: number; max: number }> = {};
  const rate: Record<number, number> = {};
  // A run's final model depends on how its lanes interleaved: the median of several runs, and every run's staleness.
  const runs = options.quick ? 1 : 3;
  for (const workers of [1, 2]) {
    const measured = { loss: [] as number[], rate: [] as number[], staleness: [] as number[] };
    for (let attempt = 0; attempt < runs; attempt++) {
      const run = await measureRun(kafka, brokers, topic, workers, total, holdout);
      measured.loss.push(run.loss);
      measured.rate.push(run.rate);
      measured.staleness.push(...run.staleness);
      options.log(`  run --workers ${workers}: holdout loss ${run.loss.toExponential(3)} (sequential ${sequentialLoss.toExponential(3)}); staleness p50 ${percentile(run.staleness, 50)}, p99 ${percentile(run.staleness, 99)}; ${Math.round(run.rate)} samples/s from launch`);
    }
    loss[workers] = median(measured.loss);
    rate[workers] = median(measured.rate);
    staleness[workers] = { p50: percentile(measured.staleness, 50), p99: percentile(measured.staleness, 99), max: Math.max(...measured.staleness) };
  }
  return {
    qualityRatio1: loss[1]! / sequentialLoss,
    qualityRatio2: loss[2]! / sequentialLoss,
    holdoutLoss: { sequential: sequentialLoss, workers1: loss[1]!, workers2: loss[2]! },
    stalenessP99: staleness[2]!.p99,
    staleness: { workers1: staleness[1]!, workers2: staleness[2]! },
    samplesPerSecond: { workers1: rate[1]!, workers2: rate[2]! },
  };
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { acquireTestBroker } = await import('../support/broker.js');
  const { createKafka } = await import('../../pipeline/common/kafkaClient.js');
  const broker = await acquireTestBroker();
  const brokers = broker.brokers.split(',');
  try {
    const quality = await measureQuality(createKafka({ clientId: 'streamgrad-quality', brokers }), brokers, { quick: process.argv.includes('--quick'), log: (line) => console.error(`[bench] ${line}`) });
    console.log(JSON.stringify(quality, null, 2));
  } finally {
    await broker.stop();
  }
}
