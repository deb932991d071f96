import assert from "node:assert/strict";
import { test } from "node:test";
import * as api from "../../src/transport/index.ts";

test("the transport's public API is pinned (change this list deliberately)", () => {
  assert.deepEqual(Object.keys(api).sort(), [
    "BaseChannel",
    "Capability",
    "ChannelKind",
    "DEFAULT_HANDSHAKE_TIMEOUT_MS",
    "DEFAULT_HEARTBEAT_INTERVAL_MS",
    "DEFAULT_HEARTBEAT_TIMEOUT_MS",
    "DEFAULT_HIGH_WATER_MARK",
    "DEFAULT_INBOX_LIMIT",
    "DEFAULT_MAX_MESSAGE",
    "ENV_PSK",
    "ENV_PSK_FILE",
    "FrameDecoder",
    "Heartbeat",
    "MIRROR_HEADER_SIZE",
    "MemoryChannel",
    "MessageChannel",
    "MessageType",
    "PROTOCOL_VERSION",
    "PSK_MIN_BYTES",
    "Role",
    "StreamChannel",
    "TLS_CIPHER",
    "TLS_VERSION",
    "TransportError",
    "connectRaw",
    "connectedPair",
    "counterpart",
    "decodeMirror",
    "defaultLog",
    "dial",
    "encodeFrame",
    "encodeMirror",
    "fault",
    "generatePsk",
    "handshakeAsDialler",
    "handshakeAsListener",
    "isLoopback",
    "isMirrorType",
    "listen",
    "loadCertFiles",
    "loadPskFile",
    "newSessionId",
    "openFileForRead",
    "openFileForWrite",
    "openPair",
    "parsePsk",
    "pipeChannel",
    "securityFromOptions",
    "sendMirror",
    "socketChannel",
    "stdioChannel",
  ]);
});

test("key handling: hex or raw, minimum length enforced, no key refused unless insecure", () => {
  const hex = "00112233445566778899aabbccddeeff";
  assert.equal(api.parsePsk(new TextEncoder().encode(`${hex}\n`), "t").byteLength, 16);
  assert.equal(api.parsePsk(new Uint8Array(20).fill(0xfe), "t").byteLength, 20);
  assert.throws(
    () => api.parsePsk(new TextEncoder().encode("abcd"), "t"),
    (e: unknown) => e instanceof api.TransportError && e.code === "config",
  );
  assert.throws(
    () => api.securityFromOptions({}, {}),
    (e: unknown) => e instanceof api.TransportError && e.code === "config",
  );
  const warnings: string[] = [];
  assert.deepEqual(
    api.securityFromOptions({ insecure: true }, {}, (l) => warnings.push(l)),
    { mode: "insecure" },
  );
  assert.match(warnings[0] ?? "", /NOT authenticated/);
  assert.equal(api.securityFromOptions({}, { COLO_PSK: hex + hex }).mode, "psk");
});
