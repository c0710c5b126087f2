import type { ModelSnapshot, PrequentialWindow } from '../schemas/types.js';

/**
 * Prequential (test-then-train) evaluation: every sample is scored by the model before the model trains on it, so the
 * scores of a stream are an honest estimate of how well the model predicts what comes next. Scores are kept as sums
 * per tumbling event-time window, which add up exactly from any number of partial windows (batches, lanes, workers).
 */

/** Per-sample scores of one batch, computed in the forward pass of its gradient step. */
export interface SampleScores {
  /** The sample's loss, weighted by its weight (what the step trains on). */
  readonly loss: Float32Array;
  /** Mean absolute and squared error over the outputs. */
  readonly absError: Float32Array;
  readonly squaredError: Float32Array;
  /** Classifiers: 1 where the predicted class (largest output; output ≥ 0.5 for one output) is the label's; else 0. */
  readonly correct: Uint8Array;
}

/** Scores `predicted` against `target` (both n × outputs, row-major), with the per-sample weighted losses. */
export function scoreSamples(predicted: ArrayLike<number>, target: ArrayLike<number>, losses: Float32Array, outputs: number, classifier: boolean): SampleScores {
  const n = losses.length;
  const absError = new Float32Array(n);
  const squaredError = new Float32Array(n);
  const correct = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    let abs = 0;
    let squared = 0;
    let best = 0;
    let labelled = 0;
    for (let o = 0; o < outputs; o++) {
      const error = predicted[i * outputs + o]! - target[i * outputs + o]!;
      abs += Math.abs(error);
      squared += error * error;
      if (predicted[i * outputs + o]! > predicted[i * outputs + best]!) best = o;
      if (target[i * outputs + o]! > target[i * outputs + labelled]!) labelled = o;
    }
    absError[i] = abs / outputs;
    squaredError[i] = squared / outputs;
    if (classifier) correct[i] = outputs === 1 ? Number(predicted[i]! >= 0.5 === target[i]! >= 0.5) : Number(best === labelled);
  }
  return { loss: losses, absError, squaredError, correct };
}

/** The scores of consecutive parts of a batch, as one batch's. */
export function concatScores(parts: readonly SampleScores[]): SampleScores {
  if (parts.length === 1) return parts[0]!;
  const join = <T extends Float32Array | Uint8Array>(pick: (scores: SampleScores) => T, make: (length: number) => T): T => {
    const out = make(parts.reduce((sum, scores) => sum + pick(scores).length, 0));
    let at = 0;
    for (const scores of parts) {
      out.set(pick(scores), at);
      at += pick(scores).length;
    }
    return out;
  };
  const floats = (length: number) => new Float32Array(length);
  return {
    loss: join((s) => s.loss, floats),
    absError: join((s) => s.absError, floats),
    squaredError: join((s) => s.squaredError, floats),
    correct: join((s) => s.correct, (length) => new Uint8Array(length)),
  };
}

/** The start of the tumbling window of `windowMs` that holds event time `t`. */
export function windowStartOf(t: number, windowMs: number): number {
  return Math.floor(t / windowMs) * windowMs;
}

/** A batch's scores as partial windows, by the event time of each sample, oldest window first. */
export function windowsOf(eventTimes: ArrayLike<number>, scores: SampleScores, windowMs: number): PrequentialWindow[] {
  const windows = new Map<number, PrequentialWindow>();
  for (let i = 0; i < eventTimes.length; i++) {
    const t = eventTimes[i]!;
    const start = windowStartOf(t, windowMs);
    const window = windows.get(start) ?? { start, samples: 0, lossSum: 0, absErrorSum: 0, squaredErrorSum: 0, correct: 0, lastEventTime: t };
    window.samples += 1;
    window.lossSum += scores.loss[i]!;
    window.absErrorSum += scores.absError[i]!;
    window.squaredErrorSum += scores.squaredError[i]!;
    window.correct += scores.correct[i]!;
    window.lastEventTime = Math.max(window.lastEventTime, t);
    windows.set(start, window);
  }
  return [...windows.values()].sort((a, b) => a.start - b.start);
}

/** Adds partial windows into `windows` (by start), keeping the newest `keep`. */
export function addWindows(windows: Map<number, PrequentialWindow>, partials: readonly PrequentialWindow[], keep: number): void {
  for (const partial of partials) {
    const known = windows.get(partial.start);
    windows.set(
      partial.start,
      known
        ? {
            start: known.start,
            samples: known.samples + partial.samples,
            lossSum: known.lossSum + partial.lossSum,
            absErrorSum: known.absErrorSum + partial.absErrorSum,
            squaredErrorSum: known.squaredErrorSum + partial.squaredErrorSum,
            correct: known.correct + partial.correct,
            lastEventTime: Math.max(known.lastEventTime, partial.lastEventTime),
          }
        : { ...partial },
    );
  }
  if (windows.size <= keep) return;
  const starts = [...windows.keys()].sort((a, b) => a - b);
  for (const start of starts.slice(0, starts.length - keep)) windows.delete(start);
}

/** What a window's sums mean: mean loss (log-loss for classifiers), MAE, RMSE and accuracy. */
export interface WindowScores {
  readonly start: number;
  readonly samples: number;
  readonly loss: number;
  readonly mae: number;
  readonly rmse: number;
  readonly accuracy: number;
}

export function windowScores(window: PrequentialWindow): WindowScores {
  const n = Math.max(1, window.samples);
  return { start: window.start, samples: window.samples, loss: window.lossSum / n, mae: window.absErrorSum / n, rmse: Math.sqrt(window.squaredErrorSum / n), accuracy: window.correct / n };
}

/** A shard 0 snapshot's closed windows (those that end at or before its event-time watermark: final scores), oldest first. */
export function closedWindows(snapshot: Pick<ModelSnapshot, 'prequential' | 'prequentialWindowMs' | 'eventTimeWatermark'>): WindowScores[] {
  if (snapshot.prequentialWindowMs <= 0) return [];
  return snapshot.prequential.filter((w) => w.start + snapshot.prequentialWindowMs <= snapshot.eventTimeWatermark).map(windowScores);
}
