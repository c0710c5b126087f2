import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { stopLeftBehindInstances } from './broker.js';
import { killLeftBehindChildren, spawnTs } from './childProcess.js';
import { startMqttBroker } from './mqtt.js';

/** A script of one line, as a file that {@link spawnTs} runs. */
function script(source: string): URL {
  const file = join(mkdtempSync(join(tmpdir(), 'streamgrad-left-behind-')), 'child.mjs');
  writeFileSync(file, source);
  return pathToFileURL(file);
}

/** What a test that timed out leaves running is stopped by the setup file's last hook (`leftBehind.ts`), with these. */
describe('what a test leaves running', () => {
  it('a child it spawned, still running, is killed; one that ended is not counted', async () => {
    const ended = spawnTs(script(''), []);
    await ended.exited;
    const running = spawnTs(script('setInterval(() => {}, 1000);'), []);
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
