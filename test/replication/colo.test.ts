// The primary and secondary controllers wired in one process (memory transports, real WasmDomains
// with the KV guest): checkpoints with --verify on, each strategy (the PVM resumed once the
// checkpoint is copied, the default, and at SVM_READY), Remus.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ReplicationSettings } from "../../src/replication/config.ts";
import { RespClient } from "../../src/replication/resp-client.ts";
import { verifyBytes } from "../../src/stream/verify.ts";
import { startPair, until, workload } from "./helpers.ts";

const CASES = [
  { name: "COLO back-channel", settings: { strategy: "back-channel", maxIntervalMs: 200 } },
  { name: "COLO cache", settings: { strategy: "cache", maxIntervalMs: 200 } },
  { name: "COLO full", settings: { strategy: "full", maxIntervalMs: 200 } },
  {
    name: "COLO back-channel, PVM resumed at SVM_READY",
    settings: { strategy: "back-channel", maxIntervalMs: 200, pvmResume: "ready" },
  },
  { name: "COLO cache, PVM resumed at SVM_READY", settings: { strategy: "cache", pvmResume: "ready" } },
  // Every page is more than the copy limit: each checkpoint goes out as views, resumed at READY.
  { name: "COLO full over the copy limit", settings: { strategy: "full" }, maxCopyPages: 1 },
  { name: "Remus (20 ms epochs)", settings: { mode: "remus", epochMs: 20 } },
] as const satisfies readonly {
  name: string;
  settings: Partial<ReplicationSettings>;
  maxCopyPages?: number;
}[];

for (const c of CASES)
  test(`${c.name}: seeded, checkpoints with every digest equal, every reply right`, async () => {
    const limit = "maxCopyPages" in c ? c.maxCopyPages : undefined;
    const p = await startPair(c.settings, undefined, limit === undefined ? {} : { maxCopyPages: limit });
    try {
      assert.equal(p.primary.state, "protected");
      const seen = await workload(p.port, { clients: 3, requests: 300, forceEvery: 25 });
      await until(() => p.primary.status().checkpoints >= 4, 10_000, "checkpoints");
      const st = p.primary.status();
      assert.equal(st.state === "protected" || st.state === "checkpointing", true, JSON.stringify(st));
      if ((c.settings as Partial<ReplicationSettings>).mode !== "remus")
        assert.ok(st.divergences >= 1, "forced divergences were seen");
      const recs = p.primary.records();
      assert.ok(
        recs.every((r) => r.verified === true),
        "every checkpoint verified",
      );
      assert.ok(
        recs.slice(1).some((r) => r.a > 0 && r.d >= r.a),
        "dirty sets counted",
      );
      if (limit !== undefined) {
        for (const r of recs.slice(1))
          assert.ok(r.steps!.pvmResumed! >= r.steps!.svmReady!, `checkpoint ${r.seq}: resumed after READY`);
      }
      // replies: the SET/GET/INCR sequence per client is what a single KV would answer
      const ctr = new Map<string, number>();
      const kv = new Map<string, string>();
      for (const { args, reply } of seen.filter((s) => s.args[0] !== "TIME" && s.args[0] !== "RANDOMKEY")) {
        if (args[0] === "SET") {
          kv.set(args[1]!, args[2]!);
          assert.equal(reply, "OK");
        } else if (args[0] === "INCR") {
          const v = (ctr.get(args[1]!) ?? 0) + 1;
          ctr.set(args[1]!, v);
          assert.equal(reply, v);
        }
      }
      const client = await RespClient.connect(p.port);
      for (const [k, v] of kv) assert.equal(await client.command("GET", k), v);
      client.close();
      assert.equal(
        p.secondary.state,
        (c.settings as Partial<ReplicationSettings>).mode === "remus" ? "standby" : "running",
      );
      // The independent verifier accepts both directions of the replication connection as sent.
      const cs = c.settings as Partial<ReplicationSettings>;
      await until(() => p.primary.state === "protected", 5_000, "between checkpoints");
      const mode = cs.mode === "remus" ? "remus" : cs.strategy === "back-channel" ? "colo" : cs.strategy!;
      if (mode !== "remus") verifyBytes(Buffer.concat(p.wire.forward), { mode, checkpointed: true });
      verifyBytes(Buffer.concat(p.wire.back), { mode, backChannel: true });
    } finally {
      await p.close();
    }
  });
