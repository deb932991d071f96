// Protocol errors and broken streams, injected through the in-memory replication connection:
// a malformed, replayed or out-of-order record makes the secondary discard the partial
// checkpoint and stand down (never take over) while the primary runs on unprotected with nothing
// lost; a stream cut mid-checkpoint only discards the partial checkpoint, and the heartbeat
// decides: a silent primary makes the secondary take over from its last applied checkpoint.
import assert from "node:assert/strict";
import { test } from "node:test";
import { RespClient } from "../../src/replication/resp-client.ts";
import { fault, type Interceptor, type MemoryChannel } from "../../src/transport/memory.ts";
import { startPair, until } from "./helpers.ts";

// The next checkpoint starts with CHECKPOINT_STATE NEW (16 bytes: type, length 4, id, padding)
// and CHECKPOINT_SEQ (16 bytes: type, length 8, u64 seq); offsets count from setFaults().
const CASES: { name: string; intercept: () => Interceptor }[] = [
  { name: "malformed record (NEW's type field corrupted)", intercept: () => fault.corrupt(1, 0x7f) },
  { name: "replayed record (NEW sent twice)", intercept: () => fault.replay(0, 32) },
  {
    name: "out-of-order record (NEW carries the wrong sequence number)",
    intercept: () => fault.corrupt(24, 0x02),
  },
  {
    name: "record not allowed in the state (SVM_READY on the main channel)",
    intercept: () => fault.corrupt(8, 0x02),
  },
];

for (const c of CASES) {
  test(`${c.name}: S stands down, P runs on unprotected, nothing lost`, async () => {
    const p = await startPair({ strategy: "back-channel", maxIntervalMs: 60_000 });
    try {
      const cl = await RespClient.connect(p.port);
      for (let i = 0; i < 20; i++) assert.equal(await cl.command("SET", `key${i}`, `v${i}`), "OK");
      assert.deepEqual(await cl.command("TIME").then((r) => Array.isArray(r)), true); // a divergence
      await until(
        () => p.primary.status().checkpoints >= 2 && p.primary.state === "protected",
        10_000,
        "checkpoint 2",
      );
      const applied = p.secondary.applied;
      (p.links.pairs.replication[0].channel as MemoryChannel).setFaults({ intercept: c.intercept() });
      p.primary.requestCheckpoint();
      const outcome = await p.outcome;
      assert.equal(outcome.kind, "stood-down");
      assert.equal(outcome.kind === "stood-down" && outcome.reason.code, "protocol", p.logs.join("\n"));
      assert.equal(p.secondary.state, "stood-down");
      assert.equal(p.secondary.applied, applied, "no partial checkpoint applied");
      await until(() => p.primary.state === "unprotected-after-loss", 10_000, "primary unprotected");
      assert.equal(p.proxy.mode, "unprotected");
      await until(() => p.svms.every((d) => d.state === "destroyed"), 5_000, "replica destroyed");
      // nothing lost, and the service goes on, on the same connection
      for (let i = 0; i < 20; i++) assert.equal(await cl.command("GET", `key${i}`), `v${i}`);
      assert.equal(await cl.command("SET", "after", "x"), "OK");
      assert.equal(await cl.command("GET", "after"), "x");
      cl.close();
    } finally {
      await p.close();
    }
  });
}

test("stream cut mid-checkpoint with the primary gone: partial checkpoint discarded, S takes over", async () => {
  const p = await startPair(
    { strategy: "back-channel", maxIntervalMs: 60_000 },
    { intervalMs: 50, timeoutMs: 400 },
  );
  try {
    const cl = await RespClient.connect(p.port);
    for (let i = 0; i < 20; i++) assert.equal(await cl.command("SET", `key${i}`, `v${i}`), "OK");
    await until(() => p.primary.state === "protected", 5_000, "protected");
    const applied = p.secondary.applied;
    const states: string[] = [];
    const hb = p.links.pairs.heartbeat[0].channel;
    p.secondary.on("state", (st) => {
      states.push(st);
      // The primary "dies" mid-checkpoint: once S has stopped for NEW, its heartbeat goes silent
      // without a goodbye (its stream was cut after 200 bytes). Killing the heartbeat as the
      // stream is cut raced S's reading of NEW: S could decide to take over first.
      if (st === "suspended" && !hb.closed) hb.destroy();
    });
    (p.links.pairs.replication[0].channel as MemoryChannel).setFaults({ intercept: fault.truncate(200) });
    p.primary.requestCheckpoint();
    const outcome = await p.outcome;
    assert.equal(outcome.kind, "took-over", p.logs.join("\n"));
    assert.equal(p.secondary.applied, applied, "the partial checkpoint was not applied");
    // The primary sends A's pages right after NEW, while S suspends: the cut may come before S
    // has sent its list and started buffering; either way it came after NEW.
    assert.ok(states.includes("suspended"), `the cut came mid-checkpoint (${states.join(" → ")})`);
    assert.ok(!states.includes("applying"), "nothing of it was applied");
    if (outcome.kind !== "took-over") return;
    const addr = await outcome.proxy.listen();
    const s = await RespClient.connect(addr.port);
    for (let i = 0; i < 20; i++)
      assert.equal(await s.command("GET", `key${i}`), `v${i}`, "acknowledged writes survive");
    assert.equal(await s.command("SET", "new", "1"), "OK");
    s.close();
    cl.close();
  } finally {
    await p.close();
  }
});

test("stream cut mid-checkpoint with the primary alive: partial checkpoint discarded, no takeover", async () => {
  const p = await startPair(
    { strategy: "back-channel", maxIntervalMs: 60_000 },
    { intervalMs: 50, timeoutMs: 400 },
  );
  try {
    const cl = await RespClient.connect(p.port);
    for (let i = 0; i < 5; i++) assert.equal(await cl.command("SET", `key${i}`, `v${i}`), "OK");
    await until(() => p.primary.state === "protected", 5_000, "protected");
    const applied = p.secondary.applied;
    const states: string[] = [];
    p.secondary.on("state", (st) => states.push(st));
    (p.links.pairs.replication[0].channel as MemoryChannel).setFaults({ intercept: fault.truncate(200) });
    p.primary.requestCheckpoint();
    const outcome = await p.outcome;
    assert.equal(outcome.kind, "stood-down", p.logs.join("\n"));
    assert.notEqual(
      outcome.kind === "stood-down" && outcome.reason.code,
      "protocol",
      "a cut is not a protocol error",
    );
    // The cut came after NEW (while S suspended or buffered: see above), nothing of it applied.
    assert.ok(states.includes("suspended") && !states.includes("applying"), states.join(" → "));
    assert.equal(p.secondary.applied, applied);
    await until(() => p.primary.state === "unprotected-after-loss", 5_000, "primary unprotected");
    for (let i = 0; i < 5; i++) assert.equal(await cl.command("GET", `key${i}`), `v${i}`);
    cl.close();
  } finally {
    await p.close();
  }
});
