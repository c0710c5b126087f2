import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { writeExperimentFile } from '../support/snapshots.js';
import type { BackendName } from '../../pipeline/common/backend.js';
import { lastValueFrom, mergeMap, of, Subject, tap, toArray } from 'rxjs';
import { fromKafka, gradientStep, trainingBatchOf, type Decoded } from '../../operators/index.js';
import { parseExperiment, type ExperimentConfig } from '../../pipeline/common/config.js';
import { ConsoleDisplay } from '../../pipeline/common/console.js';
import { readSnapshots } from '../../pipeline/common/modelStore.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { percentile } from '../../pipeline/common/percentile.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { cpuSecondsOf } from '../../pipeline/commands/runProcesses.js';
import { runExperiment } from '../../pipeline/commands/supervisor.js';
import { ensureExperimentTopics } from '../../pipeline/common/topics.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { codecFor, type TrainingSample } from '../../schemas/index.js';
import { benchPartitions } from './consumeRate.js';
import { holdoutLoss } from './holdout.js';

/**
 * The benchmark model: a 16-64-64-1 MLP, 2 shards, batches of 256, FP32 updates, Adam 0.001. It takes the raw features,
 * as the Python peer's Keras model does (it has no scaling layer), so the two sides train the same model: with
 * `normalize` on, these unit-scale features (sd 0.71) would be scaled up by 1.41, which at Adam's fixed step doubles the
 * loss where the learner levels off (BENCHMARKS.md, *The rate bench's model against the peer's*).
 */
export const benchModel = { kind: 'mlp', features: 16, shards: 2, layers: [{ units: 64 }, { units: 64 }], optimizer: { kind: 'adam', learningRate: 0.001 }, normalize: false };

/**
 * The bench model with a user's defaults, feature scaling included: the benches on the simulator's readings (quality,
 * staleness), whose features come on different scales.
 */
export const simulatorBenchModel = { ...benchModel, normalize: true };

/** The larger bench model: a 64-256-256-10 softmax classifier, otherwise as the bench model. */
export const softmaxBenchModel = { ...benchModel, features: 64, outputs: 10, outputActivation: 'softmax', layers: [{ units: 256 }, { units: 256 }] };

function experiment(brokers: string[], inputTopic: string, extra: object = {}): { config: ExperimentConfig; file: string } {
  const input = { brokers, namespace: `bench-${randomUUID().slice(0, 8)}`, inputTopic, model: benchModel, batchSize: 256, ...extra };
  return { config: parseExperiment(input), file: writeExperimentFile(input) };
}

