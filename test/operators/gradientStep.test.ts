import { from, lastValueFrom, toArray } from 'rxjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { gradientStep, trainingBatchOf, type Decoded, type GradientModel, type KafkaRecord, type Outputs, type TrainingBatch } from '../../operators/index.js';
import { selectBackend } from '../../pipeline/common/backend.js';
import { parseModelSpec } from '../../pipeline/common/model.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { codecFor, decodeTensor, type ParameterUpdate, type TrainingSample } from '../../schemas/index.js';
import { marbleScheduler as scheduler } from '../support/marbles.js';

const updates = codecFor('ParameterUpdate');
const record = (offset: number, timestamp: number): KafkaRecord => ({ topic: 'telemetry', partition: 4, offset: String(offset), key: null, value: null, timestamp: String(timestamp), headers: {} });

/** y = 2·x0 − 3·x1 + 0.5·x2 + 1 + noise, the stream both tests below learn. */
function linearStream(count: number, seed = 7): Decoded<TrainingSample>[] {
  let state = seed;
  const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  return Array.from({ length: count }, (_, i) => {
    const features = [random(), random(), random()].map(Math.fround);
    const label = Math.fround(2 * features[0]! - 3 * features[1]! + 0.5 * features[2]! + 1 + 0.01 * random());
    return { value: { deviceId: `d${i % 5}`, eventTime: i, features, label, labels: [], weight: 1, attributes: {} }, record: record(i, 1_000 + i) };
  });
}

/** The stream's samples in batches of `size`, as gradientStep takes them. */
function batches(items: Decoded<TrainingSample>[], size: number): TrainingBatch[] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => trainingBatchOf(items.slice(i * size, (i + 1) * size), 3, 1));
}

function updatesOf(outputs: Outputs): ParameterUpdate[] {
  return outputs.messages.flatMap((t) => t.messages).map((m) => {
    const result = updates.decode(m.value as Buffer);
    if (!result.ok) throw result.error;
    return result.value;
  });
}

/** A test-only stand-in for the parameter server: plain SGD on the replica's own weights. */
function foldSgd(replica: Replica, update: ParameterUpdate, learningRate: number): void {
  for (const tensor of update.tensors) {
    const weights = replica.weights().find((w) => w.name === tensor.name)!;
    const gradient = decodeTensor(tensor);
    replica.assign(tensor.name, weights.values.map((w, i) => w - (learningRate * gradient[i]!) / update.sampleCount));
  }
}

describe('gradientStep', () => {
  beforeAll(async () => {
    await selectBackend();
  });

  it('emits one ParameterUpdate per shard with the base version, counts, offsets and append times of the batch', async () => {
    const replica = new Replica(parseModelSpec({ kind: 'mlp', features: 3, shards: 2, updates: 'gradients', layers: [{ units: 8 }] }));
    replica.setBase(1, { version: 17, updatesOffset: 40 });
    const batch = linearStream(32);
    const [outputs] = await lastValueFrom(from(batches(batch, 32)).pipe(gradientStep({ model: replica, namespace: 'ns', workerId: 'w1', updatesTopic: 'ns.updates', now: () => 99 }), toArray()));
    const [first, second] = updatesOf(outputs!);
    expect(outputs!.covers).toEqual([{ first: 0, last: 31 }]);
    expect(outputs!.messages[0]!.messages.map((m) => [m.key, m.partition])).toEqual([['0', 0], ['1', 1]]);
    expect(first).toMatchObject({ namespace: 'ns', shard: 0, workerId: 'w1', baseVersion: 0, sampleCount: 32, firstAppendTime: 1_000, lastAppendTime: 1_031, createdAt: 99 });
    expect(second).toMatchObject({ shard: 1, baseVersion: 17, offsets: [{ topic: 'telemetry', partition: 4, firstOffset: 0, lastOffset: 31 }] });
    expect(first!.lossSum).toBeCloseTo(replica.lossSum(batch.map((d) => d.value)), 3);
    const names = [...first!.tensors, ...second!.tensors].map((t) => t.name).sort();
    expect(names).toEqual(replica.weights().map((w) => w.name).sort());
    replica.dispose();
  });

  it('with INT8 and error feedback, learns as well as FP32 within 2%, with at most 30% of the bytes', async () => {
    const stream = linearStream(6_000);
    const holdout = linearStream(500, 99).map((d) => d.value);
    const run = async (encoding: 'FP32' | 'INT8') => {
      const fresh = new Replica(parseModelSpec({ kind: 'mlp', features: 3, seed: 3, updates: 'gradients', normalize: false, layers: [{ units: 32, activation: 'tanh' }, { units: 32, activation: 'tanh' }] }));
      let bytes = 0;
      // The fold runs between steps: each batch's update is applied before the next batch's gradient.
      const step = gradientStep({ model: fresh, namespace: 'ns', workerId: 'w', updatesTopic: 'u', encoding });
      const inputs = batches(stream, 32);
      await new Promise<void>((resolve, reject) => {
        const source = from(inputs);
        source.pipe(step).subscribe({
          next: (outputs) => {
            for (const message of outputs.messages[0]!.messages) bytes += (message.value as Buffer).length;
            for (const update of updatesOf(outputs)) foldSgd(fresh, update, 0.05);
          },
          error: reject,
          complete: resolve,
        });
      });
      const loss = fresh.lossSum(holdout) / holdout.length;
      fresh.dispose();
      return { loss, bytes };
    };
    const fp32 = await run('FP32');
    const int8 = await run('INT8');
    console.error(`[compression] holdout mse fp32 ${fp32.loss.toFixed(5)}, int8 ${int8.loss.toFixed(5)}; bytes ${fp32.bytes} vs ${int8.bytes}`);
    expect(fp32.loss).toBeLessThan(0.05);
    expect(Math.abs(int8.loss - fp32.loss) / fp32.loss).toBeLessThan(0.02);
    expect(int8.bytes / fp32.bytes).toBeLessThanOrEqual(0.3);
  }, 120_000);

  it('handles the empty source, the source error, a throwing model and early unsubscribe', () => {
    const throwing: GradientModel = {
      shardCount: 1,
      gradients: () => {
        throw new Error('model broke');
      },
      shardOf: () => 0,
      base: () => ({ version: 0, updatesOffset: 0 }),
    };
    const options = { model: throwing, namespace: 'ns', workerId: 'w', updatesTopic: 'u' };
    scheduler().run(({ cold, expectObservable, expectSubscriptions }) => {
      expectObservable(cold<TrainingBatch>('|').pipe(gradientStep(options))).toBe('|');
      expectObservable(cold<TrainingBatch>('#').pipe(gradientStep(options))).toBe('#');
      expectObservable(cold('a|', { a: batches(linearStream(2), 2)[0]! }).pipe(gradientStep(options))).toBe('#', undefined, new Error('model broke'));
      const source = cold<TrainingBatch>('---a|', { a: batches(linearStream(2), 2)[0]! });
      expectObservable(source.pipe(gradientStep(options)), '^-!').toBe('');
      expectSubscriptions(source.subscriptions).toBe('^-!');
    });
  });
});
