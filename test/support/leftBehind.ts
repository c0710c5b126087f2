import { afterAll } from 'vitest';
import { stopLeftBehindInstances } from './broker.js';
import { killLeftBehindChildren } from './childProcess.js';

/**
 * Every test file's last hook (a setup file's `afterAll` runs after the file's own): the processes and the broker or
 * MQTT instances that its tests started and left running, because a test timed out before its own cleanup, are
 * stopped here, so that they do not outlive the run and hold the ports the next run needs.
 */
afterAll(async () => {
  const children = killLeftBehindChildren();
  const instances = await stopLeftBehindInstances();
  if (children.length > 0 || instances.length > 0) {
    console.error(`[streamgrad tests] stopped what this file left running: ${[...children.map((pid) => `process ${pid}`), ...instances].join(', ')}`);
  }
});
