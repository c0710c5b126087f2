import { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { rootLogger } from '../common/log.js';
import { serveMetrics } from '../common/metrics.js';

/** How often a long-running process logs its progress, in ms. */
export const progressEveryMs = 5_000;

/** A long-running process: stopped gracefully on SIGTERM or SIGINT, done once it has drained. */
interface Service {
  stop(): void;
  readonly done: Promise<void>;
  /** Its logger: what this process says about it carries its fields (role, worker or server, namespace). */
  readonly logger: Logger;
}

/**
 * Runs the service that `start` starts until SIGTERM or SIGINT, then lets it finish what it holds (`draining`), and
 * waits for it. A signal that arrives while the service is still starting stops it as soon as it runs.
 */
export async function runUntilSignal<S extends Service>(start: () => Promise<S>, draining: string): Promise<void> {
  let service: S | undefined;
  let early: string | undefined;
  const stop = (signal: string) => {
    if (!service) {
      early = signal;
      return;
    }
    service.logger.info({ signal }, `${signal}: ${draining}`);
    service.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  // A promise some library left without a handler must not kill a process that holds uncommitted work (the wasm
  // runtime's own handler turned one into exit code 7 mid-drain): say so loudly, and go on draining.
  process.on('unhandledRejection', (reason) => {
    (service?.logger ?? rootLogger()).error(`unhandled rejection (not fatal): ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`);
  });
  service = await start();
  service.logger.info('running; SIGTERM or Ctrl-C stops it cleanly');
  if (early) stop(early);
  await service.done;
  service.logger.info('stopped');
  exitWhenDone((line) => service!.logger.info(line));
}

/**
 * For a command whose work is done and committed: kafkajs can keep a socket of a client closed mid-rebalance open
 * for a minute or more, so if the process has not exited 5 s from now, say what is still open and exit 0.
 */
export function exitWhenDone(log: (line: string) => void): void {
  setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((kind) => kind !== 'Timeout');
    const sockets = openSockets();
    log(`exiting with resources still open after 5 s: ${open.join(', ') || 'timers only'}${sockets.length > 0 ? `; TCP sockets ${sockets.join(', ')}` : ''}`);
    process.exit(0);
  }, 5_000).unref();
}

/** Where each open TCP socket goes (`local → remote`), to tell which client left it open. */
export function openSockets(): string[] {
  // Node's only way to reach the sockets themselves: `getActiveResourcesInfo` gives their kinds alone.
  const handles = (process as unknown as { _getActiveHandles?: () => unknown[] })._getActiveHandles?.() ?? [];
  return handles
    .filter((handle): handle is Socket => handle instanceof Socket && handle.remotePort !== undefined)
    .map((socket) => `${socket.localPort ?? '?'} → ${socket.remoteAddress ?? '?'}:${socket.remotePort}${socket.connecting ? ' (connecting)' : ''}`);
}

/** Serves `registry` at /metrics while `done` is pending, when a port is given. */
export async function withMetrics(logger: Logger, registry: Registry, port: number | undefined, done: Promise<void>): Promise<void> {
  if (port === undefined) return;
  const endpoint = await serveMetrics(registry, port);
  logger.info({ metrics: endpoint.url }, `Prometheus metrics at ${endpoint.url}`);
  void done.finally(() => endpoint.close());
}
