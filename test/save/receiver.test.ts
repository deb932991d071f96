import assert from "node:assert/strict";
import { test } from "node:test";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { isRestoreError } from "../../src/save/errors.ts";
import { CheckpointReceiver } from "../../src/save/receiver.ts";
import { MemoryDomain } from "./helpers/memory-domain.ts";

function page(byte: number): Uint8Array {
  return new Uint8Array(PAGE_SIZE).fill(byte);
}

function ctx(n: number): Uint8Array {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

async function target(): Promise<MemoryDomain> {
  const d = new MemoryDomain({ pages: 4 });
  return d;
}

test("a complete checkpoint is applied whole: size, pages, context, host state", async () => {
  const d = await target();
  const r = new CheckpointReceiver(d, 1n);
  r.begin(2n, 6);
  r.addPage(5, page(7));
  r.addPage(1, page(3));
  r.addPage(1, page(4)); // sent twice: the last copy wins
  r.setContext(ctx(42));
  r.setHostState(new TextEncoder().encode('{"blob":"ab","blocks":{}}'));
  assert.equal(d.pageCount(), 4, "nothing applied while buffering");
  const s = r.finish();
  assert.equal(s.pages, 2);
  assert.equal(r.state, "complete");
  await r.apply();
  assert.equal(r.state, "applied");
  assert.equal(r.lastApplied, 2n);
  assert.equal(d.pageCount(), 6);
  const buf = new Uint8Array(PAGE_SIZE);
  d.readPage(5, buf);
  assert.deepEqual(buf, page(7));
  d.readPage(1, buf);
  assert.deepEqual(buf, page(4));
  assert.equal(d.ticks, 42n);
});

test("a discarded checkpoint leaves the domain untouched", async () => {
  const d = await target();
  d.fill(9);
  const before = d.memory();
  const r = new CheckpointReceiver(d, 1n);
  r.begin(2n, 4);
  r.addPage(0, page(1));
  r.setContext(ctx(1));
  r.discard(new Error("stream cut"));
  assert.equal(r.state, "discarded");
  assert.deepEqual(d.memory(), before);
  assert.equal(d.calls.filter((c) => c === "writePage" || c === "applyContext").length, 0);
  r.reset();
  r.begin(2n, 4); // the same checkpoint may come again
  assert.equal(r.state, "buffering");
});

test("replayed or skipped sequence numbers are refused", () => {
  const r = new CheckpointReceiver(new MemoryDomain({ pages: 1 }), 5n);
  assert.throws(
    () => r.begin(5n, 1),
    (e) => isRestoreError(e, "sequence"),
  );
  assert.throws(
    () => r.begin(7n, 1),
    (e) => isRestoreError(e, "sequence"),
  );
  r.begin(6n, 1);
});

test("pfns past the declared size and missing parts are refused before any write", async () => {
  const d = await target();
  const r = new CheckpointReceiver(d);
  r.begin(1n, 4);
  assert.throws(
    () => r.addPage(4, page(1)),
    (e) => isRestoreError(e, "pfn-out-of-range"),
  );
  r.addPage(3, page(1));
  assert.throws(
    () => r.finish(),
    (e) => isRestoreError(e, "malformed"),
  );
  r.setContext(ctx(1));
  assert.throws(
    () => r.finish(),
    (e) => isRestoreError(e, "malformed"),
  );
  assert.equal(d.calls.includes("writePage"), false);
  await assert.rejects(r.apply(), (e) => isRestoreError(e, "bad-state"));
});

test("a host state the domain refuses discards the checkpoint before any write", async () => {
  const d = await target();
  const r = new CheckpointReceiver(d);
  r.begin(1n, 4);
  r.addPage(0, page(1));
  r.setContext(ctx(1));
  r.setHostState(new TextEncoder().encode("not json"));
  r.finish();
  await assert.rejects(r.apply(), (e) => isRestoreError(e, "domain"));
  assert.equal(r.state, "discarded");
  assert.equal(d.calls.includes("writePage"), false);
});
