import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { expect, vi } from 'vitest';
import { DashboardReader } from '../../pipeline/dashboard/frames.js';
import { startDashboard } from '../../pipeline/dashboard/server.js';
import { ensureNamespaceTopics } from '../../pipeline/common/topics.js';
import { kafkaTest } from '../support/kafka.js';

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
    const stop = vi.spyOn(DashboardReader.prototype, 'stop');
    const { port } = taken.address() as AddressInfo;
    await expect(startDashboard(kafka.kafka, config, port)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // The reader it had started (a status reader and two tails, 10 sockets when connected) is stopped.
    expect(stop).toHaveBeenCalledTimes(1);
    await stop.mock.results[0]!.value;
    stop.mockRestore();
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
}, 60_000);
