import { codecFor, type ModelSnapshot } from '../../schemas/index.js';
import type { KafkaFixture } from './kafka.js';

/** The newest committed snapshot of each shard in `<ns>.model`, by shard. */
export async function latestSnapshots(kafka: KafkaFixture, modelTopic: string): Promise<Map<number, ModelSnapshot>> {
  const codec = codecFor('ModelSnapshot');
  const latest = new Map<number, ModelSnapshot>();
  for (const bytes of await kafka.readCommittedValues(modelTopic)) {
    const decoded = codec.decode(bytes);
    if (!decoded.ok) throw decoded.error;
    const known = latest.get(decoded.value.shard);
    if (!known || decoded.value.version > known.version) latest.set(decoded.value.shard, decoded.value);
  }
  return latest;
}
