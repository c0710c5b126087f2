import type { Kafka } from 'kafkajs';
import type { ExperimentConfig } from '../../pipeline/common/config.js';
import { latestSnapshots } from '../../pipeline/common/modelStore.js';
import { Replica } from '../../pipeline/worker/replica.js';
import type { TrainingSample } from '../../schemas/index.js';

/** The newest served model of `namespace` (the weights' averages): its mean loss per sample on `holdout`. */
export async function holdoutLoss(kafka: Kafka, config: ExperimentConfig, holdout: readonly TrainingSample[]): Promise<number> {
  const snapshots = await latestSnapshots(kafka, config.namespace);
  if (snapshots.size < config.model.shards) throw new Error(`${config.namespace}: snapshots of ${snapshots.size} of ${config.model.shards} shards`);
  const replica = Replica.served(config.model, snapshots.values());
  try {
    let sum = 0;
    for (let start = 0; start < holdout.length; start += 1_000) sum += replica.lossSum(holdout.slice(start, start + 1_000));
    return sum / holdout.length;
  } finally {
    replica.dispose();
  }
}
