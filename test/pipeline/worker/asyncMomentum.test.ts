import { describe, expect, it } from 'vitest';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { parseModelSpec, type ModelSpecInput } from '../../../pipeline/common/model.js';
import { ForeignStaleness, lowersMomentum, momentumUnderStaleness, StepsPerUpdate } from '../../../pipeline/worker/asyncMomentum.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../../schemas/index.js';
import { InProcessJob } from '../../support/inProcessJob.js';

describe('momentumUnderStaleness', () => {
  it('lowers Adam\'s beta1 and momentum\'s momentum by τ / (1 + τ), never below 0, and leaves them alone at τ = 0 and for other optimizers', () => {
    const adam = { kind: 'adam' as const, learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
    expect(momentumUnderStaleness(adam, 0)).toBe(adam);
    expect((momentumUnderStaleness(adam, 1) as typeof adam).beta1).toBeCloseTo(0.4, 12);
    expect((momentumUnderStaleness(adam, 4) as typeof adam).beta1).toBeCloseTo(0.1, 12);
    expect((momentumUnderStaleness(adam, 20) as typeof adam).beta1).toBe(0);
    const momentum = { kind: 'momentum' as const, learningRate: 0.01, momentum: 0.5 };
    expect(momentumUnderStaleness(momentum, 0.25)).toEqual({ ...momentum, momentum: 0.3 });
    const sgd = { kind: 'sgd' as const, learningRate: 0.01 };
    expect(momentumUnderStaleness(sgd, 5)).toBe(sgd);
  });
});

describe('ForeignStaleness', () => {
  it('is 0 for a worker alone, and follows the updates of others that its steps miss', () => {
    const alone = new ForeignStaleness();
    for (let applied = 0; applied < 50; applied += 2) {
      // Two steps on the same snapshot, both held by the next one.
      alone.reflected(applied + 2, [alone.mark(applied), alone.mark(applied)]);
    }
    expect(alone.value).toBe(0);
    const shared = new ForeignStaleness();
    // Each own step is followed by 3 updates of other workers before the snapshot that holds it.
    for (let applied = 0; applied < 400; applied += 4) shared.reflected(applied + 4, [shared.mark(applied)]);
    expect(shared.value).toBeGreaterThan(2.9);
    expect(shared.value).toBeLessThanOrEqual(3);
  });
});

describe('lowersMomentum', () => {
  it('lowers with lower, keeps with keep, and with auto lowers only while updates hold one step', () => {
    expect([1, 4].map((steps) => lowersMomentum('lower', steps))).toEqual([true, true]);
    expect([1, 4].map((steps) => lowersMomentum('keep', steps))).toEqual([false, false]);
    expect([1, 1.3, 2, 4].map((steps) => lowersMomentum('auto', steps))).toEqual([true, true, false, false]);
  });
});

describe('StepsPerUpdate', () => {
  it('is 1 before any update, starts at the first update\'s steps, and follows the newest', () => {
    const steps = new StepsPerUpdate();
    expect(steps.value).toBe(1);
    steps.updated(4);
    expect(steps.value).toBe(4);
    for (let i = 0; i < 30; i++) steps.updated(1);
    expect(steps.value).toBeLessThan(1.2);
  });
});

/**
 * Trains `workers` replicas of `spec` in turn, 60 batches of 16, their snapshots reaching them `delay` updates late;
 * each batch one local step, or with `stepSamples` as many steps as hold that many samples.
 */
function train(input: ModelSpecInput, workers: number, delay: number, stepSamples?: number): { replicas: Replica[]; weights: Float32Array[] } {
  const job = new InProcessJob(parseModelSpec(input), workers, delay, { stepSamples });
  for (let step = 0; step < 60; step++) {
    const samples: TrainingSample[] = Array.from({ length: 16 }, (_, i) => {
      const x = [Math.sin(step * 16 + i), Math.cos(step * 7 + i)];
      return { deviceId: 'd', eventTime: 0, features: x, label: 2 * x[0]! - x[1]! + 0.5, labels: [], weight: 1, attributes: {} };
    });
    job.step(step % workers, samples, step % workers, step * 16);
  }
  return { replicas: job.replicas, weights: job.servers.flatMap((server) => [...server.variables.values()].map((v) => v.values)) };
}

describe('a worker that sends deltas', () => {
  const spec: ModelSpecInput = { kind: 'mlp', features: 2, shards: 2, layers: [{ units: 8 }], optimizer: { kind: 'adam', learningRate: 0.01 } };

  it('alone, estimates no foreign staleness and trains exactly as with asyncMomentum: keep', async () => {
    await selectBackend();
    const lowered = train(spec, 1, 3);
    const kept = train({ ...spec, asyncMomentum: 'keep' }, 1, 3);
    expect(lowered.replicas[0]!.foreignStaleness()).toBe(0);
    lowered.weights.forEach((values, i) => expect(values).toEqual(kept.weights[i]));
    [...lowered.replicas, ...kept.replicas].forEach((r) => r.dispose());
  });

  it('beside others, estimates the updates of the others its steps miss, and then steps with less momentum', async () => {
    await selectBackend();
    // Three workers in turn, snapshots 6 updates late: each step misses about 4 of the others' updates.
    const lowered = train(spec, 3, 6);
    for (const replica of lowered.replicas) {
      expect(replica.foreignStaleness()).toBeGreaterThan(2.5);
      expect(replica.foreignStaleness()).toBeLessThan(6);
    }
    const kept = train({ ...spec, asyncMomentum: 'keep' }, 3, 6);
    // Estimated either way (it is on /metrics); only `lower` acts on it.
    expect(kept.replicas[0]!.foreignStaleness()).toBeGreaterThan(2.5);
    expect(lowered.weights.some((values, i) => values.some((v, j) => v !== kept.weights[i]![j]))).toBe(true);
    [...lowered.replicas, ...kept.replicas].forEach((r) => r.dispose());
  });

  it('by default (auto) lowers its momentum beside others while its updates hold one step, and keeps it while they hold several', async () => {
    await selectBackend();
    const runs = [train(spec, 3, 6), train({ ...spec, asyncMomentum: 'lower' }, 3, 6), train(spec, 3, 6, 4), train({ ...spec, asyncMomentum: 'keep' }, 3, 6, 4)];
    const [autoOne, lowered, autoSeveral, kept] = runs.map((run) => run.weights);
    expect(autoOne!.some((values) => values.some((v) => v !== 0))).toBe(true);
    expect(autoOne).toEqual(lowered);
    expect(autoSeveral).toEqual(kept);
    expect(autoSeveral).not.toEqual(autoOne);
    runs.flatMap((run) => run.replicas).forEach((r) => r.dispose());
  });

  it('with asyncStepSize: scale, alone trains exactly as with keep, and beside others takes smaller steps, down to 1 / (1 + τ)', async () => {
    await selectBackend();
    const sgd: ModelSpecInput = { ...spec, optimizer: { kind: 'sgd', learningRate: 0.01 }, asyncMomentum: 'keep', asyncStepSize: 'scale' };
    const alone = [train(sgd, 1, 3), train({ ...sgd, asyncStepSize: 'keep' }, 1, 3)];
    alone[0]!.weights.forEach((values, i) => expect(values).toEqual(alone[1]!.weights[i]));
    // The first step of each worker comes before any estimate (τ = 0); later ones are scaled.
    const initial = new InProcessJob(parseModelSpec(sgd), 3, 6);
    const start = initial.servers.flatMap((server) => [...server.variables.values()].map((v) => v.values.slice()));
    initial.replicas.forEach((r) => r.dispose());
    const moved = ({ weights }: { weights: Float32Array[] }) => weights.reduce((sum, values, i) => sum + values.reduce((s, v, j) => s + Math.abs(v - start[i]![j]!), 0), 0);
    const scaled = train(sgd, 3, 6);
    const kept = train({ ...sgd, asyncStepSize: 'keep' }, 3, 6);
    const tau = scaled.replicas[0]!.foreignStaleness();
    expect(tau).toBeGreaterThan(2.5);
    // Plain SGD: the weights move less, by a share between 1 / (1 + τ) (had τ been known from the first step; the
    // estimate builds up over the steps) and 1.
    const share = moved(scaled) / moved(kept);
    expect(share).toBeLessThan(0.8);
    expect(share).toBeGreaterThan(1 / (1 + tau));
    [...alone, scaled, kept].flatMap((run) => run.replicas).forEach((r) => r.dispose());
  });
});
