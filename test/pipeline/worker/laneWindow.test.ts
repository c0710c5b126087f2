import { describe, expect, it } from 'vitest';
import type { KafkaRecord } from '../../../operators/index.js';
import { codecFor, SampleDecoder } from '../../../schemas/index.js';
import { LaneWindow } from '../../../pipeline/worker/laneWindow.js';
import { sample16 } from '../../support/arbitraries.js';

const decoder = new SampleDecoder({ featureCount: 16 });
const raw = codecFor('TrainingSample');
const lane = { topic: 'telemetry', partition: 3 };
const recordAt = (offset: number, value: Buffer, timestamp: number): KafkaRecord => ({ ...lane, offset: String(offset), key: null, value, timestamp: String(timestamp), headers: {} });

describe('LaneWindow', () => {
  it('decodes each record as it is added, keeps offsets and append times of the good ones, and the bad ones to dead-letter', () => {
    const collect = LaneWindow.collector(lane, decoder);
    const window = collect.open(4);
    const records = [
      recordAt(40, raw.encode(sample16({ label: 1 })), 1_000),
      recordAt(41, Buffer.from('garbage'), 1_001),
      recordAt(42, raw.encode(sample16({ label: 2, weight: Number.NaN })), 1_002),
      recordAt(44, raw.encode(sample16({ label: 3 })), 1_004),
    ];
    const first = records[0]!;
    collect.add(window, first);
    // Decoded at once: the window's columns hold the sample before the window is full.
    expect(window.trained.samples.length).toBe(1);
    for (const record of records.slice(1)) collect.add(window, record);

    const { samples, records: columns } = window.trained;
    expect(samples.length).toBe(2);
    expect([...samples.targets]).toEqual([1, 3]);
    expect(columns).toMatchObject({ topic: 'telemetry', partition: 3 });
    expect([...columns.offsets]).toEqual([40, 44]);
    expect([...columns.appendTimes]).toEqual([1_000, 1_004]);
    expect(window.rejected.map(({ record, error }) => `${record.offset}:${error.code}`)).toEqual(['41:DECODE', '42:NON_FINITE']);
    // The span covers every record, the rejected ones and the gap (a compacted or aborted offset) included.
    expect(window.covers).toEqual({ first: 40, last: 44 });
  });

  it('covers its rejected records when none is good', () => {
    const window = new LaneWindow(lane.topic, lane.partition, 2, decoder);
    window.add(recordAt(7, Buffer.from('x'), 5));
    expect(window.trained.samples.length).toBe(0);
    expect(window.trained.records.offsets.length).toBe(0);
    expect(window.covers).toEqual({ first: 7, last: 7 });
  });
});
