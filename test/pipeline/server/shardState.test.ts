import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseModelSpec, type ModelSpecInput } from '../../../pipeline/common/model.js';
import { ShardState } from '../../../pipeline/server/shardState.js';
import { momentsOf } from '../../../pipeline/common/featureMoments.js';
import { servedSnapshot } from '../../../pipeline/common/averaging.js';
import { averageAlong } from '../../support/averages.js';
import { codecFor, decodeTensor, encodeTensor, type ParameterUpdate } from '../../../schemas/index.js';

const weights = [{ name: 'w', shape: [2], values: Float32Array.of(1, -1) }];
function shard(optimizer: ModelSpecInput['optimizer']): ShardState {
  return ShardState.initial('ns', 0, parseModelSpec({ kind: 'linear', features: 2, updates: 'gradients', optimizer }), weights);
}
function update(gradientSum: number[], sampleCount: number, baseVersion = 0, offset = 0): ParameterUpdate {
  return {
    namespace: 'ns', shard: 0, workerId: 'w', baseVersion, sampleCount, lossSum: 1, deadLettered: 0,
    offsets: [{ topic: 'in', partition: 0, firstOffset: offset, lastOffset: offset + sampleCount - 1 }],
    firstAppendTime: 1, lastAppendTime: 2, createdAt: 3,
    tensors: [encodeTensor('w', [2], Float32Array.from(gradientSum), 'FP32')], featureMoments: null, prequential: [],
  };
}
const valuesOf = (state: ShardState) => [...state.variables.get('w')!.values];
const apply = { policy: 'apply' as const, bound: 100 };

