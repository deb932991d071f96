import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { encodeFrame, FrameDecoder, type Message, TransportError } from "../../src/transport/index.ts";

/** The slow, obvious decoder: the oracle for FrameDecoder. */
function oracle(bytes: Uint8Array): Message[] {
  const out: Message[] = [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let i = 0;
  while (i < bytes.byteLength) {
    const length = v.getUint32(i, true);
    out.push({ type: v.getUint16(i + 4, true), body: bytes.slice(i + 8, i + 8 + length) });
    i += 8 + length;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

const messageArb = fc.record({
  type: fc.integer({ min: 1, max: 0xffff }),
  body: fc.uint8Array({ maxLength: 300 }),
});

/** Split `bytes` at the given cut points. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.byteLength + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...points, bytes.byteLength]) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  return out;
}

test("header layout pinned: u32 length, u16 type, u16 reserved, little-endian", () => {
  const [h] = encodeFrame(0x0102, Uint8Array.of(9, 9, 9));
  assert.equal(Buffer.from(h!).toString("hex"), "0300000002010000");
});

test("property: any messages, any split, decode to the same messages as the oracle", () => {
  fc.assert(
    fc.property(
      fc.array(messageArb, { maxLength: 20 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (msgs, cuts) => {
        const wire = concat(msgs.flatMap((m) => encodeFrame(m.type, m.body)));
        const dec = new FrameDecoder({ maxMessage: 300 });
        const got: Message[] = [];
        for (const part of split(wire, cuts)) got.push(...dec.push(part));
        dec.end();
        const norm = (ms: Message[]) =>
          ms.map((m) => ({ type: m.type, body: Buffer.from(m.body).toString("hex") }));
        assert.deepEqual(norm(got), norm(oracle(wire)));
        assert.deepEqual(norm(got), norm(msgs));
        assert.equal(dec.offset, wire.byteLength);
      },
    ),
    { numRuns: 300 },
  );
});

test("property: byte-by-byte feeding never buffers more than header + cap", () => {
  fc.assert(
    fc.property(fc.array(messageArb, { maxLength: 5 }), (msgs) => {
      const wire = concat(msgs.flatMap((m) => encodeFrame(m.type, m.body)));
      const dec = new FrameDecoder({ maxMessage: 300 });
      let n = 0;
      for (let i = 0; i < wire.byteLength; i++) {
        n += dec.push(wire.subarray(i, i + 1)).length;
        assert.ok(dec.buffered <= 8 + 300);
      }
      assert.equal(n, msgs.length);
    }),
    { numRuns: 100 },
  );
});

test("property: every declared length above the cap is refused before allocating, at its frame's offset", () => {
  fc.assert(
    fc.property(
      fc.array(messageArb, { maxLength: 5 }),
      fc.integer({ min: 301, max: 0xffff_ffff }),
      fc.array(fc.nat(), { maxLength: 5 }),
      (before, length, cuts) => {
        const prefix = concat(before.flatMap((m) => encodeFrame(m.type, m.body)));
        const bad = new Uint8Array(8);
        new DataView(bad.buffer).setUint32(0, length, true);
        new DataView(bad.buffer).setUint16(4, 7, true);
        const dec = new FrameDecoder({ maxMessage: 300 });
        let err: unknown;
        try {
          for (const part of split(concat([prefix, bad]), cuts)) dec.push(part);
        } catch (e) {
          err = e;
        }
        assert.ok(err instanceof TransportError);
        assert.equal(err.code, "frame-too-large");
        assert.equal(err.offset, prefix.byteLength);
        assert.ok(dec.buffered <= 8);
      },
    ),
    { numRuns: 200 },
  );
});

test("property: truncation anywhere inside a frame is a typed error naming the frame's offset", () => {
  fc.assert(
    fc.property(fc.array(messageArb, { minLength: 1, maxLength: 6 }), fc.nat(), (msgs, cut) => {
      const frames = msgs.map((m) => concat(encodeFrame(m.type, m.body)));
      const wire = concat(frames);
      const at = cut % wire.byteLength;
      const starts: number[] = [];
      let s = 0;
      for (const f of frames) {
        starts.push(s);
        s += f.byteLength;
      }
      const dec = new FrameDecoder({ maxMessage: 300 });
      dec.push(wire.subarray(0, at));
      if (starts.includes(at)) {
        dec.end();
        return;
      }
      const frameStart = Math.max(...starts.filter((x) => x < at));
      assert.throws(
        () => dec.end(),
        (e: unknown) =>
          e instanceof TransportError && e.code === "frame-truncated" && e.offset === frameStart,
      );
    }),
    { numRuns: 300 },
  );
});

const invalid = [
  { name: "type 0", hex: "0000000000000000", code: "frame-malformed" },
  { name: "reserved non-zero", hex: "0000000001000100", code: "frame-malformed" },
  { name: "length above cap", hex: "2d01000001000000", code: "frame-too-large" },
  { name: "length 0xffffffff", hex: "ffffffff01000000", code: "frame-too-large" },
] as const;

for (const c of invalid) {
  test(`invalid frame: ${c.name}`, () => {
    const dec = new FrameDecoder({ maxMessage: 300 });
    assert.throws(
      () => dec.push(Buffer.from(c.hex, "hex")),
      (e: unknown) => e instanceof TransportError && e.code === c.code && e.offset === 0,
    );
    assert.throws(
      () => dec.push(new Uint8Array(1)),
      (e: unknown) => e instanceof TransportError && e.code === c.code,
    );
  });
}
