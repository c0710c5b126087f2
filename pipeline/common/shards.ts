/**
 * Splits variables over `shards` parameter-server shards, balancing their
 * sizes (element counts): largest first, each to the lightest shard so far,
 * ties to the lower shard. Deterministic: every process computes the same map.
 */
export function assignShards(variables: ReadonlyArray<{ readonly name: string; readonly size: number }>, shards: number): Map<string, number> {
  if (!Number.isInteger(shards) || shards <= 0) throw new RangeError(`shards must be a positive whole number, got ${shards}`);
  const load = new Array<number>(shards).fill(0);
  const order = [...variables].sort((a, b) => b.size - a.size || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const assignment = new Map<string, number>();
  for (const { name, size } of order) {
    let lightest = 0;
    for (let shard = 1; shard < shards; shard++) if (load[shard]! < load[lightest]!) lightest = shard;
    assignment.set(name, lightest);
    load[lightest]! += size;
  }
  return assignment;
}
