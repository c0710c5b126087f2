import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import { cliOutput, runCli } from '../support/childProcess.js';
import { kafkaTest, testBrokers } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';
import { readTopic } from '../../pipeline/common/readTopic.js';
import { topicsOf } from '../../pipeline/common/topics.js';
import { codecFor } from '../../schemas/index.js';
import type { Kafka } from 'kafkajs';

/** The input partition of each update with samples on shard 0, in the order the server took them in. */
async function trainedPartitions(kafka: Kafka, namespace: string): Promise<number[]> {
  const codec = codecFor('ParameterUpdate');
  const order: number[] = [];
  await readTopic(kafka, topicsOf(namespace).updates, (record) => {
    const update = codec.decode(record.value, record);
    if (update.ok && update.value.sampleCount > 0) order.push(update.value.offsets[0]!.partition);
  }, { partitions: [0] });
  return order;
}

const env = () => ({ KAFKA_BROKERS: testBrokers().join(',') });

interface Summary {
  namespace: string;
  samples: number;
  deadLettered: number;
  finalLoss: number;
  versions: number[];
  hash: string;
}

function experiment(inputTopic: string, model: object = { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'adam', learningRate: 0.05 } }) {
  return { namespace: `live-${randomUUID().slice(0, 8)}`, inputTopic, inputPartitions: 4, model, batchSize: 128, simulator: { devices: 30, ratePerSecond: 20_000, seed: 5, dropoutRate: 0.01 } };
}

const cli = (args: string[]) => cliOutput(args, env());

const replay = async (file: string, ...args: string[]): Promise<Summary> => JSON.parse((await cli(['replay', '--config', file, '--json', ...args])).join('')) as Summary;

describe('streamgrad replay', () => {
  kafkaTest('sync replays of a range give identical hashes; another learning rate another; the live namespace is untouched; ranges by time and offsets', async ({ kafka }) => {
    const inputTopic = `replay-input-${randomUUID().slice(0, 8)}`;
    // An MLP and 256-sample batches, as in examples/iot.yaml: slow enough steps that a lane which did not wait for
    // its last update would hand the next partition weights without it.
    const mlp = (learningRate: number) => ({ kind: 'mlp', features: 16, shards: 2, layers: [{ units: 32, activation: 'tanh' }], optimizer: { kind: 'adam', learningRate } });
    // One step per update: the final loss is measured over whole updates, and at the default 8 steps a partition's
    // 1,500 records are one update, a quarter of this replay.
    const live = { ...experiment(inputTopic, mlp(0.01)), batchSize: 256, stepsPerUpdate: 1 };
    const file = writeExperimentFile(live);
    await cli(['simulate', '--config', file, '--count', '3000']);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const middle = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await cli(['simulate', '--config', file, '--count', '3000', '--seed', '6']);

    // The "live" namespace: trained once; a replay must never write to it.
    const trained = await replay(file, '--namespace', live.namespace);
    expect(trained.samples + trained.deadLettered).toBe(6_000);
    const liveEnds = await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`);

    const first = await replay(file, '--sync');
    const second = await replay(file, '--sync');
    expect(first.namespace).not.toBe(second.namespace);
    expect(first.samples + first.deadLettered).toBe(6_000);
    expect(first.deadLettered).toBeGreaterThan(0);
    expect(second.hash).toBe(first.hash);
    // Versions also count the dead-letter updates, which are cut by time: they may differ by one or two. Weights may not.
    expect(second.samples).toBe(first.samples);
    expect(first.finalLoss).toBeLessThan(0.5);

    const slower = writeExperimentFile({ ...live, model: mlp(0.003) });
    const other = await replay(slower, '--sync');
    expect(other.samples).toBe(first.samples);
    expect(other.hash).not.toBe(first.hash);

    const byTime = await replay(file, '--from', new Date(middle).toISOString());
    expect(byTime.samples + byTime.deadLettered).toBe(3_000);
    const byTimeEnd = await replay(file, '--to', String(middle));
    expect(byTimeEnd.samples + byTimeEnd.deadLettered).toBe(3_000);
    const byOffsets = await replay(file, '--from-offsets', '0:100', '--to-offsets', '0:1100,1:400,2:0,3:0');
    expect(byOffsets.samples + byOffsets.deadLettered).toBe(1_000 + 400);

    expect(await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`)).toEqual(liveEnds);
    const again = await runCli(['replay', '--config', file, '--namespace', live.namespace], env());
    expect(again.code).toBe(2);
    expect(again.stderr).toEqual([expect.stringMatching(new RegExp(`namespace '${live.namespace}' already exists`))]);
    expect(await kafka.admin.fetchTopicOffsets(`${live.namespace}.model`)).toEqual(liveEnds);
  }, 300_000);

  kafkaTest('--interleave reads the partitions at once, as live training does: every record once, and the updates of the partitions interleaved; without it one after another', async ({ kafka }) => {
    const inputTopic = `replay-interleave-${randomUUID().slice(0, 8)}`;
    // One step per update: several updates per partition, whatever the default number of steps in an update.
    const file = writeExperimentFile({ ...experiment(inputTopic), batchSize: 128, stepsPerUpdate: 1 });
    await cli(['simulate', '--config', file, '--count', '2000']);
    const interleaved = await replay(file, '--sync', '--interleave');
    const serial = await replay(file, '--sync');
    expect(interleaved.samples + interleaved.deadLettered).toBe(2_000);
    expect(interleaved.samples).toBe(serial.samples);
    const isSorted = (order: number[]) => order.every((p, i) => i === 0 || p >= order[i - 1]!);
    const serialOrder = await trainedPartitions(kafka.kafka, serial.namespace);
    const interleavedOrder = await trainedPartitions(kafka.kafka, interleaved.namespace);
    expect(new Set(serialOrder)).toEqual(new Set([0, 1, 2, 3]));
    expect(isSorted(serialOrder)).toBe(true);
    expect(interleavedOrder.length).toBe(serialOrder.length);
    expect(isSorted(interleavedOrder)).toBe(false);
  }, 180_000);
});
