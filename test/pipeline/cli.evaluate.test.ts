import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { seededRandom, simulatedReading } from '../../pipeline/commands/simulator.js';
import { codecFor } from '../../schemas/index.js';
import { cliOutput, runCli } from '../support/childProcess.js';
import { kafkaTest, testBrokers } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';

const env = () => ({ KAFKA_BROKERS: testBrokers().join(',') });
const cli = (args: string[]) => cliOutput(args, env());

describe('streamgrad evaluate', () => {
  kafkaTest('scores a replayed model on a holdout topic: samples, skipped dead letters, loss = RMSE² for a one-output MSE model, and a better score than the untrained model', async ({ kafka }) => {
    const id = randomUUID().slice(0, 8);
    const inputTopic = await kafka.createTopic({ partitions: 2, prefix: 'eval-train' });
    const holdout = await kafka.createTopic({ partitions: 1, prefix: 'eval-holdout' });
    const experiment = { namespace: `eval-${id}`, inputTopic, model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.01 } }, batchSize: 64, simulator: { devices: 20, ratePerSecond: 20_000, seed: 3, dropoutRate: 0.01 } };
    const file = writeExperimentFile(experiment);
    // Readings 10 ms apart in event time (not the wall clock), so the 6,000 training readings span one simulated day
    // and the holdout, the 2,000 after them, comes from the same ranges, however fast the machine is.
    const fleet = { ...experiment.simulator, dayMs: 60_000 };
    const samples = codecFor('TrainingSample');
    const random = seededRandom(fleet.seed);
    const reading = (i: number) => simulatedReading(i % fleet.devices, 1_790_000_000_000 + i * 10, random, fleet, 1_790_000_000_000);
    await kafka.produce(inputTopic, 6_000, (i) => ({ key: `d${i % fleet.devices}`, value: samples.encode(reading(i)) }));
    await kafka.produce(holdout, 2_000, (i) => ({ value: samples.encode(reading(6_000 + i)) }));
    // A model that has seen two samples: the untrained baseline.
    await cli(['replay', '--config', file, '--namespace', `eval-${id}-none`, '--to-offsets', '0:1,1:1', '--json']);
    const { namespace } = JSON.parse((await cli(['replay', '--config', file, '--json'])).join('')) as { namespace: string };

    const evaluation = JSON.parse((await cli(['evaluate', '--config', file, '--namespace', namespace, '--topic', holdout, '--json'])).join('')) as { samples: number; skipped: Record<string, number>; loss: number; rmse: number; mae: number; accuracy?: number };
    expect(evaluation.samples + (evaluation.skipped.NON_FINITE ?? 0)).toBe(2_000);
    expect(evaluation.skipped.NON_FINITE).toBeGreaterThan(0);
    expect(evaluation.accuracy).toBeUndefined();
    expect(evaluation.rmse ** 2).toBeCloseTo(evaluation.loss, 6);
    expect(evaluation.mae).toBeLessThanOrEqual(evaluation.rmse);
    const before = JSON.parse((await cli(['evaluate', '--config', file, '--namespace', `eval-${id}-none`, '--topic', holdout, '--json'])).join('')) as { loss: number };
    expect(evaluation.loss, `holdout loss trained ${evaluation.loss}, untrained ${before.loss}`).toBeLessThan(before.loss / 2);

    const text = (await cli(['evaluate', '--config', file, '--namespace', namespace, '--topic', holdout])).join('\n');
    expect(text).toMatch(/^rmse +\d+\.\d{6}$/m);
    const missing = await runCli(['evaluate', '--config', file, '--namespace', namespace, '--topic', `eval-${id}.nothing`], env());
    expect(missing.code).toBe(2);
    expect(missing.stderr.join('\n')).toContain(`--topic: topic 'eval-${id}.nothing' does not exist`);
  }, 240_000);
});
