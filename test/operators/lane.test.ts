import { describe, expect, it } from 'vitest';
import { Lane, type KafkaRecord } from '../../operators/index.js';

function laneWithControl(maxInFlight: number) {
  const calls: string[] = [];
  const lane = new Lane('telemetry', 2, 'group', maxInFlight, {
    producer: () => undefined,
    pause: () => calls.push('pause'),
    resume: () => calls.push('resume'),
    commitOffset: async (offset) => {
      calls.push(`commit ${offset}`);
    },
    recover: async () => undefined,
  });
  return { lane, calls };
}
const record = (offset: number): KafkaRecord => ({ topic: 'telemetry', partition: 2, offset: String(offset), key: null, value: null, timestamp: '0', headers: {} });

describe('Lane', () => {
  it('emits records in order and skips redelivered ones', () => {
    const { lane } = laneWithControl(10);
    const seen: string[] = [];
    lane.records.subscribe((r) => seen.push(r.offset));
    lane.startAt(5);
    expect([4, 5, 6, 6, 7].map((o) => lane.offer(record(o)))).toEqual([false, true, true, false, true]);
    expect(seen).toEqual(['5', '6', '7']);
    expect(lane.position).toBe(8);
  });

  it('advances the processed frontier only over a contiguous prefix', () => {
    const { lane } = laneWithControl(10);
    lane.startAt(0);
    for (const o of [0, 1, 2, 5, 6]) lane.offer(record(o));
    lane.markProcessed([{ first: 5, last: 5 }]);
    expect(lane.processedFrontier()).toBe(0);
    lane.markProcessed([{ first: 0, last: 2 }]);
    // Offsets 3 and 4 hold no record (say, transaction markers): the frontier jumps to 6.
    expect(lane.processedFrontier()).toBe(6);
    lane.markProcessed([{ first: 6, last: 6 }]);
    expect(lane.processedFrontier()).toBe(7);
  });

  it('pauses when full, resumes when half is released, and counts both', () => {
    const { lane, calls } = laneWithControl(4);
    lane.startAt(0);
    for (let o = 0; o < 4; o++) lane.offer(record(o));
    expect(lane.isFull).toBe(true);
    lane.pause();
    lane.pause();
    lane.ack(0);
    expect(calls).toEqual(['pause']);
    // No longer full, but still paused: it reads nothing until half is released.
    expect(lane.isFull).toBe(false);
    expect(lane.waitsForRelease).toBe(true);
    lane.ack(1);
    expect(calls).toEqual(['pause', 'resume']);
    expect(lane.waitsForRelease).toBe(false);
    expect(lane.inFlight).toBe(2);
    expect(lane.backpressure).toEqual({ pauses: 1, resumes: 1 });
  });

  it('holds commits during a rebalance and refuses them once revoked', async () => {
    const { lane } = laneWithControl(4);
    let completed = false;
    lane.records.subscribe({ complete: () => (completed = true) });
    lane.suspend();
    let allowed = false;
    const waiting = lane.whenCommitAllowed().then(() => (allowed = true));
    await Promise.resolve();
    expect(allowed).toBe(false);
    lane.revoke();
    await waiting;
    expect(allowed).toBe(true);
    expect(lane.revoked).toBe(true);
    expect(completed).toBe(true);
    expect(lane.offer(record(0))).toBe(false);
  });

  it('is drained once complete with nothing in flight, and tells release listeners', () => {
    const { lane } = laneWithControl(4);
    let released = 0;
    const stop = lane.onRelease(() => released++);
    lane.startAt(0);
    lane.offer(record(0));
    lane.complete();
    expect(lane.isDrained).toBe(false);
    lane.ack(0);
    expect(lane.isDrained).toBe(true);
    stop();
    lane.release(1);
    expect(released).toBe(1);
  });
});
