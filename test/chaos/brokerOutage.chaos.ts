import { describe, it } from 'vitest';
import { ownBrokerPorts } from '../support/broker.js';
import { brokerOutage } from '../support/brokerOutage.js';
import { outageScenario } from '../support/processes.js';

// npm run chaos sets the size and the outage.
const records = Number(process.env.STREAMGRAD_CHAOS_RECORDS ?? 100_000);
const outageMs = Number(process.env.STREAMGRAD_TEST_OUTAGE_MS ?? 60_000);
const timeoutMs = Math.max(900_000, records * 10);

describe('broker outages', () => {
  it(`${outageScenario(1, outageMs / 1000)}: a server and two workers ride it out; nothing lost, nothing twice, nobody exits`, async () => {
    console.error(`[single broker]\n${await brokerOutage({ nodes: 1, port: ownBrokerPorts.chaosOutage, records, outageMs })}`);
  }, timeoutMs);

  it(`${outageScenario(3, outageMs / 1000)}: training goes on meanwhile; nothing lost, nothing twice, nobody exits`, async () => {
    console.error(`[3 brokers]\n${await brokerOutage({ nodes: 3, port: ownBrokerPorts.chaosOutageCluster, records, outageMs })}`);
  }, timeoutMs);
});
