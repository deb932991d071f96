import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import {
  type Connection,
  connectedPair,
  dial,
  fault,
  generatePsk,
  Heartbeat,
  type HeartbeatLoss,
  listen,
  MessageChannel,
} from "../../src/transport/index.ts";
import { quietLog } from "./helpers.ts";

const PEER = path.join(import.meta.dirname, "fixtures", "heartbeat-peer.ts");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pairOf(a: Connection, b: Connection, opts = { intervalMs: 20, timeoutMs: 200 }) {
  return [
    new Heartbeat(new MessageChannel(a.channel), opts),
    new Heartbeat(new MessageChannel(b.channel), opts),
  ] as const;
}

test("beats flow both ways and nobody is lost while both run", async () => {
  const [a, b] = await connectedPair({ kind: "heartbeat" });
  const [ha, hb] = pairOf(a, b);
  const lost: string[] = [];
  ha.on("lost", () => lost.push("a"));
  hb.on("lost", () => lost.push("b"));
  ha.start();
  hb.start();
  while (ha.received < 10 || hb.received < 10) await once(ha.received < 10 ? ha : hb, "beat");
  assert.deepEqual(lost, []);
  ha.stop();
  await once(hb, "closed");
});

test("a clean stop is 'closed' by the peer, never 'lost'", async () => {
  const [a, b] = await connectedPair({ kind: "heartbeat" });
  const [ha, hb] = pairOf(a, b);
  const events: string[] = [];
  ha.on("lost", () => events.push("a lost"));
  hb.on("lost", () => events.push("b lost"));
  ha.on("closed", (c) => events.push(`a closed by ${c.by}`));
  hb.on("closed", (c) => events.push(`b closed by ${c.by}`));
  ha.start();
  hb.start();
  await once(hb, "beat");
  ha.stop();
  await once(hb, "closed");
  await sleep(300); // longer than the timeout: still no loss
  assert.deepEqual(events, ["a closed by local", "b closed by peer"]);
  assert.equal(hb.state, "closed");
});

test("a cut connection is lost once, as 'disconnected'", async () => {
  const [a, b] = await connectedPair({ kind: "heartbeat", aToB: { intercept: fault.truncate(16 * 5 + 3) } });
  const [ha, hb] = pairOf(a, b);
  const losses: HeartbeatLoss[] = [];
  hb.on("lost", (l) => losses.push(l));
  ha.on("lost", () => {});
  ha.start();
  hb.start();
  await once(hb, "lost");
  await sleep(300);
  assert.equal(losses.length, 1);
  assert.equal(losses[0]?.reason, "disconnected");
});

test("silence without a disconnect is lost after the timeout ('timeout')", async () => {
  // Drop everything a sends after its first beats: b hears nothing, the connection stays up.
  const [a, b] = await connectedPair({ kind: "heartbeat", aToB: { intercept: fault.drop(32, 1e12) } });
  const [ha, hb] = pairOf(a, b);
  ha.start();
  hb.start();
  const [loss] = (await once(hb, "lost")) as [HeartbeatLoss];
  assert.equal(loss.reason, "timeout");
  assert.ok(loss.silentMs >= 200);
  ha.stop();
});

test("a slow link or a slow peer within the timeout is not lost", async () => {
  // Every beat arrives 80 ms late, and the peer beats only every 120 ms; timeout 400 ms.
  const [a, b] = await connectedPair({ kind: "heartbeat", aToB: { delayMs: 80 } });
  const ha = new Heartbeat(new MessageChannel(a.channel), { intervalMs: 120, timeoutMs: 400 });
  const hb = new Heartbeat(new MessageChannel(b.channel), { intervalMs: 20, timeoutMs: 400 });
  let lost = false;
  hb.on("lost", () => {
    lost = true;
  });
  ha.start();
  hb.start();
  while (hb.received < 8) await once(hb, "beat");
  assert.equal(lost, false);
  ha.stop();
  await once(hb, "closed");
});

test("timers do not keep a process alive after stop()", async () => {
  const code = `
    import { connectedPair, Heartbeat, MessageChannel } from ${JSON.stringify(path.resolve(import.meta.dirname, "../../src/transport/index.ts"))};
    const [a, b] = await connectedPair({ kind: "heartbeat" });
    const ha = new Heartbeat(new MessageChannel(a.channel)); const hb = new Heartbeat(new MessageChannel(b.channel));
    ha.start(); hb.start();
    await new Promise((r) => hb.once("beat", r));
    ha.stop();
    await new Promise((r) => hb.once("closed", r));
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: "inherit" });
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const [status, signal] = await once(child, "exit");
  clearTimeout(killer);
  assert.equal(signal, null, "exited on its own (not killed)");
  assert.equal(status, 0);
});

test("a peer process that is SIGSTOPped is lost (timeout); SIGCONT'd it would have been fine", async (t) => {
  if (process.platform === "win32") {
    t.skip("needs POSIX signals");
    return;
  }
  const key = generatePsk();
  const conn = Promise.withResolvers<Connection>();
  const listener = await listen(
    {
      security: { mode: "psk", key },
      role: "secondary",
      expect: { roles: ["primary"], kinds: ["heartbeat"] },
      log: quietLog,
    },
    conn.resolve,
  );
  const child = spawn(process.execPath, [PEER, "dial", "127.0.0.1", String(listener.port)], {
    env: { ...process.env, COLO_PSK: Buffer.from(key).toString("hex") },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const c = await conn.promise;
    const hb = new Heartbeat(new MessageChannel(c.channel), { intervalMs: 50, timeoutMs: 500 });
    let lost: HeartbeatLoss | undefined;
    hb.on("lost", (l) => {
      lost = l;
    });
    hb.start();
    while (hb.received < 5) await once(hb, "beat");
    assert.equal(lost, undefined, "not lost while the peer runs");
    child.kill("SIGSTOP");
    const [loss] = (await once(hb, "lost")) as [HeartbeatLoss];
    assert.equal(loss.reason, "timeout", "a stopped process keeps its socket open: only the timeout sees it");
  } finally {
    child.kill("SIGCONT");
    child.kill("SIGKILL");
    await listener.close();
  }
});

test("a peer process killed with SIGKILL is lost (disconnected)", async () => {
  const key = generatePsk();
  const child = spawn(process.execPath, [PEER, "listen", "127.0.0.1", "0"], {
    env: { ...process.env, COLO_PSK: Buffer.from(key).toString("hex") },
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const lines = createInterface({ input: child.stdout! });
    const [first] = (await once(lines, "line")) as [string];
    const { port } = JSON.parse(first) as { port: number };
    const c = await dial({
      port,
      security: { mode: "psk", key },
      hello: { role: "primary", kind: "heartbeat", session: crypto.getRandomValues(new Uint8Array(16)) },
    });
    const hb = new Heartbeat(new MessageChannel(c.channel), { intervalMs: 50, timeoutMs: 2000 });
    hb.start();
    while (hb.received < 3) await once(hb, "beat");
    child.kill("SIGKILL");
    const [loss] = (await once(hb, "lost")) as [HeartbeatLoss];
    assert.equal(loss.reason, "disconnected");
  } finally {
    child.kill("SIGKILL");
  }
});
