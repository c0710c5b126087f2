import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { createKafka } from '../../pipeline/common/kafkaClient.js';
import { acquireTestBroker } from '../support/broker.js';
import { benchPartitions, benchSample, fillTopic, measureConsumeRates, softmaxBenchSample } from './consumeRate.js';
import { measureDecodeRate } from './decodeRate.js';
import { measureIngestRate } from './ingestRate.js';
import { measureQualityOnRealisticBroker, type Quality } from './quality.js';
import { deleteTopics, measureFreshness, measurePipelineRate, measureUpdateBytes, pipelineSettings, softmaxBenchModel, type PipelineRate } from './pipelineRate.js';
import { measurePeerRate } from './peerRate.js';
import { measurePsApplyRate } from './serverRates.js';
import { median } from './stats.js';
import { measureStepRate } from './stepRate.js';
import { selectBackend } from '../../pipeline/common/backend.js';

/**
 * `npm run bench [-- --quick]`: every rate of streamgrad against its own limits,
 * in one run against one broker (KAFKA_BROKERS, else the infra/ broker, started
 * and stopped here). Prints a Markdown table of medians and the goal ratios, and
 * writes bench-results/latest.json.
 */
const quick = process.argv.includes('--quick');
const started = new Date();
const total = quick ? 200_000 : 1_000_000;
const runs = quick ? 1 : 3;
const log = (line: string) => console.error(`[bench] ${line}`);

log(`${quick ? 'quick' : 'full'} run: ${total.toLocaleString('en-US')} samples, ${runs} run(s) of each end-to-end rate`);
log('decode + validation, one core …');
const decode = measureDecodeRate({ quick });
log('gradient steps, 16-64-64-1 MLP, batch 256, default backend …');
const step = await measureStepRate({ quick });
// Both backends, both models, in this run: native TensorFlow over wasm.
const stepRates: Record<string, Record<string, number>> = {};
for (const model of ['mlp16', 'softmax64'] as const) {
  // The bench model on the default backend is `step`, measured above.
  stepRates[model] = model === 'mlp16' ? { [step.backend]: step.stepRate } : {};
  for (const backend of [...new Set([step.backend, 'wasm' as const])]) stepRates[model][backend] ??= (await measureStepRate({ quick, backend, model })).stepRate;
  log(`  steps of ${model}: ${Object.entries(stepRates[model]).map(([b, rate]) => `${b} ${Math.round(rate)}`).join(', ')} samples/s`);
}
await selectBackend();
log('updates applied by one server shard (decode + Adam), no Kafka …');
const { psApplyRate } = measurePsApplyRate({ quick });
log('update bytes per sample (FP32, FP16, INT8) …');
const updateBytesPerSample = await measureUpdateBytes();

/**
 * The same comparison on the larger model, 64-256-256-10 softmax (where native TensorFlow's kernels matter more):
 * pipelineRate1 and the peer, with each model's holdout cross-entropy, on a topic of its own.
 */
async function measureSoftmax(kafka: ReturnType<typeof createKafka>, brokers: string[], brokerPid: number | undefined): Promise<Record<string, unknown>> {
  const count = quick ? 50_000 : 200_000;
  const topic = `bench-softmax-${randomUUID().slice(0, 8)}`;
  log(`softmax model: filling ${topic} with ${count.toLocaleString('en-US')} samples of 64 features and 10 classes …`);
  await fillTopic(kafka, topic, count, softmaxBenchSample);
  const holdout = Array.from({ length: 20_000 }, (_, k) => softmaxBenchSample(count + k));
  const rate: number[] = [];
  const loss: number[] = [];
  const peerRate: number[] = [];
  const peerLoss: number[] = [];
  for (let run = 0; run < runs; run++) {
    const pipeline = await measurePipelineRate(kafka, brokers, topic, count, 1, { brokerPid, holdout, model: softmaxBenchModel });
    rate.push(pipeline.rate);
    loss.push(pipeline.holdoutLoss!);
    const peer = await measurePeerRate(brokers, topic, count, holdout, log, 'softmax64');
    peerRate.push(peer.rate);
    peerLoss.push(peer.holdoutLoss);
    log(`  softmax, run ${run + 1}/${runs}: streamgrad ${Math.round(pipeline.rate)} samples/s (server ${Math.round(pipeline.serverRate)}, workers ${Math.round(pipeline.workersRate)}), holdout loss ${pipeline.holdoutLoss!.toFixed(4)}; peer ${Math.round(peer.rate)} samples/s, holdout loss ${peer.holdoutLoss.toFixed(4)}`);
  }
  await deleteTopics(kafka, [topic]);
  return { softmaxPipelineRate1: median(rate), softmaxPipelineHoldoutLoss: median(loss), softmaxPeerRate: median(peerRate), softmaxPeerHoldoutLoss: median(peerLoss), softmaxRuns: { rate, loss, peerRate, peerLoss } };
}

