import type { Observable } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { expect } from 'vitest';

/** A TestScheduler whose assertions are vitest's deep equality. */
export function marbleScheduler(): TestScheduler {
  return new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
}

/** What an Observable emitted, and at which virtual frame, once the scheduler has run to its end. */
export function framesOf<T>(scheduler: TestScheduler, source: Observable<T>, flush: () => void): Array<[number, T | 'complete' | 'error']> {
  const seen: Array<[number, T | 'complete' | 'error']> = [];
  source.subscribe({
    next: (value) => seen.push([scheduler.now(), value]),
    error: () => seen.push([scheduler.now(), 'error']),
    complete: () => seen.push([scheduler.now(), 'complete']),
  });
  flush();
  return seen;
}
