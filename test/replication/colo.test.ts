// The primary and secondary controllers wired in one process (memory transports, real WasmDomains
// with the KV guest): checkpoints with --verify on, each strategy and resume point (the default
// snapshot, once copied, at SVM_READY), the snapshot taken again when S's list names a page it
// lacks, Remus.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Domain, PAGE_SIZE } from "../../src/guest/domain.ts";
import type { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
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
  {
    name: "COLO back-channel, PVM resumed once A ∪ B is copied",
    settings: { strategy: "back-channel", maxIntervalMs: 200, pvmResume: "copied" },
  },
  // Every page is more than the copy limit: each checkpoint goes out as views, resumed at READY.
  { name: "COLO full over the copy limit", settings: { strategy: "full" }, maxCopyPages: 1 },
  // The snapshot becomes a plain stop: views of A ∪ B, resumed at READY.
  { name: "COLO back-channel over the copy limit", settings: { strategy: "back-channel" }, maxCopyPages: 1 },
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
      await checkReplies(seen, p.port);
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

/** The SET/GET/INCR replies per client are what a single KV would answer, and GET finds every SET. */
async function checkReplies(seen: { args: string[]; reply: unknown }[], port: number): Promise<void> {
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
  const client = await RespClient.connect(port);
  for (const [k, v] of kv) assert.equal(await client.command("GET", k), v);
  client.close();
}

/**
 * The SVM as its controller sees it: at each stop it writes into the last page of its memory (a
 * page the KV guest does not write) and names it in B. S's list then names a page P's snapshot
 * lacks, and the primary must take the checkpoint again at a second stop of the PVM, whose
 * memory still holds that page's right contents.
 */
function scribbling(d: WasmDomain): Domain {
  let n = 0;
  return new Proxy(d, {
    get(target, prop) {
      if (prop === "harvestStopped") return () => undefined;
      if (prop === "harvestDirty")
        return () => {
          const b = target.harvestDirty();
          if (target.state !== "suspended") return b;
          const last = target.pageCount() - 1;
          target.writePage(last, new Uint8Array(PAGE_SIZE).fill((++n % 255) + 1));
          return b.includes(last) ? b : Uint32Array.from([...b, last]);
        };
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

test("COLO back-channel, S's list names a page the snapshot lacks: taken again at a second stop, every digest equal, every reply right", async () => {
  const p = await startPair(
    { strategy: "back-channel", maxIntervalMs: 100 },
    undefined,
    {},
    { svmView: scribbling },
  );
  try {
    assert.equal(p.primary.state, "protected");
    const seen = await workload(p.port, { clients: 3, requests: 300, forceEvery: 25 });
    await until(() => p.primary.status().checkpoints >= 4, 10_000, "checkpoints");
    const recs = p.primary.records();
    assert.ok(
      recs.every((r) => r.verified === true),
      "every checkpoint verified",
    );
    const retaken = recs.filter((r) => r.retaken === true);
    assert.ok(retaken.length >= 3, `${retaken.length} of ${recs.length} checkpoints taken again`);
    for (const r of retaken) assert.ok(r.d > r.a - 1 && r.b >= 1, `checkpoint ${r.seq}: B counted`);
    assert.equal(
      p.primary.status().state === "protected" || p.primary.status().state === "checkpointing",
      true,
    );
    await checkReplies(seen, p.port);
    assert.equal(p.secondary.state, "running");
  } finally {
    await p.close();
  }
});
