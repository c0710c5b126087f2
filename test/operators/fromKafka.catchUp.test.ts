import type { Kafka } from 'kafkajs';
import { Subject, concatMap, lastValueFrom, mergeMap, toArray } from 'rxjs';
import { describe, expect } from 'vitest';
import { fromKafka } from '../../operators/index.js';
import { kafkaTest as test } from '../support/kafka.js';

// catchUpOnStopMs: a stopping source reads on to the end offsets of the moment it was told to stop. The parameter
// server stops this way, so that after `run` has stopped its workers the last snapshots account for every update
// they committed.
describe('fromKafka catchUpOnStopMs', () => {
  test('told to stop at its first record, reads every record committed by then (up to the commit markers), and stops though records keep coming', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 2 });
    const producer = await kafka.producer({ transactionalId: `tx-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    for (let batch = 0; batch < 4; batch++) {
      const transaction = await producer.transaction();
      await transaction.send({ topic, messages: Array.from({ length: 2_500 }, (_, i) => ({ key: `k${i}`, value: `b${batch}-${i}` })) });
      await transaction.commit();
    }
    // From the stop on, records keep arriving (as updates do while a server stops and workers still run): the source
    // reads to the end of the moment it looks, not to a moving end.
    const appender = await kafka.producer();
    let appended = 0;
    const append = () => appender.send({ topic, messages: Array.from({ length: 100 }, (_, i) => ({ key: `k${i}`, value: `late-${appended++}` })) }).catch(() => {});
    let appending: NodeJS.Timeout | undefined;
    const { values, waited } = await readStoppingAtFirst(kafka.kafka, topic, kafka.group(), { catchUpOnStopMs: 60_000, maxInFlight: 200, onStop: () => (appending = setInterval(() => void append(), 50)) }).finally(() => clearInterval(appending));
    const committedBefore = values.filter((value) => !value.startsWith('late-'));
    expect(new Set(committedBefore).size).toBe(10_000);
    expect(committedBefore).toHaveLength(10_000);
    // It stopped at an end, well before the deadline, while records were still being appended.
    expect(waited).toBeLessThan(30_000);
    expect(values.length - committedBefore.length).toBeLessThan(appended);
  }, 120_000);

  test('an open transaction does not hold the stop back: the end is the last stable offset', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 1 });
    await kafka.produce(topic, 500, (i) => ({ key: `k${i}`, value: `committed-${i}` }));
    // A transaction left open (a producer that died mid-transaction): read_committed cannot pass it until it ends.
    const producer = await kafka.producer({ transactionalId: `open-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    const open = await producer.transaction();
    await open.send({ topic, messages: [{ key: 'k', value: 'open' }] });
    const { values, waited } = await readStoppingAtFirst(kafka.kafka, topic, kafka.group(), { catchUpOnStopMs: 30_000 });
    await open.abort();
    expect(values).toHaveLength(500);
    expect(waited).toBeLessThan(10_000);
  }, 120_000);

  test('stops after catchUpOnStopMs when the lanes are too slow to reach the end', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 1 });
    await kafka.produce(topic, 2_000, (i) => ({ key: `k${i}`, value: `v${i}` }));
    // One record per 20 ms at most: the 2,000 would take 40 s.
    const { values, waited } = await readStoppingAtFirst(kafka.kafka, topic, kafka.group(), { catchUpOnStopMs: 2_000, ackDelayMs: 20 });
    expect(values.length).toBeLessThan(2_000);
    expect(waited).toBeGreaterThanOrEqual(1_900);
    expect(waited).toBeLessThan(15_000);
  }, 120_000);
});

/**
 * Reads `topic` with `catchUpOnStopMs`, told to stop at the first record (`onStop` runs then), acknowledging each
 * record after `ackDelayMs`; returns the values read and how long the source took to complete after the stop.
 */
async function readStoppingAtFirst(
  kafka: Kafka,
  topic: string,
  groupId: string,
  options: { catchUpOnStopMs: number; ackDelayMs?: number; maxInFlight?: number; onStop?: () => void },
): Promise<{ values: string[]; waited: number }> {
  const { catchUpOnStopMs, ackDelayMs = 0, maxInFlight = 10, onStop } = options;
  const stop = new Subject<void>();
  let stoppedAt = 0;
  const values = await lastValueFrom(
    fromKafka({ kafka, topics: [topic], groupId, until: stop, catchUpOnStopMs, maxInFlight }).pipe(
      mergeMap((lane) =>
        lane.records.pipe(
          concatMap(async (record) => {
            if (!stoppedAt) {
              stoppedAt = Date.now();
              stop.next();
              onStop?.();
            }
            if (ackDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, ackDelayMs));
            lane.ack(record.offset);
            return record.value?.toString() ?? '';
          }),
        ),
      ),
      toArray(),
    ),
  );
  return { values, waited: Date.now() - stoppedAt };
}
