import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeProfiles } from '../bench/profileSummary.js';

/** A V8 CPU profile of `seconds` 1-second samples, each in the function `frames[i]` names. */
function profile(startTime: number, frames: ReadonlyArray<{ functionName: string; url: string }>): object {
  const nodes = [{ id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, children: frames.map((_, i) => i + 2) }, ...frames.map((frame, i) => ({ id: i + 2, callFrame: { ...frame, lineNumber: 0 } }))];
  return { nodes, samples: frames.map((_, i) => i + 2), timeDeltas: frames.map(() => 1e6), startTime, endTime: startTime + frames.length * 1e6 };
}

const idle = { functionName: '(idle)', url: '' };
const step = { functionName: 'executeSingleOutput', url: 'file:///app/node_modules/@tensorflow/tfjs-node/dist/nodejs_kernel_backend.js' };
const replica = { functionName: 'step', url: 'file:///app/dist/pipeline/worker/replica.js' };
const loading = { functionName: 'wrapSafe', url: 'node:internal/modules/cjs/loader' };
const shard = { functionName: 'take', url: 'file:///app/dist/pipeline/server/shardState.js' };
const workerModule = { functionName: '', url: 'file:///app/dist/pipeline/worker/worker.js' };

describe('describeProfiles (npm run bench:profile)', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("tells the worker from the server by their own time, and sums each over the run and over the seconds a worker stepped", () => {
    dir = mkdtempSync(join(tmpdir(), 'profiles-'));
    // Both load the worker's module (the CLI does); only the worker steps. The worker starts up for 2 s, steps for 4
    // (1 s of them idle), and idles for 2 more; the server starts with it and applies updates meanwhile.
    writeFileSync(join(dir, 'CPU.1.worker.cpuprofile'), JSON.stringify(profile(10e6, [loading, workerModule, step, replica, idle, step, idle, idle])));
    writeFileSync(join(dir, 'CPU.2.server.cpuprofile'), JSON.stringify(profile(10e6, [loading, workerModule, shard, idle, shard, idle, idle, idle])));
    const lines = describeProfiles(dir, 0, 100_000);
    expect(lines.filter((line) => /^worker /.test(line))).toHaveLength(2);
    expect(lines.filter((line) => /^server /.test(line))).toHaveLength(2);
    expect(lines.find((line) => line.startsWith('worker CPU.1') && line.includes('profiled'))).toContain('8.0 s profiled, 63% busy (5.00 CPU-s per 100k samples)');
    const steady = lines.indexOf(lines.find((line) => line.startsWith('steady state'))!);
    expect(lines[steady]).toBe('steady state (4 s in which a worker stepped):');
    // From 12 s to 16 s: the worker's step, replica, idle and step; the server's update, idle, update and idle.
    const [server, worker] = [lines.slice(steady).find((line) => line.startsWith('server'))!, lines.slice(steady).find((line) => line.startsWith('worker'))!];
    expect(worker).toContain('75% busy (3.0 of 4.0 s)');
    expect(server).toContain('50% busy (2.0 of 4.0 s)');
    expect(lines.slice(steady)).toContain('   66.7%  executeSingleOutput @tensorflow/tfjs-node/dist/nodejs_kernel_backend.js:1');
    expect(lines.slice(steady)).toContain('   33.3%  step pipeline/worker/replica.js:1');
  });
});
