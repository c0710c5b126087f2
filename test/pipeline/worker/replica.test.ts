import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { parseModelSpec, type ModelSpecInput } from '../../../pipeline/common/model.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { applyScaling, mergeMoments, momentsOf, scalingOf } from '../../../pipeline/common/featureMoments.js';
import { encodeTensor, type ModelSnapshot, type TrainingSample } from '../../../schemas/index.js';

// A float64 forward pass written out by hand for each model kind, to check tfjs' float32 gradients
// against central finite differences.
type Params = Map<string, { shape: number[]; values: Float64Array }>;
const act = {
  linear: (v: number) => v,
  relu: (v: number) => Math.max(0, v),
  tanh: Math.tanh,
  sigmoid: (v: number) => 1 / (1 + Math.exp(-v)),
  elu: (v: number) => (v > 0 ? v : Math.exp(v) - 1),
  hardSigmoid: (v: number) => Math.min(1, Math.max(0, 0.2 * v + 0.5)),
} as const;
type Activation = keyof typeof act;

function dense(x: number[], params: Params, layer: string, activation: Activation | 'softmax'): number[] {
  if (activation === 'softmax') return softmax(dense(x, params, layer, 'linear'));
  const { shape, values: kernel } = params.get(`${layer}/kernel`)!;
  const bias = params.get(`${layer}/bias`)!.values;
  const [inputs, units] = shape as [number, number];
  const out: number[] = [];
  for (let u = 0; u < units; u++) {
    let sum = bias[u]!;
    for (let i = 0; i < inputs; i++) sum += x[i]! * kernel[i * units + u]!;
    out.push(act[activation](sum));
  }
  return out;
}
function softmax(z: number[]): number[] {
  const max = Math.max(...z);
  const e = z.map((v) => Math.exp(v - max));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

function forward(spec: ReturnType<typeof parseModelSpec>, params: Params, x: number[]): number[] {
  switch (spec.kind) {
    case 'linear':
      return dense(x, params, 'linear', 'linear');
    case 'logistic':
      return spec.outputs > 1 ? softmax(dense(x, params, 'logistic', 'linear')) : dense(x, params, 'logistic', 'sigmoid');
    case 'mlp': {
      let h = x;
      spec.layers.forEach((layer, i) => (h = dense(h, params, `dense_${i}`, layer.activation)));
      return dense(h, params, 'output', spec.outputActivation);
    }
    case 'timeseries': {
      const { window, features, units } = spec;
      if (spec.cell === 'conv1d') {
        const kernel = params.get('conv/kernel')!.values;
        const bias = params.get('conv/bias')!.values;
        const k = spec.kernelSize;
        const flat: number[] = [];
        for (let t = 0; t + k <= window; t++) {
          for (let f = 0; f < units; f++) {
            let sum = bias[f]!;
            for (let j = 0; j < k; j++) for (let c = 0; c < features; c++) sum += x[(t + j) * features + c]! * kernel[(j * features + c) * units + f]!;
            flat.push(act.relu(sum));
          }
        }
        return dense(flat, params, 'output', spec.outputActivation);
      }
      const kernel = params.get('lstm/kernel')!.values;
      const recurrent = params.get('lstm/recurrent_kernel')!.values;
      const bias = params.get('lstm/bias')!.values;
      let h = new Array<number>(units).fill(0);
      let c = new Array<number>(units).fill(0);
      for (let t = 0; t < window; t++) {
        const z = Array.from({ length: 4 * units }, (_, g) => {
          let sum = bias[g]!;
          for (let f = 0; f < features; f++) sum += x[t * features + f]! * kernel[f * 4 * units + g]!;
          for (let u = 0; u < units; u++) sum += h[u]! * recurrent[u * 4 * units + g]!;
          return sum;
        });
        const gate = (index: number, u: number) => z[index * units + u]!;
        c = c.map((prev, u) => act.hardSigmoid(gate(1, u)) * prev + act.hardSigmoid(gate(0, u)) * Math.tanh(gate(2, u)));
        h = c.map((cell, u) => act.hardSigmoid(gate(3, u)) * Math.tanh(cell));
      }
      return dense(h, params, 'output', spec.outputActivation);
    }
  }
}

function lossSum(replica: Replica, params: Params, samples: TrainingSample[]): number {
  const clip = (p: number) => Math.min(1 - 1e-7, Math.max(1e-7, p));
  let total = 0;
  for (const sample of samples) {
    const predicted = forward(replica.spec, params, sample.features);
    const target = sample.labels.length === predicted.length ? sample.labels : [sample.label ?? 0];
    let loss = 0;
    if (replica.loss === 'mse') loss = predicted.reduce((s, p, i) => s + (p - target[i]!) ** 2, 0) / predicted.length;
    else if (replica.loss === 'binaryCrossentropy') loss = -predicted.reduce((s, p, i) => s + target[i]! * Math.log(clip(p)) + (1 - target[i]!) * Math.log(1 - clip(p)), 0) / predicted.length;
    else loss = -predicted.reduce((s, p, i) => s + target[i]! * Math.log(clip(p)), 0);
    total += sample.weight * loss;
  }
  return total;
}

function randomSamples(spec: ReturnType<typeof parseModelSpec>, count: number, seed: number): TrainingSample[] {
  let state = seed;
  const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const size = spec.kind === 'timeseries' ? spec.window * spec.features : spec.features;
  return Array.from({ length: count }, () => {
    const labels = spec.outputs > 1 ? Array.from({ length: spec.outputs }, (_, i) => (i === Math.floor(((random() + 1) / 2) * spec.outputs) % spec.outputs ? 1 : 0)) : [];
    const label = spec.kind === 'logistic' ? (random() > 0 ? 1 : 0) : random();
    return {
      deviceId: 'd',
      eventTime: 0,
      features: Array.from({ length: size }, () => Math.fround(random())),
      label: spec.outputs > 1 ? null : Math.fround(label),
      labels,
      weight: Math.fround(0.5 + (random() + 1) / 2),
      attributes: {},
    };
  });
}

const kinds: Array<[string, ModelSpecInput]> = [
  ['linear regression, 2 outputs', { kind: 'linear', features: 5, outputs: 2, seed: 1 }],
  ['logistic regression, binary', { kind: 'logistic', features: 5, seed: 2 }],
  ['logistic regression, 3 classes', { kind: 'logistic', features: 5, outputs: 3, seed: 3 }],
  ['MLP (tanh, sigmoid, elu)', { kind: 'mlp', features: 4, seed: 4, layers: [{ units: 6, activation: 'tanh' }, { units: 5, activation: 'sigmoid' }, { units: 3, activation: 'elu' }] }],
  ['MLP, softmax over 5 classes', { kind: 'mlp', features: 4, outputs: 5, seed: 6, layers: [{ units: 6, activation: 'tanh' }], outputActivation: 'softmax' }],
  ['time series, Conv1D', { kind: 'timeseries', cell: 'conv1d', features: 2, window: 5, units: 3, kernelSize: 2, seed: 5 }],
  ['time series, LSTM', { kind: 'timeseries', cell: 'lstm', features: 2, window: 4, units: 3, seed: 6 }],
];

describe('Replica gradients', () => {
  beforeAll(async () => {
    await selectBackend();
  });

  it.each(kinds)('%s: match central finite differences of a float64 reference within 1e-3', (_, input) => {
    const spec = parseModelSpec({ ...input, updates: 'gradients', normalize: false });
    const replica = new Replica(spec);
    const samples = randomSamples(spec, 12, spec.seed + 100);
    const { gradients, lossSum: tfLoss, sampleCount } = replica.gradients(samples);
    const params: Params = new Map(replica.weights().map((w) => [w.name, { shape: w.shape, values: Float64Array.from(w.values) }]));

    expect(sampleCount).toBe(12);
    expect(tfLoss).toBeCloseTo(lossSum(replica, params, samples), 3);
    for (const gradient of gradients) {
      const values = params.get(gradient.name)!.values;
      let errorSquared = 0;
      let normSquared = 0;
      for (let i = 0; i < values.length; i++) {
        const original = values[i]!;
        const h = 1e-6 * Math.max(1, Math.abs(original));
        values[i] = original + h;
        const up = lossSum(replica, params, samples);
        values[i] = original - h;
        const down = lossSum(replica, params, samples);
        values[i] = original;
        const numeric = (up - down) / (2 * h);
        errorSquared += (gradient.values[i]! - numeric) ** 2;
        normSquared += numeric ** 2;
      }
      const relative = Math.sqrt(errorSquared) / Math.max(Math.sqrt(normSquared), 1e-6);
      expect(relative, gradient.name).toBeLessThan(1e-3);
    }
    replica.dispose();
  });

  it('leaks no tensors: the count after 5,000 steps equals the count after 100', async () => {
    const spec = parseModelSpec({ kind: 'mlp', features: 8, layers: [{ units: 16, dropout: 0.1 }] });
    const replica = new Replica(spec);
    const samples = randomSamples(spec, 16, 9);
    for (let i = 0; i < 100; i++) replica.gradients(samples);
    const after100 = tf.memory().numTensors;
    for (let i = 0; i < 4_900; i++) {
      replica.gradients(samples);
      // Steps are synchronous: let the test worker answer vitest now and then (a minute without its event loop, on a
      // loaded machine, failed a whole run with "Timeout calling onTaskUpdate").
      if (i % 250 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    expect(tf.memory().numTensors).toBe(after100);
    replica.dispose();
  }, 120_000);

  it('splits variables over shards by size, the same way every time', () => {
    const spec = parseModelSpec({ kind: 'mlp', features: 16, shards: 2, layers: [{ units: 64 }, { units: 64 }] });
    const a = new Replica(spec);
    const b = new Replica(spec);
    const names = a.weights().map((w) => w.name);
    expect(names.map((n) => a.shardOf(n))).toEqual(names.map((n) => b.shardOf(n)));
    const load = [0, 0];
    for (const w of a.weights()) load[a.shardOf(w.name)]! += w.values.length;
    // 16·64 + 64·64 + 64 + 64 + 64 + 1 elements: the biggest kernel alone on one shard, the rest on the other.
    expect(load.sort((x, y) => x - y)).toEqual([1024 + 64 + 64 + 64 + 1, 4096]);
    a.dispose();
    b.dispose();
  });

  it('with updates: deltas, steps its own optimizer and keeps its deltas on top of snapshots until they reflect them', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 3, updates: 'deltas', optimizer: { kind: 'adam', learningRate: 0.1 } });
    const replica = new Replica(spec);
    const reference = new Replica({ ...spec, updates: 'gradients' });
    const initial = replica.weights();
    const snapshot = (version: number, weights: ReturnType<Replica['weights']>, reflected: number): ModelSnapshot => ({
      namespace: 'ns', shard: 0, shardCount: 1, version, modelConfig: '{}', tensors: weights.map((w) => encodeTensor(w.name, w.shape, w.values, 'FP32')), optimizerState: [],
      samplesApplied: 0, updatesApplied: 0, updatesDroppedStale: 0, samplesDroppedStale: 0, deadLettered: 0, lossSum: 0,
      appliedOffsets: reflected < 0 ? [] : [{ topic: 't', partition: 0, offset: reflected }], freshnessMs: 0, createdAt: 0, updatesOffset: 0, updatesRefused: 0, samplesRefused: 0, refusedByReason: {}, featureMoments: null, stalenessCounts: [], stalenessMax: 0, prequential: [], prequentialWindowMs: 0, eventTimeWatermark: 0,
    });
    const samples = randomSamples(spec, 8, 3);
    const step = replica.gradients(samples);
    // The update carries the change in weights, times the sample count.
    const stepped = replica.weights();
    stepped.forEach((w, i) => w.values.forEach((v, k) => expect(step.gradients[i]!.values[k]! / 8).toBeCloseTo(v - initial[i]!.values[k]!, 6)));
    // Its own first step equals Adam's first step on the mean gradient: the learning rate times the gradient's sign.
    const gradient = reference.gradients(samples).gradients;
    stepped.forEach((w, i) => w.values.forEach((v, k) => expect(v - initial[i]!.values[k]!).toBeCloseTo(-0.1 * Math.sign(gradient[i]!.values[k]!), 3)));
    replica.placeLastStep(replica, 't', 0, 7);

    // A snapshot from before the step (the server has not taken it in): the replica keeps its own step on top.
    expect(replica.applySnapshot(snapshot(1, initial, -1))).toBe(true);
    replica.weights().forEach((w, i) => w.values.forEach((v, k) => expect(v).toBeCloseTo(stepped[i]!.values[k]!, 6)));
    // The snapshot that holds it: the replica is the snapshot, and the delta is not added again by later snapshots.
    const moved = stepped.map((w) => ({ ...w, values: w.values.map((v) => v + 1) }));
    replica.applySnapshot(snapshot(2, moved, 7));
    replica.applySnapshot(snapshot(3, moved, 7));
    replica.weights().forEach((w, i) => expect([...w.values]).toEqual([...moved[i]!.values]));

    // A lane that ended with steps not committed: they are forgotten.
    const owner = {};
    replica.gradients(samples);
    replica.placeLastStep(owner, 't', 0, 15);
    replica.forgetPending(owner);
    replica.applySnapshot(snapshot(4, moved, 7));
    replica.weights().forEach((w, i) => expect([...w.values]).toEqual([...moved[i]!.values]));
    replica.dispose();
    reference.dispose();
  });

  it.each([
    ['mlp, normalized', { kind: 'mlp', features: 3, layers: [{ units: 5, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.05 } }],
    ['logistic over 3 classes', { kind: 'logistic', features: 3, outputs: 3, normalize: false, optimizer: { kind: 'sgd', learningRate: 0.5 } }],
  ] as const)('with updates: deltas and stepSamples, takes one step per part of a batch: %s, as separate batches would, in one update', (_, input) => {
    const spec = parseModelSpec({ ...input, updates: 'deltas' } as ModelSpecInput);
    const stepping = new Replica(spec, { stepSamples: 4 });
    const separate = new Replica(spec);
    const initial = separate.weights();
    const samples = randomSamples(spec, 10, 7);
    const update = stepping.gradients(samples);
    // As few parts as hold at most 4 samples each, of nearly equal size (3, 4 and 3), one step each.
    const parts = [[0, 3], [3, 7], [7, 10]].map(([start, end]) => {
      const computed = separate.gradients(samples.slice(start, end));
      separate.placeLastStep(separate, 't', 0, end! - 1);
      return computed;
    });
    // The same weights (to rounding: the moments of a batch's parts are merged in another order).
    const [stepped, reference] = [stepping.weights(), separate.weights()];
    stepped.forEach((w, i) => w.values.forEach((v, k) => expect(v, `${w.name}[${k}]`).toBeCloseTo(reference[i]!.values[k]!, 6)));
    // The update: every sample, the losses and scores of the parts in order, and the summed change times the count.
    expect(update.sampleCount).toBe(10);
    expect(update.lossSum).toBeCloseTo(parts.reduce((sum, part) => sum + part.lossSum, 0), 6);
    expect([...update.scores!.loss]).toEqual(parts.flatMap((part) => [...part.scores!.loss]));
    expect([...update.scores!.correct]).toEqual(parts.flatMap((part) => [...part.scores!.correct]));
    stepped.forEach((w, i) => w.values.forEach((v, k) => expect(update.gradients[i]!.values[k]! / 10).toBeCloseTo(v - initial[i]!.values[k]!, 6)));
    if (spec.normalize) expect(update.featureMoments!.count).toBe(10);
    stepping.dispose();
    separate.dispose();
  });

  it.each(kinds)('%s, normalized: scales each batch by the moments up to it, and folding the scaling into the first layer keeps its outputs on raw features', (_, input) => {
    const spec = parseModelSpec({ ...input, updates: 'gradients' });
    const replica = new Replica(spec);
    const plain = new Replica({ ...spec, normalize: false });
    // Features far from 0 and on different scales: scaling matters.
    const raw = randomSamples(spec, 12, 11).map((s) => ({ ...s, features: s.features.map((v, i) => Math.fround(100 * (i % 2) + v * 10 ** (i % 3))) }));
    const moments = momentsOf(Float32Array.from(raw.flatMap((s) => s.features)), spec.features);
    const scaling = scalingOf(moments);
    const scaled = raw.map((s) => {
      const values = Float32Array.from(s.features);
      applyScaling(scaling, values);
      return { ...s, features: [...values] };
    });
    const normalized = replica.gradients(raw);
    expect(normalized.featureMoments).toEqual(moments);
    const reference = plain.gradients(scaled);
    expect(normalized.lossSum).toBeCloseTo(reference.lossSum, 4);
    normalized.gradients.forEach((g, i) => g.values.forEach((v, k) => expect(v).toBeCloseTo(reference.gradients[i]!.values[k]!, 4)));
    replica.placeLastStep(replica, 't', 0, 11);
    const before = replica.predict(raw).predicted;
    replica.foldScaling();
    const after = replica.predict(raw).predicted;
    before.forEach((v, i) => expect(Math.abs(after[i]! - v)).toBeLessThan(1e-4 * Math.max(1, Math.abs(v))));
    replica.dispose();
    plain.dispose();
  });

  it('normalized: takes the feature moments from shard 0\'s snapshot, keeping its own batches on top until the snapshot holds them', () => {
    const spec = parseModelSpec({ kind: 'linear', features: 2, shards: 2, updates: 'gradients' });
    const replica = new Replica(spec);
    const rows = (from: number, count: number) => Array.from({ length: count }, (_, i) => ({ deviceId: 'd', eventTime: 0, features: [from + i, 10 * (from + i)], label: 0, labels: [], weight: 1, attributes: {} }));
    const snapshot = (shard: number, version: number, reflected: number, featureMoments: ModelSnapshot['featureMoments']): ModelSnapshot => ({
      namespace: 'ns', shard, shardCount: 2, version, modelConfig: '{}', tensors: [], optimizerState: [], samplesApplied: 0, updatesApplied: 0, updatesDroppedStale: 0, samplesDroppedStale: 0,
      deadLettered: 0, lossSum: 0, appliedOffsets: [{ topic: 't', partition: 0, offset: reflected }], freshnessMs: 0, createdAt: 0, updatesOffset: 0, updatesRefused: 0, samplesRefused: 0, refusedByReason: {}, featureMoments, stalenessCounts: [], stalenessMax: 0, prequential: [], prequentialWindowMs: 0, eventTimeWatermark: 0,
    });
    const first = replica.gradients(rows(0, 4)).featureMoments!;
    replica.placeLastStep(replica, 't', 0, 3);
    const second = replica.gradients(rows(4, 4)).featureMoments!;
    replica.placeLastStep(replica, 't', 0, 7);
    // A snapshot of shard 0 that holds the first batch only: the replica scales as one learner that saw both.
    replica.applySnapshot(snapshot(0, 1, 3, first));
    expect(replica.scalingMoments()).toEqual(mergeMoments(first, second));
    // Shard 1's snapshot does not carry moments: nothing changes.
    replica.applySnapshot(snapshot(1, 1, 7, null));
    expect(replica.scalingMoments()).toEqual(mergeMoments(first, second));
    // Shard 0's snapshot that holds both: the replica takes the server's moments as they are.
    const merged = mergeMoments(first, second);
    replica.applySnapshot(snapshot(0, 2, 7, merged));
    expect(replica.scalingMoments()).toBe(merged);
    replica.dispose();
  });

  it('names a bad spec field', () => {
    expect(() => parseModelSpec({ kind: 'mlp', features: 4, layers: [{ units: 0 }] })).toThrow('model.layers.0.units');
    expect(() => parseModelSpec({ kind: 'timeseries', cell: 'conv1d', features: 2, window: 3, kernelSize: 5 })).toThrow('model.kernelSize: must not exceed window (3)');
    expect(() => parseModelSpec({ kind: 'forest', features: 4 })).toThrow('model.kind');
  });
});
