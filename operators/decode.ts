import { Observable, type Observer, type OperatorFunction } from 'rxjs';
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
  // One operator rather than map + filter: this runs once per record on the hot path.
  return (source) =>
    new Observable<Decoded<T>>((subscriber) =>
      source.subscribe({
        next: (record) => {
          let result: RecordResult<T>;
          try {
            result = decoder.decode(record.value, record);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          if (result.ok) subscriber.next({ value: result.value, record });
          else rejected.next({ record, error: result.error });
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      }),
    );
}
