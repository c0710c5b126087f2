import { describe, expect } from 'vitest';
import { Lane } from '../../operators/lane.js';
import { LaneProducers } from '../../operators/laneProducers.js';
import { kafkaTest as test } from '../support/kafka.js';

const control = { pause: () => {}, resume: () => {}, commitOffset: async () => {}, recover: async () => undefined, producer: () => undefined };

describe('LaneProducers', () => {
  test('opening a lane\'s producer fences the one another process opened for the same partition; replace fences its own; close disconnects', async ({ kafka }) => {
    const topic = await kafka.createTopic({ partitions: 1 });
    const settings = { transactionalIdPrefix: `fence-${topic}`, transactionTimeoutMs: 30_000 };
    const retry = { retries: 3 };
    const lane = new Lane(topic, 0, 'group', 100, control);
    const zombie = new LaneProducers(kafka.kafka, settings, retry);
    const owner = new LaneProducers(kafka.kafka, settings, retry);
    await zombie.open(lane);
    const write = async (producers: LaneProducers) => {
      const transaction = await producers.get(lane)!.transaction();
      await transaction.send({ topic, messages: [{ value: 'x' }] });
      await transaction.commit();
    };
    await write(zombie);

    await owner.open(lane);
    await expect(write(zombie)).rejects.toMatchObject({ type: expect.stringMatching(/PRODUCER_FENCED|INVALID_PRODUCER_EPOCH/) });
    await write(owner);

    // A replace whose lane stopped being current meanwhile keeps no producer.
    expect(await owner.replace(lane, () => false)).toBe(false);
    expect(owner.get(lane)).toBeUndefined();
    expect(await owner.replace(lane, () => true)).toBe(true);
    await write(owner);
    await owner.close(lane);
    expect(owner.get(lane)).toBeUndefined();
    await zombie.close(lane);
    expect(await kafka.readCommittedValues(topic)).toEqual([Buffer.from('x'), Buffer.from('x'), Buffer.from('x')]);
  });

  test('without exactly-once settings it holds no producer', async ({ kafka }) => {
    const producers = new LaneProducers(kafka.kafka, undefined, {});
    const lane = new Lane('t', 0, 'group', 10, control);
    await producers.open(lane);
    expect(producers.get(lane)).toBeUndefined();
    expect(await producers.replace(lane, () => true)).toBe(true);
  });
});
