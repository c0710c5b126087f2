import { lastValueFrom, mergeMap, tap, toArray } from 'rxjs';
import { describe, expect } from 'vitest';
import { fromKafka } from '../../operators/index.js';
import { kafkaTest as test } from '../support/kafka.js';

describe('fromKafka bounded replay', () => {
  test('from a timestamp, in bounded mode, completes with exactly the records from that time to the end offsets captured at start', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 3 });
    const t0 = 1_790_000_000_000;
    const replayFrom = t0 + 10_000;
    // Before the replay's start time, then after it; record timestamps are set by the producer (CreateTime).
    await kafka.produce(topic, 3_000, (i) => ({ key: `d${i % 7}`, value: `early-${i}`, timestamp: String(t0 + i) }));
    await kafka.produce(topic, 4_000, (i) => ({ key: `d${i % 7}`, value: `wanted-${i}`, timestamp: String(replayFrom + i) }));

    let producedAfterStart = false;
    let lateProduce: Promise<void> | undefined;
    const replay = fromKafka({ kafka: kafka.kafka, topics: [topic], start: { timestamp: replayFrom }, bounded: true, maxInFlight: 500 }).pipe(
      mergeMap((lane) => {
        // Records appended after the end offsets were captured must not be replayed.
        if (!producedAfterStart) {
          producedAfterStart = true;
          lateProduce = kafka.produce(topic, 1_000, (i) => ({ key: `d${i % 7}`, value: `late-${i}`, timestamp: String(replayFrom + 50_000 + i) }));
        }
        return lane.records.pipe(tap((record) => lane.ack(record.offset)));
      }),
      toArray(),
    );
    const records = await lastValueFrom(replay);

    await lateProduce;
    const ends = await kafka.admin.fetchTopicOffsets(topic);
    expect(ends.reduce((sum, p) => sum + Number(p.high), 0)).toBe(8_000);

    const values = records.map((r) => r.value?.toString() ?? '');
    expect(values.filter((v) => !v.startsWith('wanted-')).slice(0, 5)).toEqual([]);
    expect(new Set(values).size).toBe(4_000);
    expect(values).toHaveLength(4_000);
    // In order within each partition.
    for (const partition of [0, 1, 2]) {
      const offsets = records.filter((r) => r.partition === partition).map((r) => Number(r.offset));
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
  }, 120_000);

  test('reaches the end of a transactional topic, whose last offsets are commit markers', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 2 });
    const producer = await kafka.producer({ transactionalId: `tx-${topic}`, idempotent: true, maxInFlightRequests: 1 });
    for (let batch = 0; batch < 4; batch++) {
      const transaction = await producer.transaction();
      await transaction.send({ topic, messages: Array.from({ length: 250 }, (_, i) => ({ key: `k${i}`, value: `b${batch}-${i}` })) });
      if (batch === 2) await transaction.abort();
      else await transaction.commit();
    }
    const records = await lastValueFrom(
      fromKafka({ kafka: kafka.kafka, topics: [topic], bounded: true }).pipe(
        mergeMap((lane) => lane.records.pipe(tap((record) => lane.ack(record.offset)))),
        toArray(),
      ),
    );
    expect(records).toHaveLength(750);
    expect(records.some((r) => r.value?.toString().startsWith('b2-'))).toBe(false);
  }, 60_000);

  test('completes at once for a topic with nothing after the start time', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 2 });
    await kafka.produce(topic, 100, (i) => ({ value: `v${i}`, timestamp: String(1_000 + i) }));
    const records = await lastValueFrom(
      fromKafka({ kafka: kafka.kafka, topics: [topic], start: { timestamp: 5_000 }, bounded: true }).pipe(mergeMap((lane) => lane.records), toArray()),
    );
    expect(records).toEqual([]);
  }, 60_000);
});
