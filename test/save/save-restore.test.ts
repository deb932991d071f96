import assert from "node:assert/strict";
import { test } from "node:test";
import type { ModuleIdentity } from "../../src/guest/domain.ts";
import { isRestoreError } from "../../src/save/errors.ts";
import { restoreFromSource } from "../../src/save/restore.ts";
import { saveDomain } from "../../src/save/save.ts";
import { decodeAll } from "../../src/stream/decoder.ts";
import { bytesSource, CollectSink } from "./helpers/bytes.ts";
import { MemoryDomain, testIdentity } from "./helpers/memory-domain.ts";

const enc = new TextEncoder();

async function runningDomain(pages = 64): Promise<MemoryDomain> {
  const d = new MemoryDomain({ pages, seed: 3 });
  d.fill(11);
  d.setState({
    blob: enc.encode("ctx"),
    hostBlob: enc.encode("host"),
    fs: { "5:0": new Uint8Array(4096).fill(5) },
  });
  await d.start();
  d.step(50);
  return d;
}

function factory(identity?: ModuleIdentity) {
  const made: MemoryDomain[] = [];
  const create = async (_bytes: Uint8Array) => {
    const d = new MemoryDomain({ pages: 1, identity: identity ?? testIdentity() });
    made.push(d);
    return d;
  };
  return { create, made };
}

async function saved(d: MemoryDomain): Promise<Uint8Array> {
  const sink = new CollectSink();
  await saveDomain(d, sink);
  assert.equal(sink.ended, true);
  return sink.bytes();
}

test("save then restore gives identical pages, context, host state (any chunking)", async () => {
  const src = await runningDomain();
  const bytes = await saved(src);
  assert.equal(src.state, "suspended", "save leaves the source suspended for the caller to destroy");
  for (const size of [1 << 20, 4096, 0]) {
    const { create, made } = factory();
    const seed = await restoreFromSource(bytesSource(bytes, size), { createTarget: create });
    assert.equal(seed.end, "end");
    const dst = made[0]!;
    assert.equal(seed.domain, dst);
    assert.equal(dst.state, "created", "restored but not started");
    assert.deepEqual(dst.memory(), src.memory());
    assert.deepEqual(await dst.contextForTest(), await src.captureContext());
    assert.deepEqual(await dst.digest(), await src.digest());
  }
});

test("the stream follows the architecture's record order", async () => {
  const bytes = await saved(await runningDomain(3000));
  const names = decodeAll(bytes).map((i) => (i.kind === "header" ? i.header : i.name));
  const collapsed = names.filter((n, i) => n !== "PAGE_DATA" || names[i - 1] !== "PAGE_DATA");
  assert.deepEqual(collapsed, [
    "libxl",
    "LIBXC_CONTEXT",
    "libxc-image",
    "libxc-domain",
    "MODULE_IDENTITY",
    "STATIC_DATA_END",
    "CHECKPOINT_INFO",
    "PAGE_DATA",
    "GUEST_CONTEXT",
    "END",
    "EMULATOR_CONTEXT",
    "END",
  ]);
  assert.equal(names.filter((n) => n === "PAGE_DATA").length, 3, "3,000 pages in batches of 1,024");
});

test("a truncated file is refused with 'truncated' and the target destroyed", async () => {
  const bytes = await saved(await runningDomain());
  for (const cut of [10, 200, Math.floor(bytes.length / 2), bytes.length - 8]) {
    const { create, made } = factory();
    await assert.rejects(
      restoreFromSource(bytesSource(bytes.subarray(0, cut)), { createTarget: create }),
      (e) => isRestoreError(e, "truncated"),
    );
    for (const d of made) assert.equal(d.state, "destroyed");
  }
});

test("a corrupted file is refused with 'malformed', naming offset and record", async () => {
  const bytes = (await saved(await runningDomain())).slice();
  // corrupt the reserved word of the first PAGE_DATA (its body starts after the CHECKPOINT_INFO)
  const items = decodeAll(bytes);
  const pd = items.find((i) => i.kind === "record" && i.name === "PAGE_DATA")!;
  bytes[pd.offset + 8 + 4] = 1;
  const { create, made } = factory();
  await assert.rejects(restoreFromSource(bytesSource(bytes), { createTarget: create }), (e) => {
    assert.ok(isRestoreError(e, "malformed"));
    assert.equal(e.offset, pd.offset);
    return true;
  });
  for (const d of made) assert.equal(d.state, "destroyed");
});

test("a module instrumented differently is refused", async () => {
  const bytes = await saved(await runningDomain());
  const other = { ...testIdentity(), transformVersion: "memory-domain/2" };
  const { create, made } = factory(other);
  await assert.rejects(restoreFromSource(bytesSource(bytes), { createTarget: create }), (e) =>
    isRestoreError(e, "identity-mismatch"),
  );
  assert.equal(made[0]?.state, "destroyed");
});
