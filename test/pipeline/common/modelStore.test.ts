import { describe, expect } from 'vitest';
import { SnapshotDecodeError } from '../../../pipeline/common/errors.js';
import { parseModelSpec } from '../../../pipeline/common/model.js';
import { latestSnapshots, readSnapshots } from '../../../pipeline/common/modelStore.js';
import { createTopics, topicsOf } from '../../../pipeline/common/topics.js';
import { ShardState } from '../../../pipeline/server/shardState.js';
import { codecFor } from '../../../schemas/index.js';
import { kafkaTest } from '../../support/kafka.js';

describe('model store', () => {
  kafkaTest('reads the committed snapshots of a namespace, and names the offset of a record that is not one instead of skipping it', async ({ kafka }) => {
    const namespace = `store-${Date.now()}`;
    const model = topicsOf(namespace).model;
    // The namespace's model topic, with one partition (deleted at the end).
    await kafka.admin.connect();
    await createTopics(kafka.admin, [{ topic: model, numPartitions: 1 }]);
    const state = ShardState.initial(namespace, 0, parseModelSpec({ kind: 'linear', features: 2 }), [{ name: 'w', shape: [2], values: Float32Array.of(1, -1) }]);
    const snapshot = state.snapshot(1, 1, [], 0);
    const producer = await kafka.producer();
    await producer.send({ topic: model, acks: -1, messages: [{ value: codecFor('ModelSnapshot').encode(snapshot) }] });
    expect((await readSnapshots(kafka.kafka, namespace)).map((s) => s.version)).toEqual([0]);
    expect((await latestSnapshots(kafka.kafka, namespace)).get(0)?.version).toBe(0);

    await producer.send({ topic: model, acks: -1, messages: [{ value: Buffer.from('not a snapshot') }] });
    await expect(readSnapshots(kafka.kafka, namespace)).rejects.toThrow(new SnapshotDecodeError({ topic: model, partition: 0, offset: '1' }, 'x').message.split(':')[0]!);
    await expect(latestSnapshots(kafka.kafka, namespace)).rejects.toBeInstanceOf(SnapshotDecodeError);
    await kafka.admin.deleteTopics({ topics: [model] });
  });
});
