import { describe, expect, it } from 'vitest';
import { auditNamespace, coverage } from '../../../pipeline/commands/audit.js';
import { ensureNamespaceTopics, topicsOf } from '../../../pipeline/common/topics.js';
import { codecFor, type ParameterUpdate } from '../../../schemas/index.js';
import { kafkaTest } from '../../support/kafka.js';

describe('coverage', () => {
  const records = [{ first: 0, last: 9 }, { first: 12, last: 14 }];
  it('finds the records covered by no interval, and those covered more than once, as runs', () => {
    const intervals = [{ first: 0, last: 5 }, { first: 4, last: 8 }, { first: 12, last: 12 }, { first: 14, last: 20 }];
    expect(coverage(records, intervals, (n) => n === 0)).toEqual([{ first: 9, last: 9 }, { first: 13, last: 13 }]);
    expect(coverage(records, intervals, (n) => n > 1)).toEqual([{ first: 4, last: 5 }]);
  });
  it('counts offsets that hold no record (transaction markers) as neither lost nor twice', () => {
    expect(coverage(records, [{ first: 0, last: 14 }], (n) => n === 0)).toEqual([]);
    expect(coverage(records, [], (n) => n === 0)).toEqual(records);
  });
});

describe('streamgrad audit', () => {
  kafkaTest('reports lost and twice-trained records as offset runs, and updates no snapshot accounts for', async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 1, prefix: 'audit' });
    const namespace = `audit-${input}`;
    await kafka.produce(input, 10, (i) => ({ value: Buffer.from(`r${i}`) }));
    await ensureNamespaceTopics(kafka.admin, namespace, 1);
    const topics = topicsOf(namespace);
    const update = (first: number, last: number): ParameterUpdate => ({
      namespace, shard: 0, workerId: 'w', baseVersion: 0, sampleCount: last - first + 1, lossSum: 0, deadLettered: 0,
      offsets: [{ topic: input, partition: 0, firstOffset: first, lastOffset: last }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0, tensors: [], featureMoments: null, prequential: [],
    });
    const codec = codecFor('ParameterUpdate');
    const producer = await kafka.producer();
    await producer.send({ topic: topics.updates, acks: -1, messages: [update(0, 5), update(4, 8)].map((u) => ({ partition: 0, value: codec.encode(u) })) });
    await kafka.admin.setOffsets({ groupId: topics.workerGroup, topic: input, partitions: [{ partition: 0, offset: '10' }] });

    const report = await auditNamespace({ kafka: kafka.kafka, namespace, inputTopic: input });
    expect(report.ok).toBe(false);
    expect(report.partitions).toMatchObject([{ shard: 0, partition: 0, start: 0, frontier: 10, records: 10, trained: 9, gaps: [{ first: 9, last: 9 }], overlaps: [{ first: 4, last: 5 }] }]);
    expect(report.problems).toEqual([
      'shard 0: 2 committed updates and no committed snapshot',
      `shard 0, ${input}[0]: 1 records in no update or dead letter (lost): 9`,
      `shard 0, ${input}[0]: 2 records in more than one update or dead letter: 4-5; 4-5 is in the updates @0 by w at 1970-01-01T00:00:00.000Z, @1 by w at 1970-01-01T00:00:00.000Z`,
    ]);
  });
});
