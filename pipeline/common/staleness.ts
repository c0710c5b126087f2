/**
 * The distribution of staleness (how many updates changed a shard's weights between the version an update was
 * computed on and its own) in power-of-two buckets, small enough to ride in every snapshot: bucket 0 counts
 * staleness 0, bucket k ≥ 1 counts staleness from 2^(k−1) to 2^k − 1. Counts from several shards add up.
 */

/** The bucket of a staleness. */
export function stalenessBucketOf(staleness: number): number {
  return staleness <= 0 ? 0 : Math.floor(Math.log2(staleness)) + 1;
}

/** The largest staleness bucket `bucket` holds. */
export function stalenessBucketTop(bucket: number): number {
  return bucket === 0 ? 0 : 2 ** bucket - 1;
}

/** Counts one staleness into `counts` (grown as needed). */
export function countStaleness(counts: number[], staleness: number): void {
  const bucket = stalenessBucketOf(staleness);
  while (counts.length <= bucket) counts.push(0);
  counts[bucket]! += 1;
}

/** What `status` shows: how many updates, and the p50 and p99 as the top of their bucket (at most the max). */
export interface StalenessSummary {
  readonly updates: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Sums bucket counts (of several shards). */
export function addStalenessCounts(all: ReadonlyArray<readonly number[]>): number[] {
  const sum: number[] = [];
  for (const counts of all) counts.forEach((n, bucket) => (sum[bucket] = (sum[bucket] ?? 0) + n));
  return sum;
}

export function summarizeStaleness(counts: readonly number[], max: number): StalenessSummary {
  const updates = counts.reduce((a, b) => a + b, 0);
  const quantile = (q: number) => {
    const rank = Math.ceil(q * updates);
    let seen = 0;
    for (let bucket = 0; bucket < counts.length; bucket++) {
      seen += counts[bucket]!;
      if (seen >= rank) return Math.min(stalenessBucketTop(bucket), max);
    }
    return max;
  };
  return { updates, p50: updates === 0 ? 0 : quantile(0.5), p99: updates === 0 ? 0 : quantile(0.99), max };
}
