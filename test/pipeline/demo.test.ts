import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testBrokers } from '../support/kafka.js';

describe('streamgrad demo', () => {
  it('streams simulated telemetry through the broker, trains, shows progress and stops cleanly', async () => {
    const cli = fileURLToPath(new URL('../../pipeline/cli.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', cli, 'demo', '--duration', '12', '--rate', '2000', '--devices', '50', '--workers', '1'], {
      env: { ...process.env, KAFKA_BROKERS: testBrokers().join(',') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, output).toBe(0);
    const applied = [...output.matchAll(/applied ([\d,]+)/g)].map((m) => Number(m[1]!.replace(/,/g, '')));
    expect(Math.max(...applied)).toBeGreaterThan(5_000);
    const losses = [...output.matchAll(/loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
    expect(losses.at(-1)!).toBeLessThan(losses[0]!);
    expect(output).toMatch(/\[demo\] done: [\d,]+ samples sent/);
  }, 90_000);
});
