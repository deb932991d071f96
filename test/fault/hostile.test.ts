// Hostile peers against a running `colo secondary`: a stranger (another key), a peer of another
// protocol version, and a replayed connection (bytes recorded from an earlier connection, sent
// again) are each refused and logged, and none changes the secondary: afterwards a real primary
// still protects it from scratch and the secondary never took over.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { HELLO, PROTOCOL_VERSION } from "../../src/transport/format.ts";
import { encodeHello, newSessionId } from "../../src/transport/hello.ts";
import { generatePsk, loadPskFile } from "../../src/transport/index.ts";
import { clientTlsOptions } from "../../src/transport/security.ts";
import { scratch } from "./cluster.ts";
import { exchange, joinSockets } from "./peers.ts";
import { freePort, listeningSecondary, protectedPrimary } from "./scenarios.ts";

const ready =
  SUBCOMMANDS.some((c) => c.name === "primary") && SUBCOMMANDS.some((c) => c.name === "secondary");

/** Connect with TLS-PSK `key`, send `hello`, collect what comes back until close (bounded). */
async function tlsExchange(
  port: number,
  key: Uint8Array,
  send: Uint8Array,
  record?: Buffer[],
): Promise<{ got: Buffer; error: string | undefined }> {
  // A relay on loopback records the client's raw bytes (for the replay).
  const relay = net.createServer((inbound) =>
    joinSockets(inbound, net.connect(port, "127.0.0.1"), (d) => record?.push(d)),
  );
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
  const rport = (relay.address() as net.AddressInfo).port;
  const s = tls.connect({ ...clientTlsOptions({ mode: "psk", key }), host: "127.0.0.1", port: rport });
  const result = await exchange(s, "secureConnect", [send]);
  relay.close();
  return result;
}

/** Send raw recorded bytes over plain TCP; resolves with what came back. */
async function replay(port: number, bytes: Buffer[]): Promise<Buffer> {
  return (await exchange(net.connect(port, "127.0.0.1"), "connect", bytes)).got;
}

test("strangers, other versions and replays are refused, logged, and change nothing", {
  timeout: 120_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const s = scratch();
  t.after(s.cleanup);
  const rPort = await freePort();
  const secondary = await listeningSecondary(t, s, "hostile-s", rPort);
  const key = loadPskFile(s.psk);

  // 1. A stranger: another key. TLS fails; nothing reaches the hello.
  let mark = secondary.err.length;
  const stranger = await tlsExchange(
    rPort,
    generatePsk(),
    encodeHello({
      version: PROTOCOL_VERSION,
      role: "primary",
      kind: "replication",
      session: newSessionId(),
      capabilities: 0n,
      nonce: newSessionId(),
      sequence: 0,
    }),
  );
  assert.equal(stranger.got.length, 0, "a stranger gets no byte of the colo protocol");
  await secondary.waitFor(/refused/i, 10_000, mark);

  // 2. Another protocol version, with the right key: refused with a version verdict.
  mark = secondary.err.length;
  const hello = encodeHello({
    version: PROTOCOL_VERSION,
    role: "primary",
    kind: "replication",
    session: newSessionId(),
    capabilities: 0n,
    nonce: newSessionId(),
    sequence: 0,
  });
  new DataView(hello.buffer).setUint16(HELLO.version, PROTOCOL_VERSION + 1, true);
  const recorded: Buffer[] = [];
  const other = await tlsExchange(rPort, key, hello, recorded);
  // The listener answers with its hello (64 bytes) and a verdict (8): status 1 = version.
  assert.equal(other.got.length, 72, `got ${other.got.length} bytes`);
  assert.equal(other.got.readUInt16LE(64 + 4), 1, "verdict: version");
  await secondary.waitFor(/refused.*(version|hello-version)/i, 10_000, mark);

  // 3. A replayed connection: the recorded bytes again. The TLS handshake cannot complete.
  mark = secondary.err.length;
  assert.ok(recorded.length > 0);
  const back = await replay(rPort, recorded);
  assert.ok(back.length < 2000, "no application data for a replay");
  await secondary.waitFor(/refused/i, 10_000, mark);

  // Nothing changed: the secondary never took over, and a real primary protects it now.
  assert.doesNotMatch(secondary.err, /taking over|took over/i);
  await protectedPrimary(t, s, "hostile-p", rPort);
  assert.equal(secondary.exited, false);
});
