import { describe, expect, it } from 'vitest';
import { addStalenessCounts, countStaleness, stalenessBucketOf, stalenessBucketTop, summarizeStaleness } from '../../../pipeline/common/staleness.js';

describe('staleness buckets', () => {
  it('put 0 alone and each power of two up to the next in one bucket', () => {
    expect([0, 1, 2, 3, 4, 7, 8, 15, 16, 1_000].map(stalenessBucketOf)).toEqual([0, 1, 2, 2, 3, 3, 4, 4, 5, 10]);
    expect([0, 1, 2, 3, 10].map(stalenessBucketTop)).toEqual([0, 1, 3, 7, 1_023]);
    for (let s = 0; s < 5_000; s++) expect(stalenessBucketTop(stalenessBucketOf(s))).toBeGreaterThanOrEqual(s);
  });

  it('summarize as bucket tops, never above the max, and add up over shards', () => {
    const counts: number[] = [];
    for (const s of [0, 0, 0, 1, 5, 5, 6, 40]) countStaleness(counts, s);
    expect(counts).toEqual([3, 1, 0, 3, 0, 0, 1]);
    expect(summarizeStaleness(counts, 40)).toEqual({ updates: 8, p50: 1, p99: 40, max: 40 });
    expect(summarizeStaleness([], 0)).toEqual({ updates: 0, p50: 0, p99: 0, max: 0 });
    expect(addStalenessCounts([[1, 2], [3, 4, 5], []])).toEqual([4, 6, 5]);
  });
});
