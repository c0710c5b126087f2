import { describe, expect, it } from 'vitest';
import { createKafka } from '../../../pipeline/common/kafkaClient.js';
import { testBrokers } from '../../support/kafka.js';
import { createLogger, humanLine, logFnOf, logSettings, roleLogger } from '../../../pipeline/common/log.js';

/** A logger that writes into `lines`, with `format`. */
function capture(format: 'human' | 'json', level: 'info' | 'debug' | 'trace' = 'info') {
  const lines: string[] = [];
  return { lines, logger: createLogger({ format, level }, (line) => lines.push(line.trimEnd())) };
}

describe('logs', () => {
  it('writes JSON lines with who logged (namespace, role, worker, shard), or human lines with the same prefix as ever', () => {
    const json = capture('json');
    logFnOf(roleLogger({ role: 'ps', server: 'vm-1', namespace: 'iot' }, json.logger))('shard 1: starting from the initial weights', { shard: 1 });
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ level: 30, role: 'ps', server: 'vm-1', namespace: 'iot', shard: 1, msg: 'shard 1: starting from the initial weights' });

    const human = capture('human');
    roleLogger({ role: 'worker', worker: 'w1', namespace: 'iot' }, human.logger).info({ samples: 3 }, '3 samples trained');
    roleLogger({ role: 'run' }, human.logger).error('a child exited');
    expect(human.lines).toEqual(['[worker w1] 3 samples trained', '[run] ERROR: a child exited']);
  });

  it('never writes a field that holds a secret', () => {
    const json = capture('json');
    json.logger.info({ sasl: { username: 'w', password: 'hunter2-hunter2' }, password: 'p4ss-p4ss', secret: 's3cr3t' }, 'connecting');
    expect(json.lines[0]).not.toMatch(/hunter2|p4ss|s3cr3t/);
    expect(JSON.parse(json.lines[0]!)).toMatchObject({ sasl: { username: 'w', password: '[redacted]' }, password: '[redacted]' });
  });

  it("routes kafkajs' own entries through the logger, at the chosen level", async () => {
    const run = async (level: 'info' | 'trace') => {
      const { lines, logger } = capture('json', level);
      const kafka = createKafka({ brokers: testBrokers() }, 'log-test', roleLogger({ role: 'worker', worker: 'w9', namespace: 'n' }, logger));
      const admin = kafka.admin();
      await admin.connect();
      await admin.listTopics();
      await admin.disconnect();
      return lines.map((line) => JSON.parse(line) as { level: number; logger?: string; worker?: string; component?: string });
    };
    // At info, a healthy connection says nothing; at trace, kafkajs' debug entries come through, with who logged.
    expect(await run('info')).toEqual([]);
    const atTrace = await run('trace');
    expect(atTrace.length).toBeGreaterThan(0);
    expect(atTrace.every((entry) => entry.logger === 'kafkajs' && entry.worker === 'w9' && typeof entry.component === 'string')).toBe(true);
    expect(atTrace.some((entry) => entry.level === 10)).toBe(true);
  });

  it("keeps kafkajs' retried noise out: a new topic's metadata not on the broker yet, while other errors come through", () => {
    const { lines, logger } = capture('json');
    const kafkajs = createKafka({ brokers: testBrokers() }, 'log-test', logger).logger();
    kafkajs.error('Response Metadata(key: 3, version: 6)', { error: 'This server does not host this topic-partition' });
    expect(lines).toEqual([]);
    kafkajs.error('Response Produce(key: 0, version: 7)', { error: 'This server does not host this topic-partition' });
    kafkajs.error('Response Metadata(key: 3, version: 6)', { error: 'Not authorized to access topics: [Topic authorization failed]' });
    expect(lines.map((line) => (JSON.parse(line) as { error: string }).error)).toEqual(['This server does not host this topic-partition', 'Not authorized to access topics: [Topic authorization failed]']);
  });

  it('names a bad setting by its variable', () => {
    expect(logSettings({})).toEqual({ format: 'human', level: 'info' });
    expect(logSettings({ STREAMGRAD_LOG_FORMAT: 'JSON', STREAMGRAD_LOG_LEVEL: 'debug' })).toEqual({ format: 'json', level: 'debug' });
    expect(() => logSettings({ STREAMGRAD_LOG_FORMAT: 'xml' })).toThrow(/STREAMGRAD_LOG_FORMAT: 'xml' is not one of human, json/);
    expect(() => logSettings({ STREAMGRAD_LOG_LEVEL: 'loud' })).toThrow(/STREAMGRAD_LOG_LEVEL: 'loud'/);
    expect(humanLine(JSON.stringify({ level: 40, role: 'worker', worker: 'w1', logger: 'kafkajs', component: 'Connection', msg: 'retrying', broker: 'b:1' }))).toBe('[worker w1] WARN: kafkajs Connection: retrying {"broker":"b:1"}');
  });
});
