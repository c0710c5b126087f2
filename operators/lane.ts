import { Observable, Subject } from 'rxjs';
import type { IHeaders, Producer } from 'kafkajs';
import type { SourceRecord } from '../schemas/deadLetter.js';

/** One Kafka record as a lane delivers it: the dead-letter source record plus its headers. */
export interface KafkaRecord extends SourceRecord {
  readonly headers: IHeaders;
}

/** An inclusive run of a lane's offsets that one output was made from. */
export interface OffsetSpan {
  readonly first: number;
  readonly last: number;
}

/** The span of one record. */
export function spanOf(record: { readonly offset: string }): OffsetSpan {
  const offset = Number(record.offset);
  return { first: offset, last: offset };
}

/** A lane drops its released bookkeeping once more than this many entries (and over half of it) are released. */
const compactAfter = 4096;

/** How a lane reaches back into its consumer; supplied by `fromKafka`. */
export interface LaneControl {
  pause(): void;
  resume(): void;
  /** Commits `offset` (the next one to read) for the lane's partition in its consumer group, outside any transaction. */
  commitOffset(offset: number): Promise<void>;
  /**
   * After a commit failed in an unknown state (the broker went away): confirms the lane still owns its partition,
   * replaces its transactional producer (which fences the old one and ends its open transaction) and returns the
   * group's committed offset, now final; `undefined` when the partition belongs to another member.
   */
  recover(): Promise<number | undefined>;
  /** Told after the lane was revoked (by its source on a rebalance, or by its checkpoint on finding it fenced). */
  revoked?(): void;
  /** How many partitions of the lane's topic its consumer holds now. */
  heldPartitions?(): number;
  /**
   * The partition's transactional producer (one transactionalId per input partition, registered before the lane
   * started, so any earlier owner is fenced), when the source reads for exactly-once; {@link recover} replaces it.
   */
  producer(): Producer | undefined;
}

/**
 * One assigned partition: its records, in order, and the bookkeeping that makes
 * backpressure and exactly-once work.
 *
 * Every record the lane emits stays *in flight* until it is released, which
 * happens when the output made from it is committed (see `checkpoint`) or when
 * a sink acknowledges it ({@link ack}). A lane never holds more than
 * `maxInFlight` records: past that its partition is paused, and it is resumed
 * once half of them are released.
 *
 * Outputs report which offsets they were made from ({@link markProcessed}); the
 * processed frontier is the first offset not yet made into an output, and only
 * offsets below it are ever committed.
 */
export class Lane {
  /** The lane's records, in offset order. Completes when the partition is revoked or (bounded mode) fully read. */
  readonly records: Observable<KafkaRecord>;
  /** The group the lane's consumer belongs to. */
  readonly groupId: string;

  private readonly subject = new Subject<KafkaRecord>();
  private markStarted: () => void = () => {};
  /**
   * Resolves once the lane knows where it starts: after fencing the previous owner (exactly-once)
   * and reading the committed offset. State that goes with those offsets is safe to load after it.
   */
  readonly started: Promise<void> = new Promise((resolve) => (this.markStarted = resolve));
  private offsets: number[] = [];
  private processed: boolean[] = [];
  private head = 0;
  private frontierIndex = 0;
  private nextOffset = -1;
  private firstOffset = -1;
  private paused = false;
  private revokedFlag = false;
  private suspendedUntil: Promise<void> | undefined;
  private resumeSuspended: (() => void) | undefined;
  private completed = false;
  private pauseCount = 0;
  private resumeCount = 0;
  private readonly releaseListeners = new Set<() => void>();

  constructor(
    readonly topic: string,
    readonly partition: number,
    groupId: string,
    readonly maxInFlight: number,
    private readonly control: LaneControl,
  ) {
    this.groupId = groupId;
    this.records = this.subject.asObservable();
  }

  /** `topic[partition]`, as messages name the lane. */
  get name(): string {
    return `${this.topic}[${this.partition}]`;
  }

  /** How often the lane paused and resumed its partition because it was full: backpressure at work. */
  get backpressure(): { readonly pauses: number; readonly resumes: number } {
    return { pauses: this.pauseCount, resumes: this.resumeCount };
  }

  /** How many partitions of its topic the lane's consumer holds now (with this one; 1 when its source does not say). */
  get partitionsHeld(): number {
    return this.control.heldPartitions?.() ?? 1;
  }

  /** Records emitted and not yet released. */
  get inFlight(): number {
    return this.offsets.length - this.head;
  }

  get isFull(): boolean {
    return this.inFlight >= this.maxInFlight;
  }

  /**
   * True while the lane reads nothing more until some of its records are released: it is full, or it was and stays
   * paused until half of them are. Outputs that wait then can only wait for a commit.
   */
  get waitsForRelease(): boolean {
    return this.paused || this.isFull;
  }

  /** True once the partition has been taken away: nothing of it may be committed any more. */
  get revoked(): boolean {
    return this.revokedFlag;
  }

  /** Why the partition was taken away (set by {@link revoke}), for the logs. */
  revokedBecause: string | undefined;

  /** The partition's high watermark at the last fetch, or -1 before the first. */
  highWatermark = -1;

  /** Records of the partition not yet made into an output: the high watermark minus the processed frontier (0 before the first fetch). */
  get lag(): number {
    return this.highWatermark < 0 ? 0 : Math.max(0, this.highWatermark - this.processedFrontier());
  }

  /** The next offset the lane expects, or -1 before the first. */
  get position(): number {
    return this.nextOffset;
  }

  /** Sets where the lane starts: records below it (a redelivery) are skipped. */
  startAt(offset: number): void {
    this.nextOffset = offset;
    this.firstOffset = offset;
    this.markStarted();
  }

