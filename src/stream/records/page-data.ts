/**
 * libxc PAGE_DATA (0x01): u32 count, u32 reserved, count × u64 pfn entries, then one 4 KiB page
 * for each entry whose type carries data, in entry order.
 *
 * pfn entry: bits 63–60 type nibble, 59–52 reserved (zero), 51–0 pfn. pfns are returned as JS
 * numbers: 52 bits fit exactly.
 */
import { type BodyCodec, fail, requireMinLength, requireZero, viewOf } from "../codec.ts";
import {
  LIBXC,
  MAX_BATCH_SIZE,
  PAGE_DATA_HEADER_SIZE,
  PAGE_SIZE,
  PAGE_TYPE_INVALID_FIRST,
  PAGE_TYPE_INVALID_LAST,
  PFN_MAX,
  REC_LENGTH_MAX,
} from "../format.ts";

/** Does a page of this type nibble carry 4 KiB of data? (0x0–0x4 and 0x9–0xC.) */
export function pageTypeHasData(type: number): boolean {
  return type <= 0x4 || (type >= 0x9 && type <= 0xc);
}

/** Is this type nibble invalid (0x5–0x8)? */
export function pageTypeInvalid(type: number): boolean {
  return type >= PAGE_TYPE_INVALID_FIRST && type <= PAGE_TYPE_INVALID_LAST;
}

/**
 * Validates and writes pfn entry `index` (pfn ≤ PFN_MAX, type nibble 0x0–0xF and not invalid) at
 * `offset`; returns whether its type carries a data page. The one writer of pfn entries, used by
 * the PAGE_DATA codec and `encodePageData`.
 */
export function putPfnEntry(
  view: DataView,
  offset: number,
  index: number,
  pfn: number,
  type: number,
): boolean {
  if (
    !(pfn >= 0 && pfn <= PFN_MAX && Number.isInteger(pfn)) ||
    !(type >= 0 && type <= 0xf) ||
    pageTypeInvalid(type)
  ) {
    fail("invalid-argument", `entry ${index}: pfn ${pfn} type ${type} cannot be encoded`, { index });
  }
  view.setUint32(offset, pfn % 0x1_0000_0000, true);
  view.setUint32(offset + 4, ((type << 28) | Math.floor(pfn / 0x1_0000_0000)) >>> 0, true);
  return pageTypeHasData(type);
}

/** The validated pfn entry array of a PAGE_DATA record. */
export interface PageEntries {
  /** Number of pfn entries (≥ 1). */
  readonly count: number;
  /** pfn of each entry (bits 51–0). */
  readonly pfns: Float64Array;
  /** Type nibble of each entry. */
  readonly types: Uint8Array;
  /** Number of entries that carry data. */
  readonly pageCount: number;
}

export interface PageData extends PageEntries {
  readonly kind: "page-data";
  /** The page data: `pageCount` × 4096 bytes, a view into the record body. */
  readonly pages: Uint8Array;
}

/** Largest pfn count whose record fits REC_LENGTH_MAX with no data at all. */
const COUNT_MAX = Math.floor((REC_LENGTH_MAX - PAGE_DATA_HEADER_SIZE) / 8);

/**
 * Validates the 8-byte PAGE_DATA body header (`head`, at least 8 bytes) against the body length
 * from the record header: count ≥ 1, reserved zero, room for the pfn array. Returns the count.
 * Throws a StreamError without a position (the decoder places it).
 */
export function pageDataCount(head: Uint8Array, bodyLength: number): number {
  const count = (head[0]! | (head[1]! << 8) | (head[2]! << 16) | (head[3]! << 24)) >>> 0;
  requireZero(head, 4, 8, "PAGE_DATA reserved");
  if (count === 0) fail("bad-value", "PAGE_DATA count is 0");
  if (count > COUNT_MAX || PAGE_DATA_HEADER_SIZE + 8 * count > bodyLength) {
    fail("bad-length", `PAGE_DATA count ${count} needs ${8 + 8 * count} bytes, body has ${bodyLength}`, {
      count,
      actual: bodyLength,
    });
  }
  return count;
}

/**
 * Validates and decodes the pfn entry array (`entries`: exactly 8 × `count` bytes, as returned by
 * `pageDataCount`): reserved bits 59–52 zero, no invalid type, and the body length exactly
 * 8 + 8C + 4096N where N counts the entries that carry data. Error details give `at` as a body
 * offset.
 */
export function pageDataEntries(entries: Uint8Array, count: number, bodyLength: number): PageEntries {
  const view = viewOf(entries);
  const pfns = new Float64Array(count);
  const types = new Uint8Array(count);
  let pageCount = 0;
  for (let i = 0, o = 0; i < count; i++, o += 8) {
    const lo = view.getUint32(o, true);
    const hi = view.getUint32(o + 4, true);
    const type = hi >>> 28;
    const at = PAGE_DATA_HEADER_SIZE + o;
    if ((hi & 0x0ff0_0000) !== 0) {
      fail("reserved-nonzero", `pfn[${i}] has reserved bits 59–52 set`, { index: i, at });
    }
    if (pageTypeInvalid(type)) {
      fail("bad-value", `pfn[${i}] has invalid page type 0x${type.toString(16)}`, { index: i, type, at });
    }
    pfns[i] = (hi & 0x000f_ffff) * 0x1_0000_0000 + lo;
    types[i] = type;
    if (pageTypeHasData(type)) pageCount++;
  }
  const expected = PAGE_DATA_HEADER_SIZE + 8 * count + PAGE_SIZE * pageCount;
  if (bodyLength !== expected) {
    fail("bad-length", `PAGE_DATA length ${bodyLength}, expected 8 + 8×${count} + 4096×${pageCount}`, {
      expected,
      actual: bodyLength,
      count,
      pageCount,
    });
  }
  return { count, pfns, types, pageCount };
}

