import type { Command } from 'commander';
import { loadExperiment } from '../common/config.js';
import { formatCount as count } from '../common/console.js';
import { assertReachable } from '../common/kafkaClient.js';
import { catchUpOnStopMs, startParameterServer } from '../server/parameterServer.js';
import { percentile } from '../common/percentile.js';
import { configOption, metricsOption, example } from './options.js';
import { progressEveryMs, runUntilSignal, withMetrics } from './service.js';

async function serverCommand(options: { config: string; metricsPort?: number }): Promise<void> {
  const config = loadExperiment(options.config);
  await assertReachable(config);
  await runUntilSignal(async () => {
    const server = await startParameterServer(config);
    await withMetrics(server.logger, server.metrics.registry, options.metricsPort ?? config.metricsPort, server.done);
    let last = 0;
    let freshness: number[] = [];
    server.freshness.subscribe((ms) => freshness.push(ms));
    server.snapshots.subscribe((report) => {
      if (Date.now() - last < progressEveryMs) return;
      last = Date.now();
      const p50 = percentile(freshness, 50);
      const p99 = percentile(freshness, 99);
      freshness = [];
      const ms = (value: number) => (Number.isNaN(value) ? '-' : `${value} ms`);
      server.logger.info({ shard: report.shard, version: report.version, samplesApplied: report.samplesApplied, freshnessP50Ms: p50, freshnessP99Ms: p99 }, `shard ${report.shard} version ${report.version}, ${count(report.samplesApplied)} samples applied, freshness p50 ${ms(p50)} p99 ${ms(p99)}`);
    });
    return server;
  }, `applying the updates committed by now (up to ${catchUpOnStopMs / 1000} s), then committing the last snapshots`);
}

/** `streamgrad ps`. */
export function addPsCommand(program: Command): void {
  program
    .command('ps')
    .description('join <namespace>.ps on <namespace>.updates and own its shards: apply updates, publish versioned snapshots to <namespace>.model')
    .addOption(configOption())
    .addOption(metricsOption())
    .addHelpText('after', example('  KAFKA_BROKERS=127.0.0.1:19092 streamgrad ps --config examples/iot.yaml --metrics-port 9463') + `\n\nSIGTERM or Ctrl-C applies the updates committed by then (for up to ${catchUpOnStopMs / 1000} s), commits the last snapshots, leaves the group and exits 0.`)
    .action(serverCommand);
}