  /** The offset the lane started at (already committed, or the start position), or -1 before it is known. */
  get startOffset(): number {
    return this.firstOffset;
  }

  /** Emits a record unless it was emitted before (kafkajs redelivers from the committed offset after a rebalance). */
  offer(record: KafkaRecord): boolean {
    const offset = Number(record.offset);
    if (offset < this.nextOffset || this.completed) return false;
    this.offsets.push(offset);
    this.processed.push(false);
    this.nextOffset = offset + 1;
    this.subject.next(record);
    return true;
  }

  /** Moves the position past offsets that hold no record for us (transaction markers, aborted records). */
  skipTo(offset: number): void {
    if (offset > this.nextOffset) this.nextOffset = offset;
  }

  /** Marks the records in these spans as made into an output. */
  markProcessed(spans: readonly OffsetSpan[]): void {
    for (const span of spans) {
      let i = this.lowerBound(span.first);
      while (i < this.offsets.length && this.offsets[i]! <= span.last) this.processed[i++] = true;
    }
    while (this.frontierIndex < this.offsets.length && this.processed[this.frontierIndex]) this.frontierIndex++;
  }

  /** The first offset not yet made into an output: everything below it may be committed. */
  processedFrontier(): number {
    return this.frontierIndex < this.offsets.length ? this.offsets[this.frontierIndex]! : this.nextOffset;
  }

  /** Releases every record below `offset` (committed): they no longer count against `maxInFlight`. */
  release(offset: number): void {
    while (this.head < this.offsets.length && this.offsets[this.head]! < offset) this.head++;
    if (this.frontierIndex < this.head) this.frontierIndex = this.head;
    if (this.head > compactAfter && this.head * 2 > this.offsets.length) {
      this.offsets = this.offsets.slice(this.head);
      this.processed = this.processed.slice(this.head);
      this.frontierIndex -= this.head;
      this.head = 0;
    }
    if (this.paused && this.inFlight <= this.maxInFlight / 2 && !this.revokedFlag) {
      this.paused = false;
      this.resumeCount++;
      this.control.resume();
    }
    for (const listener of this.releaseListeners) listener();
  }

  /** Calls `listener` after every release; returns the function that removes it. */
  onRelease(listener: () => void): () => void {
    this.releaseListeners.add(listener);
    return () => this.releaseListeners.delete(listener);
  }

  /** Complete and with nothing in flight (everything the lane emitted is committed or acknowledged), or revoked (nothing of it can be). */
  get isDrained(): boolean {
    return this.revokedFlag || (this.completed && this.inFlight === 0);
  }

  /** One line on where the lane stands, for a process that waits on it. */
  describe(): string {
    return `${this.name}: position ${this.nextOffset}, processed to ${this.processedFrontier()}, ${this.inFlight} in flight${this.completed ? ', complete' : ''}${this.revokedFlag ? ', revoked' : ''}${this.suspendedUntil ? ', suspended for a rebalance' : ''}`;
  }

  /** For sinks without checkpoints: the record at `offset` is done. Commits nothing. */
  ack(offset: string | number): void {
    const value = Number(offset);
    if (this.frontierIndex < this.offsets.length && this.offsets[this.frontierIndex] === value) {
      // The common case, an in-order ack: no search, no span.
      this.processed[this.frontierIndex] = true;
      while (this.frontierIndex < this.offsets.length && this.processed[this.frontierIndex]) this.frontierIndex++;
    } else {
      this.markProcessed([{ first: value, last: value }]);
    }
    this.release(this.processedFrontier());
  }

  /** Commits `offset` in the consumer group, outside any transaction (at-least-once). */
  commitOffset(offset: number): Promise<void> {
    return this.control.commitOffset(offset);
  }

  /** The transactional producer to commit the lane's outputs and offsets with (see {@link LaneControl.producer}). */
  get transactionalProducer(): Producer | undefined {
    return this.control.producer();
  }

  /** See {@link LaneControl.recover}. */
  recover(): Promise<number | undefined> {
    return this.control.recover();
  }

  /** Called by fromKafka when the lane is full. */
  pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.pauseCount++;
      this.control.pause();
    }
  }

  /** A rebalance is under way: commits wait until {@link resumeAfterRebalance} or {@link revoke}. */
  suspend(): void {
    if (this.suspendedUntil) return;
    this.suspendedUntil = new Promise((resolve) => {
      this.resumeSuspended = resolve;
    });
  }

  resumeAfterRebalance(): void {
    this.resumeSuspended?.();
    this.suspendedUntil = undefined;
    this.resumeSuspended = undefined;
  }

  /** Resolves when no rebalance holds commits back. */
  async whenCommitAllowed(): Promise<void> {
    while (this.suspendedUntil) await this.suspendedUntil;
  }

  /** The partition is gone (`reason` says why, for the logs): complete the records and refuse every later commit. */
  revoke(reason = 'revoked by a rebalance'): void {
    if (this.revokedFlag) return;
    this.revokedBecause = `${reason}; ${this.inFlight} record(s) read and not committed, for the partition's owner to read again`;
    this.revokedFlag = true;
    this.resumeAfterRebalance();
    this.complete();
    this.control.revoked?.();
  }

  /** No more records (bounded end, or revoke). */
  complete(): void {
    if (this.completed) return;
    this.completed = true;
    this.subject.complete();
  }

  get isComplete(): boolean {
    return this.completed;
  }

  private lowerBound(offset: number): number {
    let low = this.head;
    let high = this.offsets.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.offsets[mid]! < offset) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}
