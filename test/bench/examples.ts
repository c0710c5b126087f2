/**
 * Do the examples converge with several workers (issue 14)? Each configuration in `examples/` trains a pre-filled
 * topic of y = w·x + b + noise (16 features, noise sd 0.01: the stream on which `examples/linear.json` with 2 workers
 * once diverged) by `replay --sync` (the sequential learner), `run --workers 1` and `run --workers 2`; each served
 * model's mean loss on later samples of the same stream, against var(y) (what predicting the mean would score).
 *
 * `npm run bench:examples [-- --runs N]` (N two-worker runs per example, 3 by default): KAFKA_BROKERS, else an
 * infra/ broker of its own with Kafka's default group delay, so that two workers start together.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { loadExperiment, type ExperimentConfig } from '../../pipeline/common/config.js';
import { ConsoleDisplay } from '../../pipeline/common/console.js';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { runReplay } from '../../pipeline/commands/replay.js';
import { seededRandom } from '../../pipeline/commands/simulator.js';
import type { TrainingSample } from '../../schemas/index.js';
import { acquireRealisticBroker } from '../support/broker.js';
import { writeExperimentFile } from '../support/snapshots.js';
import { fillTopic } from './consumeRate.js';
import { holdoutLoss } from './holdout.js';
import { trainWithRun } from './quality.js';
import { median, runsArgument } from './stats.js';

const examples = ['examples/linear.json', 'examples/mlp.yaml', 'examples/iot.yaml'];
const total = 50_000;

/** The stream: sample i of y = w·x + b + noise, standard normal features, from one of 50 devices. */
function linearStream(seed: number): (i: number) => TrainingSample {
  const random = seededRandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const w = Array.from({ length: 16 }, normal);
  return (i) => {
    const features = w.map(() => Math.fround(normal()));
    const label = Math.fround(features.reduce((sum, x, j) => sum + w[j]! * x, 0.7) + 0.01 * normal());
    return { deviceId: `d${i % 50}`, eventTime: 1_790_000_000_000 + i * 10, features, label, labels: [], weight: 1, attributes: {} };
  };
}

/**
 * The example's configuration on the bench's topic (`fillTopic` writes Confluent-framed records), in a namespace of
 * its own, and the file `run` reads it from.
 */
function exampleOn(example: string, brokers: string[], inputTopic: string): { config: ExperimentConfig; file: string } {
  const loaded = loadExperiment(example);
  const input = { ...loaded, brokers, namespace: `examples-${randomUUID().slice(0, 8)}`, inputTopic, input: { ...loaded.input, framing: 'confluent' as const, schemaId: 1 } };
  return { config: input, file: writeExperimentFile(input) };
}

async function measureExample(kafka: Kafka, brokers: string[], example: string, topic: string, holdout: readonly TrainingSample[], variance: number, runs: number): Promise<string> {
  const display = new ConsoleDisplay('[examples]', process.env.BENCH_VERBOSE === undefined);
  const sequential = exampleOn(example, brokers, topic);
  await runReplay({ config: sequential.config, namespace: sequential.config.namespace, sync: true, interleave: false, range: {}, display });
  const seq = await holdoutLoss(kafka, sequential.config, holdout);
  // A bench that trains on dead letters alone would report every ratio as 1.
  if (!(seq < variance / 10)) throw new Error(`${example}: replay --sync's holdout loss ${seq} is not below var(y) / 10 (${variance / 10}): did it read the samples?`);
  const runLoss = async (workers: number) => {
    const run = exampleOn(example, brokers, topic);
    await trainWithRun(run.config, run.file, workers, total, display);
    return holdoutLoss(kafka, run.config, holdout);
  };
  const one = await runLoss(1);
  const two: number[] = [];
  for (let run = 0; run < runs; run++) two.push(await runLoss(2));
  const format = (loss: number) => `${loss.toExponential(2)} (${(loss / seq).toFixed(2)})`;
  return `| ${example} | ${seq.toExponential(2)} | ${format(one)} | ${format(median(two))}: ${two.map((loss) => (loss / seq).toFixed(2)).join(', ')} |`;
}

const runs = runsArgument(process.argv, 3);
const broker = await acquireRealisticBroker();
try {
  const brokers = broker.brokers.split(',');
  const kafka = createKafka({ brokers }, 'streamgrad-examples');
  const topic = `examples-${randomUUID().slice(0, 8)}`;
  const sampleAt = linearStream(5);
  console.error(`[bench] examples: filling ${topic} with ${total.toLocaleString('en-US')} samples of y = w·x + b + noise …`);
  await fillTopic(kafka, topic, total, sampleAt);
  const holdout = Array.from({ length: 10_000 }, (_, k) => sampleAt(total + k));
  const labels = holdout.map((s) => s.label ?? Number.NaN);
  const mean = labels.reduce((sum, y) => sum + y, 0) / labels.length;
  const variance = labels.reduce((sum, y) => sum + (y - mean) ** 2, 0) / labels.length;
  const rows: string[] = [];
  for (const example of examples) {
    console.error(`[bench] examples: ${example} …`);
    rows.push(await measureExample(kafka, brokers, example, topic, holdout, variance, runs));
  }
  console.log(`holdout loss on ${total.toLocaleString('en-US')} samples of y = w·x + b + noise (var(y) ${variance.toFixed(2)}, noise variance 1e-4); in brackets, over replay --sync's\n`);
  console.log('| example | replay --sync | run --workers 1 | run --workers 2: median (runs) |\n| --- | ---: | ---: | --- |');
  for (const row of rows) console.log(row);
} finally {
  await broker.stop();
}
