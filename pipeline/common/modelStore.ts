import { createHash } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { codecFor } from '../../schemas/codec.js';
import type { ModelSnapshot } from '../../schemas/types.js';
import { SnapshotDecodeError } from './errors.js';
import { readTopic } from './readTopic.js';
import { topicsOf } from './topics.js';

const snapshotCodec = codecFor('ModelSnapshot');

/**
 * Every committed snapshot of `namespace` in `<ns>.model` (of `partitions`, default all),
 * in the order each partition holds them. Reads up to the end offsets taken at the start.
 */
export async function readSnapshots(kafka: Kafka, namespace: string, partitions?: readonly number[]): Promise<ModelSnapshot[]> {
  const snapshots: ModelSnapshot[] = [];
  await readTopic(
    kafka,
    topicsOf(namespace).model,
    (record) => {
      const decoded = snapshotCodec.decode(record.value, record);
      if (!decoded.ok) throw new SnapshotDecodeError(record, decoded.error.message);
      if (decoded.value.namespace === namespace) snapshots.push(decoded.value);
    },
    partitions ? { partitions } : {},
  );
  return snapshots;
}

/**
 * Whether `a` is a later snapshot of its shard than `b`: a higher version, or the same one from further on in the
 * updates partition (published once the shard passed aborted records).
 */
export function isLaterSnapshot(a: Pick<ModelSnapshot, 'version' | 'updatesOffset'>, b: Pick<ModelSnapshot, 'version' | 'updatesOffset'>): boolean {
  return a.version > b.version || (a.version === b.version && a.updatesOffset > b.updatesOffset);
}

/** The newest committed snapshot of each shard, by shard. */
export async function latestSnapshots(kafka: Kafka, namespace: string, partitions?: readonly number[]): Promise<Map<number, ModelSnapshot>> {
  const latest = new Map<number, ModelSnapshot>();
  for (const snapshot of await readSnapshots(kafka, namespace, partitions)) {
    const known = latest.get(snapshot.shard);
    if (!known || isLaterSnapshot(snapshot, known)) latest.set(snapshot.shard, snapshot);
  }
  return latest;
}

/**
 * A short fingerprint of a model's weights: SHA-256 over every shard's tensors
 * (name, shape, encoding and bytes), by shard and name, first 16 hex digits.
 * Equal weights give equal hashes on every machine; versions and counters do not count.
 */
export function modelHash(snapshots: Iterable<ModelSnapshot>): string {
  const hash = createHash('sha256');
  for (const snapshot of [...snapshots].sort((a, b) => a.shard - b.shard)) {
    for (const tensor of [...snapshot.tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      hash.update(`${snapshot.shard}/${tensor.name}/${tensor.shape.join('x')}/${tensor.encoding}/${tensor.scale}/${tensor.zeroPoint}:`);
      hash.update(tensor.bytes);
    }
  }
  return hash.digest('hex').slice(0, 16);
}
