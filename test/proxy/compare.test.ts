import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ChunkQueue, StreamCompare } from "../../src/proxy/compare.ts";

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const cat = (parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));
const str = (parts: Uint8Array[]): string => Buffer.concat(parts).toString("latin1");

function lcp(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.byteLength, b.byteLength);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Cut `bytes` at the given fractions (sorted, deduplicated positions). */
function chunk(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const pos = [...new Set(cuts.map((c) => Math.floor(c * (bytes.byteLength + 1))))]
    .filter((p) => p > 0 && p < bytes.byteLength)
    .sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const p of [...pos, bytes.byteLength]) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  return out;
}

test("ChunkQueue: take and mismatch agree with a flat array (oracle)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 9 }), { maxLength: 8 }),
      fc.uint8Array({ maxLength: 30 }),
      fc.nat(40),
      (chunks, probe, n) => {
        const q = new ChunkQueue();
        for (const c of chunks) q.push(c);
        const flat = cat(chunks);
        assert.equal(q.length, flat.byteLength);
        const m = q.mismatch(probe);
        const expected = lcp(flat, probe);
        assert.equal(m, expected < Math.min(flat.byteLength, probe.byteLength) ? expected : -1);
        const k = Math.min(n, flat.byteLength);
        assert.deepEqual(cat(q.take(k)), flat.subarray(0, k));
        assert.equal(q.length, flat.byteLength - k);
        if (q.length > 0) assert.equal(q.at(0), flat[k]);
        assert.deepEqual(cat(q.takeAll()), flat.subarray(k));
      },
    ),
  );
});

test("colo: equal streams chunked differently release everything, no mismatch", () => {
  const c = new StreamCompare("colo");
  const released: Uint8Array[] = [];
  for (const s of [
    c.pushPvm(enc("hel")),
    c.pushSvm(enc("h")),
    c.pushSvm(enc("ello wo")),
    c.pushPvm(enc("lo world")),
  ]) {
    assert.equal(s.mismatch, undefined);
    released.push(...s.released);
  }
  assert.equal(str(released), "hello wo");
  assert.equal(c.heldBytes, 3);
  assert.equal(c.pushSvm(enc("rld")).released.length, 1);
  assert.equal(c.heldBytes, 0);
  assert.equal(c.released, 11);
});

test("colo: first differing byte is reported with its offset; nothing past the common prefix is released", () => {
  const c = new StreamCompare("colo");
  assert.equal(str(c.pushPvm(enc("abcXef")).released), "");
  const s = c.pushSvm(enc("abcYef"));
  assert.equal(str(s.released), "abc");
  assert.equal(s.mismatch?.kind, "output");
  assert.equal(s.mismatch?.offset, 3);
  assert.match(s.mismatch?.detail ?? "", /PVM 0x58, SVM 0x59/);
  // Diverged: later PVM output is held, SVM output ignored, no second report.
  const s2 = c.pushPvm(enc("more"));
  assert.equal(s2.released.length, 0);
  assert.equal(s2.mismatch, undefined);
  assert.equal(c.pushSvm(enc("more")).released.length, 0);
  assert.equal(c.heldBytes, 7);
  // A checkpoint makes the PVM's output the truth and restarts comparison at its offset.
  assert.equal(str(c.resync()), "Xefmore");
  assert.equal(c.diverged, undefined);
  assert.equal(c.svmEnd, 10);
  c.pushPvm(enc("z"));
  assert.equal(str(c.pushSvm(enc("z")).released), "z");
});

