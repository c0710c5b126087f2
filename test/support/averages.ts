/**
 * The served average by its definition, for tests: the weights after each update in the order given, each update
 * moving the average toward them by its own decay (`average ← decay·average + (1 − decay)·weights`), from `initial`.
 */
export function averageAlong(initial: ArrayLike<number>, updates: ReadonlyArray<{ readonly change: ArrayLike<number>; readonly decay: number }>): Float64Array {
  const weights = Float64Array.from(initial);
  const average = Float64Array.from(initial);
  for (const { change, decay } of updates) {
    for (let i = 0; i < weights.length; i++) {
      weights[i]! += change[i]!;
      average[i] = decay * average[i]! + (1 - decay) * weights[i]!;
    }
  }
  return average;
}
