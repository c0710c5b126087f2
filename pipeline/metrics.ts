import { Counter, Histogram, Registry } from 'prom-client';

/** A parameter server's Prometheus metrics, in a registry of its own (served over HTTP by the CLI's metrics option). */
export interface ServerMetrics {
  readonly registry: Registry;
  /** ms from a sample's append to Kafka until the commit of the first snapshot that includes its gradient (per update, its oldest sample). */
  readonly freshness: Histogram<'shard'>;
  /** Server version minus an update's base version, when the update arrives. */
  readonly staleness: Histogram<'shard'>;
  readonly updates: Counter<'shard' | 'outcome'>;
}

export function createServerMetrics(namespace: string): ServerMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ namespace });
  return {
    registry,
    freshness: new Histogram({
      name: 'streamgrad_freshness_ms',
      help: 'Time from a sample append to the commit of the first snapshot that includes its gradient, in ms',
      labelNames: ['shard'],
      buckets: [25, 50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600],
      registers: [registry],
    }),
    staleness: new Histogram({
      name: 'streamgrad_update_staleness',
      help: 'Server version minus the base version of an arriving update',
      labelNames: ['shard'],
      buckets: [0, 1, 2, 4, 8, 16, 32, 64, 128],
      registers: [registry],
    }),
    updates: new Counter({ name: 'streamgrad_updates_total', help: 'Updates taken in, by outcome (applied, dropped, counted)', labelNames: ['shard', 'outcome'], registers: [registry] }),
  };
}
