import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { parseExperiment } from '../../pipeline/config.js';
import { startWorker } from '../../pipeline/worker.js';
import { fillTopic } from './consumeRate.js';

/** Result of {@link measureWorkerRate}: samples/s of one worker process on a pre-filled topic. */
export interface WorkerRate {
  readonly workerRate: number;
  readonly workerRecords: number;
}

/**
 * One worker (16-64-64-1 MLP, batch 256, default backend, exactly-once
 * checkpoints) on a pre-filled topic of Avro samples: samples/s from its first
 * committed checkpoint to its last. No parameter server runs, so the staleness
 * bound is lifted: this is the worker's own ceiling.
 */
export async function measureWorkerRate(brokers: string, options: { quick: boolean }): Promise<WorkerRate> {
  const total = options.quick ? 100_000 : 400_000;
  const kafka = new Kafka({ clientId: 'streamgrad-bench-worker', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const topic = `bench-worker-${randomUUID().slice(0, 8)}`;
  console.error(`  filling ${topic} with ${total.toLocaleString('en-US')} Avro samples …`);
  await fillTopic(kafka, topic, total);
  const worker = await startWorker(
    parseExperiment({
      brokers: brokers.split(','),
      namespace: `bench-${randomUUID().slice(0, 8)}`,
      inputTopic: topic,
      input: { framing: 'confluent', schemaId: 1 },
      model: { kind: 'mlp', features: 16, shards: 1, layers: [{ units: 64 }, { units: 64 }] },
      batchSize: 256,
      maxInFlightUpdates: 1_000_000_000,
    }),
    { log: () => {} },
  );
  const committed = new Map<number, number>();
  let started = 0;
  const rate = await new Promise<number>((resolve) => {
    worker.checkpoints.subscribe((report) => {
      if (started === 0) started = performance.now();
      committed.set(report.partition, report.offset);
      const sum = [...committed.values()].reduce((a, b) => a + b, 0);
      if (sum >= total) resolve((total / (performance.now() - started)) * 1000);
    });
  });
  worker.stop();
  await worker.done;
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] });
  await admin.disconnect();
  return { workerRate: rate, workerRecords: total };
}
