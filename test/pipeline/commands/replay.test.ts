import { describe, expect, it } from 'vitest';
import { finalLossOf } from '../../../pipeline/commands/replay.js';

describe('replay final loss', () => {
  it('covers at least the last tenth of the samples in whole updates', () => {
    // Ten updates of 100 samples, each with a mean loss of 1 / (update number).
    const fine = Array.from({ length: 10 }, (_, k) => ({ samples: (k + 1) * 100, lossSum: Array.from({ length: k + 1 }, (_, j) => 100 / (j + 1)).reduce((a, b) => a + b) }));
    expect(finalLossOf(fine)).toBeCloseTo(1 / 10);
  });

  it('is the last update alone when it holds more than a tenth, not the whole run', () => {
    // Four updates of 1,500 samples with mean losses 1, 0.5, 0.2 and 0.1: the last one is a quarter of the run.
    const coarse = [
      { samples: 1_500, lossSum: 1_500 },
      { samples: 3_000, lossSum: 2_250 },
      { samples: 4_500, lossSum: 2_550 },
      { samples: 6_000, lossSum: 2_700 },
    ];
    expect(finalLossOf(coarse)).toBeCloseTo(0.1);
  });

  it('is the mean of the only update, and undefined before any sample', () => {
    expect(finalLossOf([{ samples: 500, lossSum: 100 }])).toBeCloseTo(0.2);
    expect(finalLossOf([])).toBeUndefined();
    expect(finalLossOf([{ samples: 0, lossSum: 0 }])).toBeUndefined();
  });
});
