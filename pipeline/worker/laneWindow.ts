import type { WindowCollector } from '../../operators/countWindow.js';
import type { Rejected } from '../../operators/decode.js';
import type { TrainingBatch } from '../../operators/gradientStep.js';
import type { KafkaRecord, OffsetSpan } from '../../operators/lane.js';
import { SampleColumns, type SampleDecoder } from '../../schemas/sampleDecoder.js';

/**
 * One window of a lane's records, filled as they come: each record is decoded into the window's columns at once,
 * with its offset and append time, or kept as rejected (with the reason) to dead-letter. So no record object stays
 * alive while the window waits to train, behind the lane's earlier windows; a lane holds up to `maxInFlight`
 * records, and the garbage collector copied and promoted each of them (BENCHMARKS, *Records decoded as they come*).
 */
export class LaneWindow {
  private readonly columns: SampleColumns;
  private readonly offsets: Float64Array;
  private readonly appendTimes: Float64Array;
  readonly rejected: Rejected[] = [];
  private first = -1;
  private last = -1;

  constructor(
    private readonly topic: string,
    private readonly partition: number,
    size: number,
    private readonly decoder: SampleDecoder,
  ) {
    this.columns = new SampleColumns(size, decoder.featureCount, decoder.labelCount);
    this.offsets = new Float64Array(size);
    this.appendTimes = new Float64Array(size);
  }

  add(record: KafkaRecord): void {
    const offset = Number(record.offset);
    if (this.first < 0) this.first = offset;
    this.last = offset;
    const row = this.columns.length;
    const error = this.decoder.decodeInto(record.value, this.columns, record);
    if (error) {
      this.rejected.push({ record, error });
      return;
    }
    this.offsets[row] = offset;
    this.appendTimes[row] = Number(record.timestamp);
  }

  /** The good samples, with the records they came from (views of the window's arrays, no copies). */
  get trained(): TrainingBatch {
    const n = this.columns.length;
    return {
      samples: this.columns.batch(),
      records: { topic: this.topic, partition: this.partition, offsets: this.offsets.subarray(0, n), appendTimes: this.appendTimes.subarray(0, n) },
    };
  }

  /** Every offset the window's records cover, the rejected ones' included. */
  get covers(): OffsetSpan {
    return { first: this.first, last: this.last };
  }

  /** What `countWindow` fills a lane's windows with. */
  static collector(lane: { readonly topic: string; readonly partition: number }, decoder: SampleDecoder): WindowCollector<KafkaRecord, LaneWindow> {
    return {
      open: (size) => new LaneWindow(lane.topic, lane.partition, size, decoder),
      add: (window, record) => window.add(record),
    };
  }
}
