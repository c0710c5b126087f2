/**
 * Model quality against a sequential learner (issue 14): the same pre-filled topic of simulated telemetry trained by
 * `streamgrad replay --sync` (one update at a time, each on the weights of the one before: a sequential learner) and by
 * `streamgrad run` with 1 and 2 worker processes; each model's mean loss on a holdout drawn from the same simulator,
 * and the staleness of every gradient the server applied, measured from the committed updates.
 *
 * Standalone: `npx tsx test/bench/quality.ts [--quick] [--runs N]` (KAFKA_BROKERS, else an infra/ broker of its own with Kafka's
 * default group.initial.rebalance.delay.ms); also part of `npm run bench`. The experiment is the benchmark model with every other setting at its default.
 */
import { randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Kafka } from 'kafkajs';
import { parseExperiment, type ExperimentConfig } from '../../pipeline/common/config.js';
import { ConsoleDisplay } from '../../pipeline/common/console.js';
import { percentile } from '../../pipeline/common/percentile.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { runReplay } from '../../pipeline/commands/replay.js';
import { seededRandom, simulatedReading, type SimulatorOptions } from '../../pipeline/commands/simulator.js';
import { runExperiment } from '../../pipeline/commands/supervisor.js';
import { codecFor, type TrainingSample } from '../../schemas/index.js';
import { writeExperimentFile } from '../support/snapshots.js';
import { holdoutLoss } from './holdout.js';
import { simulatorBenchModel } from './pipelineRate.js';
import { median, runsArgument } from './stats.js';

/** The simulated fleet: readings 10 ms apart in event time, so the topic spans many simulated days. */
const fleet: SimulatorOptions = { devices: 200, ratePerSecond: 1, seed: 11, dayMs: 60_000, dropoutRate: 0 };
const t0 = 1_790_000_000_000;
const readingEveryMs = 10;
const partitions = 4;

type FeatureScales = NonNullable<SimulatorOptions['featureScales']>;

/** Reading `i` of the stream (the topic's readings, or with another seed the holdout's). */
function reading(i: number, random: () => number, featureScales: FeatureScales): TrainingSample {
  return simulatedReading(i % fleet.devices, t0 + i * readingEveryMs, random, { ...fleet, featureScales }, t0);
}

async function fillSimulated(kafka: Kafka, topic: string, total: number, featureScales: FeatureScales): Promise<void> {
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
      const sample = reading(start + k, random, featureScales);
      // QUALITY_SPREAD=1: every partition gets readings of every device (round robin), instead of each device's own partition.
      return { key: sample.deviceId, value: codec.encode(sample), ...(process.env.QUALITY_SPREAD === '1' ? { partition: (start + k) % partitions } : {}) };
    });
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
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

function experiment(brokers: string[], inputTopic: string, model: object = {}): { config: ExperimentConfig; file: string } {
  // QUALITY_SETTINGS and QUALITY_MODEL (JSON) override experiment and model settings, for trying remedies.
  const input = {
    brokers,
    namespace: `quality-${randomUUID().slice(0, 8)}`,
    inputTopic,
    model: { ...simulatorBenchModel, ...(JSON.parse(process.env.QUALITY_MODEL ?? '{}') as object), ...model },
    batchSize: 256,
    ...(JSON.parse(process.env.QUALITY_SETTINGS ?? '{}') as object),
  };
  return { config: parseExperiment(input), file: writeExperimentFile(input) };
}

