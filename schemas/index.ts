export { AvroCodec, codecFor, codecForSchema, schemaFiles, schemaOf, type AvroSchema, type CodecOptions, type Framing, type WriterSchemaLookup } from './codec.js';
export { deadLetterFor, deadLetterMaxBytes, type SourceRecord } from './deadLetter.js';
export {
  BadRecordError,
  ConfigError,
  RefusedUpdateError,
  EncodeError,
  StreamgradError,
  TensorError,
  badRecordCodes,
  describeOrigin,
  type BadRecordCode,
  type RecordOrigin,
  type RecordResult,
} from './errors.js';
export { SampleColumns, SampleDecoder, checkSample, sampleBatchOf, type SampleBatch, type SampleDecoderOptions, type SampleLimits } from './sampleDecoder.js';
export { decodeTensor, encodeTensor, encodedBytesPerElement, tensorErrorBounds } from './tensorCodec.js';
export type {
  DeadLetter,
  FeatureMoments,
  ModelSnapshot,
  OffsetRange,
  ParameterUpdate,
  PartitionOffset,
  PrequentialWindow,
  RecordName,
  RecordTypes,
  Tensor,
  TensorEncoding,
  TrainingSample,
} from './types.js';
