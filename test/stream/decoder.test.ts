import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type DecodedItem, decodeAll, StreamDecoder } from "../../src/stream/decoder.ts";
import { concat, encode, encodePageData, encodeRecord } from "../../src/stream/encode.ts";
import { StreamError } from "../../src/stream/errors.ts";
import * as F from "../../src/stream/format.ts";
import { checkpointDirtyPfnList } from "../../src/stream/records/libxc.ts";
import { pageData } from "../../src/stream/records/page-data.ts";
import { codecFor } from "../../src/stream/registry.ts";
import { FIXTURES } from "../fixtures/make-fixtures.ts";
import { campaign, rng } from "./fuzz.ts";
import { bytes, pageDataBody, rec, splitRecords, u32le } from "./oracle.ts";

const shape = (items: DecodedItem[]) =>
  items.map((i) =>
    i.kind === "header"
      ? `H ${i.header} ${i.offset} ${i.size}`
      : `${i.layer} ${i.type} ${i.offset} ${i.length} ${Buffer.from(i.body).toString("hex")}`,
  );

const valid = FIXTURES.filter((f) => f.error === undefined && !f.flags.includes("--back-channel"));

test("fixtures decode identically whole, byte by byte, and in seeded random splits", () => {
  for (const f of valid) {
    const whole = shape(decodeAll(f.make()));
    const b = f.make();
    const d1 = new StreamDecoder();
    const one: DecodedItem[] = [];
    for (let i = 0; i < b.length; i++) one.push(...d1.push(b.subarray(i, i + 1)));
    d1.end();
    assert.deepEqual(shape(one), whole, f.file);
    for (let seed = 1; seed <= 20; seed++) {
      const rand = rng(seed);
      const d = new StreamDecoder();
      const got: DecodedItem[] = [];
      for (let i = 0; i < b.length; ) {
        const n = 1 + Math.floor(rand() * 200);
        got.push(...d.push(b.slice(i, i + n)));
        i += n;
      }
      d.end();
      assert.deepEqual(shape(got), whole, `${f.file} seed ${seed}`);
    }
  }
});

test("the fast decoder agrees with the oracle's naive splitter", () => {
  const f = FIXTURES.find((x) => x.file === "colo-hvm-2cp.stream")!;
  const b = f.make();
  const recs = decodeAll(b).filter((i) => i.kind === "record");
  // libxl header (16) + LIBXC_CONTEXT (8) + libxc headers (40), then records all the way
  const naive = [...splitRecords(b, 16).slice(0, 1), ...splitRecords(b, 64)];
  assert.deepEqual(
    recs.map((r) => [r.offset, r.type, r.length, Buffer.from(r.body).toString("hex")]),
    naive.map((r) => [r.offset, r.type, r.length, Buffer.from(r.body).toString("hex")]),
  );
});

test("round trip: PAGE_DATA gather list vs the oracle's bytes, decode gives the entries back", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.integer({ min: 0, max: 2 ** 52 - 1 }), fc.constantFrom(0, 1, 4, 9, 0xc, 0xd, 0xe, 0xf)),
        {
          minLength: 1,
          maxLength: 12,
        },
      ),
      (entries) => {
        const withData = entries.filter(([, t]) => t <= 4 || (t >= 9 && t <= 0xc));
        const pages = withData.map((_, i) => new Uint8Array(4096).fill(i + 1));
        const parts = encodePageData(
          entries.map(([pfn, type]) => ({ pfn, type })),
          pages,
        );
        assert.equal(parts.length, 1 + pages.length, "gather list: header part + page views");
        for (let i = 0; i < pages.length; i++) assert.equal(parts[i + 1], pages[i], "pages are not copied");
        const wire = concat(parts);
        const oracle = bytes(
          rec(
            F.LIBXC.PAGE_DATA,
            pageDataBody(
              entries,
              withData.map((_, i) => i + 1),
            ),
          ),
        );
        assert.deepEqual(wire, oracle);
        const v = pageData.decode(wire.subarray(8));
        assert.deepEqual(
          [...v.pfns],
          entries.map(([p]) => p),
        );
        assert.deepEqual(
          [...v.types],
          entries.map(([, t]) => t),
        );
      },
    ),
    { numRuns: 200 },
  );
});

test("round trip: every codec through encode → framing → decoder (back-channel set and libxl records)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 2 ** 53 - 1 }), { maxLength: 40 }),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      (pfns, seq) => {
        const wire = concat([
          ...encode(codecFor("libxl", F.LIBXL.CHECKPOINT_STATE)!, {
            kind: "checkpoint-state",
            id: 1,
          } as never),
          ...encode(codecFor("libxl", F.LIBXL.CHECKPOINT_SEQ)!, { kind: "checkpoint-seq", seq } as never),
          ...encode(checkpointDirtyPfnList, { kind: "dirty-pfn-list", pfns: Float64Array.from(pfns) }),
        ]);
        const d = new StreamDecoder({ start: "back-channel" });
        const items = d.push(wire);
        d.end();
        assert.equal(items.length, 3);
        const [st, sq, dl] = items as Extract<DecodedItem, { kind: "record" }>[];
        assert.deepEqual(st!.value, { kind: "checkpoint-state", id: 1 });
        assert.deepEqual(sq!.value, { kind: "checkpoint-seq", seq });
        assert.deepEqual([...(dl!.value as { pfns: Float64Array }).pfns], pfns);
      },
    ),
    { numRuns: 200 },
  );
});

