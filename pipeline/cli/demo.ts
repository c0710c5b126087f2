import type { Command } from 'commander';
import { runDemo, type DemoOptions } from '../commands/demo.js';
import { exitWhenDone } from './service.js';
import { defaultDashboardPort } from './dashboard.js';
import { integer, positive, example } from './options.js';

/** `streamgrad demo`. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the main job in one command: a local broker, simulated IoT telemetry, a parameter server and two workers training for about 60 s, with live progress, a summary and an exported model')
    .option('--duration <seconds>', 'how long to train', positive('--duration'), 60)
    .option('--rate <samples/s>', 'simulated telemetry rate', positive('--rate'), 5_000)
    .option('--devices <n>', 'simulated devices', integer('--devices'), 200)
    .option('--workers <n>', 'worker processes', integer('--workers'), 2)
    .option('--out <dir>', 'where to export the model', 'streamgrad-demo-model')
    .option('--dashboard-port <port>', 'serve the dashboard on this port; any free port when it is taken', integer('--dashboard-port', 0), defaultDashboardPort)
    .option('--no-dashboard', 'do not serve the dashboard')
    .option('--mqtt', 'devices publish JSON over MQTT to a local Mosquitto (infra/mqtt/start, or MQTT_URL), and streamgrad ingest bridges it into Kafka')
    .addHelpText('after', example('  streamgrad demo --duration 30 --rate 10000') + '\n\nUses KAFKA_BROKERS when set, else starts infra/kafka (Java 17+ and Maven). Ctrl-C stops it cleanly.')
    .action(async (options: DemoOptions) => {
      await runDemo(options);
      exitWhenDone((line) => console.error(`[demo] ${line}`));
    });
}
