import { map, type Observer, type OperatorFunction, filter } from 'rxjs';
import type { BadRecordError, RecordOrigin, RecordResult } from '../schemas/errors.js';
import type { KafkaRecord } from './lane.js';

/** Anything that turns bytes into a value or a typed bad-record error: an `AvroCodec` or a `SampleDecoder`. */
export interface RecordDecoder<T> {
  decode(bytes: Buffer | null | undefined, origin?: RecordOrigin): RecordResult<T>;
}

/** A decoded value, with the record it came from (for its offset, key and timestamps). */
export interface Decoded<T> {
  readonly value: T;
  readonly record: KafkaRecord;
}

/** A record that could not be decoded, and why: what the dead-letter side output carries. */
export interface Rejected {
  readonly record: KafkaRecord;
  readonly error: BadRecordError;
}

/**
 * Decodes each record's value. A record that cannot be decoded (or fails the
 * decoder's checks) goes to the `rejected` side output, like Flink's side
 * outputs, and the lane keeps flowing: decode never errors for bad input.
 *
 * @example
 * const rejected = new Subject<Rejected>();
 * lane.records.pipe(decode(new SampleDecoder({ featureCount: 16 }), rejected));
 */
export function decode<T>(decoder: RecordDecoder<T>, rejected: Observer<Rejected>): OperatorFunction<KafkaRecord, Decoded<T>> {
  return (source) =>
    source.pipe(
      map((record) => {
        const result = decoder.decode(record.value, record);
        if (result.ok) return { value: result.value, record };
        rejected.next({ record, error: result.error });
        return undefined;
      }),
      filter((decoded): decoded is Decoded<T> => decoded !== undefined),
    );
}
