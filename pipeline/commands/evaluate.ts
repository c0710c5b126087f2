import type { Kafka } from 'kafkajs';
import { SampleColumns, SampleDecoder, type SampleBatch } from '../../schemas/sampleDecoder.js';
import type { ExperimentConfig } from '../common/config.js';
import { formatCount as count } from '../common/console.js';
import { NamespaceError } from '../common/errors.js';
import { lossOf, probabilityEpsilon, sampleLengthOf } from '../common/model.js';
import { latestSnapshots } from '../common/modelStore.js';
import { readTopic } from '../common/readTopic.js';
import { publishReport } from '../common/reports.js';
import { ensureReportsTopic } from '../common/topics.js';
import { Replica } from '../worker/replica.js';
import { scoreSamples } from '../../operators/prequential.js';

/** How the newest model of a namespace scores on a topic of labelled samples. */
export interface Evaluation {
  readonly namespace: string;
  readonly topic: string;
  /** The snapshot version of each shard that the weights come from. */
  readonly versions: readonly number[];
  readonly samples: number;
  /** Records that are not samples the model can score (undecodable, wrong feature count, no label, …), by reason. */
  readonly skipped: Readonly<Record<string, number>>;
  /** Mean training loss per sample (weighted by the samples' weights), as the workers compute it. */
  readonly loss: number;
  /** Regression: mean absolute and root mean squared error over every output. */
  readonly mae?: number;
  readonly rmse?: number;
  /** Classification: the share of samples whose most likely class is the true one, and the mean log-loss. */
  readonly accuracy?: number;
  readonly logLoss?: number;
}

/** Samples scored per forward pass. */
const batchSize = 1_000;

/** Running sums of the metrics over the batches of a topic. */
class Scores {
  samples = 0;
  weightSum = 0;
  lossSum = 0;
  absoluteSum = 0;
  squaredSum = 0;
  correct = 0;
  logLossSum = 0;

  constructor(
    private readonly replica: Replica,
    private readonly classifier: boolean,
  ) {}

  add(batch: SampleBatch): void {
    const { replica } = this;
    const outputs = replica.spec.outputs;
    const { predicted, target, weight } = replica.predict(batch);
    // The same per-sample errors and classes as the prequential scores of training.
    const scored = scoreSamples(predicted, target, new Float32Array(batch.length), outputs, this.classifier);
    this.lossSum += replica.lossSum(batch);
    for (let i = 0; i < batch.length; i++) {
      this.samples += 1;
      this.weightSum += weight[i]!;
      this.absoluteSum += scored.absError[i]!;
      this.squaredSum += scored.squaredError[i]!;
      this.correct += scored.correct[i]!;
      if (this.classifier) this.logLossSum += logLossOf(predicted.subarray(i * outputs, (i + 1) * outputs), target.subarray(i * outputs, (i + 1) * outputs));
    }
  }
}

/** One sample's unweighted log-loss: of its class's probability, or binary cross-entropy for one output. */
function logLossOf(row: Float32Array, truth: Float32Array): number {
  if (row.length === 1) {
    const p = Math.min(1 - probabilityEpsilon, Math.max(probabilityEpsilon, row[0]!));
    return -(truth[0]! * Math.log(p) + (1 - truth[0]!) * Math.log(1 - p));
  }
  return -Math.log(Math.max(probabilityEpsilon, row[truth.indexOf(Math.max(...truth))]!));
}

/**
 * Scores the newest committed model of `config.namespace` on every record of `topic` (its end as of the start): the
 * loss it trains with, and MAE and RMSE for regression or accuracy and log-loss for a classifier (a `logistic` model,
 * or a cross-entropy loss).
 */
export async function evaluateModel(kafka: Kafka, config: ExperimentConfig, topic: string, log: (line: string) => void = () => {}): Promise<Evaluation> {
  const snapshots = await latestSnapshots(kafka, config.namespace);
  if (snapshots.size < config.model.shards) throw new NamespaceError(config.namespace, `${config.namespace}.model has snapshots of ${snapshots.size} of ${config.model.shards} shards; train first`);
  const replica = Replica.served(config.model, snapshots.values());
  try {
    const scores = new Scores(replica, lossOf(config.model) !== 'mse');
    const decoder = new SampleDecoder({ featureCount: sampleLengthOf(config.model), labelCount: config.model.outputs, ...config.input });
    const skipped: Record<string, number> = {};
    const columns = () => new SampleColumns(batchSize, decoder.featureCount, decoder.labelCount);
    let batch = columns();
    await readTopic(kafka, topic, (record) => {
      const error = decoder.decodeInto(record.value, batch, record);
      if (error) skipped[error.code] = (skipped[error.code] ?? 0) + 1;
      if (batch.length < batchSize) return;
      scores.add(batch.batch());
      batch = columns();
      if (scores.samples % 50_000 === 0) log(`${count(scores.samples)} samples scored`);
    });
    if (batch.length > 0) scores.add(batch.batch());
    return report(config, topic, [...snapshots.values()].sort((a, b) => a.shard - b.shard).map((s) => s.version), scores, skipped);
  } finally {
    replica.dispose();
  }
}

function report(config: ExperimentConfig, topic: string, versions: number[], scores: Scores, skipped: Record<string, number>): Evaluation {
  const { samples } = scores;
  const base = { namespace: config.namespace, topic, versions, samples, skipped, loss: scores.lossSum / Math.max(scores.weightSum, Number.MIN_VALUE) };
  if (lossOf(config.model) !== 'mse') return { ...base, accuracy: scores.correct / samples, logLoss: scores.logLossSum / samples };
  // Per sample, the errors are means over its outputs: over samples, they are means over every output.
  return { ...base, mae: scores.absoluteSum / samples, rmse: Math.sqrt(scores.squaredSum / samples) };
}

/** Writes `evaluation` to `<ns>.reports`, for dashboards (created if missing). */
export async function reportEvaluation(kafka: Kafka, evaluation: Evaluation): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const topic = await ensureReportsTopic(admin, evaluation.namespace).finally(() => admin.disconnect());
  const producer = kafka.producer();
  await producer.connect();
  try {
    const { topic: source, versions, samples, loss, mae, rmse, accuracy, logLoss } = evaluation;
    await publishReport(producer, topic, { kind: 'evaluation', source, at: Date.now(), versions: [...versions], samples, loss, ...(mae === undefined ? {} : { mae }), ...(rmse === undefined ? {} : { rmse }), ...(accuracy === undefined ? {} : { accuracy }), ...(logLoss === undefined ? {} : { logLoss }) });
  } finally {
    await producer.disconnect();
  }
}

/** The evaluation as lines for a terminal. */
export function formatEvaluation(evaluation: Evaluation): string {
  const metric = (name: string, value: number | undefined) => (value === undefined ? [] : [`${name.padEnd(10)}  ${value.toFixed(6)}`]);
  const skipped = Object.entries(evaluation.skipped).map(([code, n]) => `${count(n)} ${code}`).join(', ');
  return [
    `namespace   ${evaluation.namespace} (versions ${evaluation.versions.join('/')})`,
    `topic       ${evaluation.topic}: ${count(evaluation.samples)} samples scored${skipped ? `, skipped ${skipped}` : ''}`,
    ...metric('loss', evaluation.loss),
    ...metric('mae', evaluation.mae),
    ...metric('rmse', evaluation.rmse),
    ...metric('accuracy', evaluation.accuracy),
    ...metric('log-loss', evaluation.logLoss),
  ].join('\n');
}
