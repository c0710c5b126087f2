import { describe, expect, it } from 'vitest';
import { parseModelSpec, type ModelSpecInput } from '../../pipeline/model.js';
import { ShardState } from '../../pipeline/shardState.js';
import { decodeTensor, encodeTensor, type ParameterUpdate } from '../../schemas/index.js';

const weights = [{ name: 'w', shape: [2], values: Float32Array.of(1, -1) }];
function shard(optimizer: ModelSpecInput['optimizer']): ShardState {
  return ShardState.initial('ns', 0, parseModelSpec({ kind: 'linear', features: 2, optimizer }), weights);
}
function update(gradientSum: number[], sampleCount: number, baseVersion = 0, offset = 0): ParameterUpdate {
  return {
    namespace: 'ns', shard: 0, workerId: 'w', baseVersion, sampleCount, lossSum: 1, deadLettered: 0,
    offsets: [{ topic: 'in', partition: 0, firstOffset: offset, lastOffset: offset + sampleCount - 1 }],
    firstAppendTime: 1, lastAppendTime: 2, createdAt: 3,
    tensors: [encodeTensor('w', [2], Float32Array.from(gradientSum), 'FP32')],
  };
}
const valuesOf = (state: ShardState) => [...state.variables.get('w')!.values];
const apply = { policy: 'apply' as const, bound: 100 };

describe('ShardState', () => {
  it('SGD steps along the mean gradient', () => {
    const state = shard({ kind: 'sgd', learningRate: 0.5 });
    expect(state.take(update([4, -2], 2), apply, undefined)).toBe('applied');
    expect(valuesOf(state)).toEqual([0, -0.5]);
  });

  it('momentum accumulates velocity', () => {
    const state = shard({ kind: 'momentum', learningRate: 0.1, momentum: 0.5 });
    state.take(update([1, 0], 1, 0, 0), apply, undefined);
    state.take(update([1, 0], 1, 0, 1), apply, undefined);
    // v1 = 1, v2 = 0.5 + 1 = 1.5; w = 1 − 0.1 − 0.15
    expect(valuesOf(state)[0]).toBeCloseTo(0.75, 6);
  });

  it('Adam takes a first step of the learning rate, whatever the gradient scale', () => {
    const state = shard({ kind: 'adam', learningRate: 0.01 });
    state.take(update([1000, -0.001], 1), apply, undefined);
    const [a, b] = valuesOf(state);
    expect(a).toBeCloseTo(1 - 0.01, 4);
    expect(b).toBeCloseTo(-1 + 0.01, 3);
  });

  it('FTRL-Proximal keeps a weight at exactly zero while |z| ≤ l1', () => {
    const state = shard({ kind: 'ftrl', learningRate: 0.1, l1: 10 });
    state.take(update([0.5, -0.5], 1), apply, undefined);
    expect(valuesOf(state)).toEqual([0, 0]);
    const plain = shard({ kind: 'ftrl', learningRate: 0.1 });
    plain.take(update([0.5, -0.5], 1), apply, undefined);
    expect(valuesOf(plain).every((v) => v !== 0)).toBe(true);
  });

  it('clips the mean gradient to the global norm', () => {
    const state = shard({ kind: 'sgd', learningRate: 1 });
    state.take(update([30, 40], 1), apply, 5);
    // |(30, 40)| = 50 → (3, 4)
    expect(valuesOf(state)).toEqual([1 - 3, -1 - 4]);
  });

  it('scales or drops stale updates, counts drops, and raises the version for every update', () => {
    const scaled = shard({ kind: 'sgd', learningRate: 1 });
    scaled.version = 3;
    scaled.take(update([1, 0], 1, 0), { policy: 'scale', bound: 0 }, undefined);
    expect(valuesOf(scaled)[0]).toBeCloseTo(1 - 1 / 4, 6);

    const dropping = shard({ kind: 'sgd', learningRate: 1 });
    dropping.version = 2;
    expect(dropping.take(update([1, 0], 8, 0), { policy: 'drop', bound: 1 }, undefined)).toBe('dropped');
    expect(dropping.take(update([1, 0], 8, 2, 8), { policy: 'drop', bound: 1 }, undefined)).toBe('applied');
    expect({ version: dropping.version, updatesDroppedStale: dropping.updatesDroppedStale, samplesDroppedStale: dropping.samplesDroppedStale, samplesApplied: dropping.samplesApplied }).toEqual({
      version: 4, updatesDroppedStale: 1, samplesDroppedStale: 8, samplesApplied: 8,
    });
  });

  it('restores weights, optimizer slots, version and counters from its snapshot exactly', () => {
    const state = shard({ kind: 'adam', learningRate: 0.01 });
    state.take(update([1, 2], 1), apply, undefined);
    const snapshot = state.snapshot(10, 1, state.takeAppendTimes());
    const restored = ShardState.fromSnapshot(snapshot, state.spec);
    state.take(update([3, -1], 2, 1, 1), apply, undefined);
    restored.take(update([3, -1], 2, 1, 1), apply, undefined);
    expect(valuesOf(restored)).toEqual(valuesOf(state));
    expect(restored.snapshot(20, 1, [])).toMatchObject({ version: 2, samplesApplied: 3, updatesApplied: 2, appliedOffsets: [{ topic: 'in', partition: 0, offset: 2 }] });
    expect(decodeTensor(snapshot.optimizerState.find((t) => t.name === ':steps')!)[0]).toBe(1);
  });

  it('refuses an update whose input offsets it has already taken in, and counts nothing for it', () => {
    const state = shard({ kind: 'sgd', learningRate: 1 });
    expect(state.take(update([1, 0], 4, 0, 0), apply, undefined)).toBe('applied');
    expect(state.take(update([1, 0], 4, 1, 0), apply, undefined)).toBe('duplicate');
    expect(state.take(update([1, 0], 4, 1, 2), apply, undefined)).toBe('duplicate');
    expect(state.take(update([1, 0], 4, 1, 4), apply, undefined)).toBe('applied');
    expect({ version: state.version, samplesApplied: state.samplesApplied }).toEqual({ version: 2, samplesApplied: 8 });
  });
});
