import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { emptyMoments, mergeMoments, momentsOf } from '../../../pipeline/common/featureMoments.js';
import { InputScaling } from '../../../pipeline/worker/inputScaling.js';
import type { FeatureMoments } from '../../../schemas/types.js';

const features = 3;

/** One event in a replica's life: a batch trained in a lane, a snapshot that reflects offsets, a lane lost. */
type Event = { kind: 'batch'; lane: number; rows: number[] } | { kind: 'snapshot'; upTo: number } | { kind: 'forget'; lane: number };

const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ kind: fc.constant('batch' as const), lane: fc.integer({ min: 0, max: 2 }), rows: fc.array(fc.double({ min: -1e3, max: 1e3, noNaN: true }), { minLength: features, maxLength: 4 * features }) }),
  fc.record({ kind: fc.constant('snapshot' as const), upTo: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('forget' as const), lane: fc.integer({ min: 0, max: 2 }) }),
);

describe('InputScaling', () => {
  it('keeps the moments of the snapshot and the pending batches up to date batch by batch, equal to the bit to merging them all again', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (events) => {
        const scaling = new InputScaling(features);
        const owners = [{}, {}, {}];
        // The reference: the snapshot's moments and the pending batches, merged from scratch in order.
        let base: FeatureMoments = emptyMoments(features);
        let pending: Array<{ lane: number; offset: number; moments: FeatureMoments }> = [];
        let offset = 0;
        for (const step of events) {
          if (step.kind === 'batch') {
            const moments = momentsOf(step.rows, features);
            scaling.observe(moments);
            offset += 1;
            scaling.place(owners[step.lane]!, `t:${step.lane}`, offset);
            pending.push({ lane: step.lane, offset, moments });
          } else if (step.kind === 'snapshot') {
            // The server merged the reflected batches (in any order: Chan's merge is exact up to rounding).
            const reflected = pending.filter((entry) => entry.offset <= step.upTo);
            base = reflected.reduce((merged, entry) => mergeMoments(merged, entry.moments), base);
            pending = pending.filter((entry) => entry.offset > step.upTo);
            scaling.takeSnapshot(base, new Map(owners.map((_, lane) => [`t:${lane}`, step.upTo])));
          } else {
            scaling.forget(owners[step.lane]!);
            pending = pending.filter((entry) => entry.lane !== step.lane);
          }
          expect(scaling.moments()).toEqual(pending.reduce((merged, entry) => mergeMoments(merged, entry.moments), base));
        }
      }),
      { numRuns: 300 },
    );
  });
});
