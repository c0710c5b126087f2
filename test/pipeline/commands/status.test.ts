import { describe, expect, it } from 'vitest';
import { formatStatus, formatWindow, prequentialOf, progressLine, StatusReader, type ShardStatus, type StatusReport } from '../../../pipeline/commands/status.js';
import { parseModelSpec } from '../../../pipeline/common/model.js';
import { ensureNamespaceTopics, topicsOf } from '../../../pipeline/common/topics.js';
import { ShardState } from '../../../pipeline/server/shardState.js';
import { codecFor, type PrequentialWindow } from '../../../schemas/index.js';
import { kafkaTest } from '../../support/kafka.js';

const shard = (id: number, refused = 0): ShardStatus => ({
  shard: id, version: 120, samplesApplied: 12_345, updatesDroppedStale: 0, samplesDroppedStale: 0, deadLettered: 3,
  updatesRefused: refused, samplesRefused: refused * 32, refusedByReason: refused > 0 ? { ABSURD: refused } : {}, freshnessMs: 250, lossSum: 12.3,
  stalenessCounts: [10, 5, 3], staleness: { updates: 18, p50: 0, p99: 3, max: 3 },
});
const report = (overrides: Partial<StatusReport> = {}): StatusReport => ({
  namespace: 'iot', inputTopic: 'telemetry', at: Date.UTC(2026, 10, 28),
  partitions: [{ partition: 0, end: 10_000, committed: 9_000, lag: 1_000, rate: 500, owner: 'host-1' }],
  shards: [shard(0), shard(1)], loss: 0.0123, lag: 1_000, deadLetters: 3, samplesPerSecond: 4_321, undecodableSnapshots: [], staleness: { updates: 36, p50: 1, p99: 3, max: 3 }, prequential: undefined,
  ...overrides,
});

describe('status display', () => {
  it('shows the partitions, the shards and the totals, with counts as people read them', () => {
    const text = formatStatus(report());
    expect(text).toContain('namespace iot, input telemetry');
    expect(text).toContain('12,345');
    expect(text).toContain('loss 0.0123 | lag 1,000 | dead letters 3 | 4,321 samples/s');
    expect(text).not.toContain('ERROR');
    expect(progressLine(report())).toBe('4,321 samples/s | loss 0.0123 | applied 12,345 | lag 1,000 | version 120/120 | freshness 250 ms | staleness p99 3 | dead letters 3');
    expect(text).toContain('staleness of 36 updates (updates that changed a shard since the one they were computed on, bucket tops): p50 ≤ 1, p99 ≤ 3, max 3');
  });

  it('shows the prequential scores of the closed event-time windows: first, best and last, and the last on the progress line', () => {
    const window = (start: number, samples: number, lossSum: number): PrequentialWindow => ({ start, samples, lossSum, absErrorSum: lossSum / 2, squaredErrorSum: lossSum, correct: 0, lastEventTime: start + 9_999 });
    const snapshot = { ...ShardState.initial('iot', 0, parseModelSpec({ kind: 'linear', features: 1 }), []).snapshot(0, 1, [], 0), prequentialWindowMs: 10_000, eventTimeWatermark: 35_000 };
    // Four windows; the one from 30 s ends at 40 s, after the watermark: still open, not shown.
    const prequential = prequentialOf({ ...snapshot, prequential: [window(0, 100, 50), window(10_000, 100, 5), window(20_000, 100, 8), window(30_000, 10, 0.1)] })!;
    expect(prequential.closed.map((w) => w.start)).toEqual([0, 10_000, 20_000]);
    expect([prequential.first!.loss, prequential.best!.loss, prequential.last!.loss]).toEqual([0.5, 0.05, 0.08]);
    expect(prequential.last).toMatchObject({ mae: 0.04, rmse: Math.sqrt(0.08), samples: 100 });
    const text = formatStatus(report({ prequential }));
    expect(text).toContain('prequential scores (each sample scored before it was trained on), 10 s event-time windows, 3 closed:');
    expect(text).toContain('  best  00:00:10 loss 0.0500 MAE 0.0250 RMSE 0.224 (100)');
    expect(progressLine(report({ prequential }))).toContain('| window loss 0.0800 |');
    const classes = prequentialOf({ ...snapshot, modelConfig: JSON.stringify({ kind: 'logistic', features: 2, outputs: 3 }), prequential: [{ ...window(0, 100, 20), correct: 93 }] })!;
    expect(formatWindow(classes.last!, classes.classifier)).toBe('00:00:00 accuracy 0.930 log-loss 0.2000 (100)');
  });

  it('says ERROR for refused updates and for records of the model topic that are not snapshots', () => {
    const bad = report({ shards: [shard(0, 2), shard(1, 2)], undecodableSnapshots: ['cannot decode the snapshot at iot.model[1]@7: cannot decode'] });
    for (const text of [formatStatus(bad), progressLine(bad)]) {
      expect(text).toContain('ERROR: 4 updates refused (ABSURD 4; 64 samples not learnt; see <namespace>.ps.dlq)');
      expect(text).toContain('ERROR: cannot decode the snapshot at iot.model[1]@7');
    }
  });
});

describe('StatusReader', () => {
  kafkaTest('reports the loss since the previous reading, and keeps it while no sample moves instead of falling back to the whole run', async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 1, prefix: 'status-input' });
    const namespace = `status-${input}`;
    await ensureNamespaceTopics(kafka.admin, namespace, 1);
    const state = ShardState.initial(namespace, 0, parseModelSpec({ kind: 'linear', features: 1 }), [{ name: 'linear/kernel', shape: [1, 1], values: Float32Array.of(0) }]);
    const codec = codecFor('ModelSnapshot');
    const publish = async (version: number, samplesApplied: number, lossSum: number) => {
      Object.assign(state, { version, samplesApplied, lossSum });
      await kafka.produce(topicsOf(namespace).model, 1, () => ({ key: '0', partition: 0, value: codec.encode(state.snapshot(Date.now(), 1, [], version)) }));
    };
    const reader = new StatusReader(kafka.kafka, { namespace, inputTopic: input });
    await reader.start();
    try {
      await publish(1, 100, 50);
      await reader.catchUp();
      expect((await reader.read()).loss).toBeCloseTo(0.5, 9);
      await publish(2, 200, 60);
      await reader.catchUp();
      expect((await reader.read()).loss).toBeCloseTo(0.1, 9);
      expect((await reader.read()).loss).toBeCloseTo(0.1, 9);
    } finally {
      await reader.stop();
    }
  });
});
