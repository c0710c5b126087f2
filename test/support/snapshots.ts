import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { codecFor, type ModelSnapshot } from '../../schemas/index.js';
import { waitFor } from './childProcess.js';
import type { KafkaFixture } from './kafka.js';

/** Every committed snapshot in `<ns>.model`, in the order each partition holds them. */
export async function committedSnapshots(kafka: KafkaFixture, modelTopic: string): Promise<ModelSnapshot[]> {
  const codec = codecFor('ModelSnapshot');
  return (await kafka.readCommittedValues(modelTopic)).map((bytes) => {
    const decoded = codec.decode(bytes);
    if (!decoded.ok) throw decoded.error;
    return decoded.value;
  });
}

/** The newest committed snapshot of each shard in `<ns>.model`, by shard. */
export async function latestSnapshots(kafka: KafkaFixture, modelTopic: string): Promise<Map<number, ModelSnapshot>> {
  const latest = new Map<number, ModelSnapshot>();
  for (const snapshot of await committedSnapshots(kafka, modelTopic)) {
    const known = latest.get(snapshot.shard);
    if (!known || snapshot.version > known.version) latest.set(snapshot.shard, snapshot);
  }
  return latest;
}

/** Waits until the newest snapshot of every shard satisfies `done`; a timeout says what the counters were. */
export async function waitForShards(kafka: KafkaFixture, modelTopic: string, shards: number, what: string, done: (snapshot: ModelSnapshot) => boolean, timeoutMs = 180_000): Promise<void> {
  let counters = '';
  await waitFor(what, async () => {
    const latest = await latestSnapshots(kafka, modelTopic);
    counters = [...latest.values()].map((s) => `shard ${s.shard}: v${s.version} samples ${s.samplesApplied} dead ${s.deadLettered} dropped ${s.samplesDroppedStale}`).join('; ');
    return Array.from({ length: shards }, (_, shard) => latest.get(shard)).every((s) => s !== undefined && done(s));
  }, timeoutMs, 300).catch((error: Error) => {
    throw new Error(`${error.message}; last counters: ${counters || 'no snapshot yet'}`);
  });
}

/** Writes an experiment configuration to a fresh temporary file, for `streamgrad worker|ps --config`. */
export function writeExperimentFile(experiment: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-experiment-')), 'experiment.json');
  writeFileSync(file, JSON.stringify(experiment));
  return file;
}
