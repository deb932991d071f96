/**
 * A checkpoint is applied whole or not at all: a context or host state that passed the stream
 * layer but that the domain refuses is caught by the domain's own checks (validateContext /
 * validateHostState) before the receiver changes anything, so the domain's memory, context and
 * host state stay exactly as they were (same digest), the receiver reports a RestoreError
 * "domain" naming the checkpoint, and the next valid checkpoint still applies. Both with the
 * in-memory test domain and with the real WebAssembly domain (a kv guest holding a connection),
 * whose main-thread checks must refuse exactly what its worker refuses.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { TrackedDomain } from "../../src/replication/tracked-domain.ts";
import { isRestoreError } from "../../src/save/errors.ts";
import { CheckpointReceiver } from "../../src/save/receiver.ts";
import { MemoryDomain } from "./helpers/memory-domain.ts";

const enc = new TextEncoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function page(byte: number): Uint8Array {
  return new Uint8Array(PAGE_SIZE).fill(byte);
}

function ctx(ticks: number, blob = "c"): Uint8Array {
  const b = new Uint8Array(8 + blob.length);
  new DataView(b.buffer).setBigUint64(0, BigInt(ticks), true);
  b.set(enc.encode(blob), 8);
  return b;
}

const host = (blob: string) => enc.encode(JSON.stringify({ blob, blocks: {} }));

interface Parts {
  readonly seq: bigint;
  readonly memoryPages: number;
  readonly pages: ReadonlyMap<number, Uint8Array>;
  readonly context: Uint8Array;
  readonly hostState: Uint8Array;
}

/** Buffer a whole checkpoint in `r` (state "complete"), after the previous one's reset. */
function feed(r: CheckpointReceiver, p: Parts): void {
  if (r.state === "applied" || r.state === "discarded") r.reset();
  r.begin(p.seq, p.memoryPages);
  for (const [pfn, data] of p.pages) r.addPage(pfn, data);
  r.setContext(p.context);
  r.setHostState(p.hostState);
  r.finish();
}

/** A MemoryDomain holding checkpoint 1 (4 pages), and its receiver. */
async function appliedOnce() {
  const d = new MemoryDomain({ pages: 4 });
  const r = new CheckpointReceiver(d);
  feed(r, {
    seq: 1n,
    memoryPages: 4,
    pages: new Map([
      [0, page(1)],
      [3, page(2)],
    ]),
    context: ctx(10),
    hostState: host("aa"),
  });
  await r.apply();
  return { d, r };
}

/** Checkpoint 2: the domain grows to 8 pages, every page rewritten. */
function second(context: Uint8Array, hostState: Uint8Array): Parts {
  const pages = new Map<number, Uint8Array>();
  for (let pfn = 0; pfn < 8; pfn++) pages.set(pfn, page(0x40 + pfn));
  return { seq: 2n, memoryPages: 8, pages, context, hostState };
}

const refusals: { name: string; context: Uint8Array; hostState: Uint8Array }[] = [
  { name: "a context too short", context: new Uint8Array(5), hostState: host("bb") },
  { name: "a host state that does not parse", context: ctx(20), hostState: enc.encode("{not json") },
  { name: "a host state of the wrong shape", context: ctx(20), hostState: enc.encode("null") },
];

for (const c of refusals) {
  test(`MemoryDomain: ${c.name} leaves the domain as it was; the next valid checkpoint applies`, async () => {
    const { d, r } = await appliedOnce();
    const before = hex(await d.digest());
    const pages = d.pageCount();
    const calls = d.calls.length;
    feed(r, second(c.context, c.hostState));
    await assert.rejects(r.apply(), (e) => {
      assert.ok(isRestoreError(e, "domain"), String(e));
      assert.match(e.message, /checkpoint 2\b/);
      assert.equal((e.cause as { name?: string }).name, "DomainError");
      return true;
    });
    assert.equal(r.state, "discarded");
    assert.equal(r.lastApplied, 1n);
    assert.equal(d.pageCount(), pages, "not resized");
    assert.equal(hex(await d.digest()), before, "memory, context and host state unchanged");
    const after = d.calls.slice(calls).filter((op) => op !== "digest");
    assert.ok(
      after.every((op) => op.startsWith("validate")),
      `only checks reached the domain: ${after.join(", ")}`,
    );

    // The same checkpoint, valid this time, applies whole.
    feed(r, second(ctx(20, "ok"), host("cc")));
    await r.apply();
    assert.equal(r.state, "applied");
    assert.equal(r.lastApplied, 2n);
    assert.equal(d.pageCount(), 8);
    assert.equal(d.ticks, 20n);
    const buf = new Uint8Array(PAGE_SIZE);
    d.readPage(7, buf);
    assert.deepEqual(buf, page(0x47));
  });
}

