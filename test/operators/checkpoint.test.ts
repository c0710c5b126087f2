import type { Producer } from 'kafkajs';
import { lastValueFrom, Subject, toArray } from 'rxjs';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { checkpoint, Lane, type CheckpointReport, type KafkaRecord, type Outputs } from '../../operators/index.js';

// Unit tests with a recording producer; the exactly-once proof against the real broker is fromKafka.crash.test.ts.
function recordingProducer() {
  const log: string[] = [];
  const producer = {
    sendBatch: async ({ topicMessages }: { topicMessages: Array<{ topic: string; messages: unknown[] }> }) => {
      log.push(`send ${topicMessages.map((t) => `${t.topic}x${t.messages.length}`).join(',')}`);
    },
    transaction: async () => ({
      sendBatch: async ({ topicMessages }: { topicMessages: Array<{ topic: string; messages: unknown[] }> }) => {
        log.push(`tx-send ${topicMessages.map((t) => `${t.topic}x${t.messages.length}`).join(',')}`);
      },
      sendOffsets: async ({ topics }: { topics: Array<{ partitions: Array<{ offset: string }> }> }) => {
        log.push(`tx-offsets ${topics[0]!.partitions[0]!.offset}`);
      },
      commit: async () => {
        log.push('tx-commit');
      },
      abort: async () => {
        log.push('tx-abort');
      },
    }),
  };
  return { producer: producer as unknown as Producer, log };
}

/** The transactional producer each test lane hands its checkpoint (fromKafka keeps them the same way). */
const producers = new WeakMap<Lane, Producer>();
function lane(log: string[], recover: () => Promise<number | undefined> = async () => undefined) {
  const lane: Lane = new Lane('in', 0, 'group', 100, {
    producer: () => producers.get(lane),
    pause: () => {},
    resume: () => {},
    commitOffset: async (offset) => {
      log.push(`commit ${offset}`);
    },
    recover: async () => {
      log.push('recover');
      return recover();
    },
  });
  lane.startAt(0);
  return lane;
}
const record = (offset: number): KafkaRecord => ({ topic: 'in', partition: 0, offset: String(offset), key: null, value: null, timestamp: '0', headers: {} });
const chunks = <T>(items: readonly T[], size: number): T[][] => Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
/** Runs of consecutive offsets, as gradientStep covers its records. */
const runsOf = (offsets: readonly number[]) =>
  offsets.reduce<Array<{ first: number; last: number }>>((runs, o) => {
    const last = runs.at(-1);
    if (last && last.last === o - 1) last.last = o;
    else runs.push({ first: o, last: o });
    return runs;
  }, []);
const output = (first: number, last = first): Outputs => ({ messages: [{ topic: 'out', messages: [{ value: `o${first}` }] }], covers: [{ first, last }] });
/** Offers records 0 and 1 to `lane`, checkpoints one output that covers both, and resolves with the reports. */
function checkpointOneOutput(lane: Lane) {
  [0, 1].forEach((o) => lane.offer(record(o)));
  const outputs = new Subject<Outputs>();
  const reports = lastValueFrom(outputs.pipe(checkpoint({ lane, intervalMs: 10_000 }), toArray()));
  outputs.next(output(0, 1));
  outputs.complete();
  return reports;
}

