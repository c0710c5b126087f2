import { describe, expect, it } from 'vitest';
import { spawnTs, waitFor } from '../../support/childProcess.js';

/**
 * A signal handled on a thread while libtensorflow 2.9's oneDNN GEMM kernels run there wrote its frame into the heap
 * (oneDNN issue 4845): a worker profiled with `--cpu-prof` aborted with `free(): invalid pointer` in 3 runs of 3, and
 * this test's process aborted or segfaulted within seconds, before the addon held signals while TensorFlow runs.
 */
describe('the backend under a storm of signals', () => {
  it('computes dense products for seconds while thousands of SIGUSR2 are sent to it, and exits cleanly', async () => {
    const child = spawnTs(new URL('../fixtures/productsUnderSignals.ts', import.meta.url), ['6000']);
    await waitFor('the products to start', () => child.lines.includes('ready') || child.process.exitCode !== null, 60_000, 20);
    let sent = 0;
    let exited = false;
    void child.exited.then(() => (exited = true));
    const signalling = () => !exited && !child.lines.some((line) => line.startsWith('{'));
    const signal = () => {
      try {
        process.kill(child.process.pid!, 'SIGUSR2');
        sent += 1;
      } catch {
        exited = true; // it died: the exit code below says how
      }
    };
    while (signalling()) {
      for (let i = 0; i < 200 && !exited; i += 1) signal();
      await new Promise((resolve) => setImmediate(resolve));
    }
    const code = await child.exited;
    const outcome = { code, sent, last: child.lines.at(-1), stderr: child.errors.slice(-3) };
    expect(outcome.code, JSON.stringify(outcome)).toBe(0);
    const result = JSON.parse(outcome.last!) as { backend: string; products: number; signals: number };
    // Signals that come while one is pending merge into it: the handler sees fewer than were sent.
    expect({ ...result, sent }, JSON.stringify(outcome)).toMatchObject({ products: expect.toSatisfy((n: number) => n > 1_000), signals: expect.toSatisfy((n: number) => n >= 50 && n <= sent), sent: expect.toSatisfy((n: number) => n >= 1_000) });
  });
});
