import { describe, expect } from 'vitest';
import { parseExperiment } from '../../../pipeline/common/config.js';
import { startParameterServer } from '../../../pipeline/server/parameterServer.js';
import { topicsOf } from '../../../pipeline/common/topics.js';
import { startWorker } from '../../../pipeline/worker/worker.js';
import { codecFor } from '../../../schemas/index.js';
import { Replica } from '../../../pipeline/worker/replica.js';
import { countStaleness } from '../../../pipeline/common/staleness.js';
import { closedWindows } from '../../../operators/prequential.js';
import { kafkaTest as test } from '../../support/kafka.js';
import { latestSnapshots, waitForShards } from '../../support/snapshots.js';

const truth = { w: [1.5, -2, 0.5, 3], b: 0.7 };

describe('parameter server', () => {
  test('two workers and two shards learn a known linear model, and the counters account for every record', async ({ kafka }) => {
    const total = 40_000;
    const bad = new Set([5, 9_999, 30_001]);
    const input = await kafka.createTopic({ partitions: 4, prefix: 'telemetry' });
    const namespace = `ps-${input}`;
    const samples = codecFor('TrainingSample');
    let state = 3;
    const random = () => ((state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    await kafka.produce(input, total, (i) => {
      if (bad.has(i)) return { key: `d${i % 13}`, value: Buffer.from('garbage') };
      const features = [random(), random(), random(), random()].map(Math.fround);
      const label = Math.fround(features.reduce((sum, x, k) => sum + x * truth.w[k]!, truth.b) + 0.01 * random());
      return { key: `d${i % 13}`, value: samples.encode({ deviceId: `d${i % 13}`, eventTime: i, features, label, labels: [], weight: 1, attributes: {} }) };
    });
    const config = parseExperiment({
      brokers: kafka.brokers,
      namespace,
      inputTopic: input,
      model: { kind: 'linear', features: 4, shards: 2, optimizer: { kind: 'sgd', learningRate: 0.2 } },
      batchSize: 64,
      checkpointIntervalMs: 100,
      maxInFlightUpdates: 4,
      // Four lanes with up to 4 updates in flight each: scaling stale updates keeps asynchronous SGD stable.
      server: { snapshotEveryUpdates: 10, snapshotIntervalMs: 100, staleness: { policy: 'scale', bound: 2 } },
      // Event time = the record's index in ms: 40 windows of a second.
      prequential: { windowMs: 1_000, maxOutOfOrdernessMs: 0 },
    });
    const server = await startParameterServer(config, { log: (line) => line.includes('refused') && console.error(line) });
    server.done.catch((error: unknown) => console.error('[parameter server failed]', error));
    const workers = [await startWorker({ ...config, workerId: 'w1' }, { log: () => {} }), await startWorker({ ...config, workerId: 'w2' }, { log: () => {} })];
    const topics = topicsOf(namespace);
    try {
      await waitForShards(kafka, namespace, 2, 'every record accounted for in both shards', (s) => s.samplesApplied + s.deadLettered + s.samplesDroppedStale >= total);
    } finally {
      for (const worker of workers) worker.stop();
      server.stop();
      await Promise.all([...workers.map((w) => w.done), server.done]);
    }
    // The workers' side first: the committed updates of each shard cover every input offset once.
    const updateCodec = codecFor('ParameterUpdate');
    const committedUpdates = (await kafka.readCommittedValues(topics.updates)).map((bytes) => {
      const decoded = updateCodec.decode(bytes);
      if (!decoded.ok) throw decoded.error;
      return decoded.value;
    });
    for (const shard of [0, 1]) {
      const mine = committedUpdates.filter((u) => u.shard === shard);
      expect(mine.reduce((sum, u) => sum + u.sampleCount + u.deadLettered, 0), `committed updates of shard ${shard}`).toBe(total);
    }
    const latest = await latestSnapshots(kafka, namespace);
    // The staleness the snapshots carry is that of the committed updates, recounted here in the order the shard took
    // them in: the updates with samples between the version an update was computed on and its own.
    for (const shard of [0, 1]) {
      const counts: number[] = [];
      const withSamplesAt = [0];
      for (const u of committedUpdates.filter((c) => c.shard === shard)) {
        const now = withSamplesAt[withSamplesAt.length - 1]!;
        if (u.sampleCount > 0) countStaleness(counts, now - withSamplesAt[u.baseVersion]!);
        withSamplesAt.push(now + (u.sampleCount > 0 ? 1 : 0));
      }
      expect(latest.get(shard)!.stalenessCounts, `staleness of shard ${shard}`).toEqual(counts);
    }
    // The model learned on scaled features (model.normalize): folded back, it takes raw ones, whose weights are known.
    const replica = new Replica(config.model);
    for (const snapshot of latest.values()) replica.applySnapshot(snapshot);
    replica.foldScaling();
    const folded = new Map(replica.weights().map((w) => [w.name, w.values]));
    replica.dispose();
    const kernel = folded.get('linear/kernel')!;
    const bias = folded.get('linear/bias')![0]!;
    // Shard 0 merged the feature moments of every applied sample.
    expect(latest.get(0)!.featureMoments?.count).toBe(total - bad.size);
    console.error(`[ps] w=${[...kernel].map((v) => v.toFixed(3)).join(',')} b=${bias.toFixed(3)}; versions ${[...latest.values()].map((s) => s.version).join('/')}`);
    truth.w.forEach((w, k) => expect(Math.abs(kernel[k]! - w) / Math.abs(w), `w${k}`).toBeLessThan(0.02));
    expect(Math.abs(bias - truth.b) / truth.b).toBeLessThan(0.02);
    expect((await kafka.readCommitted(topics.deadLetters)).length).toBe(bad.size);
    // Freshness and staleness are exported as Prometheus histograms, one observation per update.
    const exported = await server.metrics.registry.metrics();
    const applied = [...latest.values()].reduce((sum, s) => sum + s.version, 0);
    expect(exported).toMatch(/streamgrad_freshness_ms_count\{[^}]*shard="0"[^}]*\} \d+/);
    const stalenessCount = [...exported.matchAll(/streamgrad_update_staleness_count\{[^}]*\} (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    expect(stalenessCount).toBe(applied);
    // Every sample was scored once before training, in the window of its event time; the last closed window is on /metrics.
    const shard0 = latest.get(0)!;
    expect(shard0.prequential.reduce((sum, w) => sum + w.samples, 0)).toBe(total - bad.size);
    expect(shard0.prequential.map((w) => w.start)).toEqual(Array.from({ length: 40 }, (_, k) => k * 1_000));
    const lastClosed = closedWindows(shard0).at(-1)!;
    expect(exported).toContain(`streamgrad_prequential{score="loss",namespace="${namespace}",role="ps"} ${lastClosed.loss}`);
    expect(exported).toMatch(/streamgrad_prequential\{score="rmse"[^}]*\} [0-9.e-]+/);
    for (const snapshot of latest.values()) {
      expect(snapshot.deadLettered).toBe(bad.size);
      expect(snapshot.samplesApplied).toBe(total - bad.size);
    }
  }, 300_000);
});
