import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { Kafka } from 'kafkajs';
import type { ExperimentConfig } from '../common/config.js';
import { DashboardReader, type DashboardFrame, type HistoryPoint } from './frames.js';

/** The page's files: ours next to this module (copied into dist/ by the build), uPlot's from its package. */
function assets(): ReadonlyMap<string, { readonly type: string; readonly body: Buffer }> {
  const own = (name: string) => readFileSync(new URL(`./assets/${name}`, import.meta.url));
  const uplot = (name: string) => readFileSync(createRequire(import.meta.url).resolve(`uplot/dist/${name}`));
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', body: own('index.html') }],
    ['/dashboard.js', { type: 'text/javascript; charset=utf-8', body: own('dashboard.js') }],
    ['/dashboard.css', { type: 'text/css; charset=utf-8', body: own('dashboard.css') }],
    ['/vendor/uPlot.iife.min.js', { type: 'text/javascript; charset=utf-8', body: uplot('uPlot.iife.min.js') }],
    ['/vendor/uPlot.min.css', { type: 'text/css; charset=utf-8', body: uplot('uPlot.min.css') }],
  ]);
}

/** A running dashboard. */
export interface Dashboard {
  readonly url: string;
  /** The newest frame (after the first reading). */
  latest(): DashboardFrame | undefined;
  close(): Promise<void>;
}

/** How often the dashboard reads Kafka and pushes a frame to every open tab. */
const frameEveryMs = 1_000;

/**
 * Serves the dashboard of `config.namespace` at `http://<host>:<port>/`: the page, its assets, `/events` (server-sent
 * events: the history, then a frame and a point every second) and `/api/frame` (the newest frame as JSON). One
 * reading of Kafka per second, whatever the number of tabs.
 */
export async function startDashboard(kafka: Kafka, config: Pick<ExperimentConfig, 'namespace' | 'inputTopic'>, port: number, host = '127.0.0.1'): Promise<Dashboard> {
  const reader = new DashboardReader(kafka, config);
  await reader.start();
  const files = assets();
  const streams = new Set<ServerResponse>();
  let latest: { frame: DashboardFrame; point: HistoryPoint } | undefined;
  const send = (response: ServerResponse, event: string, data: unknown) => response.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

  const serve = (request: IncomingMessage, response: ServerResponse) => {
    const path = request.url?.split('?')[0] ?? '/';
    const file = files.get(path);
    if (file) return void response.writeHead(200, { 'content-type': file.type, 'cache-control': 'no-cache' }).end(file.body);
    if (path === '/api/frame') return void response.writeHead(latest ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(latest?.frame ?? { error: 'no reading yet' }));
    if (path !== '/events') return void response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    send(response, 'hello', { namespace: config.namespace, inputTopic: config.inputTopic, frameEveryMs, history: reader.history() });
    if (latest) send(response, 'frame', latest);
    streams.add(response);
    request.on('close', () => streams.delete(response));
  };
  const server: Server = createServer(serve);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  }).catch(async (error: unknown) => {
    // The port is taken (the caller may try another): the reader's Kafka clients are open, and must not stay so.
    await reader.stop();
    throw error;
  });

  let stopped = false;
  let reading = Promise.resolve();
  const tick = async () => {
    try {
      const frame = await reader.frame();
      latest = { frame, point: reader.history().at(-1)! };
      for (const response of streams) send(response, 'frame', latest);
    } catch (error) {
      for (const response of streams) send(response, 'problem', { message: (error as Error).message });
    }
  };
  const timer = setInterval(() => {
    if (!stopped) reading = reading.then(tick);
  }, frameEveryMs);
  reading = tick();

  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}/`,
    latest: () => latest?.frame,
    close: async () => {
      stopped = true;
      clearInterval(timer);
      await reading;
      for (const response of streams) response.end();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await reader.stop();
    },
  };
}
