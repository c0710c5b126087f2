import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { mergeMap, tap } from 'rxjs';
import { decode, fromKafka, type Rejected } from '../../operators/index.js';
import { codecFor, SampleDecoder, type TrainingSample } from '../../schemas/index.js';
import { median } from './stats.js';
import { createTopics } from '../../pipeline/common/topics.js';

/** Result of {@link measureConsumeRates}: records/s, medians over `runs`. */
export interface ConsumeRates {
  readonly rawConsumeRate: number;
  readonly sourceDecodeRate: number;
  readonly sourceDecodeRatio: number;
  readonly consumeRecords: number;
  readonly consumeRuns: { raw: number[]; pipeline: number[] };
}

/** The benchmark topic's partitions: enough for two workers to share. */
export const benchPartitions = 6;

/** Sample `i` of the bench topic (and, past its end, of the holdout): 16 phases of i, and the cosine of i to learn. */
export function benchSample(i: number): TrainingSample {
  return phaseSample(i, 16, Math.fround(Math.cos(i)));
}

/** Sample `i` of the softmax bench: 64 phases of i, and which tenth of the circle i falls in (a class index, 0–9). */
export function softmaxBenchSample(i: number): TrainingSample {
  const turn = (((i % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI)) / (2 * Math.PI);
  return phaseSample(i, 64, Math.min(9, Math.floor(turn * 10)));
}

function phaseSample(i: number, features: number, label: number): TrainingSample {
  return {
    deviceId: `device-${i % 500}`,
    eventTime: 1_790_000_000_000 + i,
    features: Array.from({ length: features }, (_, f) => Math.fround(Math.sin(i + f))),
    label,
    labels: [],
    weight: 1,
    attributes: {},
  };
}

export async function fillTopic(kafka: Kafka, topic: string, total: number, sampleAt: (i: number) => TrainingSample = benchSample): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  // The project's own topic creation: right after a broker starts, kafkajs' wait for leaders can give up with
  // UNKNOWN_TOPIC_OR_PARTITION ("This server does not host this topic-partition"), which it waits out.
  await createTopics(admin, [{ topic, numPartitions: benchPartitions }]).finally(() => admin.disconnect());
  const codec = codecFor('TrainingSample', { framing: 'confluent', schemaId: 1 });
  const producer = kafka.producer({ idempotent: true });
  await producer.connect();
  const perRequest = 10_000;
  for (let start = 0; start < total; start += perRequest) {
    const messages = Array.from({ length: Math.min(perRequest, total - start) }, (_, k) => {
      const sample = sampleAt(start + k);
      return { key: sample.deviceId, value: codec.encode(sample) };
    });
    await producer.send({ topic, messages, acks: -1 });
  }
  await producer.disconnect();
}

/** A no-op kafkajs `eachBatch` consumer over the whole topic: records/s from its first batch to its last record. */
export async function rawConsume(kafka: Kafka, topic: string, total: number): Promise<number> {
  const consumer = kafka.consumer({ groupId: `bench-raw-${randomUUID()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  let started = 0;
  const rate = await new Promise<number>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        if (started === 0) started = performance.now();
        seen += batch.messages.length;
        if (seen >= total) resolve((seen / (performance.now() - started)) * 1000);
      },
    });
  });
  await consumer.disconnect();
  return rate;
}

/** fromKafka → decode (with validation) → a counting sink that acknowledges each record. */
export async function pipelineConsume(kafka: Kafka, topic: string, total: number): Promise<number> {
  const samples = new SampleDecoder({ featureCount: 16, framing: 'confluent', schemaId: 1 });
  const rejected = { next: (r: Rejected) => console.error(`rejected ${r.error.message}`), error: () => {}, complete: () => {} };
  let seen = 0;
  let started = 0;
  let resolveRate: (rate: number) => void = () => {};
  const done = new Promise<number>((resolve) => (resolveRate = resolve));
  const subscription = fromKafka({ kafka, topics: [topic], groupId: `bench-pipeline-${randomUUID()}` })
    .pipe(
      mergeMap((lane) =>
        lane.records.pipe(
          tap(() => {
            if (started === 0) started = performance.now();
          }),
          decode(samples, rejected),
          tap(({ record }) => {
            lane.ack(record.offset);
            if (++seen === total) resolveRate((seen / (performance.now() - started)) * 1000);
          }),
        ),
      ),
    )
    .subscribe();
  const rate = await done;
  subscription.unsubscribe();
  return rate;
}

/**
 * `fromKafka` → `decode` → a counting sink, against a raw kafkajs `eachBatch`
 * loop that does nothing, on the same topic of Avro samples, alternating runs.
 */
export async function measureConsumeRates(kafka: Kafka, topic: string, total: number, runs: number): Promise<ConsumeRates> {
  const raw: number[] = [];
  const pipeline: number[] = [];
  for (let run = 0; run < runs; run++) {
    raw.push(await rawConsume(kafka, topic, total));
    pipeline.push(await pipelineConsume(kafka, topic, total));
    console.error(`  run ${run + 1}/${runs}: raw ${Math.round(raw.at(-1)!)} rec/s, fromKafka → decode ${Math.round(pipeline.at(-1)!)} rec/s`);
  }
  const rawConsumeRate = median(raw);
  const sourceDecodeRate = median(pipeline);
  return { rawConsumeRate, sourceDecodeRate, sourceDecodeRatio: sourceDecodeRate / rawConsumeRate, consumeRecords: total, consumeRuns: { raw, pipeline } };
}
