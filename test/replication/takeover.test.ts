// A takeover asked for while a checkpoint is being applied: the checkpoint is applied whole
// first, then the secondary takes over from it (with the applied checkpoint's connections).
import assert from "node:assert/strict";
import { test } from "node:test";
import { RespClient } from "../../src/replication/resp-client.ts";
import type { SecondaryOutcome } from "../../src/replication/secondary.ts";
import { startPair, until } from "./helpers.ts";

test("takeover during an apply: the checkpoint finishes, then S takes over from it", async () => {
  const p = await startPair({ strategy: "back-channel", maxIntervalMs: 60_000 });
  try {
    const cl = await RespClient.connect(p.port);
    for (let i = 0; i < 10; i++) assert.equal(await cl.command("SET", `key${i}`, `v${i}`), "OK");
    await until(() => p.primary.state === "protected", 5_000, "protected");
    const before = p.secondary.applied;
    let asked = false;
    p.secondary.on("state", (st) => {
      if (st !== "applying" || asked) return;
      asked = true;
      void p.secondary.requestTakeover();
    });
    p.primary.requestCheckpoint();
    const outcome = await Promise.race([
      p.outcome,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000).unref()),
    ]);
    assert.ok(asked, "the takeover came during an apply");
    assert.equal(
      outcome?.kind,
      "took-over",
      `no takeover (state ${p.secondary.state})\n${p.logs.join("\n")}`,
    );
    assert.equal(p.secondary.applied, before + 1n, "the checkpoint being applied was applied whole");
    const o = outcome as Extract<SecondaryOutcome, { kind: "took-over" }>;
    const addr = await o.proxy.listen();
    const s = await RespClient.connect(addr.port);
    for (let i = 0; i < 10; i++) assert.equal(await s.command("GET", `key${i}`), `v${i}`);
    s.close();
    cl.close();
  } finally {
    await p.close();
  }
});
