import mqttPacket, { type IPubackPacket } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { pubackBytes } from '../../../pipeline/ingest/bridge.js';

// The bridge writes its own PUBACKs, a batch in one socket write; the crash and reconnect tests in ingest.test.ts prove
// that Mosquitto takes them. Here: MQTT's own parser reads each back, for MQTT 5 and 3.1.1.
describe('the bridge’s PUBACKs', () => {
  for (const protocolVersion of [5, 4] as const) {
    it(`parse as PUBACKs of the same packet ids, in order (protocol version ${protocolVersion})`, () => {
      const ids = [1, 2, 255, 256, 40_000, 65_535];
      const parsed: IPubackPacket[] = [];
      const parser = mqttPacket.parser({ protocolVersion });
      parser.on('packet', (packet) => parsed.push(packet as IPubackPacket));
      parser.on('error', (error) => {
        throw error;
      });
      parser.parse(pubackBytes(ids));
      expect(parsed.map((packet) => [packet.cmd, packet.messageId, packet.reasonCode ?? 0])).toEqual(ids.map((id) => ['puback', id, 0]));
    });
  }
});