test("TrackedDomain forwards the checks: nothing written, nothing tracked", async () => {
  const inner = new MemoryDomain({ pages: 4 });
  const d = new TrackedDomain(inner);
  const r = new CheckpointReceiver(d, 0n);
  const before = hex(await inner.digest());
  feed(r, { ...second(ctx(1), enc.encode("[]")), seq: 1n });
  await assert.rejects(r.apply(), (e) => isRestoreError(e, "domain") && /checkpoint 1\b/.test(e.message));
  assert.equal(hex(await inner.digest()), before);
  assert.equal(d.takeWritten().size, 0);
  assert.equal(d.lastHostState, undefined);
});

test("a domain that refuses midway what its checks accepted still fails the receiver", async () => {
  class Flaky extends MemoryDomain {
    override async applyHostState(): Promise<void> {
      throw new Error("worker died");
    }
  }
  const r = new CheckpointReceiver(new Flaky({ pages: 4 }));
  feed(r, { ...second(ctx(1), host("aa")), seq: 1n });
  await assert.rejects(r.apply(), (e) => isRestoreError(e, "domain"));
  assert.equal(r.state, "failed");
});

// ---- the real WebAssembly domain ----------------------------------------------------------

const KV = readFileSync(join(import.meta.dirname, "../../guests/kv.wasm"));
const HOST = { args: ["kv.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 };

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !pred(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(pred(), `timed out waiting for ${what}`);
}

/** Every page, the context and the whole host state of a suspended domain, as checkpoint `seq`. */
async function capture(d: WasmDomain, seq: bigint): Promise<Parts> {
  const pages = new Map<number, Uint8Array>();
  for (let pfn = 0; pfn < d.pageCount(); pfn++) {
    const p = new Uint8Array(PAGE_SIZE);
    d.readPage(pfn, p);
    pages.set(pfn, p);
  }
  const [context, hostState] = await Promise.all([d.captureContext(), d.captureHostState({ kind: "all" })]);
  return { seq, memoryPages: d.pageCount(), pages, context, hostState };
}

function patched(body: Uint8Array, at: number, f: (v: DataView) => void): Uint8Array {
  const out = body.slice();
  f(new DataView(out.buffer, at));
  return out;
}

/**
 * A kv guest (source) that has answered `SET a 1` on connection 1 and is suspended, with `input`
 * (the first bytes on that connection) queued after it, a not-started restore target, and the
 * source's connection output so far.
 */
async function kvPair(input: string) {
  const src = await WasmDomain.create(KV, { host: HOST });
  const dst = await WasmDomain.createRestoreTarget(KV, { host: HOST });
  const pair = { src, dst, out: "" };
  src.onOutput((e) => {
    if (e.kind === "data" && e.stream.kind === "conn") pair.out += Buffer.from(e.bytes).toString();
  });
  await src.start();
  src.input({ kind: "open", conn: 1 });
  src.input({ kind: "data", conn: 1, offset: 0, bytes: Buffer.from(input) });
  await until(() => pair.out.includes("+OK"), "SET a's reply");
  await src.suspend();
  return pair;
}

function withByte(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 1);
  out.set(body);
  return out;
}

test("WasmDomain: a refused context or host state leaves the replica's digest unchanged; the next applies", {
  timeout: 120_000,
}, async () => {
  const pair = await kvPair("SET a 1\r\n");
  const { src, dst } = pair;
  try {
    const first = await capture(src, 1n);
    const r = new CheckpointReceiver(dst);
    feed(r, first);
    await r.apply();
    const held = hex(await dst.digest());
    assert.equal(held, hex(await src.digest()), "checkpoint 1 applied whole");

    await src.resume();
    src.input({ kind: "data", conn: 1, offset: 9, bytes: Buffer.from("SET b 2\r\n") });
    await until(() => pair.out.split("+OK").length > 2, "SET b's reply");
    await src.suspend();
    const next = await capture(src, 2n);
    assert.ok(next.context.length > 16 && next.hostState.length > 16);

    const bad: { name: string; context?: Uint8Array; hostState?: Uint8Array; cause: string }[] = [
      {
        name: "context: one global too many",
        context: patched(next.context, 8, (v) => v.setUint32(0, v.getUint32(0, true) + 1, true)),
        cause: "bad-context",
      },
      {
        name: "context: a global of the wrong type",
        context: patched(next.context, 12, (v) => v.setUint32(0, (v.getUint32(0, true) + 1) % 4, true)),
        cause: "bad-context",
      },
      { name: "context: a trailing byte", context: withByte(next.context), cause: "bad-context" },
      {
        name: "host state: unknown version",
        hostState: patched(next.hostState, 4, (v) => v.setUint32(0, 99, true)),
        cause: "state-invalid",
      },
      { name: "host state: a trailing byte", hostState: withByte(next.hostState), cause: "state-invalid" },
      {
        name: "host state: cut short",
        hostState: next.hostState.subarray(0, next.hostState.length - 3),
        cause: "state-invalid",
      },
    ];
    for (const b of bad) {
      feed(r, { ...next, context: b.context ?? next.context, hostState: b.hostState ?? next.hostState });
      await assert.rejects(r.apply(), (e) => {
        assert.ok(isRestoreError(e, "domain"), `${b.name}: ${e}`);
        assert.match(e.message, /checkpoint 2\b/, b.name);
        assert.equal((e.cause as { code?: string }).code, b.cause, b.name);
        return true;
      });
      assert.equal(r.state, "discarded", b.name);
      assert.equal(hex(await dst.digest()), held, `${b.name}: the replica still holds checkpoint 1`);
    }

    feed(r, next);
    await r.apply();
    assert.equal(r.lastApplied, 2n);
    assert.equal(hex(await dst.digest()), hex(await src.digest()), "checkpoint 2 applied whole");
  } finally {
    await dst.destroy();
    await src.destroy();
  }
});

/** Seeded xorshift32: the same mutations every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** `body` with 1–3 random bytes changed, or cut short, or grown by a byte. */
function mutate(body: Uint8Array, rand: () => number): Uint8Array {
  const kind = rand();
  if (kind < 0.15) return body.slice(0, Math.floor(rand() * body.length));
  if (kind < 0.25) return withByte(body);
  const out = body.slice();
  const n = 1 + Math.floor(rand() * 3);
  // Mostly the first 96 bytes, where headers, counts and offsets live.
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rand() * (rand() < 0.7 ? Math.min(96, out.length) : out.length));
    out[at] = (out[at] ?? 0) ^ (1 + Math.floor(rand() * 255));
  }
  return out;
}