const broker = await acquireTestBroker();
const brokers = broker.brokers.split(',');
const kafka = createKafka({ brokers }, 'streamgrad-bench');
const results: Record<string, unknown> = {};
let quality: Quality | undefined;
const brokerPid = broker.pid;
/** A one-worker run's worker memory, as the log says it: its peak RSS and the file pages (libraries) it held at its end. */
const workerMemory = (run: PipelineRate) => `${Math.round(run.peakRssMb['worker-1'] ?? Number.NaN)} MB (${Math.round(run.fileBackedMb['worker-1'] ?? Number.NaN)} MB of file pages at its end)`;
try {
  const topic = `bench-${randomUUID().slice(0, 8)}`;
  log(`filling ${topic} with ${total.toLocaleString('en-US')} Avro samples over ${benchPartitions} partitions (broker ${broker.brokers}, ${broker.source}) …`);
  await fillTopic(kafka, topic, total);
  log('raw kafkajs consume vs fromKafka → decode, alternating …');
  Object.assign(results, await measureConsumeRates(kafka, topic, total, quick ? 2 : 3));
  // The samples after the topic's: the holdout of streamgrad's model and of the Python peer's.
  const holdout = Array.from({ length: 20_000 }, (_, k) => benchSample(total + k));
  const one: number[] = [];
  const oneLoss: number[] = [];
  const two: number[] = [];
  const rss: number[] = [];
  const fileBacked: number[] = [];
  const cores: Array<Readonly<Record<string, number>>> = [];
  for (let run = 0; run < runs; run++) {
    log(`end to end, 1 server + 1 worker process (run ${run + 1}/${runs}) …`);
    const first = await measurePipelineRate(kafka, brokers, topic, total, 1, { brokerPid, holdout });
    cores.push(first.coresUsed);
    one.push(first.rate);
    oneLoss.push(first.holdoutLoss!);
    rss.push(first.peakRssMb['worker-1'] ?? Number.NaN);
    fileBacked.push(first.fileBackedMb['worker-1'] ?? Number.NaN);
    log(`  cores used: ${Object.entries(first.coresUsed).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
    log(`  ${Math.round(first.rate)} samples/s (server ${Math.round(first.serverRate)}, workers ${Math.round(first.workersRate)}), holdout loss ${first.holdoutLoss!.toExponential(3)}; worker peak RSS ${workerMemory(first)}, server ${Math.round(first.peakRssMb.ps ?? Number.NaN)} MB`);
    log(`end to end, 1 server + 2 worker processes (run ${run + 1}/${runs}) …`);
    const second = await measurePipelineRate(kafka, brokers, topic, total, 2, { brokerPid });
    two.push(second.rate);
    cores.push(second.coresUsed);
    log(`  ${Math.round(second.rate)} samples/s (server ${Math.round(second.serverRate)}, workers ${Math.round(second.workersRate)})`);
  }
  Object.assign(results, { pipelineRate1: median(one), pipelineHoldoutLoss: median(oneLoss), pipelineRate2: median(two), workerRssPeakMb: Math.max(...rss), workerFileBackedMb: fileBacked[rss.indexOf(Math.max(...rss))], pipelineRuns: { one, oneLoss, two }, coresUsed: { pipelineRate1: cores[cores.length - 2], pipelineRate2: cores[cores.length - 1] } });
  // libtensorflow alone takes ~140 MB of a worker's memory (BENCHMARKS.md): one run on wasm shows the rest.
  log('end to end on wasm, 1 server + 1 worker process …');
  const wasm = await measurePipelineRate(kafka, brokers, topic, total, 1, { brokerPid, holdout, backend: 'wasm' });
  log(`  ${Math.round(wasm.rate)} samples/s, holdout loss ${wasm.holdoutLoss!.toExponential(3)}; worker peak RSS ${workerMemory(wasm)}`);
  Object.assign(results, { wasmPipelineRate1: wasm.rate, wasmWorkerRssPeakMb: wasm.peakRssMb['worker-1'] ?? Number.NaN });
  const peer: number[] = [];
  const peerLoss: number[] = [];
  for (let run = 0; run < runs; run++) {
    log(`the Python peer: confluent-kafka + fastavro + Keras train_on_batch, same topic, model, batch and optimizer (run ${run + 1}/${runs}) …`);
    const measured = await measurePeerRate(brokers, topic, total, holdout, log);
    peer.push(measured.rate);
    peerLoss.push(measured.holdoutLoss);
    log(`  ${Math.round(measured.rate)} samples/s (${Math.round(measured.rateFromStart)} from its start), holdout loss ${measured.holdoutLoss.toExponential(3)}; TensorFlow ${measured.tensorflow}, ${measured.intraOpThreads || 'default'} intra-op threads`);
  }
  Object.assign(results, { peerRate: median(peer), peerHoldoutLoss: median(peerLoss), peerRuns: { rate: peer, loss: peerLoss } });
  Object.assign(results, await measureSoftmax(kafka, brokers, brokerPid));
  await deleteTopics(kafka, [topic]);
  const half = Math.round(median(one) / 2);
  log(`freshness at half of pipelineRate1 (${half} samples/s), simulator + 1 server + 1 worker process …`);
  Object.assign(results, await measureFreshness(kafka, brokers, half, quick ? 20 : 45));
  quality = await measureQualityOnRealisticBroker({ quick, log });
  log('MQTT ingest: a backlog of QoS 1 messages in Mosquitto through streamgrad ingest mqtt into Kafka, and drained by a no-op subscriber …');
  Object.assign(results, await measureIngestRate(kafka, brokers, { quick, log }));
} finally {
  await broker.stop();
}

const rawConsumeRate = Number(results.rawConsumeRate);
const { stepRate, backend } = step;
const pipelineRate1 = Number(results.pipelineRate1);
const pipelineRate2 = Number(results.pipelineRate2);
const peerRate = Number(results.peerRate);
const ratios = {
  pipeline1OverPeer: pipelineRate1 / peerRate,
  pipelineLossOverPeerLoss: Number(results.pipelineHoldoutLoss) / Number(results.peerHoldoutLoss),
  softmaxPipeline1OverPeer: Number(results.softmaxPipelineRate1) / Number(results.softmaxPeerRate),
  softmaxPipeline1OverStep: Number(results.softmaxPipelineRate1) / stepRates.softmax64![step.backend]!,
  pipeline1OverLimit: pipelineRate1 / Math.min(rawConsumeRate, stepRate),
  pipeline2OverPipeline1: pipelineRate2 / pipelineRate1,
  int8OverFp32Bytes: updateBytesPerSample.int8 / updateBytesPerSample.fp32,
  sourceDecodeOverRaw: Number(results.sourceDecodeRatio),
  ingestOverMqttDrain: Number(results.ingestRate) / Number(results.mqttDrainRate),
};
const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}-${process.arch}` };
const report = {
  timestamp: started.toISOString(),
  command: quick ? 'npm run bench -- --quick' : 'npm run bench',
  machine,
  setup: `one machine: the Kafka broker (${broker.source}), the bench process (producer, status tail), the parameter server and the worker processes share its ${machine.cores} cores; 16-64-64-1 MLP, 2 shards, batch 256, FP32, ${JSON.stringify(pipelineSettings)}`,
  rawConsumeRate,
  decodeRate: decode.decodeRate,
  columnarDecodeRate: decode.columnarDecodeRate,
  stepRate,
  pipelineRate1,
  pipelineRate2,
  peerRate,
  pipelineHoldoutLoss: results.pipelineHoldoutLoss,
  peerHoldoutLoss: results.peerHoldoutLoss,
  softmaxPipelineRate1: results.softmaxPipelineRate1,
  softmaxPeerRate: results.softmaxPeerRate,
  softmaxPipelineHoldoutLoss: results.softmaxPipelineHoldoutLoss,
  softmaxPeerHoldoutLoss: results.softmaxPeerHoldoutLoss,
  psApplyRate,
  ingestRate: results.ingestRate,
  mqttDrainRate: results.mqttDrainRate,
  freshnessP50Ms: results.freshnessP50Ms,
  freshnessP99Ms: results.freshnessP99Ms,
  workerRssPeakMb: results.workerRssPeakMb,
  workerFileBackedMb: results.workerFileBackedMb,
  wasmWorkerRssPeakMb: results.wasmWorkerRssPeakMb,
  wasmPipelineRate1: results.wasmPipelineRate1,
  updateBytesPerSample,
  qualityRatio1: quality?.qualityRatio1,
  qualityRatio2: quality?.qualityRatio2,
  interleavedQualityRatio1: quality?.interleavedQualityRatio1,
  interleavedQualityRatio2: quality?.interleavedQualityRatio2,
  stalenessP99: quality?.stalenessP99,
  skewedQualityRatio1: quality?.skewedQualityRatio1,
  skewedUnnormalizedRatio: quality?.skewedUnnormalizedRatio,
  backend,
  ratios,
  stepRates,
  details: { samples: total, runs, ...results, stepRateRuns: step.stepRateRuns, decodeRateRuns: decode, quality },
};
mkdirSync('bench-results', { recursive: true });
writeFileSync('bench-results/latest.json', `${JSON.stringify(report, null, 2)}\n`);

const coresLine = (all: unknown, key: string) =>
  Object.entries((all as Record<string, Record<string, number>> | undefined)?.[key] ?? {})
    .map(([name, used]) => `${name} ${used.toFixed(2)}`)
    .join(', ');
const n = (value: unknown) => Math.round(Number(value)).toLocaleString('en-US');
const r = (value: number) => value.toFixed(2);
const met = (ok: boolean) => (ok ? 'met' : 'missed');
const table = `
| key | value | goal |
| --- | ---: | --- |
| rawConsumeRate (records/s, no-op kafkajs eachBatch) | ${n(rawConsumeRate)} | |
| decodeRate (samples/s, decode + validation into objects, 1 core) | ${n(decode.decodeRate)} | |
| columnarDecodeRate (samples/s, the same into batch columns, as a worker lane decodes) | ${n(decode.columnarDecodeRate)} | |
| stepRate (samples/s, 16-64-64-1 MLP, batch 256, ${backend}) | ${n(stepRate)} | |
| pipelineRate1 (samples/s, 1 server + 1 worker process) | ${n(pipelineRate1)} | |
| pipelineRate2 (samples/s, 1 server + 2 worker processes, ${benchPartitions} partitions) | ${n(pipelineRate2)} | |
| peerRate (samples/s, Python: confluent-kafka + fastavro + Keras train_on_batch, same topic and model) | ${n(peerRate)} | |
| pipelineRate1 / peerRate | ${r(ratios.pipeline1OverPeer)} | ≥ 1.2: ${met(ratios.pipeline1OverPeer >= 1.2)} |
| holdout loss, pipelineRate1's model / the peer's (${Number(results.pipelineHoldoutLoss).toExponential(2)} / ${Number(results.peerHoldoutLoss).toExponential(2)}) | ${r(ratios.pipelineLossOverPeerLoss)} | ≤ 1: ${met(ratios.pipelineLossOverPeerLoss <= 1)} |
| softmaxPipelineRate1 / softmaxPeerRate (64-256-256-10 softmax: ${n(results.softmaxPipelineRate1)} / ${n(results.softmaxPeerRate)} samples/s) | ${r(ratios.softmaxPipeline1OverPeer)} | ≥ 1.2: ${met(ratios.softmaxPipeline1OverPeer >= 1.2)} |
| softmax holdout cross-entropy, streamgrad / the peer (${Number(results.softmaxPipelineHoldoutLoss).toFixed(4)} / ${Number(results.softmaxPeerHoldoutLoss).toFixed(4)}) | ${r(Number(results.softmaxPipelineHoldoutLoss) / Number(results.softmaxPeerHoldoutLoss))} | ≤ 1: ${met(Number(results.softmaxPipelineHoldoutLoss) <= Number(results.softmaxPeerHoldoutLoss))} |
| softmaxPipelineRate1 / its stepRate | ${r(ratios.softmaxPipeline1OverStep)} | ≥ 0.8: ${met(ratios.softmaxPipeline1OverStep >= 0.8)} |
| psApplyRate (updates/s, one shard, Adam) | ${n(psApplyRate)} | |
| ingestRate (MQTT QoS 1 messages/s through streamgrad ingest mqtt into Kafka; Mosquitto, the bridge and Kafka on this machine) | ${n(results.ingestRate)} | ≥ 50,000: ${met(Number(results.ingestRate) >= 50_000)} |
| ingestRate / mqttDrainRate (the same backlog drained by a no-op MQTT.js subscriber: ${n(results.mqttDrainRate)}) | ${r(ratios.ingestOverMqttDrain)} | |
| freshnessP50Ms / freshnessP99Ms (at ${n(results.freshnessRate)} samples/s) | ${n(results.freshnessP50Ms)} / ${n(results.freshnessP99Ms)} | p99 ≤ 1,000: ${met(Number(results.freshnessP99Ms) <= 1_000)} |
| workerRssPeakMb (${backend}; of that run's worker at its end, ${n(results.workerFileBackedMb)} MB were file pages: the libraries' code, shared between processes) | ${n(results.workerRssPeakMb)} | ≤ 300: ${met(Number(results.workerRssPeakMb) <= 300)} |
| wasmWorkerRssPeakMb (one run of pipelineRate1 on wasm: ${n(results.wasmPipelineRate1)} samples/s) | ${n(results.wasmWorkerRssPeakMb)} | ≤ 300: ${met(Number(results.wasmWorkerRssPeakMb) <= 300)} |
| updateBytesPerSample fp32 / fp16 / int8 | ${r(updateBytesPerSample.fp32)} / ${r(updateBytesPerSample.fp16)} / ${r(updateBytesPerSample.int8)} | int8 ≤ 0.3 × fp32: ${met(ratios.int8OverFp32Bytes <= 0.3)} (${r(ratios.int8OverFp32Bytes)}) |
| qualityRatio1 / qualityRatio2 (holdout loss of run with 1 / 2 workers over replay --sync; the two-worker runs: ${quality!.holdoutLossRuns.workers2.map((loss) => r(loss / quality!.holdoutLoss.sequential)).join(', ')}) | ${r(quality!.qualityRatio1)} / ${r(quality!.qualityRatio2)} | ≤ 1.25 each: ${met(quality!.qualityRatio1 <= 1.25)} / ${met(quality!.qualityRatio2 <= 1.25)} |
| interleavedQualityRatio1 / 2 (the same over replay --sync --interleave: a sequential learner on the order parallel workers read) | ${r(quality!.interleavedQualityRatio1)} / ${r(quality!.interleavedQualityRatio2)} | ≤ 1.25 each: ${met(quality!.interleavedQualityRatio1 <= 1.25)} / ${met(quality!.interleavedQualityRatio2 <= 1.25)} |
| stalenessP99 (versions, 2 workers; with 1 worker) | ${n(quality!.stalenessP99)} (${n(quality!.staleness.workers1.p99)}) | |
| skewedQualityRatio1 (features scaled 0.01 to 1,000, normalize on: run with 1 worker over replay --sync) | ${r(quality!.skewedQualityRatio1)} | ≤ 1.25: ${met(quality!.skewedQualityRatio1 <= 1.25)} |
| skewedUnnormalizedRatio (skewed, replay --sync without normalize over with it) | ${r(quality!.skewedUnnormalizedRatio)} | |
| backend | ${backend} | |
| stepRates (samples/s, batch 256): 16-64-64-1 MLP; 64-256-256-10 softmax | ${Object.entries(stepRates.mlp16!).map(([b, v]) => `${b} ${n(v)}`).join(', ')}; ${Object.entries(stepRates.softmax64!).map(([b, v]) => `${b} ${n(v)}`).join(', ')} | |
| pipelineRate1 / min(rawConsumeRate, stepRate) | ${r(ratios.pipeline1OverLimit)} | ≥ 0.8: ${met(ratios.pipeline1OverLimit >= 0.8)} |
| pipelineRate2 / pipelineRate1 | ${r(ratios.pipeline2OverPipeline1)} | ≥ 1.6: ${met(ratios.pipeline2OverPipeline1 >= 1.6)} |
| fromKafka → decode / rawConsumeRate | ${r(ratios.sourceDecodeOverRaw)} | |

Cores used during the last runs (CPU seconds / wall seconds): pipelineRate1: ${coresLine(results.coresUsed, 'pipelineRate1')}; pipelineRate2: ${coresLine(results.coresUsed, 'pipelineRate2')}.

${report.command}, ${report.timestamp}: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGb} GB, Node ${machine.node}. ${report.setup}. Medians of ${runs} run(s) for the end-to-end rates.`;
console.log(`${table}\nJSON: bench-results/latest.json; this table: bench-results/latest.md`);
writeFileSync('bench-results/latest.md', `${table.trim()}\n`);
