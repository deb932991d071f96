/**
 * A listener holds at most `maxHandshakes` connections that have not finished the hello: idle TCP
 * connections beyond the cap are closed by the server as soon as it accepts them (logged once per
 * burst), those within it are closed by the handshake deadline, a legitimate dial gets in once
 * they are gone, and connections that finished the hello do not count. Real sockets on loopback.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { DEFAULT_MAX_HANDSHAKES, MAX_HANDSHAKE_TIMEOUT_MS } from "../../src/transport/connect.ts";
import {
  type Connection,
  dial,
  generatePsk,
  type Listener,
  listen,
  newSessionId,
  type Security,
  TransportError,
  type TransportLog,
} from "../../src/transport/index.ts";
import { quietLog } from "./helpers.ts";

const CAP = 4;
const EXTRA = 6;

interface Idle {
  readonly socket: net.Socket;
  /** ms from connect to the server's close (end or reset), once it happened. */
  closedAfter: number | undefined;
  readonly closed: Promise<void>;
}

/** A TCP connection to `port` that never sends a byte; records when the server closes it. */
function idle(port: number): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const socket = net.connect({ port, host: "127.0.0.1" });
    let done: () => void = () => {};
    const it: Idle = {
      socket,
      closedAfter: undefined,
      closed: new Promise<void>((r) => {
        done = r;
      }),
    };
    const gone = (): void => {
      it.closedAfter ??= performance.now() - t0;
      socket.destroy();
      done();
    };
    socket.on("end", gone);
    socket.on("close", gone);
    socket.on("error", () => {}); // a reset is a close too
    socket.once("connect", () => resolve(it));
    socket.once("error", reject);
  });
}

interface Harness {
  readonly listener: Listener;
  readonly security: Security;
  /** Connections the listener handed out. */
  readonly accepted: Connection[];
  /** Idle connections opened by the test (destroyed at the end). */
  readonly idles: Idle[];
  /** Dialled connections the test keeps (destroyed at the end). */
  readonly held: Connection[];
}

/** Run `body` against a listener (cap CAP) and clean everything up after it. */
async function withListener(
  security: Security,
  extra: { timeoutMs: number; log?: TransportLog },
  body: (h: Harness) => Promise<void>,
): Promise<void> {
  const accepted: Connection[] = [];
  const listener = await listen(
    {
      security,
      role: "secondary",
      expect: { roles: ["primary"], kinds: ["replication", "mirror", "heartbeat"] },
      maxHandshakes: CAP,
      log: quietLog,
      ...extra,
    },
    (c) => {
      accepted.push(c);
      c.channel.onData(() => {});
    },
  );
  const h: Harness = { listener, security, accepted, idles: [], held: [] };
  try {
    await body(h);
  } finally {
    for (const c of h.idles) c.socket.destroy();
    for (const c of [...h.held, ...accepted]) c.channel.destroy();
    await listener.close();
  }
}

/** A legitimate dial gets in: the dialler's hello completes and the listener hands it out. */
async function dialsIn(h: Harness, session?: Uint8Array): Promise<void> {
  const n = h.accepted.length;
  const conn = await legit(h.listener.port, h.security, session);
  h.held.push(conn);
  assert.equal(conn.peer.role, "secondary");
  await until(() => h.accepted.length === n + 1, 1000, "the listener's side");
}