test("WasmDomain: the main-thread checks refuse exactly what the worker refuses (seeded mutations)", {
  timeout: 120_000,
}, async () => {
  // A partial request stays queued in the host: its state carries an input chunk.
  const { src, dst } = await kvPair("SET a 1\r\nGET");
  try {
    const context = await src.captureContext();
    const hostState = await src.captureHostState({ kind: "all" });
    const rand = rng(0xc0105);
    const seen = { context: [0, 0], host: [0, 0] };
    for (let i = 0; i < 60; i++) {
      const isContext = i % 2 === 0;
      const body = mutate(isContext ? context : hostState, rand);
      let checked = true;
      try {
        if (isContext) dst.validateContext(body);
        else dst.validateHostState(body);
      } catch {
        checked = false;
      }
      const applied = await (isContext ? dst.applyContext(body) : dst.applyHostState(body)).then(
        () => true,
        () => false,
      );
      assert.equal(checked, applied, `mutation ${i} (${isContext ? "context" : "host state"})`);
      const tally = isContext ? seen.context : seen.host;
      tally[applied ? 1 : 0]!++;
    }
    // Both outcomes occurred for both kinds, so the comparison said something.
    assert.ok(seen.context[0]! > 0 && seen.host[0]! > 0, JSON.stringify(seen));
    assert.ok(seen.host[1]! > 0 || seen.context[1]! > 0, JSON.stringify(seen));
  } finally {
    await dst.destroy();
    await src.destroy();
  }
});

test("apply's beforeWrite (the cache strategy's page restore) runs only once the checks passed, before any page", async () => {
  const { d, r } = await appliedOnce();
  let ran = 0;
  feed(r, second(new Uint8Array(5), host("bb")));
  await assert.rejects(
    r.apply(() => ran++),
    (e) => isRestoreError(e, "domain"),
  );
  assert.equal(ran, 0, "a refused checkpoint never reaches beforeWrite");
  const calls = d.calls.length;
  feed(r, second(ctx(20, "ok"), host("cc")));
  await r.apply(() => {
    ran++;
    assert.ok(
      d.calls.slice(calls).every((op) => op.startsWith("validate")),
      "nothing but the checks before it",
    );
  });
  assert.equal(ran, 1);
  assert.equal(r.state, "applied");
});
