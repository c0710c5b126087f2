import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout } from 'node:timers/promises';
import { expect } from 'vitest';
import { startDashboard } from '../../pipeline/dashboard/server.js';
import { ensureNamespaceTopics } from '../../pipeline/common/topics.js';
import { kafkaTest } from '../support/kafka.js';

const openTcpSockets = () => process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap').length;

// Two `streamgrad run`s on one machine ask for the same dashboard port; the second then serves on another. Its first
// try had connected the dashboard's Kafka clients (a status reader and two tails, 10 sockets) before it found the
// port taken, and left them open: that run could not exit until its 5 s exit guard.
kafkaTest('a dashboard whose port is taken fails with EADDRINUSE and stops the Kafka clients it had connected', async ({ kafka }) => {
  const namespace = `dash-${randomUUID().slice(0, 8)}`;
  const inputTopic = await kafka.createTopic({ partitions: 2 });
  await kafka.admin.connect();
  await ensureNamespaceTopics(kafka.admin, namespace, 1);
  const config = { namespace, inputTopic };
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  try {
    const before = openTcpSockets();
    const { port } = taken.address() as AddressInfo;
    await expect(startDashboard(kafka.kafka, config, port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // A socket closes a moment after its client disconnects. Before the fix the failed try left 7 open (its status
    // reader's tail had connected after its disconnect, and the reader was never stopped). One is still left: a
    // stopped `fromKafka` tail keeps one socket of kafkajs' open, which is not found yet (issue note of 2026-12-01).
    for (let waited = 0; openTcpSockets() > before + 1 && waited < 3_000; waited += 100) await setTimeout(100);
    expect(openTcpSockets()).toBeLessThanOrEqual(before + 1);
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
}, 60_000);
