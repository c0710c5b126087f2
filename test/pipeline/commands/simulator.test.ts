import { describe, expect } from 'vitest';
import { simulatedFeatureCount, startSimulator } from '../../../pipeline/commands/simulator.js';
import { SampleDecoder } from '../../../schemas/sampleDecoder.js';
import { kafkaTest } from '../../support/kafka.js';

describe('simulator', () => {
  for (const input of [{ framing: 'raw' as const }, { framing: 'confluent' as const, schemaId: 7 }]) {
    kafkaTest(`writes samples in the input's framing (${input.framing}), so the workers of that experiment can decode them`, async ({ kafka }) => {
      const topic = await kafka.createTopic({ partitions: 2 });
      const simulator = startSimulator(kafka.kafka, topic, { devices: 5, ratePerSecond: 20_000, count: 500, seed: 3, dropoutRate: 0 }, input);
      await simulator.done;
      expect(simulator.sent()).toBe(500);
      const values = await kafka.readCommittedValues(topic);
      const decoder = new SampleDecoder({ featureCount: simulatedFeatureCount, ...input });
      const bad = values.map((value) => decoder.decode(value)).filter((result) => !result.ok);
      expect(values).toHaveLength(500);
      expect(bad).toEqual([]);
      if (input.framing === 'confluent') expect(values.every((value) => value[0] === 0 && value.readInt32BE(1) === 7)).toBe(true);
    });
  }
});
