import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { stopLeftBehindInstances } from './broker.js';
import { killLeftBehindChildren, spawnTs } from './childProcess.js';
import { startMqttBroker } from './mqtt.js';

const scripts = mkdtempSync(join(tmpdir(), 'streamgrad-left-behind-'));
afterAll(() => rmSync(scripts, { recursive: true, force: true }));

/** A script of one line, as a file that {@link spawnTs} runs. */
function script(name: string, source: string): URL {
  const file = join(scripts, name);
  writeFileSync(file, source);
  return pathToFileURL(file);
}

/** What a test that timed out leaves running is stopped by the setup file's last hook (`leftBehind.ts`), with these. */
describe('what a test leaves running', () => {
  it('a child it spawned, still running, is killed; one that ended is not counted', async () => {
    const ended = spawnTs(script('ends.mjs', ''), []);
    await ended.exited;
    const running = spawnTs(script('runs.mjs', 'setInterval(() => {}, 1000);'), []);
    expect(killLeftBehindChildren()).toEqual([running.process.pid]);
    expect(await running.exited).toBe('SIGKILL');
    expect(killLeftBehindChildren()).toEqual([]);
  });

  it('an instance it started and did not stop is stopped and cleaned; one it stopped is not counted', async () => {
    const stopped = await startMqttBroker();
    await stopped.stop();
    const left = await startMqttBroker();
    const [dataDir, ...others] = await stopLeftBehindInstances();
    expect(others).toEqual([]);
    expect(left.secrets.startsWith(`${dataDir!}/`)).toBe(true);
    expect(existsSync(dataDir!)).toBe(false);
    expect(await stopLeftBehindInstances()).toEqual([]);
  });
});
