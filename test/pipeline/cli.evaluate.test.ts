import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { cliOutput, runCli } from '../support/childProcess.js';
import { kafkaTest, testBrokers } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';

const env = () => ({ KAFKA_BROKERS: testBrokers().join(',') });
const cli = (args: string[]) => cliOutput(args, env());

describe('streamgrad evaluate', () => {
  kafkaTest('scores a replayed model on a holdout topic: samples, skipped dead letters, loss = RMSE² for a one-output MSE model, and a better score than the untrained model', async () => {
    const id = randomUUID().slice(0, 8);
    const experiment = { namespace: `eval-${id}`, inputTopic: `eval-${id}.train`, inputPartitions: 2, model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.05 } }, batchSize: 64, simulator: { devices: 20, ratePerSecond: 20_000, seed: 3, dropoutRate: 0.01 } };
    const file = writeExperimentFile(experiment);
    // The holdout: the same simulator with another seed, into a topic of its own.
    const holdout = `eval-${id}.holdout`;
    await cli(['simulate', '--config', writeExperimentFile({ ...experiment, inputTopic: holdout, simulator: { ...experiment.simulator, seed: 4 } }), '--count', '2000']);
    await cli(['simulate', '--config', file, '--count', '6000']);
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
    expect(evaluation.loss).toBeLessThan(before.loss / 2);

    const text = (await cli(['evaluate', '--config', file, '--namespace', namespace, '--topic', holdout])).join('\n');
    expect(text).toMatch(/^rmse +\d+\.\d{6}$/m);
    const missing = await runCli(['evaluate', '--config', file, '--namespace', namespace, '--topic', `eval-${id}.nothing`], env());
    expect(missing.code).toBe(2);
    expect(missing.stderr.join('\n')).toContain(`--topic: topic 'eval-${id}.nothing' does not exist`);
  }, 240_000);
});
