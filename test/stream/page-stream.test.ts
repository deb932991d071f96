/**
 * The streaming PAGE_DATA path (`streamPageData: true`) against the whole-record path: the same
 * destination memory on every golden fixture and on generated streams, fed byte by byte and in
 * seeded random splits; the same errors; nothing of an invalid record handed out; truncation
 * mid-pages reported by end(); the lifetime rule (views valid until the next write()); page
 * pieces (setPagePieces) write the same memory at any split.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import {
  type DecodedItem,
  type DecoderOptions,
  StreamDecoder,
  type StreamedItem,
} from "../../src/stream/decoder.ts";
import { StreamError } from "../../src/stream/errors.ts";
import * as F from "../../src/stream/format.ts";
import { forEachPageRun, forEachPiece, forEachStreamedRun } from "../../src/stream/records/page-data.ts";
import { FIXTURES } from "../fixtures/make-fixtures.ts";
import { rng } from "./fuzz.ts";
import { type Bytes, bytes, dhdr, ihdr, rec, u32le, u64le, zeros } from "./oracle.ts";

const root = new URL("../../", import.meta.url).pathname;

/** Destination memory: pfn → page contents (last write wins, as in a guest's memory). */
type Memory = Map<number, string>;

interface Outcome {
  readonly memory: Memory;
  /** Every item except PAGE_DATA, in order, as comparable strings. */
  readonly others: string[];
  /** PAGE_DATA records seen: offset, pfns, types. */
  readonly records: string[];
  readonly error?: { readonly code: string; readonly offset: number | undefined };
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString("hex");

function shapeOf(i: DecodedItem): string {
  return i.kind === "header"
    ? `H ${i.header} ${i.offset} ${i.size}`
    : `${i.layer} ${i.type} ${i.offset} ${i.length} ${hexOf(i.body)}`;
}

function writeRun(memory: Memory, pfn: number, run: Uint8Array): void {
  for (let k = 0; k < run.length / 4096; k++) {
    memory.set(pfn + k, hexOf(run.subarray(k * 4096, (k + 1) * 4096)));
  }
}

function errorOf(e: unknown): { code: string; offset: number | undefined } {
  if (!(e instanceof StreamError)) throw e;
  return { code: e.code, offset: e.offset };
}

/** The reference: whole records, the input in one chunk. */
function wholePath(input: Uint8Array, options: DecoderOptions): Outcome {
  const memory: Memory = new Map();
  const others: string[] = [];
  const records: string[] = [];
  const d = new StreamDecoder(options);
  try {
    d.write(input);
    for (let item = d.next(); item !== undefined; item = d.next()) {
      if (item.kind === "record" && item.value.kind === "page-data") {
        const v = item.value;
        records.push(`${item.offset} ${[...v.pfns]} ${[...v.types]}`);
        forEachPageRun(v, (pfn, run) => writeRun(memory, pfn, run));
      } else others.push(shapeOf(item));
    }
    d.end();
    return { memory, others, records };
  } catch (e) {
    return { memory, others, records, error: errorOf(e) };
  }
}

/**
 * The streaming path over `chunks`. Items of one write() are applied only after the decoder has
 * been drained (the lifetime rule allows that), and the item protocol is checked as it goes.
 */
/** `pieces`: the decoder hands out split pages as two pieces (setPagePieces), not staged. */
function streamedPath(chunks: readonly Uint8Array[], options: DecoderOptions, pieces = false): Outcome {
  const memory: Memory = new Map();
  const others: string[] = [];
  const records: string[] = [];
  const d = new StreamDecoder({ ...options, streamPageData: true });
  if (pieces) d.setPagePieces(true);
  /** Pages being assembled from pieces (pfn → contents), for `memory`. */
  const pages = new Map<number, Uint8Array>();
  let nextOffset = 0;
  let open: Extract<StreamedItem, { kind: "page-data-begin" }> | undefined;
  let nextIndex = 0;
  try {
    const items: StreamedItem[] = [];
    for (const c of chunks) {
      // drain first, then use the items: views must stay valid until the next write()
      items.length = 0;
      d.write(c);
      try {
        for (let item = d.next(); item !== undefined; item = d.next()) items.push(item);
      } finally {
        others.push(...items.filter((i) => i.kind === "header" || i.kind === "record").map(shapeOf));
      }
      for (const item of items) {
        switch (item.kind) {
          case "page-data-begin":
            assert.equal(open, undefined, "begin inside a record");
            open = item;
            nextIndex = 0;
            nextOffset = 0;
            records.push(`${item.offset} ${[...item.entries.pfns]} ${[...item.entries.types]}`);
            break;
          case "page-data-pages":
            assert.ok(open, "pages outside a record");
            assert.equal(item.recordOffset, open.offset);
            assert.equal(item.firstDataIndex, nextIndex, "pages in order, none skipped");
            assert.equal(item.pageOffset, nextOffset, "pieces in order, none skipped");
            assert.equal(
              item.offset,
              open.offset + 16 + 8 * open.entries.count + 4096 * nextIndex + nextOffset,
            );
            if (!pieces) {
              assert.ok(item.bytes.length > 0 && item.bytes.length % 4096 === 0, "whole pages");
              nextIndex += item.bytes.length / 4096;
              forEachStreamedRun(open.dataPfns, item.firstDataIndex, item.bytes, (pfn, run) =>
                writeRun(memory, pfn, run),
              );
              break;
            }
            assert.ok(item.bytes.length > 0, "a piece has bytes");
            nextIndex += Math.floor((nextOffset + item.bytes.length) / 4096);
            nextOffset = (nextOffset + item.bytes.length) % 4096;
            forEachPiece(open.dataPfns, item.firstDataIndex, item.pageOffset, item.bytes, (dst, run) => {
              for (let pos = 0; pos < run.length; ) {
                const pfn = Math.floor((dst + pos) / 4096);
                const off = (dst + pos) % 4096;
                const n = Math.min(4096 - off, run.length - pos);
                const page = pages.get(pfn) ?? new Uint8Array(4096);
                page.set(run.subarray(pos, pos + n), off);
                pages.set(pfn, page);
                memory.set(pfn, hexOf(page));
                pos += n;
              }
            });
            break;
          case "page-data-end":
            assert.ok(open && item.offset === open.offset, "end matches begin");
            assert.equal(nextIndex, open.entries.pageCount, "every page handed out");
            assert.equal(nextOffset, 0, "no page left half written");
            open = undefined;
            break;
          default:
            assert.equal(open, undefined, "another item inside a streamed record");
        }
      }
    }
    d.end();
    return { memory, others, records };
  } catch (e) {
    return { memory, others, records, error: errorOf(e) };
  }
}

function splits(input: Uint8Array, seed: number, max: number): Uint8Array[] {
  const rand = rng(seed);
  const out: Uint8Array[] = [];
  for (let i = 0; i < input.length; ) {
    const n = 1 + Math.floor(rand() * max);
    out.push(input.slice(i, i + n)); // copies: each chunk is its own memory, as from a socket
    i += n;
  }
  return out;
}

const byteByByte = (input: Uint8Array) => splits(input, 1, 1);

function assertSame(got: Outcome, want: Outcome, label: string): void {
  assert.deepEqual(got.error, want.error, `${label}: error`);
  assert.deepEqual(got.others, want.others, `${label}: other items`);
  if (want.error === undefined) assert.deepEqual(got.records, want.records, `${label}: PAGE_DATA entries`);
  if (want.error === undefined) assert.deepEqual(got.memory, want.memory, `${label}: destination memory`);
}

// ---------------------------------------------------------------------------------------------
// Golden fixtures

const golden = [...new Map(FIXTURES.map((f) => [f.file, f])).values()].map((f) => ({
  file: f.file,
  bytes: new Uint8Array(readFileSync(`${root}test/fixtures/${f.file}`)),
  options: (f.flags.includes("--back-channel") ? { start: "back-channel" } : {}) as DecoderOptions,
}));

test("golden fixtures: streaming writes the same memory as whole records, byte by byte and in random splits", () => {
  let withPages = 0;
  for (const f of golden) {
    const want = wholePath(f.bytes, f.options);
    if (want.memory.size > 0) withPages++;
    assertSame(streamedPath([f.bytes], f.options), want, `${f.file} one chunk`);
    assertSame(streamedPath(byteByByte(f.bytes), f.options), want, `${f.file} byte by byte`);
    for (let seed = 1; seed <= 12; seed++) {
      for (const max of [7, 4100, 9000]) {
        assertSame(
          streamedPath(splits(f.bytes, seed, max), f.options),
          want,
          `${f.file} seed ${seed}/${max}`,
        );
        assertSame(
          streamedPath(splits(f.bytes, seed, max), f.options, true),
          want,
          `${f.file} pieces, seed ${seed}/${max}`,
        );
      }
    }
  }
  assert.ok(withPages >= 4, "the fixtures carry pages");
});

test("golden fixtures: the decoder-level errors are the same (reserved pfn bits, bad padding, truncation)", () => {
  const codes = golden.map((f) => streamedPath(splits(f.bytes, 3, 300), f.options).error?.code);
  assert.ok(
    codes.includes("reserved-nonzero") && codes.includes("bad-padding") && codes.includes("truncated"),
  );
});

// ---------------------------------------------------------------------------------------------
// Generated streams

/** A page whose every byte depends on (tag, byte index), so misplaced bytes are seen. */
function pageBytes(tag: number): Bytes {
  const out = new Array<number>(4096);
  for (let i = 0; i < 4096; i++) out[i] = (tag * 131 + i * 7 + (i >> 8)) & 0xff;
  return out;
}

const hasData = (t: number) => t <= 4 || (t >= 9 && t <= 0xc);

function pageDataRecord(entries: readonly [number, number][], tag: number): Bytes {
  const body: Bytes = [...u32le(entries.length), ...zeros(4)];
  for (const [pfn, type] of entries) body.push(...u64le((BigInt(type) << 60n) | BigInt(pfn)));
  entries.forEach(([, type], i) => {
    if (hasData(type)) body.push(...pageBytes(tag + i));
  });
  return rec(F.LIBXC.PAGE_DATA, body);
}

const entryArb = fc.tuple(
  fc.integer({ min: 0, max: 40 }),
  fc.constantFrom(0, 0, 0, 1, 9, 0xc, 0xd, 0xe, 0xf),
);
const recordArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(entryArb, { minLength: 1, maxLength: 9 }).map((e) => ({ pages: e })) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 20 }).map((b) => ({ context: b })) },
  { weight: 1, arbitrary: fc.constant({ optional: true }) },
);