/** Resolves once every shard's newest snapshot accounts for `total` records. */
function accountedFor(total: number, shards: number): { until: Promise<void>; onReport: (report: { shards: readonly { samplesApplied: number; samplesDroppedStale: number; deadLettered: number }[] }) => void } {
  let resolve: () => void = () => {};
  const until = new Promise<void>((r) => (resolve = r));
  return {
    until,
    onReport: (report) => {
      if (report.shards.length === shards && report.shards.every((s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered >= total)) resolve();
    },
  };
}

/**
 * `streamgrad run` with 1 server and `workers` worker processes on a topic
 * pre-filled with `total` confluent-framed samples: samples/s between 10% and 90% of the topic, the slower of
 * the server's (the snapshots' own times) and the workers' (their updates' times), so that process start-up does
 * not count and neither does a server applying a backlog; and the children's peak memory.
 */
export interface PipelineRate {
  readonly rate: number;
  /** Samples/s applied by the server between 10% and 90%, timed by shard 0's snapshots. */
  readonly serverRate: number;
  /** Samples/s trained by the workers between 10% and 90%, timed by shard 0's committed updates. */
  readonly workersRate: number;
  readonly peakRssMb: Readonly<Record<string, number>>;
  /** Of each child's resident memory at its end, the file pages (its libraries'), which processes share. */
  readonly fileBackedMb: Readonly<Record<string, number>>;
  /** Cores each process kept busy over the run (CPU seconds / wall seconds): the children, `bench` (this process) and `broker`. */
  readonly coresUsed: Readonly<Record<string, number>>;
  /** The CPU seconds behind `coresUsed`: the children's over their lives (start-up included), the others' over the run. */
  readonly cpuSeconds: Readonly<Record<string, number>>;
  /** When shard 0's snapshots reached 10% and 90% of the topic (epoch ms): the window `rate` is measured over. */
  readonly window: { readonly from: number; readonly to: number };
  /** The final model's mean loss on the holdout, when one is given. */
  readonly holdoutLoss?: number;
}

/**
 * The tuned settings of the end-to-end runs (see BENCHMARKS.md): a lane may have 64 updates not yet in a snapshot,
 * which over the bench topic's partitions is a job budget of 64 × benchPartitions.
 */
export const pipelineSettings = { maxInFlightUpdates: 64 * benchPartitions } as const;

export async function measurePipelineRate(
  kafka: Kafka,
  brokers: string[],
  topic: string,
  total: number,
  workers: number,
  options: { brokerPid?: number; holdout?: readonly TrainingSample[]; model?: object; backend?: BackendName; settings?: object } = {},
): Promise<PipelineRate> {
  const { brokerPid, holdout, model = benchModel, backend, settings } = options;
  const { config, file } = experiment(brokers, topic, { input: { framing: 'confluent', schemaId: 1 }, model, ...pipelineSettings, ...settings, ...(backend ? { backend } : {}) });
  const done = accountedFor(total, 2);
  const startedAt = Date.now();
  const benchCpu = process.cpuUsage();
  const brokerCpu = cpuSecondsOf(brokerPid);
  let trainedAt = 0;
  void done.until.then(() => (trainedAt = Date.now()));
  const summary = await runExperiment({ configFile: file, config, workers, display: new ConsoleDisplay('[bench]', process.env.BENCH_VERBOSE === undefined), until: done.until, onReport: done.onReport, progressIntervalMs: 250 });
  // Start to the end of training: the shutdown that follows hardly uses CPU and would dilute the shares.
  const wall = ((trainedAt || Date.now()) - startedAt) / 1000;
  const bench = process.cpuUsage(benchCpu);
  const cpuSeconds: Record<string, number> = { bench: (bench.user + bench.system) / 1e6, ...summary.cpuSeconds };
  const brokerAfter = cpuSecondsOf(brokerPid);
  if (brokerCpu !== undefined && brokerAfter !== undefined) cpuSeconds.broker = brokerAfter - brokerCpu;
  const coresUsed = Object.fromEntries(Object.entries(cpuSeconds).map(([name, seconds]) => [name, seconds / wall]));
  const history = (await readSnapshots(kafka, config.namespace)).filter((s) => s.shard === 0);
  const from = history.find((s) => s.samplesApplied >= total * 0.1);
  const to = history.find((s) => s.samplesApplied >= total * 0.9);
  if (!from || !to || to.createdAt <= from.createdAt) throw new Error(`the snapshots of ${config.namespace} do not cover 10%–90% of ${total} samples`);
  const serverRate = ((to.samplesApplied - from.samplesApplied) * 1000) / (to.createdAt - from.createdAt);
  const workersRate = await trainedRate(kafka, config.namespace, total);
  const loss = holdout ? await holdoutLoss(kafka, config, holdout) : undefined;
  await deleteNamespace(kafka, config.namespace);
  // The slower side is the pipeline's rate: timed by the snapshots alone, a server that lags the workers and then
  // applies their backlog inside the window would count the catch-up as training.
  return { rate: Math.min(serverRate, workersRate), serverRate, workersRate, peakRssMb: summary.peakRssMb, fileBackedMb: summary.fileBackedMb, coresUsed, cpuSeconds, window: { from: from.createdAt, to: to.createdAt }, ...(loss === undefined ? {} : { holdoutLoss: loss }) };
}

/** Samples/s the workers trained between 10% and 90% of `total`, timed by their committed updates' `createdAt` (shard 0's). */
async function trainedRate(kafka: Kafka, namespace: string, total: number): Promise<number> {
  const codec = codecFor('ParameterUpdate');
  const steps: Array<{ at: number; samples: number }> = [];
  await readTopic(kafka, topicsOf(namespace).updates, (record) => {
    if (record.partition !== 0) return;
    const update = codec.decode(record.value, record);
    if (update.ok && update.value.sampleCount > 0) steps.push({ at: update.value.createdAt, samples: update.value.sampleCount });
  });
  steps.sort((a, b) => a.at - b.at);
  let trained = 0;
  let from: { at: number; trained: number } | undefined;
  for (const step of steps) {
    trained += step.samples;
    if (!from && trained >= total * 0.1) from = { at: step.at, trained };
    if (from && trained >= total * 0.9 && step.at > from.at) return ((trained - from.trained) * 1000) / (step.at - from.at);
  }
  throw new Error(`the committed updates of ${namespace} do not cover 10%–90% of ${total} samples`);
}

/** Deletes the bench's `topics`; one already gone is fine. */
export async function deleteTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics }).catch(() => {});
  await admin.disconnect();
}

async function deleteNamespace(kafka: Kafka, namespace: string): Promise<void> {
  const { updates, model: modelTopic, deadLetters } = topicsOf(namespace);
  await deleteTopics(kafka, [updates, modelTopic, deadLetters]);
}

/**
 * Freshness as a model consumer sees it: the simulator produces at `rate`
 * samples/s for `seconds` into `streamgrad run` (1 server, 1 worker process);
 * this process tails `<ns>.model` (read_committed) and, for every sample, takes
 * the time from its append to the arrival of the first snapshots of all shards
 * that include it. The first quarter of the samples is warm-up and not counted.
 */
