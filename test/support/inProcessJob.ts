import type { ModelSpec } from '../../pipeline/common/model.js';
import { ShardState } from '../../pipeline/server/shardState.js';
import { Replica } from '../../pipeline/worker/replica.js';
import { encodeTensor } from '../../schemas/tensorCodec.js';
import type { ModelSnapshot, TrainingSample } from '../../schemas/types.js';

/**
 * A job without Kafka: worker replicas and the server's shards in one process, the replicas sending deltas and
 * taking each update's snapshots `delay` updates after the shards applied it, so staleness is exact and repeatable.
 * `replicaOptions` go to each worker's replica.
 */
export class InProcessJob {
  readonly servers: ShardState[];
  readonly replicas: Replica[];
  private readonly late: ModelSnapshot[][] = [];
  private readonly owner = {};

  constructor(
    readonly spec: ModelSpec,
    workers: number,
    private readonly delay: number,
    replicaOptions: ConstructorParameters<typeof Replica>[1] = {},
  ) {
    const seed = new Replica(spec);
    this.servers = Array.from({ length: spec.shards }, (_, shard) => ShardState.initial('in-process', shard, spec, seed.weights().filter((w) => seed.shardOf(w.name) === shard)));
    seed.dispose();
    this.replicas = Array.from({ length: workers }, () => new Replica(spec, replicaOptions));
  }

  /** Worker `worker` trains on `batch`, offsets `firstOffset`… of input partition `partition`; every shard applies the update. */
  step(worker: number, batch: readonly TrainingSample[], partition: number, firstOffset: number): void {
    const replica = this.replicas[worker]!;
    const computed = replica.gradients(batch);
    const lastOffset = firstOffset + batch.length - 1;
    replica.placeLastStep(this.owner, 'in', partition, lastOffset);
    this.late.push(
      this.servers.map((server, shard) => {
        const tensors = computed.gradients.filter((g) => replica.shardOf(g.name) === shard).map((g) => encodeTensor(g.name, g.shape, g.values, 'FP32'));
        const update = {
          namespace: 'in-process', shard, workerId: `w${worker}`, baseVersion: replica.base(shard).version, sampleCount: batch.length, lossSum: computed.lossSum, deadLettered: 0,
          offsets: [{ topic: 'in', partition, firstOffset, lastOffset }], firstAppendTime: 0, lastAppendTime: 0, createdAt: 0,
          tensors, featureMoments: shard === 0 ? (computed.featureMoments ?? null) : null, prequential: [],
        };
        const taken = server.take(update, { policy: 'apply', bound: Number.MAX_SAFE_INTEGER }, undefined);
        if (taken.outcome !== 'applied') throw new Error(`shard ${shard} did not apply an update: ${JSON.stringify(taken)}`);
        return server.snapshot(0, this.spec.shards, [], server.version);
      }),
    );
    while (this.late.length > this.delay) for (const snapshot of this.late.shift()!) for (const r of this.replicas) r.applySnapshot(snapshot);
  }

  /** The shards' snapshots as they are now. */
  snapshots(): ModelSnapshot[] {
    return this.servers.map((server) => server.snapshot(0, this.spec.shards, [], server.version));
  }

  dispose(): void {
    for (const replica of this.replicas) replica.dispose();
  }
}
