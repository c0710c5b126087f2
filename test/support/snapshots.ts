import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExperimentConfig } from '../../pipeline/common/config.js';
import { latestSnapshots as latestOf, readSnapshots } from '../../pipeline/common/modelStore.js';
import { startParameterServer } from '../../pipeline/server/parameterServer.js';
import { startWorker, type Worker } from '../../pipeline/worker/worker.js';
import { decodeTensor, type ModelSnapshot } from '../../schemas/index.js';
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

/**
 * Trains `config` with a parameter server and one worker per id in `workerIds`, all in this process, until every
 * shard has applied `total` samples, then stops them all. Returns the stopped workers (their metrics stay readable);
 * `log` gets each worker's lines.
 */
export async function trainWithWorkers(kafka: KafkaFixture, config: ExperimentConfig, workerIds: readonly string[], total: number, options: { readonly log?: (workerId: string, line: string) => void; readonly timeoutMs?: number } = {}): Promise<Worker[]> {
  const server = await startParameterServer(config, { log: () => {} });
  const workers = await Promise.all(workerIds.map((workerId) => startWorker({ ...config, workerId }, { log: (line) => options.log?.(workerId, line) })));
  try {
    await waitForShards(kafka, config.namespace, config.model.shards, `every record applied in all ${config.model.shards} shards`, (s) => s.samplesApplied === total, options.timeoutMs ?? 120_000);
  } finally {
    for (const worker of workers) worker.stop();
    server.stop();
    await Promise.all([...workers.map((w) => w.done), server.done]);
  }
  return workers;
}

/** {@link trainWithWorkers} with one worker; returns the newest weights by variable name. */
export async function trainInProcess(kafka: KafkaFixture, config: ExperimentConfig, total: number): Promise<Map<string, Float32Array>> {
  await trainWithWorkers(kafka, config, [config.workerId ?? `in-process-${process.pid}`], total);
  return new Map([...(await latestSnapshots(kafka, config.namespace)).values()].flatMap((snapshot) => snapshot.tensors.map((t) => [t.name, decodeTensor(t)] as const)));
}

/** Writes an experiment configuration to a fresh temporary file, for `streamgrad <command> --config`. */
export function writeExperimentFile(experiment: object): string {
  const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-experiment-')), 'experiment.json');
  writeFileSync(file, JSON.stringify(experiment));
  return file;
}
