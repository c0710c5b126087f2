import { execFileSync } from 'node:child_process';
import { mqttClient, startMqttBroker } from './test/support/mqtt.js';
import { mqttPayload, seededRandom, simulatedReading } from './pipeline/commands/simulator.js';
const count = Number(process.argv[2] ?? 100_000);
const broker = await startMqttBroker();
const publish = async (prefix: string) => {
  const device = await mqttClient(broker.url);
  const random = seededRandom(3);
  for (let from = 0; from < count; from += 5_000) {
    const batch = Array.from({ length: 5_000 }, (_, k) => simulatedReading((from + k) % 200, 1_790_000_000_000 + from + k, random, { devices: 200, ratePerSecond: 1, seed: 3 }, 0));
    await Promise.all(batch.map((s) => device.publishAsync(`${prefix}/${s.deviceId}/t`, mqttPayload(s), { qos: 1 })));
  }
  await device.endAsync();
};
try {
  for (const round of [1, 2]) {
    // raw
    const sub = await mqttClient(broker.url, { clientId: `raw${round}`, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await sub.subscribeAsync(`raw${round}/+/t`, { qos: 1 });
    await sub.endAsync();
    await publish(`raw${round}`);
    console.log(execFileSync('node', ['/tmp/rawdrain.mjs', broker.url, `raw${round}`, `raw${round}/+/t`, String(count)]).toString().trim());
    // MQTT.js no-op
    const s2 = await mqttClient(broker.url, { clientId: `js${round}`, clean: false, properties: { sessionExpiryInterval: 3600 } });
    await s2.subscribeAsync(`js${round}/+/t`, { qos: 1 });
    await s2.endAsync();
    await publish(`js${round}`);
    let n = 0; let t0 = 0;
    const s3 = await mqttClient(broker.url, { clientId: `js${round}`, clean: false, properties: { sessionExpiryInterval: 3600, receiveMaximum: 20000 } });
    await new Promise<void>((resolve) => s3.on('message', () => { if (!t0) t0 = performance.now(); if (++n >= count) resolve(); }));
    console.log(`MQTT.js no-op drain: ${Math.round(count / ((performance.now() - t0) / 1000))} msg/s`);
    await s3.endAsync();
  }
} finally {
  await broker.stop();
}
