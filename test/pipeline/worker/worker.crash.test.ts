import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { codecFor, type ParameterUpdate } from '../../../schemas/index.js';
import { cliPath, spawnTs, waitFor } from '../../support/childProcess.js';
import { sineRecord } from '../../support/arbitraries.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { waitForShards, writeExperimentFile } from '../../support/snapshots.js';


describe('worker process', () => {
  test('killed with SIGKILL mid-stream and replaced, loses nothing and counts nothing twice; SIGTERM drains and exits 0', async ({ kafka }) => {
    const total = 60_000;
    const input = await kafka.createTopic({ partitions: 3, prefix: 'telemetry' });
    const namespace = `crash-${input}`;
    await kafka.produce(input, total, sineRecord({ devices: 11, label: Math.sin, extra: [1, 0], corrupt: (i) => i % 10_007 === 5 }));
    const bad = Array.from({ length: total }, (_, i) => i).filter((i) => i % 10_007 === 5).length;
    const experiment = {
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'mlp', features: 4, shards: 2, layers: [{ units: 32 }] },
      batchSize: 32,
      checkpointIntervalMs: 200,
      maxInFlightUpdates: 64,
      server: { snapshotEveryUpdates: 50, snapshotIntervalMs: 100 },
    };
    const configFile = writeExperimentFile(experiment);
    const server = await startParameterServer(parseExperiment(experiment), { log: () => {} });
    server.done.catch((error: unknown) => console.error('[parameter server failed]', error));
    const topics = topicsOf(namespace);
    const committed = () => kafka.committedTotal(topics.workerGroup, input);

    const first = spawnTs(cliPath, ['worker', '--config', configFile]);
    await waitFor('the first worker to commit 10,000 records', async () => (await committed()) >= 10_000, 120_000, 100);
    first.process.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const atCrash = await committed();

    const second = spawnTs(cliPath, ['worker', '--config', configFile]);
    await waitFor('the second worker to commit every record', async () => (await committed()) === total, 180_000, 250);
    second.process.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    // The server's counters, from its committed snapshots: each record exactly once.
    await waitForShards(kafka, namespace, 2, 'the server to account for every record', (s) => s.samplesApplied === total - bad && s.deadLettered === bad, 120_000);
    server.stop();
    await server.done;

    // Every input record is in exactly one committed update of each shard: as a sample or as a dead letter.
    const updates = codecFor('ParameterUpdate');
    const all: ParameterUpdate[] = (await kafka.readCommittedValues(topics.updates)).map((bytes) => {
      const decoded = updates.decode(bytes);
      if (!decoded.ok) throw decoded.error;
      return decoded.value;
    });
    for (const shard of [0, 1]) {
      const mine = all.filter((u) => u.shard === shard);
      expect(mine.reduce((sum, u) => sum + u.sampleCount + u.deadLettered, 0), `shard ${shard}`).toBe(total);
      expect(mine.reduce((sum, u) => sum + u.deadLettered, 0)).toBe(bad);
      for (const partition of [0, 1, 2]) {
        const ranges = mine.filter((u) => u.sampleCount > 0).flatMap((u) => u.offsets).filter((r) => r.partition === partition).sort((a, b) => a.firstOffset - b.firstOffset);
        ranges.slice(1).forEach((range, i) => expect(range.firstOffset, `shard ${shard} partition ${partition}`).toBeGreaterThan(ranges[i]!.lastOffset));
      }
    }
    expect((await kafka.readCommitted(topics.deadLetters)).length).toBe(bad);
    console.error(`[worker crash] ${atCrash} of ${total} committed at SIGKILL; ${all.length} updates`);
  }, 400_000);
});
