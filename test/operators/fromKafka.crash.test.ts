import { describe, expect } from 'vitest';
import { spawnTs, waitFor } from '../support/childProcess.js';
import { exactlyOnceDiff, kafkaTest as test } from '../support/kafka.js';

const copyTopic = new URL('./fixtures/copyTopic.ts', import.meta.url);

describe('fromKafka → checkpoint, exactly-once', () => {
  test('a copy killed with SIGKILL mid-run and resumed by a new process writes every input exactly once', async ({ kafka }) => {
    const total = 200_000;
    const input = await kafka.createTopic({ partitions: 6, prefix: 'in' });
    const output = await kafka.createTopic({ partitions: 6, prefix: 'out' });
    const group = kafka.group('copy');
    await kafka.produce(input, total, (i) => ({ key: `k${i % 1000}`, value: `r-${i}` }));
    const args = [kafka.brokers.join(','), input, output, group, `tx-${group}`];

    const started = Date.now();
    const first = spawnTs(copyTopic, args);
    await waitFor('the first copy to commit 20,000 records', async () => (await kafka.committedTotal(group, input)) >= 20_000, 90_000);
    first.process.kill('SIGKILL');
    expect(await first.exited).toBe('SIGKILL');
    const committedAtCrash = await kafka.committedTotal(group, input);
    expect(committedAtCrash).toBeLessThan(total);

    const second = spawnTs(copyTopic, args);
    await waitFor('the second copy to commit every record', async () => (await kafka.committedTotal(group, input)) === total, 120_000);
    console.error(`[crash test] second copy done after ${Date.now() - started} ms`);
    second.process.kill('SIGTERM');
    expect(await second.exited).toBe(0);
    expect(second.lines.length).toBeGreaterThan(0);

    const copied = await kafka.readCommitted(output);
    expect(exactlyOnceDiff(copied, total)).toEqual({ duplicated: [], missing: [], count: total });
    console.error(`[crash test] committed ${committedAtCrash} of ${total} before SIGKILL; all copied in ${Date.now() - started} ms`);
  }, 300_000);
});
