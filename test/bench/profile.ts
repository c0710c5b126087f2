import { randomUUID } from 'node:crypto';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { acquireTestBroker } from '../support/broker.js';
import { fillTopic, softmaxBenchSample } from './consumeRate.js';
import { measurePipelineRate, softmaxBenchModel } from './pipelineRate.js';
import { describeProfiles } from './profileSummary.js';

/**
 * `npm run bench:profile [-- <workers> [<samples> [softmax]]]`: one end-to-end run (default 1 worker, 200,000 samples
 * of the bench model; `softmax`: of the 64-256-256-10 softmax model) under
 * `node --cpu-prof`, which `streamgrad run` passes on to its children: every process
 * writes a CPU profile to bench-results/profiles/ (open one in Chrome's DevTools); the bench prints where each
 * worker's CPU went, by the code it was in.
 */
const started = Date.now();
const workers = Number(process.argv[2] ?? 1);
const broker = await acquireTestBroker();
try {
  const brokers = broker.brokers.split(',');
  const kafka = createKafka({ brokers }, 'streamgrad-profile');
  const topic = `profile-${randomUUID().slice(0, 8)}`;
  const total = Number(process.argv[3] ?? 200_000);
  const softmax = process.argv[4] === 'softmax';
  await fillTopic(kafka, topic, total, softmax ? softmaxBenchSample : undefined);
  const { rate, peakRssMb, coresUsed } = await measurePipelineRate(kafka, brokers, topic, total, workers, { brokerPid: broker.pid, ...(softmax ? { model: softmaxBenchModel } : {}) });
  console.log(`${Math.round(rate)} samples/s with ${workers} worker(s); peak RSS ${JSON.stringify(peakRssMb)}; cores ${JSON.stringify(coresUsed)}; profiles in bench-results/profiles/`);
  // The profiles are written as the processes exit: the workers' are there once the run is over.
  for (const line of describeProfiles('bench-results/profiles', started, total)) console.log(line);
} finally {
  await broker.stop();
}
