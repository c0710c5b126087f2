import { describe, expect, it } from 'vitest';
import { endOffsetsOf, laneKey, parseLaneKey, startOffsetOf } from '../../operators/kafkaOffsets.js';
import { kafkaTest as test } from '../support/kafka.js';

describe('kafkaOffsets', () => {
  it('parses a lane key back, also for a topic name with colons', () => {
    expect(parseLaneKey(laneKey('a:b:c', 12))).toEqual({ topic: 'a:b:c', partition: 12 });
  });

  test('resolves start and end positions per partition: earliest, latest, by time (past the last record: the end), explicit offsets', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 2 });
    const t0 = 1_790_000_000_000;
    // Partition 0: 100 records at t0 … t0+99; partition 1: 50 records at t0+1000 … t0+1049.
    await kafka.produce(topic, 100, (i) => ({ partition: 0, value: `a${i}`, timestamp: String(t0 + i) }));
    await kafka.produce(topic, 50, (i) => ({ partition: 1, value: `b${i}`, timestamp: String(t0 + 1_000 + i) }));
    const { admin } = kafka;
    await admin.connect();

    expect(await startOffsetOf(admin, topic, 0, 'earliest')).toBe(0);
    expect(await startOffsetOf(admin, topic, 0, 'latest')).toBe(100);
    expect(await startOffsetOf(admin, topic, 0, { timestamp: t0 + 40 })).toBe(40);
    expect(await startOffsetOf(admin, topic, 0, { timestamp: t0 + 5_000 })).toBe(100);
    expect(await startOffsetOf(admin, topic, 1, { offsets: { [laneKey(topic, 1)]: 7 } })).toBe(7);
    await expect(startOffsetOf(admin, topic, 0, { offsets: { [laneKey(topic, 1)]: 7 } })).rejects.toThrow(`start.offsets has no offset for ${topic}:0`);

    expect(await endOffsetsOf(admin, topic, true)).toEqual(new Map([[laneKey(topic, 0), 100], [laneKey(topic, 1), 50]]));
    // By time: partition 0 ends at the first record at or after t0+60; partition 1 has none before it, so it ends at 0.
    expect(await endOffsetsOf(admin, topic, { timestamp: t0 + 60 })).toEqual(new Map([[laneKey(topic, 0), 60], [laneKey(topic, 1), 0]]));
    // Explicit offsets never reach past a partition's end; a partition without one ends at its end.
    expect(await endOffsetsOf(admin, topic, { offsets: { [laneKey(topic, 0)]: 500 } })).toEqual(new Map([[laneKey(topic, 0), 100], [laneKey(topic, 1), 50]]));
  });
});