describe('ShardState', () => {
  it('SGD steps along the mean gradient', () => {
    const state = shard({ kind: 'sgd', learningRate: 0.5 });
    expect(state.take(update([4, -2], 2), apply, undefined)).toMatchObject({ outcome: 'applied' });
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
    // Three updates applied (zero gradients, so the weights stay put), then one computed on version 0: staleness 3.
    const scaled = shard({ kind: 'sgd', learningRate: 1 });
    for (let i = 0; i < 3; i++) scaled.take(update([0, 0], 1, i, i), apply, undefined);
    expect(scaled.stalenessOf(update([1, 0], 1, 0, 3))).toBe(3);
    scaled.take(update([1, 0], 1, 0, 3), { policy: 'scale', bound: 0 }, undefined);
    expect(valuesOf(scaled)[0]).toBeCloseTo(1 - 1 / 4, 6);

    const dropping = shard({ kind: 'sgd', learningRate: 1 });
    for (let i = 0; i < 2; i++) dropping.take(update([0, 0], 1, i, 100 + i), apply, undefined);
    expect(dropping.take(update([1, 0], 8, 0, 102), { policy: 'drop', bound: 1 }, undefined)).toMatchObject({ outcome: 'dropped' });
    expect(dropping.take(update([1, 0], 8, 3, 110), { policy: 'drop', bound: 1 }, undefined)).toMatchObject({ outcome: 'applied' });
    expect({ version: dropping.version, updatesDroppedStale: dropping.updatesDroppedStale, samplesDroppedStale: dropping.samplesDroppedStale, samplesApplied: dropping.samplesApplied }).toEqual({
      version: 4, updatesDroppedStale: 1, samplesDroppedStale: 8, samplesApplied: 10,
    });
  });

  it('counts only the updates that changed the weights as staleness: dead-letter counts, refused and dropped updates do not', () => {
    const state = shard({ kind: 'sgd', learningRate: 1 });
    state.take(update([0, 0], 1, 0, 0), apply, undefined);
    state.take({ ...update([0, 0], 1, 1, 1), sampleCount: 0, tensors: [], deadLettered: 3 }, apply, undefined);
    state.take(update([0, 0], 1, 2, 0), apply, undefined);
    state.take(update([0, 0], 1, 3, 2), { policy: 'drop', bound: -1 }, undefined);
    expect(state.version).toBe(4);
    expect({ outcomes: [state.updatesApplied, state.deadLettered, state.updatesRefused, state.updatesDroppedStale] }).toEqual({ outcomes: [1, 3, 1, 1] });
    // Computed on version 0: one update (the first) changed the weights since.
    expect(state.stalenessOf(update([0, 0], 1, 0, 9))).toBe(1);
    expect(state.stalenessOf(update([0, 0], 1, 4, 9))).toBe(0);
  });

  it('restores weights, optimizer slots, version and counters from its snapshot exactly', () => {
    const state = shard({ kind: 'adam', learningRate: 0.01 });
    state.take(update([1, 2], 1), apply, undefined);
    const snapshot = state.snapshot(10, 1, state.takeAppendTimes(), 1);
    const restored = ShardState.fromSnapshot(snapshot, state.spec);
    state.take(update([3, -1], 2, 1, 1), apply, undefined);
    restored.take(update([3, -1], 2, 1, 1), apply, undefined);
    expect(valuesOf(restored)).toEqual(valuesOf(state));
    expect(restored.snapshot(20, 1, [], 2)).toMatchObject({ version: 2, samplesApplied: 3, updatesApplied: 2, appliedOffsets: [{ topic: 'in', partition: 0, offset: 2 }] });
    expect(decodeTensor(snapshot.optimizerState.find((t) => t.name === ':steps')!)[0]).toBe(1);
  });

  it('refuses an update whose input offsets it has already taken in, counts it as refused, and raises the version', () => {
    const state = shard({ kind: 'sgd', learningRate: 1 });
    expect(state.take(update([1, 0], 4, 0, 0), apply, undefined)).toMatchObject({ outcome: 'applied' });
    expect(state.take(update([1, 0], 4, 1, 0), apply, undefined)).toMatchObject({ outcome: 'refused', reason: 'DUPLICATE' });
    expect(state.take(update([1, 0], 4, 1, 2), apply, undefined)).toMatchObject({ outcome: 'refused', reason: 'DUPLICATE' });
    expect(state.take(update([1, 0], 4, 1, 4), apply, undefined)).toMatchObject({ outcome: 'applied' });
    expect({ version: state.version, samplesApplied: state.samplesApplied, updatesRefused: state.updatesRefused, samplesRefused: state.samplesRefused, refusedByReason: state.refusedByReason }).toEqual({
      version: 4, samplesApplied: 8, updatesRefused: 2, samplesRefused: 8, refusedByReason: { DUPLICATE: 2 },
    });
    // A restored shard refuses a repeat of what it applied before its snapshot.
    const restored = ShardState.fromSnapshot(state.snapshot(0, 1, [], 4), state.spec);
    expect(restored.take(update([1, 0], 4, 1, 4), apply, undefined)).toMatchObject({ outcome: 'refused', reason: 'DUPLICATE' });
  });

  it('refuses what it cannot apply, before touching its weights: another namespace or shard, unknown variable, wrong shape, non-finite or absurd values', () => {
    const state = shard({ kind: 'sgd', learningRate: 1 });
    const before = valuesOf(state);
    const good = update([1, 0], 1, 0, 0);
    const tensor = good.tensors[0]!;
    const cases: Array<[ParameterUpdate, string]> = [
      [{ ...good, namespace: 'other' }, 'NAMESPACE'],
      [{ ...good, shard: 3 }, 'SHARD'],
      [{ ...good, tensors: [{ ...tensor, name: 'nope' }] }, 'UNKNOWN_VARIABLE'],
      [{ ...update([1, 0], 1, 0, 1), tensors: [encodeTensor(tensor.name, [3], Float32Array.of(1, 2, 3), 'FP32')] }, 'SHAPE'],
      // encodeTensor refuses NaN, so forge the bytes as a foreign writer could.
      [{ ...update([1, 0], 1, 0, 2), tensors: [{ ...tensor, bytes: Buffer.from(Float32Array.of(Number.NaN, 0).buffer) }] }, 'NON_FINITE'],
      [update([1e30, 0], 1, 0, 3), 'ABSURD'],
      [{ ...update([1, 0], 1, 0, 4), sampleCount: -5 }, 'ABSURD'],
    ];
    for (const [bad, reason] of cases) expect(state.take(bad, apply, undefined)).toMatchObject({ outcome: 'refused', reason });
    expect(valuesOf(state)).toEqual(before);
    expect({ version: state.version, samplesApplied: state.samplesApplied, updatesRefused: state.updatesRefused }).toEqual({ version: cases.length, samplesApplied: 0, updatesRefused: cases.length });
    // The snapshot still encodes: a refused record never poisons the weights.
    const snapshot = state.snapshot(0, 1, [], 7);
    expect(() => codecFor('ModelSnapshot').encode(snapshot)).not.toThrow();
    // The samples of an update of this shard refused for its values count as taken in (offsets 0–3): a worker waiting
    // for them to show in a snapshot goes on, and a repeat of them is refused. Another shard's or namespace's update,
    // or a negative count, takes nothing in.
    expect(snapshot.appliedOffsets).toEqual([{ topic: 'in', partition: 0, offset: 3 }]);
    expect(state.take(update([1, 0], 1, 0, 3), apply, undefined)).toMatchObject({ outcome: 'refused', reason: 'DUPLICATE' });
    const other = shard({ kind: 'sgd', learningRate: 1 });
    for (const [bad] of [cases[0]!, cases[1]!, cases[6]!]) other.take(bad, apply, undefined);
    expect(other.snapshot(0, 1, [], 3).appliedOffsets).toEqual([]);
  });

  it('with normalize, merges the feature moments of applied updates, restores them from its snapshot, and refuses bad ones', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 2, updates: 'gradients', optimizer: { kind: 'sgd', learningRate: 0.1 } });
    const state = ShardState.initial('ns', 0, spec, weights);
    const rows = [[1, 100], [2, 300], [3, 200], [4, 400], [5, 0]];
    const batch = (from: number, to: number) => momentsOf(rows.slice(from, to).flat(), 2);
    expect(state.take({ ...update([1, 0], 2, 0, 0), featureMoments: batch(0, 2) }, apply, undefined).outcome).toBe('applied');
    expect(state.take({ ...update([1, 0], 3, 1, 2), featureMoments: batch(2, 5) }, apply, undefined).outcome).toBe('applied');
    const all = momentsOf(rows.flat(), 2);
    const snapshot = state.snapshot(0, 1, [], 2);
    expect(snapshot.featureMoments!.count).toBe(5);
    snapshot.featureMoments!.mean.forEach((m, f) => expect(m).toBeCloseTo(all.mean[f]!, 12));
    snapshot.featureMoments!.m2.forEach((m, f) => expect(m).toBeCloseTo(all.m2[f]!, 9));
    const decoded = codecFor('ModelSnapshot').decode(codecFor('ModelSnapshot').encode(snapshot));
    if (!decoded.ok) throw decoded.error;
    const restored = ShardState.fromSnapshot(decoded.value, spec);
    expect(restored.featureMoments).toEqual(snapshot.featureMoments);

    // Each at offsets of its own: an update refused for its values counts as taken in, and a repeat is a DUPLICATE.
    const at = (offset: number, featureMoments: ParameterUpdate['featureMoments']) => ({ ...update([1, 0], 1, 2, offset), featureMoments });
    const good = at(20, momentsOf([1, 2], 2));
    const cases: Array<[ParameterUpdate, string]> = [
      [at(10, momentsOf([1, 2, 3], 3)), 'SHAPE'],
      [at(11, { count: 1, mean: [Number.NaN, 0], m2: [0, 0] }), 'NON_FINITE'],
      [at(12, { count: 7, mean: [1, 2], m2: [0, 0] }), 'ABSURD'],
      [at(13, { count: 1, mean: [1, 2], m2: [-1, 0] }), 'ABSURD'],
      // Prequential windows must hold the update's samples, with scores that can be.
      [{ ...at(14, null), prequential: [{ start: 0, samples: 2, lossSum: 1, absErrorSum: 1, squaredErrorSum: 1, correct: 0, lastEventTime: 5 }] }, 'ABSURD'],
      [{ ...at(15, null), prequential: [{ start: 0, samples: 1, lossSum: Number.NaN, absErrorSum: 1, squaredErrorSum: 1, correct: 0, lastEventTime: 5 }] }, 'ABSURD'],
    ];
    for (const [bad, reason] of cases) expect(restored.take(bad, apply, undefined)).toMatchObject({ outcome: 'refused', reason });
    expect(restored.featureMoments).toEqual(snapshot.featureMoments);
    // Another shard keeps no moments: an update that brings some is refused.
    const shard1 = ShardState.initial('ns', 1, spec, weights);
    expect(shard1.take({ ...good, shard: 1 }, apply, undefined)).toMatchObject({ outcome: 'refused', reason: 'UNKNOWN_VARIABLE' });
    expect(shard1.snapshot(0, 2, [], 1).featureMoments).toBeNull();
    // A namespace trained with the other setting is refused by name, both ways: its weights take inputs on another scale.
    const plainSpec = parseModelSpec({ kind: 'linear', features: 2, updates: 'gradients', normalize: false });
    expect(() => ShardState.fromSnapshot(snapshot, plainSpec)).toThrow('trained with feature scaling; set model.normalize: true');
    const plain = ShardState.initial('ns', 0, plainSpec, weights);
    plain.take(update([1, 0], 2, 0, 0), apply, undefined);
    expect(() => ShardState.fromSnapshot(plain.snapshot(0, 1, [], 1), spec)).toThrow('trained without feature scaling; set model.normalize: false');
  });

  it('keeps the served model: the average of the weights over its updates, warmed up, in its snapshot, restored, and served instead of the weights', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 2, updates: 'gradients', optimizer: { kind: 'sgd', learningRate: 0.5 }, averageDecay: 0.5 });
    const state = ShardState.initial('ns', 0, spec, weights);
    // w: (1, -1) → (0, -1) → (-1, -1) → (-2, -1); the decay of update k is min(0.5, (1 + k) / (10 + k)): 0.1, 0.1818…, 0.25
    const expected = [1, -1];
    [0, 1, 2].forEach((k) => {
      state.take(update([2, 0], 1, k, k), apply, undefined);
      const decay = Math.min(0.5, (1 + k) / (10 + k));
      const now = valuesOf(state);
      expected.forEach((a, i) => (expected[i] = decay * a + (1 - decay) * now[i]!));
    });
    expect(valuesOf(state)).toEqual([-2, -1]);
    const snapshot = state.snapshot(0, 1, [], 3);
    const average = snapshot.optimizerState.find(({ name }) => name === 'w:average')!;
    [...decodeTensor(average)].forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
    // Served: the averages in place of the weights, under the weights' names.
    const served = servedSnapshot(snapshot);
    expect(served.tensors.map(({ name }) => name)).toEqual(['w']);
    expect([...decodeTensor(served.tensors[0]!)]).toEqual([...decodeTensor(average)]);
    // Restored exactly: the next update averages on from where it was.
    const restored = ShardState.fromSnapshot(snapshot, spec);
    state.take(update([2, 0], 1, 3, 3), apply, undefined);
    restored.take(update([2, 0], 1, 3, 3), apply, undefined);
    expect(restored.snapshot(0, 1, [], 4).optimizerState).toEqual(state.snapshot(0, 1, [], 4).optimizerState);
    // averageDecay 0: no average, the weights are served.
    const plain = ShardState.initial('ns', 0, parseModelSpec({ ...spec, averageDecay: 0 }), weights);
    plain.take(update([2, 0], 1), apply, undefined);
    const plainSnapshot = plain.snapshot(0, 1, [], 1);
    expect(plainSnapshot.optimizerState.map(({ name }) => name)).not.toContain('w:average');
    expect(servedSnapshot(plainSnapshot)).toBe(plainSnapshot);
  });

  it('averages an update of several steps (stepsPerUpdate) as that many steps: the served model lags the same samples', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 2, optimizer: { kind: 'sgd', learningRate: 0.5 }, averageDecay: 0.9 });
    // Batches of 10: an update of 40 samples holds 4 steps, one of 25 holds 3, and the average decays by each.
    const state = ShardState.initial('ns', 0, spec, weights, 10);
    const expected = [1, -1];
    let step = 0;
    [40, 25].forEach((samples, k) => {
      state.take(update([samples, 0], samples, k, k * 100), apply, undefined);
      let decay = 1;
      for (const last = step + Math.ceil(samples / 10); step < last; step++) decay *= Math.min(0.9, (1 + step) / (10 + step));
      const now = valuesOf(state);
      expected.forEach((a, i) => (expected[i] = decay * a + (1 - decay) * now[i]!));
    });
    // Deltas add up: (1, -1) + (1, 0) + (1, 0).
    expect(valuesOf(state)).toEqual([3, -1]);
    const average = state.snapshot(0, 1, [], 2).optimizerState.find(({ name }) => name === 'w:average')!;
    [...decodeTensor(average)].forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 6));
    // Counted as one step each, the average would sit elsewhere.
    const perUpdate = ShardState.initial('ns', 0, spec, weights);
    [40, 25].forEach((samples, k) => perUpdate.take(update([samples, 0], samples, k, k * 100), apply, undefined));
    const lagging = perUpdate.snapshot(0, 1, [], 2).optimizerState.find(({ name }) => name === 'w:average')!;
    expect(Math.abs(decodeTensor(lagging)[0]! - expected[0]!)).toBeGreaterThan(0.1);
  });

  describe('the served average along the workers\' path', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 2, averageDecay: 0.9 });
    /** A worker's delta update: lane `lane`'s `index`-th, made at `createdAt`. */
    function delta(change: readonly number[], lane: number, index: number, createdAt: number): ParameterUpdate {
      return { ...update([...change], 1, 0, index), offsets: [{ topic: 'in', partition: lane, firstOffset: index, lastOffset: index }], createdAt };
    }
    const averageOf = (state: ShardState) => [...decodeTensor(state.snapshot(0, 1, [], 0).optimizerState.find(({ name }) => name === 'w:average')!)];
    /** The decay the shard gives the update it applies `applied`-th (warmed up as (1 + k) / (10 + k)). */
    const decayAt = (applied: number) => Math.min(0.9, (1 + applied) / (10 + applied));
    /** The average along the path by its definition: each update's weights, in the order made, with its own decay. */
    function pathAverage(changes: ReadonlyArray<readonly number[]>, decays: readonly number[] = changes.map((_, k) => decayAt(k))): number[] {
      return [...averageAlong([1, -1], changes.map((change, k) => ({ change, decay: decays[k]! })))];
    }

    it('is the same whatever order the updates are applied in: by when each was made', () => {
      // Updates made one lane after the other, as a worker steps its lanes; applied in any order, e.g. a lane's
      // checkpoint at a time.
      const updates = fc.array(fc.tuple(fc.float({ min: -1, max: 1, noNaN: true }), fc.float({ min: -1, max: 1, noNaN: true })), { minLength: 1, maxLength: 60 });
      fc.assert(
        fc.property(updates, fc.integer({ min: 1, max: 6 }), fc.integer(), (changes, lanes, seed) => {
          const made = changes.map((change, k) => delta(change, k % lanes, Math.floor(k / lanes), 1_000 + k));
          const shuffled = fc.sample(fc.shuffledSubarray(made, { minLength: made.length, maxLength: made.length }), { numRuns: 1, seed })[0]!;
          // Each lane's updates in the order made (as the shard refuses repeats of input offsets), lanes in any order.
          const applied = shuffled.sort((a, b) => a.offsets[0]!.partition - b.offsets[0]!.partition || a.offsets[0]!.firstOffset - b.offsets[0]!.firstOffset);
          const state = ShardState.initial('ns', 0, spec, weights);
          for (const one of applied) expect(state.take(one, apply, undefined)).toMatchObject({ outcome: 'applied' });
          // An update decays the average by the decay of when it is applied, and takes its place by when it was made.
          const decays = made.map((one) => decayAt(applied.indexOf(one)));
          const expected = pathAverage(changes, decays);
          averageOf(state).forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
        }),
        { numRuns: 200 },
      );
    });

    it('differs from the average in the order applied, which passes through weights no worker held', () => {
      // Lane 0 made +1, +1, +1 and lane 1 −1, −1, −1, one after the other: the path wavers around the start; applied
      // a lane at a time, the weights go to +3 and back.
      const changes = [[1, 0], [-1, 0], [1, 0], [-1, 0], [1, 0], [-1, 0]];
      const made = changes.map((change, k) => delta(change, k % 2, Math.floor(k / 2), 1_000 + k));
      const state = ShardState.initial('ns', 0, spec, weights);
      for (const one of [...made.filter((_, k) => k % 2 === 0), ...made.filter((_, k) => k % 2 === 1)]) state.take(one, apply, undefined);
      const along = pathAverage(changes, [0, 3, 1, 4, 2, 5].map(decayAt));
      const asApplied = pathAverage([[1, 0], [1, 0], [1, 0], [-1, 0], [-1, 0], [-1, 0]]);
      expect(averageOf(state)[0]).toBeCloseTo(along[0]!, 5);
      expect(Math.abs(asApplied[0]! - along[0]!)).toBeGreaterThan(0.2);
    });

    it('restores from a snapshot and goes on as if never stopped', () => {
      const made = [[0.5, 0], [0, 0.25], [-0.5, 1]].map((change, k) => delta(change, 0, k, 1_000 + k));
      const state = ShardState.initial('ns', 0, spec, weights);
      state.take(made[0]!, apply, undefined);
      const restored = ShardState.fromSnapshot(state.snapshot(0, 1, [], 1), spec);
      for (const one of made.slice(1)) {
        state.take(one, apply, undefined);
        restored.take(one, apply, undefined);
      }
      averageOf(restored).forEach((v, i) => expect(v).toBeCloseTo(averageOf(state)[i]!, 6));
    });
  });
});
