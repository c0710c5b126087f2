import type { Command } from 'commander';
import { loadExperiment } from '../common/config.js';
import { ConsoleDisplay, formatCount as count } from '../common/console.js';
import { formatStatus } from '../commands/status.js';
import { runExperiment } from '../commands/supervisor.js';
import { defaultDashboardPort } from './dashboard.js';
import { integer, positive, configOption, example } from './options.js';
import { exitWhenDone } from './service.js';

interface RunCommandOptions {
  config: string;
  workers: number;
  simulate?: boolean;
  rate?: number;
  devices?: number;
  count?: number;
  duration?: number;
  dashboard: boolean;
  dashboardPort: number;
}

async function runCommand(options: RunCommandOptions): Promise<void> {
  const config = loadExperiment(options.config);
  const display = new ConsoleDisplay('[run]');
  const simulate = options.simulate || options.count || options.rate || options.devices ? { count: options.count, ratePerSecond: options.rate, devices: options.devices } : undefined;
  const summary = await runExperiment({ configFile: options.config, config, workers: options.workers, simulate, durationSeconds: options.duration, display, dashboardPort: options.dashboard ? options.dashboardPort : false });
  display.log(`stopped after ${Math.round(summary.seconds)} s${simulate ? `; ${count(summary.sent)} samples simulated` : ''}`);
  console.log(formatStatus(summary.status));
  exitWhenDone((line) => display.log(line));
}

/** `streamgrad run`. */
export function addRunCommand(program: Command): void {
  program
    .command('run')
    .description('create the topics, start one parameter server and K workers as child processes (and the simulator with --simulate), and show live progress: samples/s, loss, lag, model version, freshness. Ctrl-C stops everything cleanly')
    .addOption(configOption())
    .option('--workers <k>', 'worker processes', integer('--workers'), 2)
    .option('--simulate', 'also run the IoT simulator into the input topic')
    .option('--rate <samples/s>', 'simulator rate (implies --simulate)', positive('--rate'))
    .option('--devices <n>', 'simulated devices (implies --simulate)', integer('--devices'))
    .option('--count <n>', 'simulate this many samples, then keep training (implies --simulate)', integer('--count'))
    .option('--duration <seconds>', 'stop after this long', positive('--duration'))
    .option('--dashboard-port <port>', 'serve the dashboard (streamgrad dashboard) on this port; any free port when it is taken', integer('--dashboard-port', 0), defaultDashboardPort)
    .option('--no-dashboard', 'do not serve the dashboard')
    .addHelpText('after', example('  streamgrad run --config examples/iot.yaml --workers 2 --simulate --rate 5000'))
    .action(runCommand);
}