test("record bodies within one chunk are views, not copies", () => {
  const b = FIXTURES.find((x) => x.file === "plain-hvm.stream")!.make();
  const items = decodeAll(b);
  const pd = items.find(
    (i) => i.kind === "record" && i.layer === "libxc" && i.type === F.LIBXC.PAGE_DATA,
  ) as Extract<DecodedItem, { kind: "record" }>;
  assert.equal(pd.body.buffer, b.buffer);
});

test("lengths are checked against the cap and the type's bounds before buffering", () => {
  const head = bytes(rec(F.LIBXL.LIBXC_CONTEXT)).subarray(0, 0);
  void head;
  // an END record claiming 2^32-8 bytes: refused at its header
  const d = new StreamDecoder({ start: "libxc" });
  const hdrs = concat([
    Uint8Array.from([
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x58, 0x45, 0x4e, 0x46, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
      0,
    ]),
    Uint8Array.from([2, 0, 0, 0, 12, 0, 0, 0, 4, 0, 0, 0, 19, 0, 0, 0]),
  ]);
  d.push(hdrs);
  assert.throws(
    () => d.push(bytes(u32le(0x01), u32le(0xfffffff8))),
    (e: unknown) => e instanceof StreamError && e.code === "length-cap" && e.offset === 40,
  );
  // and the error sticks
  assert.throws(() => d.next(), { code: "length-cap" });
  const d2 = new StreamDecoder({ start: "back-channel" });
  assert.throws(() => d2.push(bytes(u32le(F.LIBXL.CHECKPOINT_SEQ), u32le(4096))), { code: "bad-length" });
  const d3 = new StreamDecoder({ start: "back-channel", maxRecordLength: 64 });
  assert.throws(() => d3.push(bytes(u32le(F.LIBXC.CHECKPOINT_DIRTY_PFN_LIST), u32le(72))), {
    code: "length-cap",
  });
});

test("unknown optional libxc records are skipped; unknown mandatory ones and unknown libxl types fail", () => {
  const f = FIXTURES.find((x) => x.file === "plain-hvm.stream")!.make();
  // insert an optional record after STATIC_DATA_END (offset 128)
  const withOptional = concat([f.subarray(0, 128), bytes(rec(0x80001234, [1, 2, 3])), f.subarray(128)]);
  assert.equal(
    decodeAll(withOptional).filter((i) => i.kind === "record").length,
    decodeAll(f).filter((i) => i.kind === "record").length,
  );
  const withMandatory = concat([f.subarray(0, 128), bytes(rec(0x00001234, [1])), f.subarray(128)]);
  assert.throws(
    () => decodeAll(withMandatory),
    (e: unknown) =>
      e instanceof StreamError &&
      e.code === "unknown-mandatory" &&
      e.offset === 128 &&
      e.typeHex === "0x00001234",
  );
  const libxlOptional = concat([f.subarray(0, 16), bytes(rec(0x80000001)), f.subarray(16)]);
  assert.throws(() => decodeAll(libxlOptional), { code: "unknown-type" });
});

test("truncation: mid-record, mid-header, and a plain stream without its END", () => {
  const f = FIXTURES.find((x) => x.file === "plain-hvm.stream")!.make();
  assert.throws(() => decodeAll(f.subarray(0, 10)), { code: "truncated" });
  assert.throws(() => decodeAll(f.subarray(0, 140)), { code: "truncated" });
  assert.throws(() => decodeAll(f.subarray(0, f.length - 8)), { code: "truncated" });
  assert.throws(() => decodeAll(concat([f, new Uint8Array(8)])), { code: "trailing-data" });
  assert.throws(() => decodeAll(new Uint8Array(16)), { code: "bad-magic" });
  // a back channel may stop at any record boundary
  const d = new StreamDecoder({ start: "back-channel" });
  d.push(concat(encodeRecord(F.LIBXL.CHECKPOINT_STATE, [Uint8Array.from([2, 0, 0, 0])])));
  d.end();
});

test("write before drain is refused (bounded buffering)", () => {
  const d = new StreamDecoder();
  const b = FIXTURES[0]!.make();
  d.write(b);
  assert.ok(d.next());
  assert.throws(() => d.write(b), /drained/);
});

test("mutation fuzzing: only typed StreamErrors, bounded", () => {
  const corpus = FIXTURES.filter((f) => f.error === undefined).map((f) => ({
    bytes: f.make(),
    options: {
      backChannel: f.flags.includes("--back-channel"),
      ...(f.flags.includes("plain") ? { mode: "plain" as const } : {}),
    },
  }));
  const codes = campaign(corpus, 3000, 42);
  assert.ok(codes.size > 3, `varied outcomes: ${[...codes.keys()].join(",")}`);
});
