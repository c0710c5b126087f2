// toKafka: idempotent, batched writes of outputs, each emitted once the broker has acknowledged it, in order.
// Run against a broker: KAFKA_BROKERS=127.0.0.1:19092 npx tsx examples/operators/toKafka.ts
import { Kafka, logLevel } from 'kafkajs';
import { lastValueFrom, map, range, toArray } from 'rxjs';
import { toKafka, type Outputs } from 'streamgrad/operators';

const kafka = new Kafka({ clientId: 'example', brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:19092').split(','), logLevel: logLevel.ERROR });
const topic = `example-alerts-${Date.now()}`;
const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 2 }] });

// One output per alert: its messages, and the (here made-up) input offsets it accounts for.
const acknowledged = await lastValueFrom(
  range(0, 1_000).pipe(
    map((i): Outputs => ({ messages: [{ topic, messages: [{ key: `device-${i % 7}`, value: `overheat #${i}` }] }], covers: [{ first: i, last: i }] })),
    toKafka({ kafka, lingerMs: 20 }),
    toArray(),
  ),
);
const inOrder = acknowledged.every((output, i) => output.covers[0]!.first === i);
const written = (await admin.fetchTopicOffsets(topic)).reduce((n, p) => n + Number(p.high), 0);
console.log(`${acknowledged.length} outputs acknowledged${inOrder ? ', in order' : ', OUT OF ORDER'}; ${written} records in ${topic}`);
await admin.deleteTopics({ topics: [topic] });
await admin.disconnect();
