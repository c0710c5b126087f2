import { describe, expect, it } from 'vitest';
import { spawnTs } from './support/childProcess.js';
import { testBrokers } from './support/kafka.js';

// The README's operator examples are these files: each runs as a user would run it, and prints what the README says.
const example = (name: string) => new URL(`../examples/operators/${name}.ts`, import.meta.url);

describe('operator examples', () => {
  it('eventTimeWindows: per device, one mean per 10 s of event time, out-of-order readings in their windows, the one too late counted', async () => {
    const child = spawnTs(example('eventTimeWindows'), []);
    expect(await child.exited, child.errors.join('\n')).toBe(0);
    expect([...child.lines].sort()).toEqual([
      'boiler 00:00:00: 9 readings, mean 20.47 °C',
      'boiler 00:00:10: 10 readings, mean 21.45 °C',
      'boiler 00:00:20: 10 readings, mean 22.45 °C',
      'cellar 00:00:00: 10 readings, mean 30.45 °C',
      'cellar 00:00:10: 10 readings, mean 31.45 °C',
      'cellar 00:00:20: 10 readings, mean 32.45 °C',
      'too late for any window: 1',
    ]);
  });

  it('toKafka: every output acknowledged once, in order, and written', async () => {
    const child = spawnTs(example('toKafka'), [], { env: { KAFKA_BROKERS: testBrokers().join(',') } });
    expect(await child.exited, child.errors.join('\n')).toBe(0);
    expect(child.lines).toEqual([expect.stringMatching(/^1000 outputs acknowledged, in order; 1000 records in example-alerts-\d+$/)]);
  });
});
