import { describe, expect, it } from 'vitest';
import { backoffDelay, isRetriable, withRetry } from '../../operators/index.js';
import { BadRecordError, StreamgradError } from '../../schemas/index.js';

class FlakyKafkaError extends Error {
  readonly retriable = true;
}

describe('retry', () => {
  it('never retries programmer errors, and follows the retriable flag otherwise', () => {
    expect(isRetriable(new TypeError('x'))).toBe(false);
    expect(isRetriable(new RangeError('x'))).toBe(false);
    expect(isRetriable(new BadRecordError('DECODE', undefined, 'x'))).toBe(false);
    expect(isRetriable(new StreamgradError('BROKER', 'x', { retriable: true }))).toBe(true);
    expect(isRetriable(new FlakyKafkaError('x'))).toBe(true);
    expect(isRetriable(new Error('x'))).toBe(false);
  });

  it('backs off exponentially up to the ceiling, with full jitter', () => {
    expect([1, 2, 3, 10].map((attempt) => backoffDelay(attempt, { initialDelayMs: 100, maxDelayMs: 1_000 }, () => 1))).toEqual([100, 200, 400, 1_000]);
    expect(backoffDelay(3, { initialDelayMs: 100 }, () => 0)).toBe(0);
  });

  it('retries a retriable failure until it succeeds', async () => {
    let attempts = 0;
    const retried: number[] = [];
    const result = await withRetry(
      async () => {
        if (++attempts < 3) throw new FlakyKafkaError('not yet');
        return 'done';
      },
      { initialDelayMs: 1, onRetry: (_, attempt) => retried.push(attempt) },
    );
    expect(result).toBe('done');
    expect(retried).toEqual([1, 2]);
  });

  it('gives up after the last retry, and at once for a programmer error', async () => {
    let attempts = 0;
    await expect(withRetry(async () => { attempts++; throw new FlakyKafkaError('down'); }, { retries: 2, initialDelayMs: 1 })).rejects.toThrow('down');
    expect(attempts).toBe(3);
    attempts = 0;
    await expect(withRetry(async () => { attempts++; throw new TypeError('bug'); }, { initialDelayMs: 1 })).rejects.toThrow('bug');
    expect(attempts).toBe(1);
  });
});
