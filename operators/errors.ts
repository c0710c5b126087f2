import { StreamgradError } from '../schemas/errors.js';
import type { Lane } from './lane.js';

/** The errors of the operators layer: a source that cannot read, a checkpoint that cannot commit, a lane lost. */

/** An error of the Kafka source that no retry inside kafkajs could fix. */
export class SourceError extends StreamgradError {
  constructor(detail: string, cause?: unknown, retriable = false) {
    super('SOURCE', `Kafka source failed: ${detail}`, { retriable, cause });
  }
}

/** A checkpoint that could not be committed, even after retries. */
export class CheckpointError extends StreamgradError {
  constructor(lane: Lane, offset: number, cause: unknown) {
    super('CHECKPOINT', `cannot commit the checkpoint of ${lane.name} up to offset ${offset}: ${(cause as Error)?.message ?? String(cause)}`, { retriable: false, cause });
  }
}

/** After a failed commit: the partition belongs to another member now, or another member committed it meanwhile. */
export class LaneLostError extends StreamgradError {
  constructor(lane: Lane, committed: number | undefined) {
    super('LANE_LOST', `${lane.name} belongs to another member now${committed === undefined ? '' : ` (its committed offset moved to ${committed})`}: this lane is a zombie`, { retriable: false });
  }
}
