import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assignShards } from '../../../pipeline/common/shards.js';

const variables = fc.uniqueArray(fc.record({ name: fc.string({ minLength: 1, maxLength: 8 }), size: fc.integer({ min: 1, max: 10_000 }) }), { selector: (v) => v.name, maxLength: 30 });

describe('assignShards', () => {
  it('assigns every variable to one shard, the same map whatever the input order, no shard heavier than the lightest plus the largest variable', () => {
    fc.assert(
      fc.property(variables, fc.integer({ min: 1, max: 6 }), (vars, shards) => {
        const assignment = assignShards(vars, shards);
        expect([...assignment.keys()].sort()).toEqual(vars.map((v) => v.name).sort());
        expect(assignShards([...vars].reverse(), shards)).toEqual(assignment);
        const load = new Array<number>(shards).fill(0);
        for (const { name, size } of vars) load[assignment.get(name)!]! += size;
        const largest = Math.max(0, ...vars.map((v) => v.size));
        expect(Math.max(...load) - Math.min(...load)).toBeLessThanOrEqual(largest);
      }),
    );
  });

  it('refuses a shard count that is not a positive whole number', () => {
    expect(() => assignShards([], 0)).toThrow('shards must be a positive whole number, got 0');
  });
});
