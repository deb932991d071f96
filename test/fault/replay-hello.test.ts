// A hello-level replay against a running, protected `colo secondary`: a peer that holds the key
// (here a TLS-terminating relay between the real primary and the secondary) records the
// primary's replication hello and later sends the very same hello (same session, kind and nonce)
// on a fresh, properly authenticated connection. The secondary must refuse it with the "replay"
// verdict, log it, and stay exactly as it was: still the primary's secondary, still applying its
// checkpoints, never taking over.
import assert from "node:assert/strict";
import type net from "node:net";
import { test } from "node:test";
import tls from "node:tls";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { HELLO_SIZE, VERDICT_SIZE, Verdict } from "../../src/transport/format.ts";
import { decodeHello, decodeVerdict, hex } from "../../src/transport/hello.ts";
import { loadPskFile } from "../../src/transport/index.ts";
import { clientTlsOptions, serverTlsOptions } from "../../src/transport/security.ts";
import { coloRun, scratch } from "./cluster.ts";
import { exchange, joinSockets } from "./peers.ts";
import { freePort, listeningSecondary, protectedPrimary } from "./scenarios.ts";

const ready =
  SUBCOMMANDS.some((c) => c.name === "primary") && SUBCOMMANDS.some((c) => c.name === "secondary");

/** Relay with the key: terminates the primary's TLS, dials the secondary, records each hello. */
function recordingRelay(
  target: number,
  key: Uint8Array,
  hellos: Uint8Array[],
): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(serverTlsOptions({ mode: "psk", key }), (inbound) => {
    const out = tls.connect({ ...clientTlsOptions({ mode: "psk", key }), host: "127.0.0.1", port: target });
    sockets.add(inbound).add(out);
    let head = Buffer.alloc(0);
    joinSockets(inbound, out, (d) => {
      if (head.length < HELLO_SIZE) {
        head = Buffer.concat([head, d]);
        if (head.length >= HELLO_SIZE) hellos.push(new Uint8Array(head.subarray(0, HELLO_SIZE)));
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

/** Authenticated connection that sends `hello` and returns the listener's hello and verdict. */
async function sendHello(port: number, key: Uint8Array, hello: Uint8Array): Promise<Buffer> {
  const s = tls.connect({ ...clientTlsOptions({ mode: "psk", key }), host: "127.0.0.1", port });
  return (await exchange(s, "secureConnect", [hello], HELLO_SIZE + VERDICT_SIZE)).got;
}

test("a replayed hello (same session, kind, nonce) from a key holder is refused, logged, changes nothing", {
  timeout: 120_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const s = scratch();
  t.after(s.cleanup);
  const key = loadPskFile(s.psk);
  const rPort = await freePort();
  const env = { XDG_RUNTIME_DIR: s.dir };
  const secondary = await listeningSecondary(t, s, "replay-s", rPort);
  const hellos: Uint8Array[] = [];
  const relay = await recordingRelay(rPort, key, hellos);
  t.after(() => relay.close());
  const primary = await protectedPrimary(t, s, "replay-p", relay.port, ["--max-interval-ms", "50"]);

  const recorded = hellos.map(decodeHello).findIndex((h) => h.kind === "replication");
  assert.ok(
    recorded >= 0,
    `a replication hello was recorded (kinds: ${hellos.map((h) => decodeHello(h).kind)})`,
  );
  const original = decodeHello(hellos[recorded]!);

  const status = async () => {
    const r = await coloRun(env, ["status", "replay-s", "--json"], 30_000);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { role: string; state: string; applied: number; peer: string };
  };
  const before = await status();

  const mark = secondary.err.length;
  const answer = await sendHello(rPort, key, hellos[recorded]!);
  assert.equal(answer.length, HELLO_SIZE + VERDICT_SIZE, `got ${answer.length} bytes`);
  assert.equal(decodeVerdict(answer.subarray(HELLO_SIZE)), Verdict.replay, "verdict: replay");
  const logged = await secondary.waitFor(/refused.*hello-replay/i, 10_000, mark);
  assert.match(logged[0], /replay/);
  // The replay carried the session of the running pair: it is that session's replay guard that
  // refused it, not a session mismatch.
  assert.equal(hex(decodeHello(answer.subarray(0, HELLO_SIZE)).session), hex(original.session));

  // Unchanged: the same role and state, checkpoints still applied, the primary still protected.
  await new Promise((r) => setTimeout(r, 300));
  const after = await status();
  assert.equal(after.role, "secondary");
  assert.equal(after.peer, before.peer, "the same primary");
  for (const st of [before.state, after.state]) assert.doesNotMatch(st, /took-over|stood-down|waiting/);
  assert.ok(after.applied > before.applied, `checkpoints go on (${before.applied} → ${after.applied})`);
  assert.doesNotMatch(secondary.err, /taking over|took over|stood down/i);
  assert.doesNotMatch(primary.err, /UNPROTECTED/);
  assert.equal(secondary.exited, false);
});
