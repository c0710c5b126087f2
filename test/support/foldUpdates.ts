import { Kafka, logLevel } from 'kafkajs';
import { codecFor, decodeTensor, encodeTensor, type ModelSnapshot, type ParameterUpdate } from '../../schemas/index.js';
import type { Replica } from '../../pipeline/replica.js';
import { topicsOf } from '../../pipeline/topics.js';

/**
 * A test-only stand-in for the parameter server (until it exists): reads
 * `<ns>.updates` with read_committed, applies plain SGD to its own copy of the
 * weights (averaged over each update's samples), and publishes a snapshot of
 * every shard after every update. Not exactly-once: tests use it for
 * convergence, not accounting.
 */
export async function startTestFold(options: { brokers: string[]; namespace: string; replica: Replica; learningRate: number }): Promise<{ stop(): Promise<void>; applied(): number; weights(): Map<string, Float32Array> }> {
  const { replica, namespace, learningRate } = options;
  const topics = topicsOf(namespace);
  const kafka = new Kafka({ clientId: `test-fold-${namespace}`, brokers: options.brokers, logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId: `${topics.serverGroup}-test-fold`, maxWaitTimeInMs: 50 });
  const producer = kafka.producer();
  await Promise.all([consumer.connect(), producer.connect()]);
  const updates = codecFor('ParameterUpdate');
  const snapshots = codecFor('ModelSnapshot');
  const weights = new Map(replica.weights().map((w) => [w.name, w]));
  const versions = new Array<number>(replica.shardCount).fill(0);
  const appliedOffsets = Array.from({ length: replica.shardCount }, () => new Map<string, number>());
  let applied = 0;
  await consumer.subscribe({ topic: topics.updates, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const decoded = updates.decode(message.value);
      if (!decoded.ok) throw decoded.error;
      const update: ParameterUpdate = decoded.value;
      for (const tensor of update.tensors) {
        const current = weights.get(tensor.name)!;
        const gradient = decodeTensor(tensor);
        current.values = current.values.map((w, i) => w - (learningRate * gradient[i]!) / Math.max(1, update.sampleCount));
      }
      versions[update.shard]! += 1;
      for (const range of update.offsets) appliedOffsets[update.shard]!.set(`${range.topic}:${range.partition}`, range.lastOffset);
      applied++;
      const snapshot: ModelSnapshot = {
        namespace,
        shard: update.shard,
        shardCount: replica.shardCount,
        version: versions[update.shard]!,
        modelConfig: JSON.stringify(replica.spec),
        tensors: [...weights.values()].filter((w) => replica.shardOf(w.name) === update.shard).map((w) => encodeTensor(w.name, w.shape, w.values, 'FP32')),
        optimizerState: [],
        samplesApplied: 0,
        updatesApplied: applied,
        updatesDroppedStale: 0,
        samplesDroppedStale: 0,
        deadLettered: 0,
        lossSum: 0,
        appliedOffsets: [...appliedOffsets[update.shard]!].map(([key, offset]) => ({ topic: key.slice(0, key.lastIndexOf(':')), partition: Number(key.slice(key.lastIndexOf(':') + 1)), offset })),
        freshnessMs: 0,
        createdAt: Date.now(),
      };
      await producer.send({ topic: topics.model, messages: [{ key: String(update.shard), partition: update.shard, value: snapshots.encode(snapshot) }] });
    },
  });
  return {
    applied: () => applied,
    weights: () => new Map([...weights].map(([name, w]) => [name, w.values])),
    stop: async () => {
      await Promise.allSettled([consumer.disconnect(), producer.disconnect()]);
    },
  };
}