/** A bare libxc stream: headers, the generated records (HVM_CONTEXT, skipped optional ones), END. */
function libxcStream(records: readonly ({ pages: [number, number][] } | { context: Uint8Array } | object)[]) {
  const parts: Bytes[] = [ihdr(3), dhdr(2)];
  records.forEach((r, i) => {
    if ("pages" in r) parts.push(pageDataRecord(r.pages, i * 16));
    else if ("context" in r) parts.push(rec(F.LIBXC.HVM_CONTEXT, [...r.context]));
    else parts.push(rec(0x8000_4242, [1, 2, 3]));
  });
  parts.push(rec(F.LIBXC.END));
  return bytes(...parts);
}

test("generated PAGE_DATA streams: streaming = whole records = the model, at any split", () => {
  fc.assert(
    fc.property(
      fc.array(recordArb, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.constantFrom(1, 3, 64, 4095, 4096, 4097, 12_000),
      (records, seed, max) => {
        const input = libxcStream(records);
        const options: DecoderOptions = { start: "libxc", reuseBuffer: true };
        const want = wholePath(input, options);
        assert.equal(want.error, undefined);
        // the model: each data entry's page, in stream order, last write wins
        const model: Memory = new Map();
        records.forEach((r, i) => {
          if (!("pages" in r)) return;
          r.pages.forEach(([pfn, type], k) => {
            if (hasData(type)) model.set(pfn, hexOf(Uint8Array.from(pageBytes(i * 16 + k))));
          });
        });
        assert.deepEqual(want.memory, model);
        assertSame(streamedPath(splits(input, seed, max), options), want, `seed ${seed} max ${max}`);
        assertSame(
          streamedPath(splits(input, seed, max), options, true),
          want,
          `pieces: seed ${seed} max ${max}`,
        );
      },
    ),
    { numRuns: 150 },
  );
});

test("pages that lie within a chunk are views of it, not copies; a split page comes out whole", () => {
  const input = libxcStream([
    {
      pages: [
        [1, 0],
        [2, 0],
        [9, 0],
      ],
    },
  ]);
  const d = new StreamDecoder({ start: "libxc", streamPageData: true });
  const items = d.push(input);
  const pages = items.filter((i) => i.kind === "page-data-pages");
  assert.equal(pages.length, 1);
  assert.equal(pages[0]!.bytes.buffer, input.buffer);
  assert.equal(pages[0]!.bytes.length, 3 * 4096);
  // cut in the middle of the second page: first page from chunk 1, second staged, third from chunk 2
  const cut = 40 + 16 + 24 + 4096 + 100;
  const d2 = new StreamDecoder({ start: "libxc", streamPageData: true });
  const a = d2.push(input.subarray(0, cut)).filter((i) => i.kind === "page-data-pages");
  const b = d2.push(input.subarray(cut)).filter((i) => i.kind === "page-data-pages");
  d2.end();
  assert.deepEqual(
    [...a, ...b].map((i) => [i.firstDataIndex, i.bytes.length, i.bytes.buffer === input.buffer]),
    [
      [0, 4096, true],
      [1, 4096, false],
      [2, 4096, true],
    ],
  );
  assert.deepEqual(b[0]!.bytes, input.subarray(cut - 100, cut - 100 + 4096));
});

// ---------------------------------------------------------------------------------------------
// Invalid records and truncation

const head = (): Bytes => [...ihdr(3), ...dhdr(2)];

/** PAGE_DATA records that must be refused, with the whole-record path's error code. */
const INVALID: readonly { name: string; record: Bytes; code: string }[] = [
  { name: "count 0", record: rec(1, [...u32le(0), ...zeros(4), ...u64le(0)]), code: "bad-value" },
  {
    name: "reserved word",
    record: rec(1, [...u32le(1), ...u32le(1), ...u64le(0n), ...pageBytes(1)]),
    code: "reserved-nonzero",
  },
  {
    // entry 0 carries a page, 1…1022 are XTAB (no data), 1023 has a reserved bit set
    name: "reserved pfn bits in the last of 1024 entries",
    record: rec(1, [
      ...u32le(1024),
      ...zeros(4),
      ...Array.from({ length: 1024 }, (_, i) =>
        u64le(i === 0 ? 0n : i === 1023 ? (1n << 52n) | 5n : (0xfn << 60n) | BigInt(i)),
      ).flat(),
      ...pageBytes(3),
    ]),
    code: "reserved-nonzero",
  },
  {
    name: "type 0x5",
    record: rec(1, [...u32le(1), ...zeros(4), ...u64le(5n << 60n), ...pageBytes(1)]),
    code: "bad-value",
  },
  {
    name: "type 0x8",
    record: rec(1, [...u32le(1), ...zeros(4), ...u64le(8n << 60n), ...pageBytes(1)]),
    code: "bad-value",
  },
  {
    name: "a page missing",
    record: rec(1, [...u32le(2), ...zeros(4), ...u64le(0), ...u64le(1), ...pageBytes(1)]),
    code: "bad-length",
  },
  {
    name: "a page too many",
    record: rec(1, [...u32le(1), ...zeros(4), ...u64le(0), ...pageBytes(1), ...pageBytes(2)]),
    code: "bad-length",
  },
  {
    name: "XTAB entry with a page",
    record: rec(1, [...u32le(1), ...zeros(4), ...u64le(0xfn << 60n), ...pageBytes(1)]),
    code: "bad-length",
  },
  {
    name: "count beyond the body",
    record: rec(1, [...u32le(3), ...zeros(4), ...u64le(0), ...u64le(1)]),
    code: "bad-length",
  },
  { name: "too short for one entry", record: rec(1, [...u32le(1), ...zeros(4)]), code: "bad-length" },
  {
    name: "length beyond the cap",
    record: [...u32le(1), ...u32le(0x0800_0008), ...u32le(1), ...zeros(4)],
    code: "length-cap",
  },
];

test("invalid PAGE_DATA: the same error, and nothing of the record handed out before it", () => {
  for (const v of INVALID) {
    // a valid record first, so pages of *other* records are handed out
    const input = bytes(head(), pageDataRecord([[7, 0]], 1), v.record, rec(0));
    const options: DecoderOptions = { start: "libxc" };
    const want = wholePath(input, options);
    assert.equal(want.error?.code, v.code, `${v.name}: whole-record path`);
    for (const chunks of [[input], byteByByte(input), splits(input, 5, 5000)]) {
      const d = new StreamDecoder({ ...options, streamPageData: true });
      const seen: StreamedItem[] = [];
      assert.throws(
        () => {
          for (const c of chunks) {
            d.write(c);
            for (let i = d.next(); i !== undefined; i = d.next()) seen.push(i);
          }
          d.end();
        },
        (e: unknown) =>
          e instanceof StreamError &&
          e.code === v.code &&
          e.offset === want.error?.offset &&
          e.typeName === "PAGE_DATA",
        v.name,
      );
      const bad: number = want.error!.offset!;
      assert.ok(
        seen.every((i) => i.kind === "header" || i.offset < bad),
        `${v.name}: an item of the invalid record was emitted`,
      );
      assert.equal(
        seen.filter((i) => i.kind === "page-data-end").length,
        1,
        `${v.name}: the valid one came out`,
      );
      // the error sticks
      assert.throws(() => d.next(), { code: v.code });
    }
  }
});

test("truncation mid-pages: end() throws truncated at the record, after the pages that arrived", () => {
  const input = libxcStream([
    {
      pages: [
        [1, 0],
        [2, 0],
        [3, 0],
      ],
    },
  ]);
  const recordOffset = 40;
  for (const cut of [
    recordOffset + 12,
    recordOffset + 16 + 10,
    recordOffset + 40 + 4096 + 5,
    input.length - 8 - 1,
  ]) {
    const d = new StreamDecoder({ start: "libxc", streamPageData: true });
    const items: StreamedItem[] = [];
    for (const c of splits(input.subarray(0, cut), cut, 3000)) items.push(...d.push(c));
    assert.throws(
      () => d.end(),
      (e: unknown) =>
        e instanceof StreamError &&
        e.code === "truncated" &&
        e.offset === recordOffset &&
        e.typeName === "PAGE_DATA",
      `cut at ${cut}`,
    );
    assert.equal(items.filter((i) => i.kind === "page-data-end").length, 0);
  }
  // cut exactly after the record: the record is complete, the stream is not (no END)
  const d = new StreamDecoder({ start: "libxc", streamPageData: true });
  const items = d.push(input.subarray(0, input.length - 8));
  assert.equal(items.at(-1)?.kind, "page-data-end");
  assert.throws(() => d.end(), { code: "truncated" });
});

test("the default mode is unchanged: PAGE_DATA comes as one whole record", () => {
  const input = libxcStream([{ pages: [[1, 0]] }]);
  const items = new StreamDecoder({ start: "libxc" }).push(input);
  assert.deepEqual(
    items.map((i) => (i.kind === "record" ? i.name : i.header)),
    ["libxc-image", "libxc-domain", "PAGE_DATA", "END"],
  );
});

test("setStreamPageData: a seed streamed, later checkpoints whole; refused inside a streamed record", () => {
  const input = new Uint8Array(readFileSync(`${root}test/fixtures/xl-wasm-2cp.stream`));
  const whole = new StreamDecoder().push(input);
  const d = new StreamDecoder<boolean>({ streamPageData: true });
  d.write(input);
  const kinds: string[] = [];
  let switched = false;
  for (let item = d.next(); item !== undefined; item = d.next()) {
    if (item.kind === "page-data-begin") {
      assert.throws(() => d.setStreamPageData(false), /inside a streamed PAGE_DATA/);
    }
    kinds.push(item.kind === "record" ? item.name : item.kind);
    if (!switched && item.kind === "record" && item.type === F.LIBXL.CHECKPOINT_END) {
      d.setStreamPageData(false);
      switched = true;
    }
  }
  d.end();
  assert.ok(switched);
  const cut = kinds.indexOf("CHECKPOINT_END");
  const before = kinds.slice(0, cut);
  const after = kinds.slice(cut + 1);
  assert.ok(before.includes("page-data-begin") && !before.includes("PAGE_DATA"), "seed streamed");
  assert.ok(after.includes("PAGE_DATA") && !after.some((k) => k.startsWith("page-data")), "then whole");
  // the same records as a whole-record decode, once the streamed triples are folded back
  const folded = kinds.filter((k) => k !== "page-data-pages" && k !== "page-data-end");
  assert.deepEqual(
    folded.map((k) => (k === "page-data-begin" ? "PAGE_DATA" : k)),
    whole.map((i) => (i.kind === "record" ? i.name : "header")),
  );
});
