/**
 * npm run chaos [-- --runs N --records N --outage S]: the chaos scenarios of `npm test`
 * (test/pipeline/chaos.test.ts: workers joining, leaving and SIGKILLed, the server SIGKILLed, poison pills;
 * test/chaos/brokerOutage.chaos.ts: kill -9 of the single broker, and of one broker of a 3-broker cluster, each down S seconds;
 * test/chaos/ingest.chaos.ts: the MQTT bridge SIGKILLed twice and its Kafka broker killed for S seconds while it drains), longer and repeated,
 * each run proven by `streamgrad audit`. Writes every run's figures to RELIABILITY.md as it goes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ingestScenario, outageScenario, type ChaosRun as Run } from '../support/processes.js';

const whole = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number ≥ 1, got '${value}'`);
  return n;
};
const options = new Command('chaos')
  .option('--runs <n>', 'how many times to run every scenario', whole('--runs'), 3)
  .option('--records <n>', 'records per scenario', whole('--records'), 200_000)
  .option('--outage <seconds>', 'how long the broker stays down', whole('--outage'), 60)
  .option('--fresh', 'start the history (RELIABILITY.jsonl) over instead of adding to it')
  .parse(process.argv)
  .opts<{ runs: number; records: number; outage: number; fresh?: boolean }>();

const log = join(tmpdir(), `streamgrad-chaos-${process.pid}.jsonl`);
const out = new URL('../../RELIABILITY.md', import.meta.url);
// Every run of every invocation, one JSON line each: RELIABILITY.md is rendered from it, so runs add up across sessions.
const history = new URL('../../RELIABILITY.jsonl', import.meta.url);
const count = (n: number) => n.toLocaleString('en-US');

function vitest(): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('npx', ['vitest', 'run', '--config', 'vitest.chaos.config.ts'], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, STREAMGRAD_CHAOS_LOG: log, STREAMGRAD_CHAOS_RECORDS: String(options.records), STREAMGRAD_TEST_OUTAGE_MS: String(options.outage * 1000) },
    });
    child.on('close', (code) => resolve(code ?? 1));
  });
}

function write(runs: readonly Run[], failedRuns: number, done: boolean): void {
  let streak = 0;
  for (const run of [...runs].reverse()) {
    if (!run.ok || run.lost > 0 || run.twice > 0) break;
    streak++;
  }
  const lines = [
    '# Reliability',
    '',
    `Every \`npm run chaos\` run so far (\`RELIABILITY.jsonl\`; \`-- --fresh\` starts over). The latest invocation: \`npm run chaos -- --runs ${options.runs} --records ${options.records} --outage ${options.outage}\`, ${new Date().toISOString()}${done ? '' : ' (still running)'}.`,
    'Each run is proven by `streamgrad audit` over the committed topics: records lost and records trained twice must be 0.',
    '',
    `- scenario runs: ${runs.length}; clean (audit passed, 0 lost, 0 twice): ${runs.filter((r) => r.ok && r.lost === 0 && r.twice === 0).length}; consecutive clean at the end: ${streak}`,
    `- vitest rounds of the latest invocation that failed (a timeout or an assertion, see its console output): ${failedRuns}`,
    `- records: ${count(runs.reduce((n, r) => n + r.records, 0))}; worker joins ${count(runs.reduce((n, r) => n + r.joins, 0))}, leaves ${count(runs.reduce((n, r) => n + r.leaves, 0))}, SIGKILLs ${count(runs.reduce((n, r) => n + r.kills, 0))}; server SIGKILLs ${count(runs.reduce((n, r) => n + r.serverKills, 0))}; broker outages ${count(runs.reduce((n, r) => n + r.outages, 0))}`,
    '',
    '| # | when | scenario | seed | records | joins | leaves | worker SIGKILLs | server SIGKILLs | broker outages | lost | twice | audit | s |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    ...runs.map((r, i) => `| ${i + 1} | ${r.at} | ${r.scenario} | ${r.seed ?? '-'} | ${count(r.records)} | ${r.joins} | ${r.leaves} | ${r.kills} | ${r.serverKills} | ${r.outages} | ${count(r.lost)} | ${count(r.twice)} | ${r.ok ? `OK${r.duplicates ? ` (${count(r.duplicates)} MQTT messages written again, at least once)` : ''}` : `FAILED: ${r.problems.join('; ')}`} | ${r.seconds} |`),
    '',
  ];
  writeFileSync(out, lines.join('\n'));
}

const readLines = (file: string | URL): Run[] => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Run) : []);
if (options.fresh) writeFileSync(history, '');
const earlier = readLines(history);

let failedRuns = 0;
const read = (): Run[] => readLines(log);
const unfinished: Run[] = [];
const scenarios = ['churn', outageScenario(1, options.outage), outageScenario(3, options.outage), ingestScenario(options.outage)];
for (let round = 1; round <= options.runs; round++) {
  console.error(`[chaos] round ${round} of ${options.runs}: ${count(options.records)} records per scenario, broker down ${options.outage} s`);
  const before = read().length;
  if ((await vitest()) !== 0) failedRuns++;
  // A scenario that timed out or failed before its audit wrote no line: it counts, as a failed run.
  const reported = new Set(read().slice(before).map((run) => run.scenario));
  for (const scenario of scenarios.filter((name) => !reported.has(name))) {
    unfinished.push({ scenario, records: options.records, joins: 0, leaves: 0, kills: 0, serverKills: 0, outages: scenario === 'churn' ? 0 : 1, seconds: 0, lost: 0, twice: 0, ok: false, problems: ['did not finish (timed out or failed before its audit): see the console output'], at: new Date().toISOString() });
  }
  const runs = [...read(), ...unfinished].sort((a, b) => a.at.localeCompare(b.at));
  writeFileSync(history, [...earlier, ...runs].map((run) => `${JSON.stringify(run)}\n`).join(''));
  write([...earlier, ...runs], failedRuns, round === options.runs);
}
const runs = [...read(), ...unfinished];
rmSync(log, { force: true });
console.error(`[chaos] ${runs.length} scenario runs, ${runs.filter((r) => r.ok).length} clean, ${failedRuns} failed rounds; RELIABILITY.md written`);
process.exitCode = failedRuns === 0 && runs.every((r) => r.ok) ? 0 : 1;
