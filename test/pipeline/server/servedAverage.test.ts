import { describe, expect } from 'vitest';
import { averageDecayAt } from '../../../pipeline/common/averaging.js';
import { localStepsIn, parseExperiment } from '../../../pipeline/common/config.js';
import { selectBackend } from '../../../pipeline/common/backend.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { codecFor, decodeTensor, type ParameterUpdate } from '../../../schemas/index.js';
import { averageAlong } from '../../support/averages.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots, trainWithWorkers } from '../../support/snapshots.js';
import { linearSample as sample } from '../../support/samples.js';

const largestDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!)));

describe('the served average, through Kafka', () => {
  test('is the average of the weights along the path the workers trained (by when each update was made), not in the order the shard applied them', async ({ kafka }) => {
    const total = 4_000;
    const batchSize = 25;
    const input = await kafka.createTopic({ partitions: 4, prefix: 'telemetry' });
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ value: samples.encode(sample(i)) }));
    const namespace = `served-average-${input}`;
    // Two workers, each stepping its lanes one after the other and committing a lane's updates 8 at a time: the shard
    // applies them in bunches, not in the order made.
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'mlp', features: 3, shards: 1, seed: 5, layers: [{ units: 8, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate: 0.03 }, averageDecay: 0.9 },
      batchSize,
      stepsPerUpdate: 1,
      maxInFlightUpdates: 64,
      warmupSteps: 0,
    });
    await trainWithWorkers(kafka, config, ['w1', 'w2'], total);

    // The committed updates of the shard, in the order it applied them, and the change each made.
    const codec = codecFor('ParameterUpdate');
    const applied: ParameterUpdate[] = [];
    for (const record of await kafka.readCommittedRecords(topicsOf(namespace).updates)) {
      const decoded = codec.decode(record.value);
      if (!decoded.ok) throw new Error(`an update that does not decode at offset ${record.offset}`);
      if (decoded.value.sampleCount > 0) applied.push(decoded.value);
    }
    expect(applied.reduce((sum, u) => sum + u.sampleCount, 0)).toBe(total);
    await selectBackend();
    const seeded = new Replica(config.model);
    const initial = seeded.weights();
    seeded.dispose();
    const names = initial.map((w) => w.name);
    const flat = (parts: readonly Float32Array[]) => Float32Array.from(parts.flatMap((part) => [...part]));
    let step = 0;
    const steps = applied.map((update) => {
      // The shard's decay for the update: one per step it holds, counted in the order applied.
      let decay = 1;
      for (const last = step + localStepsIn(update.sampleCount, batchSize); step < last; step++) decay *= averageDecayAt(0.9, step);
      const change = Float64Array.from(flat(names.map((name) => decodeTensor(update.tensors.find((t) => t.name === name)!))), (v) => Math.fround(v / update.sampleCount));
      return { update, change, decay };
    });
    const made = [...steps].sort((a, b) => a.update.createdAt - b.update.createdAt);
    const outOfOrder = steps.filter((one, k) => made[k] !== one).length;

    const snapshot = (await latestSnapshots(kafka, namespace)).get(0)!;
    const served = flat(names.map((name) => decodeTensor(snapshot.optimizerState.find((t) => t.name === `${name}:average`)!)));
    const along = averageAlong(flat(initial.map((w) => w.values)), made);
    const asApplied = averageAlong(flat(initial.map((w) => w.values)), steps);
    console.error(`[served average] ${applied.length} updates, ${outOfOrder} applied out of the order made; served − along the path ${largestDifference(served, along).toExponential(1)}, along − as applied ${largestDifference(along, asApplied).toExponential(1)}`);
    expect(outOfOrder).toBeGreaterThan(0);
    expect(largestDifference(served, along)).toBeLessThan(1e-5);
    expect(largestDifference(along, asApplied)).toBeGreaterThan(1e-4);
  }, 300_000);
});
