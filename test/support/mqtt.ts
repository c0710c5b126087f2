import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { runInfraScript } from './broker.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));

/** A port nobody listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A Mosquitto broker of a test file's own, started by `infra/mqtt/start` (plain, or `--secure`). */
export interface TestMqttBroker {
  readonly url: string;
  /** Where `--secure` put the CA and the users' passwords. */
  readonly secrets: string;
  stop(): Promise<void>;
}

export async function startMqttBroker(options: { secure?: boolean } = {}): Promise<TestMqttBroker> {
  const dataDir = mkdtempSync(join(repo, 'infra/mqtt/.data-test-'));
  const port = await freePort();
  const started = await runInfraScript('start', ['--port', String(port), '--data-dir', dataDir, ...(options.secure ? ['--secure'] : [])], 'mqtt');
  if (started.code !== 0) throw new Error(`infra/mqtt/start failed: ${started.stderr}`);
  return {
    url: started.stdout.trim().split('\n').at(-1)!,
    secrets: join(dataDir, 'secrets'),
    stop: async () => {
      await runInfraScript('stop', ['--clean', '--data-dir', dataDir], 'mqtt');
    },
  };
}

/** A connected MQTT client (a device, in tests). */
export async function mqttClient(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
}
