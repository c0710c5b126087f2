import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { startWorker } from '../../../pipeline/worker/worker.js';
import { codecFor } from '../../../schemas/index.js';
import { cliPath, spawnTs, waitFor } from '../../support/childProcess.js';
import { sineRecord } from '../../support/arbitraries.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { committedSnapshots, latestSnapshots, waitForShards, writeExperimentFile } from '../../support/snapshots.js';


describe('parameter servers', () => {
  test('two servers split the shards; when one is killed, the other takes its shards over with exact accounting', async ({ kafka }) => {
    const input = await kafka.createTopic({ partitions: 2, prefix: 'telemetry' });
    const namespace = `takeover-${input}`;
    const record = sineRecord({ devices: 5, label: Math.sin });
    let produced = 20_000;
    await kafka.produce(input, produced, record);
    const experiment = {
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 2, shards: 2, optimizer: { kind: 'momentum', learningRate: 0.01 } },
      batchSize: 32,
      checkpointIntervalMs: 100,
      maxInFlightUpdates: 64,
      sessionTimeoutMs: 6_000,
      server: { snapshotEveryUpdates: 25, snapshotIntervalMs: 100, staleness: { policy: 'apply', bound: 1_000 } },
    };
    const configFile = writeExperimentFile(experiment);
    const config = parseExperiment(experiment);

    const victim = spawnTs(cliPath, ['ps', '--config', configFile]);
    const worker = await startWorker(config, { log: () => {} });
    await waitFor('the first server to publish both shards', async () => (await latestSnapshots(kafka, namespace)).size === 2, 120_000, 200);
    // From here on records keep coming (500 every 100 ms) until the survivor holds both shards: the servers have
    // updates to publish while they share the shards and after the takeover, however soon the backlog is trained.
    let feeding = true;
    const feed = (async () => {
      while (feeding) {
        await kafka.produce(input, 500, (i) => record(produced + i));
        produced += 500;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const survivor = await startParameterServer(config, { log: () => {} });
    survivor.done.catch((error: unknown) => console.error('[parameter server failed]', error));
    const shardsOfSurvivor = new Set<number>();
    survivor.snapshots.subscribe((report) => shardsOfSurvivor.add(report.shard));
    try {
      await waitFor('the second server to get one of the two shards', () => shardsOfSurvivor.size === 1, 120_000, 200);
      victim.process.kill('SIGKILL');
      expect(await victim.exited).toBe('SIGKILL');
      await waitFor('the survivor to take over the other shard', () => shardsOfSurvivor.size === 2, 180_000, 200);
      feeding = false;
      await feed;
      await waitFor(`the survivor to account for every record (${produced})`, async () => {
        const latest = await latestSnapshots(kafka, namespace);
        return [0, 1].every((shard) => latest.get(shard)?.samplesApplied === produced);
      }, 180_000, 500);
    } finally {
      feeding = false;
      await feed;
      worker.stop();
      survivor.stop();
      await Promise.all([worker.done, survivor.done]);
      victim.process.kill('SIGKILL');
    }
    const all = await committedSnapshots(kafka, namespace);
    for (const shard of [0, 1]) {
      const history = all.filter((s) => s.shard === shard);
      expect(history.at(-1)!.samplesApplied).toBe(produced);
      history.slice(1).forEach((snapshot, i) => expect(snapshot.version).toBeGreaterThan(history[i]!.version));
    }
  }, 400_000);

  test('with the drop policy and a bound of 0, stale updates are dropped and counted, never lost', async ({ kafka }) => {
    const total = 20_000;
    const input = await kafka.createTopic({ partitions: 2, prefix: 'telemetry' });
    const namespace = `drop-${input}`;
    const samples = codecFor('TrainingSample');
    await kafka.produce(input, total, (i) => ({ value: samples.encode({ deviceId: 'd', eventTime: i, features: [Math.sin(i), 1].map(Math.fround), label: 0.5, labels: [], weight: 1, attributes: {} }) }));
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 2, shards: 1 },
      batchSize: 20,
      checkpointIntervalMs: 50,
      // This worker does not wait for its updates to show up in snapshots: most arrive stale.
      maxInFlightUpdates: 1_000,
      server: { snapshotEveryUpdates: 5, snapshotIntervalMs: 50, staleness: { policy: 'drop', bound: 0 } },
    });
    const server = await startParameterServer(config, { log: () => {} });
    server.done.catch((error: unknown) => console.error('[parameter server failed]', error));
    const worker = await startWorker(config, { log: () => {} });
    try {
      await waitForShards(kafka, namespace, 1, 'every record accounted for', (s) => s.samplesApplied + s.samplesDroppedStale === total, 120_000);
    } finally {
      worker.stop();
      server.stop();
      await Promise.all([worker.done, server.done]);
    }
    const snapshot = (await latestSnapshots(kafka, namespace)).get(0)!;
    expect(snapshot.updatesDroppedStale).toBeGreaterThan(0);
    expect(snapshot.samplesDroppedStale).toBeGreaterThan(0);
    expect(snapshot.samplesApplied + snapshot.samplesDroppedStale).toBe(total);
    expect(snapshot.updatesApplied + snapshot.updatesDroppedStale).toBe(snapshot.version);
    console.error(`[staleness] ${snapshot.updatesDroppedStale} of ${snapshot.version} updates dropped as stale`);
  }, 200_000);
});