export async function measureFreshness(kafka: Kafka, brokers: string[], rate: number, seconds: number): Promise<{ freshnessP50Ms: number; freshnessP99Ms: number; freshnessRate: number; freshnessSamples: number }> {
  const inputTopic = `bench-fresh-${randomUUID().slice(0, 8)}`;
  const { config, file } = experiment(brokers, inputTopic, { ...pipelineSettings, inputPartitions: 2, simulator: { devices: 200, ratePerSecond: rate, seed: 3, dropoutRate: 0 } });
  await ensureExperimentTopics(kafka, config);
  const codec = codecFor('ModelSnapshot');
  const arrivals: Array<{ shard: number; at: number; applied: Map<number, number> }> = [];
  const stopTail = new Subject<void>();
  const tail = lastValueFrom(
    fromKafka({ kafka, topics: [topicsOf(config.namespace).model], until: stopTail }).pipe(
      mergeMap((lane) =>
        lane.records.pipe(
          tap((record) => {
            lane.ack(record.offset);
            const decoded = codec.decode(record.value, record);
            if (decoded.ok) arrivals.push({ shard: decoded.value.shard, at: Date.now(), applied: new Map(decoded.value.appliedOffsets.map((o) => [o.partition, o.offset])) });
          }),
        ),
      ),
    ),
    { defaultValue: undefined },
  );
  const count = Math.round(rate * seconds);
  const done = accountedFor(count, 2);
  const summary = await runExperiment({ configFile: file, config, workers: 1, simulate: { count }, display: new ConsoleDisplay('[bench]', true), until: done.until, onReport: done.onReport, progressIntervalMs: 250 });
  stopTail.next();
  await tail;
  const records = await lastValueFrom(
    fromKafka({ kafka, topics: [inputTopic], bounded: true }).pipe(
      mergeMap((lane) => lane.records.pipe(tap((record) => lane.ack(record.offset)))),
      toArray(),
    ),
  );
  const appended = records.map((r) => ({ partition: r.partition, offset: Number(r.offset), at: Number(r.timestamp) })).sort((a, b) => a.at - b.at);
  // Per shard and input partition, the snapshots in arrival order: their applied offsets only grow.
  const timeline = (shard: number, partition: number) => arrivals.filter((a) => a.shard === shard).map((a) => ({ at: a.at, offset: a.applied.get(partition) ?? -1 }));
  const timelines = new Map<string, Array<{ at: number; offset: number }>>();
  const firstArrival = (shard: number, partition: number, offset: number): number => {
    const key = `${shard}:${partition}`;
    if (!timelines.has(key)) timelines.set(key, timeline(shard, partition));
    const line = timelines.get(key)!;
    let low = 0;
    let high = line.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (line[mid]!.offset >= offset) high = mid;
      else low = mid + 1;
    }
    return low < line.length ? line[low]!.at : Infinity;
  };
  const freshness: number[] = [];
  for (const sample of appended.slice(Math.floor(appended.length / 4))) {
    const seen = Math.max(firstArrival(0, sample.partition, sample.offset), firstArrival(1, sample.partition, sample.offset));
    if (Number.isFinite(seen)) freshness.push(seen - sample.at);
  }
  await deleteNamespace(kafka, config.namespace);
  await deleteTopics(kafka, [inputTopic]);
  return { freshnessP50Ms: percentile(freshness, 50), freshnessP99Ms: percentile(freshness, 99), freshnessRate: summary.sent / summary.seconds, freshnessSamples: freshness.length };
}

/** Bytes of the ParameterUpdate records (all shards) of one batch of 256, per sample, for each encoding. */
export async function measureUpdateBytes(): Promise<{ fp32: number; fp16: number; int8: number }> {
  const replica = new Replica(parseModelSpec(benchModel));
  const decoded: Decoded<TrainingSample>[] = Array.from({ length: 256 }, (_, i) => ({
    value: { deviceId: `d${i}`, eventTime: i, features: Array.from({ length: 16 }, (_, f) => Math.fround(Math.sin(i + f))), label: Math.fround(Math.cos(i)), labels: [], weight: 1, attributes: {} },
    record: { topic: 'bench', partition: 0, offset: String(i), key: null, value: null, timestamp: String(Date.now()), headers: {} },
  }));
  const batch = trainingBatchOf(decoded, 16, 1);
  const bytes = async (encoding: 'FP32' | 'FP16' | 'INT8') => {
    const [outputs] = await lastValueFrom(of(batch).pipe(gradientStep({ model: replica, namespace: 'bench', workerId: 'bench', updatesTopic: 'bench.updates', encoding }), toArray()));
    const messages = outputs!.messages.flatMap((m) => m.messages);
    return messages.reduce((sum, m) => sum + (m.value as Buffer).length, 0) / decoded.length;
  };
  const result = { fp32: await bytes('FP32'), fp16: await bytes('FP16'), int8: await bytes('INT8') };
  replica.dispose();
  return result;
}
