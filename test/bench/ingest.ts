import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { acquireTestBroker } from '../support/broker.js';
import { measureIngestRate } from './ingestRate.js';

/** `npm run bench:ingest [-- --quick]`: the MQTT ingest bridge's rate alone (it is also part of `npm run bench`). */
const quick = process.argv.includes('--quick');
const log = (line: string) => console.error(`[bench] ${line}`);
const broker = await acquireTestBroker();
try {
  const brokers = broker.brokers.split(',');
  const rates = await measureIngestRate(createKafka({ brokers }, 'streamgrad-bench'), brokers, { quick, log });
  console.log(`ingestRate ${Math.round(rates.ingestRate)} messages/s (goal ≥ 50,000: ${rates.ingestRate >= 50_000 ? 'met' : 'missed'}); no-op MQTT drain ${Math.round(rates.mqttDrainRate)} messages/s; ingestRate / mqttDrainRate ${(rates.ingestRate / rates.mqttDrainRate).toFixed(2)} (${rates.ingestMessages} messages, runs ${rates.ingestRuns.ingest.map(Math.round).join(', ')})`);
} finally {
  await broker.stop();
}
