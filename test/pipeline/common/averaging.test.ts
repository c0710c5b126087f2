import { describe, expect, it } from 'vitest';
import { PathAverage } from '../../../pipeline/common/averaging.js';
import { averageAlong } from '../../support/averages.js';

/** The average along a path by its definition, every change with decay `decay`. */
function definition(start: number, changes: readonly number[], decay: number): number {
  return averageAlong([start], changes.map((change) => ({ change: [change], decay })))[0]!;
}

describe('PathAverage', () => {
  const decay = 0.9;
  const weightsAt = (value: number) => new Map([['w', { values: Float32Array.of(value) }]]);

  it('in the order made, is the exponential moving average of the weights', () => {
    const average = new PathAverage(weightsAt(1), new Map([['w', Float32Array.of(0.5)]]));
    const changes = [0.25, -1, 2, 0.125, -0.5];
    let w = 1;
    changes.forEach((change, k) => {
      w += change;
      average.take(k, new Map([['w', Float32Array.of(change)]]), decay);
    });
    // Started from an average of 0.5 below weights of 1: the start decays like the initial weights' share.
    const expected = definition(1, changes, decay) - 0.5 * decay ** changes.length;
    expect(average.averages(weightsAt(w)).get('w')![0]).toBeCloseTo(expected, 6);
  });

  it('keeps the 256 newest changes for late updates: one made before all of them takes the place right after those it no longer keeps', () => {
    const average = new PathAverage(weightsAt(0), new Map());
    const changes = Array.from({ length: 300 }, (_, k) => ((k * 37) % 11) / 10 - 0.5);
    let w = 0;
    changes.forEach((change, k) => {
      w += change;
      average.take(100 + k, new Map([['w', Float32Array.of(change)]]), decay);
    });
    // Made before every one of them, it arrives last: the 44 oldest are no longer kept by then, so it goes after those.
    average.take(0, new Map([['w', Float32Array.of(3)]]), decay);
    const path = [...changes.slice(0, 44), 3, ...changes.slice(44)];
    expect(average.averages(weightsAt(w + 3)).get('w')![0]).toBeCloseTo(definition(0, path, decay), 5);
  });
});