export const pageData: BodyCodec<PageData> = {
  layer: "libxc",
  type: LIBXC.PAGE_DATA,
  name: "PAGE_DATA",
  minLength: PAGE_DATA_HEADER_SIZE + 8,
  maxLength: REC_LENGTH_MAX,
  size: (v) => PAGE_DATA_HEADER_SIZE + 8 * v.count + PAGE_SIZE * v.pageCount,
  encode(v, view, offset) {
    view.setUint32(offset, v.count, true);
    view.setUint32(offset + 4, 0, true);
    let o = offset + PAGE_DATA_HEADER_SIZE;
    let withData = 0;
    for (let i = 0; i < v.count; i++) {
      if (putPfnEntry(view, o, i, v.pfns[i]!, v.types[i]!)) withData++;
      o += 8;
    }
    if (withData !== v.pageCount || v.pages.length !== withData * PAGE_SIZE) {
      fail("invalid-argument", `${withData} entries carry data but ${v.pages.length} page bytes given`);
    }
    new Uint8Array(view.buffer, view.byteOffset + o, v.pages.length).set(v.pages);
    return o + v.pages.length;
  },
  decode(body) {
    requireMinLength(body, PAGE_DATA_HEADER_SIZE + 8);
    const count = pageDataCount(body, body.length);
    const o = PAGE_DATA_HEADER_SIZE + 8 * count;
    const e = pageDataEntries(body.subarray(PAGE_DATA_HEADER_SIZE, o), count, body.length);
    return { kind: "page-data", ...e, pages: body.subarray(o) };
  },
};

/** Saver-side batch limit, exported beside the codec for engines. */
export { MAX_BATCH_SIZE };

/**
 * Calls `apply(firstPfn, bytes)` once per run of consecutive pfns that carry data, with `bytes` a
 * view of the run's pages (run length × 4096) in the record body: one copy per run instead of
 * one per page. Entries without data (BROKEN, XALLOC, XTAB) end a run and are not reported.
 */
export function forEachPageRun(v: PageData, apply: (firstPfn: number, bytes: Uint8Array) => void): void {
  let dataIndex = 0;
  let runPfn = -1;
  let runStart = 0;
  let runLen = 0;
  for (let i = 0; i < v.count; i++) {
    const type = v.types[i]!;
    const pfn = v.pfns[i]!;
    if (!pageTypeHasData(type)) {
      if (runLen > 0) apply(runPfn, v.pages.subarray(runStart * 4096, (runStart + runLen) * 4096));
      runLen = 0;
      continue;
    }
    if (runLen > 0 && pfn === runPfn + runLen) {
      runLen++;
    } else {
      if (runLen > 0) apply(runPfn, v.pages.subarray(runStart * 4096, (runStart + runLen) * 4096));
      runPfn = pfn;
      runStart = dataIndex;
      runLen = 1;
    }
    dataIndex++;
  }
  if (runLen > 0) apply(runPfn, v.pages.subarray(runStart * 4096, (runStart + runLen) * 4096));
}

/**
 * pfns of the data-carrying entries, in data order: page k of the record's page data belongs to
 * `dataPfns(e)[k]`. One allocation of 8 × pageCount bytes.
 */
export function dataPfnsOf(e: PageEntries): Float64Array {
  const out = new Float64Array(e.pageCount);
  for (let i = 0, k = 0; i < e.count; i++) if (pageTypeHasData(e.types[i]!)) out[k++] = e.pfns[i]!;
  return out;
}

/**
 * The streaming decoder's counterpart of `forEachPageRun`: `bytes` holds whole pages, the first
 * being data page `firstDataIndex` of the record; calls `apply(firstPfn, run)` once per run of
 * consecutive pfns, `run` a view of `bytes`.
 */
export function forEachStreamedRun(
  dataPfns: Float64Array,
  firstDataIndex: number,
  bytes: Uint8Array,
  apply: (firstPfn: number, bytes: Uint8Array) => void,
): void {
  const n = bytes.length / PAGE_SIZE;
  let start = 0;
  for (let k = 1; k <= n; k++) {
    if (k < n && dataPfns[firstDataIndex + k] === dataPfns[firstDataIndex + k - 1]! + 1) continue;
    apply(dataPfns[firstDataIndex + start]!, bytes.subarray(start * PAGE_SIZE, k * PAGE_SIZE));
    start = k;
  }
}

/**
 * `forEachStreamedRun` for page pieces (a decoder with `setPagePieces(true)`): `bytes` starts
 * `pageOffset` bytes into data page `firstDataIndex` and may end inside a page. Calls
 * `apply(destinationByte, view)` once per stretch of `bytes` whose destination (pfn × 4096 +
 * offset) is contiguous, `view` a view of `bytes`.
 */
export function forEachPiece(
  dataPfns: Float64Array,
  firstDataIndex: number,
  pageOffset: number,
  bytes: Uint8Array,
  apply: (destination: number, bytes: Uint8Array) => void,
): void {
  const n = bytes.length;
  let pos = 0;
  let index = firstDataIndex;
  let off = pageOffset;
  let runDst = -1;
  let runStart = 0;
  while (pos < n) {
    const take = Math.min(PAGE_SIZE - off, n - pos);
    const dst = dataPfns[index]! * PAGE_SIZE + off;
    if (runDst < 0 || dst !== runDst + (pos - runStart)) {
      if (runDst >= 0) apply(runDst, bytes.subarray(runStart, pos));
      runDst = dst;
      runStart = pos;
    }
    pos += take;
    off += take;
    if (off === PAGE_SIZE) {
      off = 0;
      index++;
    }
  }
  if (runDst >= 0) apply(runDst, bytes.subarray(runStart, pos));
}
