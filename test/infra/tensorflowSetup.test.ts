import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const setup = fileURLToPath(new URL('../../infra/tensorflow/setup', import.meta.url));

async function runSetup(env: Record<string, string>): Promise<{ code: number; stderr: string; ms: number }> {
  const started = Date.now();
  try {
    const { stderr } = await run('bash', [setup], { env: { ...process.env, ...env } });
    return { code: 0, stderr, ms: Date.now() - started };
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    return { code: failed.code, stderr: failed.stderr, ms: Date.now() - started };
  }
}

const tfjsNodeLoads = await import('@tensorflow/tfjs-node' as string).then(
  () => true,
  () => false,
);

describe('infra/tensorflow/setup', () => {
  it('refuses an unknown STREAMGRAD_TENSORFLOW by name, and does nothing when it is off', async () => {
    const bad = await runSetup({ STREAMGRAD_TENSORFLOW: 'maybe' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("STREAMGRAD_TENSORFLOW must be auto, required or off; got 'maybe'");
    const off = await runSetup({ STREAMGRAD_TENSORFLOW: 'off' });
    expect(off).toMatchObject({ code: 0, stderr: '' });
  });

  // npm ci ran it (postinstall): where it built tfjs-node, running it again only checks that it loads.
  it.runIf(tfjsNodeLoads)('is idempotent: once tfjs-node loads, a second run finds it ready, builds nothing and downloads nothing', async () => {
    const again = await runSetup({ STREAMGRAD_TENSORFLOW: 'required' });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/@tensorflow\/tfjs-node 4\.22\.0 loads: the tensorflow backend is ready/);
    expect(again.stderr).not.toMatch(/downloading|compiling/);
    expect(again.ms).toBeLessThan(30_000);
  });
});
