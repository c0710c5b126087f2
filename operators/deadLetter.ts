import type { Message } from 'kafkajs';
import { map, type OperatorFunction } from 'rxjs';
import { codecFor, type AvroCodec, type CodecOptions } from '../schemas/codec.js';
import { deadLetterFor } from '../schemas/deadLetter.js';
import type { DeadLetter } from '../schemas/types.js';
import type { Outputs } from './checkpoint.js';
import type { Rejected } from './decode.js';
import { spanOf, type KafkaRecord } from './lane.js';
import type { StreamgradError } from '../schemas/errors.js';

/** The dead-letter topic's message for one rejected record: keyed like the source, its value a `DeadLetter`. */
export function deadLetterMessage({ record, error }: { readonly record: KafkaRecord; readonly error: StreamgradError }, codec: AvroCodec<DeadLetter>, deadLetteredAt: number): Message {
  return { key: record.key, value: codec.encode(deadLetterFor(record, error, deadLetteredAt)) };
}

/**
 * Turns rejected records into `DeadLetter` messages for the dead-letter topic,
 * keyed like the source record, as `Outputs` that account for the rejected
 * offset. Pipe them into `checkpoint` (exactly-once: the dead letter and the
 * offset commit together) or `toKafka`.
 *
 * @example
 * rejected.pipe(deadLetter({ topic: 'ns.dlq' }))
 */
export function deadLetter(sink: { readonly topic: string; readonly codec?: CodecOptions; readonly now?: () => number }): OperatorFunction<Rejected, Outputs> {
  const codec = codecFor('DeadLetter', sink.codec);
  const now = sink.now ?? Date.now;
  return map((rejected) => ({
    messages: [{ topic: sink.topic, messages: [deadLetterMessage(rejected, codec, now())] }],
    covers: [spanOf(rejected.record)],
  }));
}
