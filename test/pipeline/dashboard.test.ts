import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import type { StatusReport } from '../../pipeline/commands/status.js';
import { launchChromium } from '../support/browser.js';
import { cliOutput, cliPath, spawnTs, waitFor } from '../support/childProcess.js';
import { cliEnv as env, runExperiment as experiment } from '../support/cliRun.js';
import { kafkaTest } from '../support/kafka.js';
import { waitForShards, writeExperimentFile } from '../support/snapshots.js';

/** What a tab shows: frames received, points per chart, and the cells of its tables. */
interface TabView {
  frames: number;
  points: Record<'throughput' | 'lag' | 'loss' | 'prequential' | 'freshness' | 'versions' | 'staleness', number>;
  shards: string[][];
  partitions: string[][];
  deadLetters: string[][];
  kpiDeadLetters: string;
}

// Runs in the page (a string: this project's TypeScript has no DOM types).
const tabView = `(() => {
  const dashboard = window.streamgrad;
  const cells = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')].map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent ?? ''));
  return {
    frames: dashboard.frames,
    points: Object.fromEntries(['throughput', 'lag', 'loss', 'prequential', 'freshness', 'versions', 'staleness'].map((name) => [name, dashboard.points(name)])),
    shards: cells('shards'),
    partitions: cells('partitions'),
    deadLetters: cells('dead-letters'),
    kpiDeadLetters: document.querySelector('[data-kpi="deadLetters"]')?.textContent ?? '',
  };
})()`;
const seen = async (page: Page): Promise<TabView> => (await page.evaluate(tabView)) as TabView;

const n = (value: number) => value.toLocaleString('en-US');

describe('the dashboard, in a real browser', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  kafkaTest('streamgrad run serves it: two tabs get live frames, every chart gets points, and the numbers match status --json', async ({ kafka }) => {
    const config = experiment(2, 2_000);
    const file = writeExperimentFile(config);
    const total = 8_000;
    const run = spawnTs(cliPath, ['run', '--config', file, '--workers', '1', '--count', String(total), '--dashboard-port', '0'], { env: env() });
    try {
      await waitFor('the dashboard address', () => run.errors.some((line) => /dashboard at http/.test(line)), 90_000);
      const url = /dashboard at (http\S+)/.exec(run.errors.join('\n'))![1]!;
      const tabs = await Promise.all([browser.newPage(), browser.newPage()]);
      const problems: string[] = [];
      for (const tab of tabs) {
        tab.on('pageerror', (error) => problems.push(error.message));
        await tab.goto(url);
      }
      await waitFor('both tabs to receive frames and plot training', async () => (await Promise.all(tabs.map(seen))).every((view) => view.frames >= 3 && view.points.throughput >= 3 && view.points.versions >= 3), 90_000, 250);
      await waitForShards(kafka, config.namespace, 2, `all ${total} records accounted for`, (s) => s.samplesApplied + s.samplesDroppedStale + s.deadLettered === total, 120_000);

      // Training is over: a reading of `status --json` now and the tabs' next frames must agree.
      const status = JSON.parse((await cliOutput(['status', '--config', file, '--json'], env())).join('')) as StatusReport;
      const expectedShards = status.shards.map((s) => [String(s.shard), n(s.version), n(s.samplesApplied)]);
      const expectedPartitions = status.partitions.map((p) => [String(p.partition), n(p.end), n(p.committed)]);
      await waitFor('the tabs to show what status shows', async () => {
        const views = await Promise.all(tabs.map(seen));
        return views.every((view) =>
          JSON.stringify(view.shards.map((row) => row.slice(0, 3))) === JSON.stringify(expectedShards) &&
          JSON.stringify(view.partitions.map((row) => [row[0], row[3], row[4]])) === JSON.stringify(expectedPartitions) &&
          view.kpiDeadLetters === n(status.deadLetters));
      }, 30_000, 250).catch(async (error: Error) => {
        throw new Error(`${error.message}: status ${JSON.stringify({ expectedShards, expectedPartitions, deadLetters: status.deadLetters })}, tabs ${JSON.stringify(await Promise.all(tabs.map(seen)))}`);
      });
      const view = await seen(tabs[1]!);
      expect(view.points.loss).toBeGreaterThanOrEqual(3);
      expect(view.points.freshness).toBeGreaterThanOrEqual(3);
      expect(view.points.prequential).toBe(status.prequential?.closed.length ?? 0);
      // The simulator's sensor dropouts, dead-lettered by the worker, by reason.
      expect(view.deadLetters.find(([reason]) => reason === 'NON_FINITE')?.[1]).toBe(n(status.deadLetters));
      expect(problems).toEqual([]);
    } finally {
      run.process.kill('SIGINT');
    }
    expect(await run.exited).toBe(0);
  }, 240_000);
});
