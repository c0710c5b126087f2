import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startMqttBroker } from '../../support/mqtt.js';
import { cliPath, spawnTs } from '../../support/childProcess.js';
import { testBrokers } from '../../support/kafka.js';

describe('streamgrad demo', () => {
  it('streams simulated telemetry through the broker, trains with live progress, stops cleanly, prints a summary and exports the model', async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'streamgrad-demo-test-')), 'model');
    const demo = spawnTs(cliPath, ['demo', '--duration', '25', '--rate', '2000', '--devices', '50', '--workers', '1', '--out', out], { env: { KAFKA_BROKERS: testBrokers().join(',') }, quiet: true });
    const code = await demo.exited;
    const output = demo.errors.join('\n');
    expect(code, output).toBe(0);
    const applied = [...output.matchAll(/applied ([\d,]+)/g)].map((m) => Number(m[1]!.replace(/,/g, '')));
    expect(Math.max(...applied)).toBeGreaterThan(5_000);
    const losses = [...output.matchAll(/\| loss (\d+\.\d+)/g)].map((m) => Number(m[1]));
    expect(losses.length).toBeGreaterThan(3);
    // The simulated day moves the inputs through new ranges, so the loss is not monotone; it must fall well below where it started.
    expect(Math.min(...losses)).toBeLessThan(losses[0]! / 2);
    const summary = demo.lines.join('\n');
    expect(summary).toMatch(/streamgrad demo summary/);
    expect(summary).toMatch(/samples applied +[\d,]+/);
    // Prequential scores of the closed 10 s event-time windows: the first, the best and the last.
    expect(summary).toMatch(/prequential, 10 s windows: first +\d\d:\d\d:\d\d loss \d+\.\d+ MAE \S+ RMSE \S+ \([\d,]+\)/);
    expect(summary).toMatch(/ {2}last +\d\d:\d\d:\d\d loss/);
    expect(summary).toMatch(/exported model +\S+model\.json/);
    // Each process's peak memory, and of it the pages of the libraries it maps (Linux), which processes share.
    const memory = /peak memory \(RSS\) +(.*)/.exec(summary)?.[1] ?? '';
    for (const [, name, peak, shared] of memory.matchAll(/(ps|worker-1) (\d+) MB \((\d+) MB shared library pages\)/g)) {
      expect(Number(shared), name).toBeGreaterThan(20);
      expect(Number(shared), name).toBeLessThan(Number(peak));
    }
    expect([...memory.matchAll(/(ps|worker-1) \d+ MB \(\d+ MB shared library pages\)/g)].map((m) => m[1]).sort(), memory).toEqual(['ps', 'worker-1']);
    expect(existsSync(join(out, 'model.json')) && existsSync(join(out, 'weights.bin'))).toBe(true);
  }, 120_000);

  it('--mqtt: devices publish over MQTT, the ingest bridge writes every message to Kafka (or its dead letters), and training takes them', async () => {
    const mqtt = await startMqttBroker();
    try {
      const out = join(mkdtempSync(join(tmpdir(), 'streamgrad-demo-test-')), 'model');
      const demo = spawnTs(cliPath, ['demo', '--mqtt', '--duration', '25', '--rate', '1500', '--devices', '50', '--workers', '1', '--out', out], { env: { KAFKA_BROKERS: testBrokers().join(','), MQTT_URL: mqtt.url }, quiet: true });
      const code = await demo.exited;
      const output = demo.errors.join('\n');
      expect(code, output).toBe(0);
      expect(output).toContain(`devices → MQTT ${mqtt.url} → streamgrad ingest →`);
      expect(output).toMatch(/dashboard at http:\/\/127\.0\.0\.1:\d+\//);
      const summary = demo.lines.join('\n');
      const [, simulated, messages, samples, dead] = /samples simulated +([\d,]+), over MQTT: ([\d,]+) messages in, ([\d,]+) samples to Kafka, ([\d,]+) dead-lettered by the bridge/.exec(summary)!.map((v) => Number(v.replace(/,/g, '')));
      const applied = Number(/samples applied +([\d,]+)/.exec(summary)![1]!.replace(/,/g, ''));
      expect(messages).toBe(simulated);
      expect(samples! + dead!).toBe(messages);
      expect(dead).toBeGreaterThan(0);
      expect(applied).toBeGreaterThan(0);
      expect(applied).toBeLessThanOrEqual(samples!);
      // The dropouts the bridge dead-lettered count in the summary's dead letters.
      const [, deadTotal, byBridge] = /dead letters \(sensor dropouts\) +([\d,]+) \(([\d,]+) by the MQTT bridge, [\d,]+ by the workers\)/.exec(summary)!.map((v) => Number(v.replace(/,/g, '')));
      expect(byBridge).toBe(dead);
      expect(deadTotal).toBeGreaterThanOrEqual(dead!);
    } finally {
      await mqtt.stop();
    }
  }, 150_000);
});
