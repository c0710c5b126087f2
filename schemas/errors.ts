/**
 * The one home of streamgrad's errors. Every error has a stable `code`, says
 * whether a retry can help (`retriable`), and keeps its `cause`. Errors about a
 * record name its topic, partition and offset.
 */

/** Where a record came from, for messages and dead letters. Offsets are strings, as kafkajs gives them. */
export interface RecordOrigin {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
}

/** Renders an origin as `topic[partition]@offset`, the form every message uses. */
export function describeOrigin(origin: RecordOrigin | undefined): string {
  return origin ? `${origin.topic}[${origin.partition}]@${origin.offset}` : 'record';
}

/** The base of every error streamgrad raises on purpose. */
export class StreamgradError extends Error {
  readonly retriable: boolean;

  constructor(readonly code: string, message: string, options: { retriable: boolean; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.retriable = options.retriable;
  }
}

/**
 * Why an input record cannot be used for training. Each is routed to the
 * dead-letter topic under its code; none is retriable: the same bytes fail the same way.
 */
export const badRecordCodes = {
  /** The bytes are not a valid Avro encoding of the schema: random, truncated or with trailing bytes. */
  DECODE: 'cannot decode',
  /** Confluent framing expected, but the first byte is not 0. */
  BAD_MAGIC_BYTE: 'bad magic byte',
  /** The frame names a writer schema id that the lookup does not know. */
  UNKNOWN_SCHEMA_ID: 'unknown schema id',
  /** The writer schema cannot be resolved against the reader schema. */
  INCOMPATIBLE_SCHEMA: 'incompatible schema',
  /** A record with no value (a tombstone), where a sample was expected. */
  EMPTY: 'empty record',
  /** The record is larger than the configured limit. */
  OVERSIZED: 'oversized record',
  /** A feature, label or weight is NaN or infinite. */
  NON_FINITE: 'non-finite number',
  /** The feature vector does not have the configured length. */
  FEATURE_COUNT: 'wrong feature count',
  /** The labels do not fit the model: missing, or the wrong count. */
  LABEL: 'bad label',
  /** The weight is negative. */
  WEIGHT: 'bad weight',
  /** An MQTT payload that is not JSON (or CBOR, as configured), or not an object. */
  PAYLOAD: 'unreadable payload',
  /** An MQTT payload without a field the ingest mapping names. */
  MISSING_FIELD: 'missing field',
  /** A field the ingest mapping names holds the wrong type (a string for a feature, say). */
  WRONG_TYPE: 'wrong type',
} as const;

export type BadRecordCode = keyof typeof badRecordCodes;

/** An input record that cannot be used: it goes to the dead-letter topic with this error, and the lane keeps flowing. */
export class BadRecordError extends StreamgradError {
  declare readonly code: BadRecordCode;

  constructor(code: BadRecordCode, readonly origin: RecordOrigin | undefined, detail: string, cause?: unknown) {
    super(code, `${badRecordCodes[code]}${origin ? ` at ${describeOrigin(origin)}` : ''}: ${detail}`, { retriable: false, cause });
  }
}

/** A parameter update the server refused (code: the refusal reason); it goes to `<ns>.ps.dlq` and is counted, never applied. */
export class RefusedUpdateError extends StreamgradError {
  constructor(reason: string, readonly origin: RecordOrigin, detail: string) {
    super(reason, `refused the update at ${describeOrigin(origin)} (${reason}): ${detail}`, { retriable: false });
  }
}

/** A value that does not fit its schema on encode: a programmer error, never retried. */
export class EncodeError extends StreamgradError {
  constructor(readonly schema: string, readonly path: string, detail: string, cause?: unknown) {
    super('ENCODE', `cannot encode ${schema}: field '${path}' ${detail}`, { retriable: false, cause });
  }
}

/** A tensor whose bytes do not match its shape and encoding, or that cannot be encoded. */
export class TensorError extends StreamgradError {
  constructor(readonly tensor: string, detail: string) {
    super('TENSOR', `tensor '${tensor}': ${detail}`, { retriable: false });
  }
}

/** Invalid configuration, found when the pipeline is built. `field` is the path of the bad setting. */
export class ConfigError extends StreamgradError {
  constructor(readonly field: string, readonly detail: string, cause?: unknown) {
    super('CONFIG', `invalid configuration: ${field}: ${detail}`, { retriable: false, cause });
  }
}

/** The outcome of decoding or checking one record: a value, or the reason it must be dead-lettered. */
export type RecordResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: BadRecordError };
