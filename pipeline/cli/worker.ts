import type { Command } from 'commander';
import { loadExperiment } from '../common/config.js';
import { formatCount as count } from '../common/console.js';
import { assertReachable } from '../common/kafkaClient.js';
import { startWorker } from '../worker/worker.js';
import { configOption, metricsOption, example } from './options.js';
import { progressEveryMs, runUntilSignal, withMetrics } from './service.js';

async function workerCommand(options: { config: string; workerId?: string; metricsPort?: number }): Promise<void> {
  const config = loadExperiment(options.config);
  await assertReachable(config);
  await runUntilSignal(async () => {
    const worker = await startWorker(options.workerId ? { ...config, workerId: options.workerId } : config);
    await withMetrics(worker.logger, worker.metrics.registry, options.metricsPort ?? config.metricsPort, worker.done);
    let last = Date.now();
    worker.checkpoints.subscribe(() => {
      if (Date.now() - last < progressEveryMs) return;
      last = Date.now();
      const { samples, deadLettered } = worker.trained();
      const memory = process.memoryUsage();
      const mb = (bytes: number) => `${Math.round(bytes / 2 ** 20)} MB`;
      worker.logger.info({ samples, deadLettered, rssBytes: memory.rss }, `${count(samples)} samples trained, ${count(deadLettered)} dead-lettered so far; memory: rss ${mb(memory.rss)}, JS heap ${mb(memory.heapUsed)} of ${mb(memory.heapTotal)}, buffers ${mb(memory.arrayBuffers)}`);
    });
    return worker;
  }, 'finishing the open checkpoints');
}

/** `streamgrad worker`. */
export function addWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('join <namespace>.workers on the input topic and train: gradient steps per micro-batch, updates to <namespace>.updates')
    .addOption(configOption())
    .option('--worker-id <id>', 'this worker\'s id (default: host-pid)')
    .addOption(metricsOption())
    .addHelpText('after', example('  KAFKA_BROKERS=127.0.0.1:19092 streamgrad worker --config examples/iot.yaml --metrics-port 9464') + '\n\nSIGTERM or Ctrl-C finishes the open checkpoint, commits, leaves the group and exits 0.')
    .action(workerCommand);
}
