import { describe, it } from 'vitest';
import { ownBrokerPorts } from '../support/broker.js';
import { brokerOutage } from '../support/brokerOutage.js';

// A cluster of its own: it kills a broker, which the shared test broker must never lose. npm run chaos runs it longer
// and repeated (test/chaos/brokerOutage.chaos.ts); the single-broker outage is brokerOutage.single.test.ts.
describe('broker outage, 3-broker cluster', () => {
  it('kill -9 of one broker of three, 20 s down: training goes on meanwhile; nothing lost, nothing twice, nobody exits', async () => {
    console.error(`[3 brokers]\n${await brokerOutage({ nodes: 3, port: ownBrokerPorts.outageCluster, records: 20_000, outageMs: 20_000 , budgetMs: 540_000 })}`);
  }, 600_000);
});
