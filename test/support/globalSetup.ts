import type { TestProject } from 'vitest/node';
import { acquireTestBroker } from './broker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Comma-separated bootstrap list of the broker this test run uses. */
    kafkaBrokers: string;
  }
}

/** Starts (or finds) one Kafka broker for the whole run and hands its address to every test file. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const broker = await acquireTestBroker();
  console.error(`[streamgrad tests] Kafka at ${broker.brokers} (from ${broker.source})`);
  project.provide('kafkaBrokers', broker.brokers);
  return () => broker.stop();
}