describe('checkpoint', () => {
  it('commits outputs and offsets in one transaction, and releases what it committed', async () => {
    const { producer, log } = recordingProducer();
    const theLane = lane(log);
    producers.set(theLane, producer);
    [0, 1, 2].forEach((o) => theLane.offer(record(o)));
    const outputs = new Subject<Outputs>();
    const reports = lastValueFrom(outputs.pipe(checkpoint({ lane: theLane, intervalMs: 10_000 }), toArray()));
    outputs.next(output(0, 1));
    outputs.next(output(2));
    outputs.complete();
    const done: CheckpointReport[] = await reports;
    expect(log).toEqual(['tx-send outx2', 'tx-offsets 3', 'tx-commit']);
    expect(done).toMatchObject([{ topic: 'in', partition: 0, offset: 3, messages: 2, outputs: 2 }]);
    expect(theLane.inFlight).toBe(0);
  });

  it('holds back an output whose records are not all processed yet', async () => {
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const { producer, log } = recordingProducer();
    const theLane = lane(log);
    [0, 1, 2].forEach((o) => theLane.offer(record(o)));
    const outputs = new Subject<Outputs>();
    const reports: CheckpointReport[] = [];
    outputs.pipe(checkpoint({ lane: theLane, mode: 'at-least-once', producer, intervalMs: 5 })).subscribe((r) => reports.push(r));
    // A dead letter for offset 2 while offsets 0 and 1 are still in a window: nothing may be committed past 0.
    outputs.next(output(2));
    // One checkpoint interval on the virtual clock: exactly one commit attempt.
    await vi.advanceTimersByTimeAsync(5);
    expect(log).toEqual([]);
    outputs.next(output(0, 1));
    await vi.advanceTimersByTimeAsync(5);
    expect(log).toEqual(['send outx2', 'commit 3']);
    expect(reports.map((r) => r.offset)).toEqual([3]);
    outputs.complete();
  });

  it('commits at once while its lane stays paused after a commit, instead of waiting for the interval', async () => {
    // A lane paused at maxInFlight resumes only once half is released: a commit that releases less leaves it paused
    // and below full, reading nothing, so its next outputs can only wait for a commit. A worker stalled that way for
    // up to the interval (BENCHMARKS.md, *A paused lane's commit*).
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const { producer, log } = recordingProducer();
    const theLane = new Lane('in', 0, 'group', 6, { producer: () => undefined, pause: () => log.push('pause'), resume: () => log.push('resume'), commitOffset: async (offset) => void log.push(`commit ${offset}`), recover: async () => undefined });
    theLane.startAt(0);
    for (let o = 0; o < 6; o++) theLane.offer(record(o));
    theLane.pause();
    const outputs = new Subject<Outputs>();
    outputs.pipe(checkpoint({ lane: theLane, mode: 'at-least-once', producer, intervalMs: 10_000, maxPendingOutputs: 8 })).subscribe();
    outputs.next(output(0, 1));
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['pause', 'send outx1', 'commit 2']);
    expect(theLane.isFull).toBe(false);
    outputs.next(output(2, 3));
    await vi.advanceTimersByTimeAsync(0);
    expect(log).toEqual(['pause', 'send outx1', 'commit 2', 'send outx1', 'commit 4', 'resume']);
    outputs.complete();
  });

  it('never commits an offset past the first record of an output it holds back', async () => {
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const { producer, log } = recordingProducer();
    const theLane = lane(log);
    [0, 1, 2, 3, 4].forEach((o) => theLane.offer(record(o)));
    const outputs = new Subject<Outputs>();
    outputs.pipe(checkpoint({ lane: theLane, mode: 'at-least-once', producer, intervalMs: 5 })).subscribe();
    // Dead letters at 1 and 3 in one output, around a batch (2) still in flight: 0 and 1 are processed, but the
    // offset may not pass 1 while the output that covers it is held back; otherwise losing the lane loses it.
    outputs.next(output(0));
    outputs.next({ messages: [{ topic: 'out', messages: [{ value: 'dead 1, 3' }] }], covers: [{ first: 1, last: 1 }, { first: 3, last: 3 }] });
    await vi.advanceTimersByTimeAsync(5);
    expect(log).toEqual(['send outx1', 'commit 1']);
    outputs.next(output(2));
    outputs.next(output(4));
    await vi.advanceTimersByTimeAsync(5);
    expect(log).toEqual(['send outx1', 'commit 1', 'send outx3', 'commit 5']);
    outputs.complete();
  });

  it('commits exactly the records below the offset it commits, whatever order gradient batches and dead letters arrive in', async () => {
    // The next owner of a partition reads again from the committed offset: an output committed above it is trained
    // twice (seen as "refused a repeated update" and lost samples on the server), one below it is lost with the lane.
    const scenario = fc.record({
      dead: fc.array(fc.boolean(), { minLength: 1, maxLength: 60 }),
      batchSize: fc.integer({ min: 1, max: 6 }),
      deadBatch: fc.integer({ min: 1, max: 4 }),
      order: fc.array(fc.boolean(), { maxLength: 120 }),
      maxPendingOutputs: fc.integer({ min: 1, max: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async ({ dead, batchSize, deadBatch, order, maxPendingOutputs }) => {
        const outputsOf = (offsets: number[], asRuns: boolean): Outputs => ({
          messages: [{ topic: 'out', messages: [{ value: JSON.stringify(offsets) }] }],
          covers: asRuns ? runsOf(offsets) : offsets.map((o) => ({ first: o, last: o })),
        });
        const good = dead.flatMap((isDead, offset) => (isDead ? [] : [offset]));
        const bad = dead.flatMap((isDead, offset) => (isDead ? [offset] : []));
        const gradientBatches = chunks(good, batchSize).map((batch) => outputsOf(batch, true));
        const deadBatches = chunks(bad, deadBatch).map((batch) => outputsOf(batch, false));
        const commits: Array<{ offsets: number[]; committed: number }> = [];
        let sent: number[] = [];
        const producer = {
          transaction: async () => ({
            sendBatch: async ({ topicMessages }: { topicMessages: Array<{ messages: Array<{ value: string }> }> }) => {
              for (const { messages } of topicMessages) for (const m of messages) sent.push(...(JSON.parse(m.value) as number[]));
            },
            sendOffsets: async ({ topics }: { topics: Array<{ partitions: Array<{ offset: string }> }> }) => {
              commits.push({ offsets: sent.sort((a, b) => a - b), committed: Number(topics[0]!.partitions[0]!.offset) });
              sent = [];
            },
            commit: async () => {},
            abort: async () => {},
          }),
        } as unknown as Producer;
        const theLane = lane([]);
        producers.set(theLane, producer);
        dead.forEach((_, offset) => theLane.offer(record(offset)));
        const outputs = new Subject<Outputs>();
        const done = lastValueFrom(outputs.pipe(checkpoint({ lane: theLane, intervalMs: 1_000_000, maxPendingOutputs }), toArray()));
        let g = 0;
        let d = 0;
        for (let i = 0; g < gradientBatches.length || d < deadBatches.length; i++) {
          const takeGradient = d >= deadBatches.length || (g < gradientBatches.length && (order[i] ?? true));
          outputs.next(takeGradient ? gradientBatches[g++]! : deadBatches[d++]!);
          await new Promise((resolve) => setImmediate(resolve));
        }
        outputs.complete();
        await done;
        let from = 0;
        for (const { offsets, committed } of commits) {
          expect(offsets).toEqual(Array.from({ length: committed - from }, (_, k) => from + k));
          from = committed;
        }
        expect(from).toBe(dead.length);
      }),
      { numRuns: 300 },
    );
  });

  it('rides out a broker that goes away mid-commit: commits once, whether the failed attempt had committed or not', async () => {
    const connectionLost = () => Object.assign(new Error('Connection error: ECONNREFUSED'), { name: 'KafkaJSNumberOfRetriesExceeded', retriable: false, cause: Object.assign(new Error('ECONNREFUSED'), { name: 'KafkaJSConnectionError' }) });
    for (const committedBeforeFailing of [false, true]) {
      const log: string[] = [];
      let failures = 2;
      let committed = 0;
      const producer = {
        transaction: async () => ({
          sendBatch: async () => log.push('tx-send'),
          sendOffsets: async ({ topics }: { topics: Array<{ partitions: Array<{ offset: string }> }> }) => log.push(`tx-offsets ${topics[0]!.partitions[0]!.offset}`),
          commit: async () => {
            if (failures > 0 && !(committedBeforeFailing && failures === 1)) {
              failures--;
              throw connectionLost();
            }
            if (failures > 0) failures--;
            committed = 2;
            log.push('tx-commit');
            if (committedBeforeFailing && failures === 0 && !log.includes('lost-after-commit')) {
              log.push('lost-after-commit');
              throw connectionLost();
            }
          },
          abort: async () => log.push('tx-abort'),
        }),
      } as unknown as Producer;
      const theLane = lane(log, async () => committed);
      producers.set(theLane, producer);
      const reports = checkpointOneOutput(theLane);
      expect((await reports).map((r) => r.offset), `committed before failing: ${committedBeforeFailing}`).toEqual([2]);
      expect(log.filter((line) => line === 'tx-commit')).toHaveLength(1);
      expect(log).toContain('recover');
    }
  }, 30_000);

  it('commits again with a fresh producer when its transaction was aborted for outliving the transaction timeout and the lane still owns its partition', async () => {
    // A broker outage longer than the transaction timeout: when the broker is back, the coordinator has aborted the
    // open transaction and bumped the epoch, so the old producer is "fenced" although no other member took over.
    const log: string[] = [];
    let epoch = 0;
    const producerOf = (mine: number) =>
      ({
        transaction: async () => ({
          sendBatch: async () => log.push(`send epoch ${mine}`),
          sendOffsets: async () => {},
          commit: async () => {
            if (mine !== epoch) throw Object.assign(new Error('Producer attempted an operation with an old epoch'), { name: 'KafkaJSProtocolError', type: 'INVALID_PRODUCER_EPOCH', retriable: false });
            log.push(`commit epoch ${mine}`);
          },
          abort: async () => log.push(`abort epoch ${mine}`),
        }),
      }) as unknown as Producer;
    const theLane = lane(log, async () => {
      // recover() replaces the producer, as fromKafka's does, and reads the committed offset: nothing was committed.
      producers.set(theLane, producerOf(epoch));
      return 0;
    });
    producers.set(theLane, producerOf(0));
    epoch = 1;
    const reports = checkpointOneOutput(theLane);
    expect((await reports).map((r) => r.offset)).toEqual([2]);
    expect(theLane.revoked).toBe(false);
    // No abort on the fenced producer: it would fail the same way, and the fence has ended its transaction.
    expect(log).toEqual(['send epoch 0', 'recover', 'send epoch 1', 'commit epoch 1']);
  }, 30_000);

  it('drops its outputs when, after a failed commit, another member committed the partition', async () => {
    const log: string[] = [];
    const producer = {
      transaction: async () => ({
        sendBatch: async () => {},
        sendOffsets: async () => {},
        commit: async () => {
          throw Object.assign(new Error('Request timed out'), { name: 'KafkaJSRequestTimeoutError', retriable: true });
        },
        abort: async () => {},
      }),
    } as unknown as Producer;
    const theLane = lane(log, async () => 7);
    producers.set(theLane, producer);
    const reports = checkpointOneOutput(theLane);
    expect(await reports).toEqual([]);
    expect(log).toEqual(['recover']);
  }, 30_000);

  it('commits nothing for a revoked lane and completes', async () => {
    const { producer, log } = recordingProducer();
    const theLane = lane(log);
    producers.set(theLane, producer);
    theLane.offer(record(0));
    const outputs = new Subject<Outputs>();
    const reports = lastValueFrom(outputs.pipe(checkpoint({ lane: theLane, intervalMs: 10_000 }), toArray()));
    outputs.next(output(0));
    theLane.revoke();
    outputs.complete();
    expect(await reports).toEqual([]);
    expect(log).toEqual([]);
  });

  it('completes at once for an empty source, passes the source error on, and stops its timer on unsubscribe', async () => {
    const { producer, log } = recordingProducer();
    const empty = new Subject<Outputs>();
    const emptyReports = lastValueFrom(empty.pipe(checkpoint({ lane: lane(log), mode: 'at-least-once', producer }), toArray()));
    empty.complete();
    expect(await emptyReports).toEqual([]);

    const failing = new Subject<Outputs>();
    const failed = lastValueFrom(failing.pipe(checkpoint({ lane: lane(log), mode: 'at-least-once', producer })));
    failing.error(new Error('upstream broke'));
    await expect(failed).rejects.toThrow('upstream broke');

    const theLane = lane(log);
    theLane.offer(record(0));
    const outputs = new Subject<Outputs>();
    vi.useFakeTimers();
    onTestFinished(() => void vi.useRealTimers());
    const subscription = outputs.pipe(checkpoint({ lane: theLane, mode: 'at-least-once', producer, intervalMs: 5 })).subscribe();
    outputs.next(output(0));
    subscription.unsubscribe();
    // Its timer is gone: ten intervals on the virtual clock commit nothing.
    await vi.advanceTimersByTimeAsync(50);
    expect(vi.getTimerCount()).toBe(0);
    expect(log).toEqual([]);
  });

  it('validates its options, by name', () => {
    const { log } = recordingProducer();
    expect(() => checkpoint({ lane: lane(log), mode: 'at-least-once' })).toThrow('checkpoint.producer: at-least-once needs a producer');
    expect(() => checkpoint({ lane: lane(log), intervalMs: 0 })).toThrow('checkpoint.intervalMs');
  });
});
