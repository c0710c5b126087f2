import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { latestSnapshots as latestOf, readSnapshots } from '../../pipeline/common/modelStore.js';
import type { ModelSnapshot } from '../../schemas/index.js';
import { waitFor } from './childProcess.js';
import type { KafkaFixture } from './kafka.js';

/** Every committed snapshot of `namespace` in `<ns>.model`, in the order each partition holds them. */
export function committedSnapshots(kafka: KafkaFixture, namespace: string): Promise<ModelSnapshot[]> {
  return readSnapshots(kafka.kafka, namespace);
}

/** The newest committed snapshot of each shard of `namespace`, by shard. */
export function latestSnapshots(kafka: KafkaFixture, namespace: string): Promise<Map<number, ModelSnapshot>> {
  return latestOf(kafka.kafka, namespace);
}

/** Waits until the newest snapshot of every shard satisfies `done`; a timeout says what the counters were. */
export async function waitForShards(kafka: KafkaFixture, namespace: string, shards: number, what: string, done: (snapshot: ModelSnapshot) => boolean, timeoutMs = 180_000): Promise<void> {
  let counters = '';
  await waitFor(what, async () => {
    const latest = await latestSnapshots(kafka, namespace);
    counters = [...latest.values()].map((s) => `shard ${s.shard}: v${s.version} samples ${s.samplesApplied} dead ${s.deadLettered} dropped ${s.samplesDroppedStale}`).join('; ');
    return Array.from({ length: shards }, (_, shard) => latest.get(shard)).every((s) => s !== undefined && done(s));
  }, timeoutMs, 300).catch((error: Error) => {
    throw new Error(`${error.message}; last counters: ${counters || 'no snapshot yet'}`);
  });
}

/** Writes an experiment configuration to a fresh temporary file, for `streamgrad <command> --config`. */
export function writeExperimentFile(experiment: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-experiment-')), 'experiment.json');
  writeFileSync(file, JSON.stringify(experiment));
  return file;
}
