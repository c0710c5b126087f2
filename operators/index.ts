export { checkpoint, batchRequests, CheckpointError, type CheckpointOptions, type CheckpointReport, type Outputs } from './checkpoint.js';
export { deadLetter } from './deadLetter.js';
export { decode, type Decoded, type Rejected, type RecordDecoder } from './decode.js';
export { fromKafka, SourceError, type FromKafkaOptions, type StartPosition } from './fromKafka.js';
export { Lane, spanOf, type KafkaRecord, type LaneControl, type OffsetSpan } from './lane.js';
export { backoffDelay, isRetriable, withRetry, type RetryOptions } from './retry.js';
export { toKafka, type ToKafkaOptions } from './toKafka.js';
export { validateOptions } from './validateOptions.js';