function legit(port: number, security: Security, session = newSessionId()): Promise<Connection> {
  return dial({
    port,
    security,
    timeoutMs: 2000,
    hello: { role: "primary", kind: "mirror", session },
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait until `pred` holds, polling every 10 ms for at most `ms`. */
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!pred() && performance.now() < end) await sleep(10);
  assert.ok(pred(), `timed out waiting for ${what}`);
}

const MODES: { name: string; security: () => Security }[] = [
  { name: "TLS-PSK", security: () => ({ mode: "psk", key: generatePsk() }) },
  { name: "insecure TCP", security: () => ({ mode: "insecure" }) },
];

for (const mode of MODES) {
  test(`${mode.name}: idle connections past the cap are closed at once, once per burst in the log; a dial gets in once they are gone`, {
    timeout: 10_000,
  }, async () => {
    const warns: string[] = [];
    const log: TransportLog = (level, message) => {
      if (level === "warn" && message.includes("maxHandshakes")) warns.push(message);
    };
    // A long deadline: anything closed in this test was closed by the cap.
    await withListener(mode.security(), { timeoutMs: 8000, log }, async (h) => {
      const { idles } = h;
      for (let i = 0; i < CAP + EXTRA; i++) idles.push(await idle(h.listener.port));
      await until(
        () => idles.filter((c) => c.closedAfter !== undefined).length >= EXTRA,
        2000,
        "the refusals",
      );
      await sleep(100); // a wrongly closed one within the cap would show by now
      const closed = idles.filter((c) => c.closedAfter !== undefined);
      assert.equal(closed.length, EXTRA, "exactly the connections past the cap are closed");
      for (const c of closed) assert.ok(c.closedAfter! < 1000, `closed after ${c.closedAfter} ms`);
      assert.equal(warns.length, 1, `one warning for the burst: ${warns.join(" | ")}`);

      // The cap is full: a legitimate dial is turned away too, without another warning.
      await assert.rejects(legit(h.listener.port, h.security), TransportError);
      assert.equal(warns.length, 1);

      // Once the idle ones are gone, a legitimate dial completes.
      for (const c of idles) c.socket.destroy();
      await Promise.all(idles.map((c) => c.closed));
      await sleep(200); // the server sees the closes
      await dialsIn(h);
    });
  });
}

test("TLS-PSK: idle connections within the cap are closed by the handshake deadline; then a dial gets in", {
  timeout: 10_000,
}, async () => {
  const timeoutMs = 600;
  await withListener({ mode: "psk", key: generatePsk() }, { timeoutMs }, async (h) => {
    for (let i = 0; i < CAP; i++) h.idles.push(await idle(h.listener.port));
    await Promise.all(h.idles.map((c) => c.closed));
    for (const c of h.idles) {
      assert.ok(
        c.closedAfter! >= timeoutMs - 50 && c.closedAfter! < timeoutMs + 1500,
        `closed after ${c.closedAfter} ms (deadline ${timeoutMs} ms)`,
      );
    }
    await dialsIn(h);
  });
});

test("TLS-PSK: connections that finished the hello do not count against the cap", {
  timeout: 10_000,
}, async () => {
  await withListener({ mode: "psk", key: generatePsk() }, { timeoutMs: 8000 }, async (h) => {
    const session = newSessionId();
    // More finished connections than the cap, one after another, all kept open.
    for (let i = 0; i < CAP + 2; i++) await dialsIn(h, session);
    // The whole cap is still free for connections in the handshake: CAP idle ones stay open…
    for (let i = 0; i < CAP; i++) h.idles.push(await idle(h.listener.port));
    await sleep(200);
    assert.equal(h.idles.filter((c) => c.closedAfter !== undefined).length, 0, "within the cap");
    // …and the next is closed at once.
    const over = await idle(h.listener.port);
    h.idles.push(over);
    await over.closed;
    assert.ok(over.closedAfter! < 1000, `closed after ${over.closedAfter} ms`);

    // Once everything is closed, the count is back to zero: CAP idle connections fit again,
    // the next is closed at once, and with those gone a dial gets in.
    for (const c of h.held) c.channel.destroy();
    for (const c of h.idles) c.socket.destroy();
    await Promise.all(h.idles.map((c) => c.closed));
    await sleep(200); // the server sees the closes
    const again: Idle[] = [];
    for (let i = 0; i < CAP + 1; i++) again.push(await idle(h.listener.port));
    h.idles.push(...again);
    await again[CAP]!.closed;
    await sleep(100);
    assert.equal(again.filter((c) => c.closedAfter !== undefined).length, 1, "only the one past the cap");
    for (const c of again) c.socket.destroy();
    await Promise.all(again.map((c) => c.closed));
    await sleep(200);
    await dialsIn(h, session);
  });
});

test("maxHandshakes and timeoutMs are checked: config errors, default cap 16", async () => {
  assert.equal(DEFAULT_MAX_HANDSHAKES, 16);
  const base = {
    security: { mode: "psk", key: generatePsk() } as Security,
    role: "secondary" as const,
    expect: { roles: ["primary" as const], kinds: ["mirror" as const] },
    log: quietLog,
  };
  for (const bad of [
    { maxHandshakes: 0 },
    { maxHandshakes: 1.5 },
    { maxHandshakes: Number.NaN },
    { timeoutMs: 0 },
    { timeoutMs: Number.NaN },
    { timeoutMs: Number.POSITIVE_INFINITY },
    { timeoutMs: MAX_HANDSHAKE_TIMEOUT_MS + 1 },
  ]) {
    await assert.rejects(
      listen({ ...base, ...bad }, () => {}),
      (e) => e instanceof TransportError && e.code === "config",
      JSON.stringify(bad),
    );
  }
  await assert.rejects(
    dial({
      port: 1,
      security: base.security,
      timeoutMs: 0,
      hello: { role: "primary", kind: "mirror", session: newSessionId() },
    }),
    (e) => e instanceof TransportError && e.code === "config",
  );
});