/** `streamgrad run` with `workers` worker processes until every shard accounts for `total` samples. */
export async function trainWithRun(config: ExperimentConfig, file: string, workers: number, total: number, display = new ConsoleDisplay('[quality]', process.env.BENCH_VERBOSE === undefined)): Promise<void> {
  let resolve: () => void = () => {};
  const accounted = new Promise<void>((r) => (resolve = r));
  await runExperiment({
    configFile: file,
    config,
    workers,
    display,
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
  /**
   * The same over `replay --sync --interleave`: a sequential learner that meets the samples in the order parallel
   * workers do (the partitions interleaved, each at the same event time), so the ratio is what asynchrony costs.
   */
  readonly interleavedQualityRatio1: number;
  readonly interleavedQualityRatio2: number;
  readonly holdoutLoss: { readonly sequential: number; readonly sequentialInterleaved: number; readonly workers1: number; readonly workers2: number };
  /** The p99 staleness of the applied updates with 2 workers. */
  readonly stalenessP99: number;
  /** Samples/s of each run, from launch until every shard accounted for the topic. */
  readonly samplesPerSecond: { readonly workers1: number; readonly workers2: number };
  readonly staleness: { readonly workers1: StalenessSummary; readonly workers2: StalenessSummary };
  /** The same on a topic of skewed feature scales (0.01 to 1,000), with `model.normalize` (the default): `run --workers 1` over `replay --sync`. */
  readonly skewedQualityRatio1: number;
  /** Skewed scales: the sequential learner's holdout loss without `normalize` over its loss with it, what the scaling buys. */
  readonly skewedUnnormalizedRatio: number;
  readonly skewedHoldoutLoss: { readonly sequential: number; readonly sequentialUnnormalized: number; readonly workers1: number };
  /** Every run's holdout loss, behind the medians: how often a single run misses shows only here. */
  readonly holdoutLossRuns: { readonly workers1: readonly number[]; readonly workers2: readonly number[]; readonly skewedWorkers1: readonly number[] };
}

interface StalenessSummary {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** One `run` with `workers` workers over the topic: its holdout loss, samples/s from launch, and the staleness of its updates. */
async function measureRun(kafka: Kafka, brokers: string[], topic: string, workers: number, total: number, holdout: readonly TrainingSample[]): Promise<{ loss: number; rate: number; staleness: number[] }> {
  const run = experiment(brokers, topic);
  const started = Date.now();
  await trainWithRun(run.config, run.file, workers, total);
  const rate = (total * 1000) / (Date.now() - started);
  return { loss: await holdoutLoss(kafka, run.config, holdout), rate, staleness: await stalenessOf(kafka, run.config.namespace) };
}

interface Stream {
  readonly topic: string;
  readonly total: number;
  /** Readings that continue the topic in event time: the model must generalise, not remember. */
  readonly holdout: readonly TrainingSample[];
}

async function simulatedStream(kafka: Kafka, total: number, featureScales: FeatureScales, log: (line: string) => void): Promise<Stream> {
  const topic = `quality-${randomUUID().slice(0, 8)}`;
  log(`quality: filling ${topic} with ${total.toLocaleString('en-US')} simulated readings (${featureScales} feature scales) over ${partitions} partitions …`);
  await fillSimulated(kafka, topic, total, featureScales);
  const holdoutRandom = seededRandom(fleet.seed + 1);
  return { topic, total, holdout: Array.from({ length: 20_000 }, (_, k) => reading(total + k, holdoutRandom, featureScales)) };
}

/**
 * The holdout loss of the sequential learner: `replay --sync` over the whole topic, one partition after another, or
 * with `interleave` all partitions at once (the order in which parallel workers meet the samples).
 */
async function sequentialLoss(kafka: Kafka, brokers: string[], stream: Stream, model: object = {}, interleave = false): Promise<number> {
  const sequential = experiment(brokers, stream.topic, model);
  await runReplay({ config: sequential.config, namespace: sequential.config.namespace, sync: true, interleave, range: {}, display: new ConsoleDisplay('[quality]', process.env.BENCH_VERBOSE === undefined) });
  return holdoutLoss(kafka, sequential.config, stream.holdout);
}

/** `runs` runs with `workers` workers: the median loss and rate, and the staleness over all of them. */
async function measureRuns(kafka: Kafka, brokers: string[], stream: Stream, workers: number, runs: number, sequential: number, log: (line: string) => void): Promise<{ loss: number; losses: number[]; rate: number; staleness: StalenessSummary }> {
  const measured = { loss: [] as number[], rate: [] as number[], staleness: [] as number[] };
  for (let attempt = 0; attempt < runs; attempt++) {
    const run = await measureRun(kafka, brokers, stream.topic, workers, stream.total, stream.holdout);
    measured.loss.push(run.loss);
    measured.rate.push(run.rate);
    measured.staleness.push(...run.staleness);
    log(`  run --workers ${workers}: holdout loss ${run.loss.toExponential(3)} (sequential ${sequential.toExponential(3)}); staleness p50 ${percentile(run.staleness, 50)}, p99 ${percentile(run.staleness, 99)}; ${Math.round(run.rate)} samples/s from launch`);
  }
  const staleness = { p50: percentile(measured.staleness, 50), p99: percentile(measured.staleness, 99), max: Math.max(...measured.staleness) };
  return { loss: median(measured.loss), losses: measured.loss, rate: median(measured.rate), staleness };
}

export async function measureQuality(kafka: Kafka, brokers: string[], options: { quick: boolean; runs?: number; log: (line: string) => void }): Promise<Quality> {
  const { log } = options;
  const total = options.quick ? 60_000 : 200_000;
  // A run's final model depends on how its lanes interleaved: the median of several runs, and every run's staleness.
  const runs = options.runs ?? (options.quick ? 1 : 3);
  const unit = await simulatedStream(kafka, total, 'unit', log);
  log('quality: replay --sync (the sequential learner) …');
  const sequential = await sequentialLoss(kafka, brokers, unit);
  log('quality: replay --sync --interleave (the sequential learner on the order parallel workers read) …');
  const interleaved = await sequentialLoss(kafka, brokers, unit, {}, true);
  log(`  replay --sync: holdout loss ${sequential.toExponential(3)}; with --interleave ${interleaved.toExponential(3)}`);
  const one = await measureRuns(kafka, brokers, unit, 1, runs, sequential, log);
  const two = await measureRuns(kafka, brokers, unit, 2, runs, sequential, log);

  const skewed = await simulatedStream(kafka, total, 'skewed', log);
  log('quality, skewed scales: replay --sync with and without normalize …');
  const skewedSequential = await sequentialLoss(kafka, brokers, skewed);
  const skewedUnnormalized = await sequentialLoss(kafka, brokers, skewed, { normalize: false });
  log(`  replay --sync: holdout loss ${skewedSequential.toExponential(3)} with normalize, ${skewedUnnormalized.toExponential(3)} without`);
  const skewedOne = await measureRuns(kafka, brokers, skewed, 1, runs, skewedSequential, log);
  return {
    qualityRatio1: one.loss / sequential,
    qualityRatio2: two.loss / sequential,
    interleavedQualityRatio1: one.loss / interleaved,
    interleavedQualityRatio2: two.loss / interleaved,
    holdoutLoss: { sequential, sequentialInterleaved: interleaved, workers1: one.loss, workers2: two.loss },
    stalenessP99: two.staleness.p99,
    staleness: { workers1: one.staleness, workers2: two.staleness },
    samplesPerSecond: { workers1: one.rate, workers2: two.rate },
    skewedQualityRatio1: skewedOne.loss / skewedSequential,
    skewedUnnormalizedRatio: skewedUnnormalized / skewedSequential,
    skewedHoldoutLoss: { sequential: skewedSequential, sequentialUnnormalized: skewedUnnormalized, workers1: skewedOne.loss },
    holdoutLossRuns: { workers1: one.losses, workers2: two.losses, skewedWorkers1: skewedOne.losses },
  };
}

/**
 * {@link measureQuality} on a broker of its own with Kafka's default group.initial.rebalance.delay.ms (see
 * `acquireRealisticBroker`): `run --workers 2` then starts both workers together, as on a production broker. On the
 * harness's broker (delay 0) the second worker joined after the first had trained a quarter to a half of the stream
 * alone (BENCHMARKS, *Two workers that start together*).
 */
export async function measureQualityOnRealisticBroker(options: { quick: boolean; runs?: number; log: (line: string) => void }): Promise<Quality> {
  const { acquireRealisticBroker } = await import('../support/broker.js');
  const { createKafka } = await import('../../pipeline/common/kafkaClient.js');
  const broker = await acquireRealisticBroker();
  options.log(`quality: broker ${broker.brokers} (${broker.source === 'infra' ? "its own, group.initial.rebalance.delay.ms 3000" : broker.source})`);
  const brokers = broker.brokers.split(',');
  try {
    return await measureQuality(createKafka({ brokers }, 'streamgrad-quality'), brokers, options);
  } finally {
    await broker.stop();
  }
}

if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // --runs N: N runs of each kind instead of 3 (1 with --quick), to see how often a single run misses.
  const quick = process.argv.includes('--quick');
  const quality = await measureQualityOnRealisticBroker({ quick, runs: runsArgument(process.argv, quick ? 1 : 3), log: (line) => console.error(`[bench] ${line}`) });
  console.log(JSON.stringify(quality, null, 2));
}