test("colo: shutdown markers must agree; bytes past the other's shutdown are a close mismatch", () => {
  const ok = new StreamCompare("colo");
  ok.pushPvm(enc("ab"));
  ok.pushSvm(enc("ab"));
  assert.equal(ok.marker("pvm", "close"), undefined);
  assert.deepEqual(ok.takeMarkers(), { shutdown: false, close: false });
  assert.equal(ok.pvmWaiting, true);
  assert.equal(ok.marker("svm", "close"), undefined);
  assert.deepEqual(ok.takeMarkers(), { shutdown: true, close: true });
  assert.deepEqual(ok.takeMarkers(), { shutdown: false, close: false });

  const bad = new StreamCompare("colo");
  bad.pushSvm(enc("ab"));
  bad.marker("svm", "shutdown");
  const s = bad.pushPvm(enc("abc"));
  assert.equal(str(s.released), "ab");
  assert.equal(s.mismatch?.kind, "close-mismatch");
  assert.equal(s.mismatch?.offset, 2);

  const offsets = new StreamCompare("colo");
  offsets.marker("pvm", "shutdown");
  assert.equal(offsets.pushSvm(enc("x")).mismatch?.kind, "close-mismatch");
});

test("hold (Remus): output waits for releaseTo of a covering checkpoint", () => {
  const c = new StreamCompare("hold");
  c.pushPvm(enc("abc"));
  const mark = c.snapshot();
  c.pushPvm(enc("def"));
  c.marker("pvm", "close");
  assert.equal(c.heldBytes, 6);
  assert.equal(str(c.releaseTo(mark)), "abc");
  assert.deepEqual(c.takeMarkers(), { shutdown: false, close: false });
  assert.equal(str(c.releaseTo(c.snapshot())), "def");
  assert.deepEqual(c.takeMarkers(), { shutdown: true, close: true });
});

test("pass: released at once; switching colo → pass releases what is held", () => {
  const p = new StreamCompare("pass");
  assert.equal(str(p.pushPvm(enc("hi")).released), "hi");
  const c = new StreamCompare("colo");
  c.pushPvm(enc("held"));
  assert.equal(str(c.setMode("pass")), "held");
  assert.equal(str(c.pushPvm(enc("!")).released), "!");
});

test("property: released bytes are exactly the longest common prefix, for any streams and chunkings, until a checkpoint releases the rest", () => {
  const stream = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    // Mostly-equal pairs are the interesting case: derive b from a with a small edit.
    fc.constant(undefined),
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 0, maxLength: 40 }),
      stream,
      fc.nat(40),
      fc.uint8Array({ maxLength: 3 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }),
      fc.array(fc.boolean(), { maxLength: 30 }),
      (a, other, cut, tail, cutsA, cutsB, order) => {
        const b = other ?? cat([a.subarray(0, Math.min(cut, a.byteLength)), tail]);
        const ca = chunk(a, cutsA);
        const cb = chunk(b, cutsB);
        const c = new StreamCompare("colo");
        const released: Uint8Array[] = [];
        const mismatches: number[] = [];
        let ia = 0;
        let ib = 0;
        let k = 0;
        const expected = lcp(a, b);
        while (ia < ca.length || ib < cb.length) {
          const takeA =
            ib >= cb.length || (ia < ca.length && (order[k++ % Math.max(order.length, 1)] ?? true));
          const step = takeA ? c.pushPvm(ca[ia++]!) : c.pushSvm(cb[ib++]!);
          released.push(...step.released);
          if (step.mismatch !== undefined) mismatches.push(step.mismatch.offset);
          // Never anything beyond the common prefix, at any moment.
          assert.ok(c.released <= expected);
          assert.equal(c.released, cat(released).byteLength);
        }
        const r = cat(released);
        assert.deepEqual(r, a.subarray(0, expected));
        const differ = expected < Math.min(a.byteLength, b.byteLength);
        assert.deepEqual(mismatches, differ ? [expected] : []);
        assert.equal(c.heldBytes, a.byteLength - expected);
        // A checkpoint makes the PVM's output the truth: the rest of it, and then comparison afresh.
        assert.deepEqual(cat([r, ...c.resync()]), a);
        assert.equal(c.svmEnd, a.byteLength);
        assert.equal(str(c.pushSvm(enc("k")).released) + str(c.pushPvm(enc("k")).released), "k");
      },
    ),
    { numRuns: 500 },
  );
});
