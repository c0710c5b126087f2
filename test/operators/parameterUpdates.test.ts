import { describe, expect, it } from 'vitest';
import { appendTimes, baseOf, shardMessage, updateMessages } from '../../operators/parameterUpdates.js';
import { codecFor, encodeTensor } from '../../schemas/index.js';

describe('parameterUpdates', () => {
  it('builds one ParameterUpdate per shard, keyed and partitioned by shard, with that shard\'s base version and tensors', () => {
    const codec = codecFor('ParameterUpdate');
    const body = { namespace: 'ns', workerId: 'w', sampleCount: 3, lossSum: 1.5, deadLettered: 1, offsets: [{ topic: 't', partition: 2, firstOffset: 10, lastOffset: 13 }], firstAppendTime: 5, lastAppendTime: 9, createdAt: 11 };
    const tensor = encodeTensor('kernel', [1], Float32Array.of(0.5), 'FP32');
    const messages = updateMessages(body, 3, (shard) => ({ version: 100 + shard, updatesOffset: shard === 2 ? -1 : 200 + shard }), (shard) => (shard === 1 ? [tensor] : []), codec);
    expect(messages.map((m) => [m.key, m.partition])).toEqual([['0', 0], ['1', 1], ['2', 2]]);
    // The base travels in headers, for the staleness check before commit; none when its offset is unknown.
    expect(messages.map(baseOf)).toEqual([{ version: 100, updatesOffset: 200 }, { version: 101, updatesOffset: 201 }, undefined]);
    expect(messages[2]!.headers).toBeUndefined();
    // An update that only counts dead letters has no staleness: no header.
    const counts = updateMessages({ ...body, sampleCount: 0 }, 2, () => ({ version: 1, updatesOffset: 7 }), () => [], codec);
    expect(counts.map(baseOf)).toEqual([undefined, undefined]);
    const decoded = messages.map((m) => codec.decode(m.value as Buffer));
    expect(decoded.map((d) => (d.ok ? [d.value.shard, d.value.baseVersion, d.value.tensors.length] : d.error.message))).toEqual([[0, 100, 0], [1, 101, 1], [2, 102, 0]]);
    for (const d of decoded) expect(d.ok && { ...d.value, shard: 0, baseVersion: 0, tensors: [] }).toEqual({ ...body, shard: 0, baseVersion: 0, tensors: [], featureMoments: null, prequential: [] });
  });

  it('keys a shard message by its shard', () => {
    expect(shardMessage(4, Buffer.from('v'))).toEqual({ key: '4', partition: 4, value: Buffer.from('v') });
  });

  it('finds the earliest and latest append time, in any order', () => {
    expect(appendTimes([30, 10, 20])).toEqual({ firstAppendTime: 10, lastAppendTime: 30 });
  });
});
