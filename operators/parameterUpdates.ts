import type { IHeaders, Message } from 'kafkajs';
import type { AvroCodec } from '../schemas/codec.js';
import type { OffsetRange, ParameterUpdate, Tensor } from '../schemas/types.js';

/** A record keyed and partitioned by its shard: the updates and model topics have one partition per shard. */
export function shardMessage(shard: number, value: Buffer): Message {
  return { key: String(shard), partition: shard, value };
}

/** The earliest and latest of some Kafka records' append times (ms). */
export function appendTimes(times: Iterable<number>): { readonly firstAppendTime: number; readonly lastAppendTime: number } {
  let firstAppendTime = Number.POSITIVE_INFINITY;
  let lastAppendTime = 0;
  for (const appended of times) {
    if (appended < firstAppendTime) firstAppendTime = appended;
    if (appended > lastAppendTime) lastAppendTime = appended;
  }
  return { firstAppendTime, lastAppendTime };
}

/** What one batch tells every shard alike: a ParameterUpdate but its shard, base version, tensors and feature moments. */
export type UpdateBody = Omit<ParameterUpdate, 'shard' | 'baseVersion' | 'tensors' | 'featureMoments' | 'prequential'> & { readonly offsets: OffsetRange[] };

/** Where a shard's weights in a replica come from: the snapshot's version, and the first updates offset it had not taken in. */
export interface ShardBase {
  readonly version: number;
  /** The snapshot's `updatesOffset`; 0 before any snapshot (version 0: nothing taken in), -1 when the snapshot did not say. */
  readonly updatesOffset: number;
}

/**
 * The headers of an update record that hold its base (decimal): the snapshot version its weights come from, and that
 * snapshot's updates offset. A record written at offset `o` of `<ns>.updates[shard]` is then applied after at most
 * the `o − updatesOffset` records between them, so at most that staleness.
 */
export const baseHeaders = { version: 'streamgrad-base-version', updatesOffset: 'streamgrad-base-offset' } as const;

/** What only shard 0's update carries: the batch's feature moments and prequential scores. */
export type ShardZeroExtras = Pick<ParameterUpdate, 'featureMoments' | 'prequential'>;

const noExtras: ShardZeroExtras = { featureMoments: null, prequential: [] };

/**
 * The one builder of ParameterUpdate records: one per shard, each with that shard's base version and tensors
 * (none for an update that only counts dead letters), encoded and keyed by shard; an update with samples (whose
 * staleness counts) carries its base in the {@link baseHeaders}. The batch's feature moments and
 * prequential scores, if any, go to shard 0, which keeps the model's feature scaling and scores.
 */
export function updateMessages(
  body: UpdateBody,
  shardCount: number,
  base: (shard: number) => ShardBase,
  tensors: (shard: number) => Tensor[],
  codec: AvroCodec<ParameterUpdate>,
  shardZero: ShardZeroExtras = noExtras,
  sign?: UpdateSigner,
): Message[] {
  return Array.from({ length: shardCount }, (_, shard) => {
    const { version, updatesOffset } = base(shard);
    const value = codec.encode({ ...body, shard, baseVersion: version, tensors: tensors(shard), ...(shard === 0 ? shardZero : noExtras) });
    const message = shardMessage(shard, value);
    const headers = {
      ...(updatesOffset < 0 || body.sampleCount === 0 ? {} : { [baseHeaders.version]: String(version), [baseHeaders.updatesOffset]: String(updatesOffset) }),
      ...(sign ? sign(value) : {}),
    };
    return Object.keys(headers).length === 0 ? message : { ...message, headers };
  });
}

/** Signs an update record's encoded value: the headers that carry the signature (see `pipeline/common/updateSigning.ts`). */
export type UpdateSigner = (value: Buffer) => Record<string, string>;

/** The base an update record carries in its {@link baseHeaders}, if it has them. */
export function baseOf(message: Message): ShardBase | undefined {
  const read = (name: string) => {
    const number = Number(headerText(message.headers, name) ?? Number.NaN);
    return Number.isSafeInteger(number) && number >= 0 ? number : undefined;
  };
  const version = read(baseHeaders.version);
  const updatesOffset = read(baseHeaders.updatesOffset);
  return version === undefined || updatesOffset === undefined ? undefined : { version, updatesOffset };
}

/** A record header as text (a Buffer read as UTF-8), or undefined when it is missing or repeated. */
export function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  if (value === undefined || Array.isArray(value)) return undefined;
  return Buffer.isBuffer(value) ? value.toString('utf8') : String(value);
}
