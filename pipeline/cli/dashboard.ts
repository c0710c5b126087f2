import type { Command } from 'commander';
import { ConsoleDisplay } from '../common/console.js';
import { assertReachable, createKafka } from '../common/kafkaClient.js';
import { startDashboard } from '../dashboard/server.js';
import { configOption, example, experimentIn, integer } from './options.js';
import { exitWhenDone } from './service.js';

/** The dashboard's port unless told otherwise. */
export const defaultDashboardPort = 8050;

async function dashboardCommand(options: { config: string; namespace?: string; port: number; host: string }): Promise<void> {
  const config = experimentIn(options.config, options.namespace);
  await assertReachable(config);
  const dashboard = await startDashboard(createKafka(config, `streamgrad-dashboard-${process.pid}`), config, options.port, options.host);
  const display = new ConsoleDisplay('[dashboard]');
  display.log(`${config.namespace}: dashboard at ${dashboard.url} (Ctrl-C stops it)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await dashboard.close();
  exitWhenDone((line) => display.log(line));
}

/** `streamgrad dashboard`. */
export function addDashboardCommand(program: Command): void {
  program
    .command('dashboard')
    .description('a live web page for one namespace: samples/s and lag per partition with the owning worker, loss and prequential scores per event-time window, the holdout score, freshness, staleness, model versions, dead letters by reason, refused updates, ingest bridges. Reads Kafka only, so it works from any machine')
    .addOption(configOption())
    .option('--namespace <ns>', 'another namespace than the config\'s (a replay\'s, say)')
    .option('--port <port>', 'the HTTP port (0: any free port)', integer('--port', 0), defaultDashboardPort)
    .option('--host <address>', 'the address to listen on (0.0.0.0 for other machines)', '127.0.0.1')
    .addHelpText('after', example('  streamgrad dashboard --config examples/iot.yaml          # then open http://127.0.0.1:8050/'))
    .action(dashboardCommand);
}
