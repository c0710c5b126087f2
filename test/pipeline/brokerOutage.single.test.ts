import { describe, it } from 'vitest';
import { ownBrokerPorts } from '../support/broker.js';
import { brokerOutage } from '../support/brokerOutage.js';

// Each scenario has a broker of its own: it kills a broker, which the shared test broker must never lose. npm run
// chaos runs them longer and repeated (test/chaos/brokerOutage.chaos.ts). The 3-broker one is brokerOutage.cluster.test.ts,
// a file of its own so that the two run side by side.
describe('broker outage, single broker', () => {
  // 65 s: longer than the workers' transaction timeout (60 s), so the coordinator aborts their open transactions
  // while the broker is away, and they must commit again with fresh producers.
  it('kill -9 of the single broker, 65 s down: a server and two workers ride it out; nothing lost, nothing twice, nobody exits', async () => {
    console.error(`[single broker]\n${await brokerOutage({ nodes: 1, port: ownBrokerPorts.outage, records: 20_000, outageMs: 65_000 , budgetMs: 540_000 })}`);
  }, 600_000);
});
