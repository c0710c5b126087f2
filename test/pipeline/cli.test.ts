import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildCli } from '../../pipeline/cli.js';
import { runCli } from '../support/childProcess.js';
import { testBrokers } from '../support/kafka.js';
import { writeExperimentFile } from '../support/snapshots.js';

const experiment = (overrides: object = {}) => ({
  namespace: `cli-${randomUUID().slice(0, 8)}`,
  inputTopic: `cli-input-${randomUUID().slice(0, 8)}`,
  model: { kind: 'linear', features: 16, shards: 2, optimizer: { kind: 'sgd', learningRate: 0.05 } },
  ...overrides,
});

describe('streamgrad CLI', () => {
  it('reports the package version', async () => {
    const expected = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    let printed = '';
    const cli = buildCli().configureOutput({ writeOut: (text) => { printed += text; } });
    await expect(cli.parseAsync(['node', 'streamgrad', '--version'])).rejects.toMatchObject({ code: 'commander.version' });
    expect(printed.trim()).toBe(expected);
  });

  it('gives every command --help with an example', async () => {
    const cli = buildCli();
    const names = cli.commands.map((command) => command.name());
    expect(names).toEqual(expect.arrayContaining(['demo', 'up', 'down', 'simulate', 'run', 'replay', 'scale', 'status', 'export', 'worker', 'ps', 'audit']));
    for (const command of cli.commands as Command[]) {
      let help = '';
      command.configureOutput({ writeOut: (text) => { help += text; } });
      await expect(cli.parseAsync(['node', 'streamgrad', command.name(), '--help'])).rejects.toMatchObject({ code: 'commander.helpDisplayed' });
      expect(help, command.name()).toMatch(/Example:\n {2}\S*.*streamgrad /);
    }
  });

  it('a bad config: one line naming the field and the allowed values, exit 2', async () => {
    const file = writeExperimentFile(experiment({ encoding: 'INT4' }));
    const { code, stderr } = await runCli(['status', '--config', file], { KAFKA_BROKERS: testBrokers().join(',') });
    expect(code).toBe(2);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^streamgrad: invalid configuration: config\.encoding: .*"FP32".*"FP16".*"INT8".* \(in .*experiment\.json\)$/);
  }, 30_000);

  it('an unknown namespace: one line naming it, exit 2', async () => {
    const config = experiment();
    const { code, stderr } = await runCli(['status', '--config', writeExperimentFile(config)], { KAFKA_BROKERS: testBrokers().join(',') });
    expect(code).toBe(2);
    expect(stderr).toEqual([expect.stringMatching(new RegExp(`^streamgrad: unknown namespace '${config.namespace}': no topics ${config.namespace}\\.updates`))]);
    const exported = await runCli(['export', '--config', writeExperimentFile(config), '--out', '/tmp/never'], { KAFKA_BROKERS: testBrokers().join(',') });
    expect(exported.code).toBe(2);
    expect(exported.stderr).toEqual([expect.stringMatching(/^streamgrad: unknown namespace/)]);
  }, 30_000);

  it('an unreachable broker: one line naming the address, exit 2, within seconds', async () => {
    const startedAt = Date.now();
    const { code, stderr } = await runCli(['run', '--config', writeExperimentFile(experiment())], { KAFKA_BROKERS: '127.0.0.1:1' });
    expect(code).toBe(2);
    expect(stderr).toEqual([expect.stringMatching(/^streamgrad: cannot connect to Kafka at 127\.0\.0\.1:1 \(config brokers or KAFKA_BROKERS\): /)]);
    expect(Date.now() - startedAt).toBeLessThan(20_000);
  }, 30_000);

  it('a bad option value: the option named, exit 2', async () => {
    const { code, stderr } = await runCli(['scale', '--config', 'x.json', '--partitions', 'many']);
    expect(code).toBe(2);
    expect(stderr.join('\n')).toMatch(/--partitions must be an integer ≥ 1, got 'many'/);
  }, 30_000);

  it('an export to a place that takes no files, or a replay range that ends before it starts: one line, exit 2, at once', async () => {
    const file = writeExperimentFile(experiment());
    const env = { KAFKA_BROKERS: testBrokers().join(',') };
    const exported = await runCli(['export', '--config', file, '--out', `${file}/model`], env);
    expect(exported.code).toBe(2);
    expect(exported.stderr).toEqual([expect.stringMatching(/^streamgrad: invalid configuration: --out: cannot write to .*experiment\.json\/model: /)]);
    const startedAt = Date.now();
    const replayed = await runCli(['replay', '--config', file, '--from', '2026-01-02T00:00:00Z', '--to', '2026-01-01T00:00:00Z'], env);
    expect(replayed.code).toBe(2);
    expect(replayed.stderr).toEqual([expect.stringMatching(/^streamgrad: invalid configuration: --from: 2026-01-02T00:00:00\.000Z is not before --to 2026-01-01T00:00:00\.000Z/)]);
    const byOffsets = await runCli(['replay', '--config', file, '--from-offsets', '0:500', '--to-offsets', '0:100'], env);
    expect(byOffsets.code).toBe(2);
    expect(byOffsets.stderr).toEqual([expect.stringMatching(/--from-offsets: partition 0: 500 is after --to-offsets 100/)]);
    expect(Date.now() - startedAt).toBeLessThan(20_000);
  }, 60_000);
});
