/**
 * Record encoders. Every encoder returns a gather list: an array of Uint8Array views to be written
 * in order (writev-style). Page data is never concatenated: the caller's page views appear in the
 * list as given, so a 1,024-page record costs one small allocation (headers and pfn array).
 *
 * Ownership: the returned list borrows the caller's views; keep them unchanged until written.
 */
import { type BodyCodec, encodeBody, fail } from "./codec.ts";
import {
  LIBXC,
  PAGE_DATA_HEADER_SIZE,
  PAGE_SIZE,
  REC_LENGTH_MAX,
  RECORD_ALIGN,
  RECORD_HEADER_SIZE,
} from "./format.ts";
import { putPfnEntry } from "./records/page-data.ts";

const ZERO_PAD = new Uint8Array(RECORD_ALIGN);

/** Bytes of padding after a body of `length` bytes. */
export function paddingFor(length: number): number {
  return (RECORD_ALIGN - (length % RECORD_ALIGN)) % RECORD_ALIGN;
}

/** Total wire size of a record with a body of `length` bytes. */
export function recordSize(length: number): number {
  return RECORD_HEADER_SIZE + length + paddingFor(length);
}

function recordHeader(type: number, length: number): Uint8Array {
  if (length + paddingFor(length) > REC_LENGTH_MAX) {
    fail("length-cap", `record body of ${length} bytes exceeds REC_LENGTH_MAX`, { length });
  }
  const h = new Uint8Array(RECORD_HEADER_SIZE);
  const view = new DataView(h.buffer);
  view.setUint32(0, type >>> 0, true);
  view.setUint32(4, length, true);
  return h;
}

/**
 * Frames a body given as parts: [8-byte header, ...bodyParts, zero padding to 8].
 * Layer-agnostic (both layers share the framing).
 */
export function encodeRecord(type: number, bodyParts: readonly Uint8Array[] = []): Uint8Array[] {
  let length = 0;
  for (const p of bodyParts) length += p.length;
  const out = [recordHeader(type, length)];
  for (const p of bodyParts) if (p.length > 0) out.push(p);
  const pad = paddingFor(length);
  if (pad > 0) out.push(ZERO_PAD.subarray(0, pad));
  return out;
}

/** Encodes one record with its codec: header, body, padding. */
export function encode<T>(codec: BodyCodec<T>, value: T): Uint8Array[] {
  return encodeRecord(codec.type, [encodeBody(codec, value)]);
}

/** One PAGE_DATA entry: a pfn (≤ 2^52−1) and its type nibble (default NOTAB, 0). */
export interface PageEntry {
  readonly pfn: number;
  readonly type?: number;
}

/**
 * PAGE_DATA as a gather list: [record header + PAGE_DATA header + pfn array, ...pages].
 * `pages` holds one 4 KiB view for each entry whose type carries data, in entry order.
 * No padding is needed: the body is a multiple of 8.
 */
export function encodePageData(entries: readonly PageEntry[], pages: readonly Uint8Array[]): Uint8Array[] {
  const count = entries.length;
  if (count === 0) fail("invalid-argument", "PAGE_DATA needs at least one entry");
  const bodyLength = PAGE_DATA_HEADER_SIZE + 8 * count + PAGE_SIZE * pages.length;
  const head = new Uint8Array(RECORD_HEADER_SIZE + PAGE_DATA_HEADER_SIZE + 8 * count);
  head.set(recordHeader(LIBXC.PAGE_DATA, bodyLength), 0);
  const view = new DataView(head.buffer);
  view.setUint32(8, count, true);
  let o = 16;
  let withData = 0;
  for (let i = 0; i < count; i++) {
    const { pfn, type = 0 } = entries[i]!;
    if (putPfnEntry(view, o, i, pfn, type)) withData++;
    o += 8;
  }
  if (withData !== pages.length) {
    fail("invalid-argument", `${withData} entries carry data but ${pages.length} pages given`);
  }
  const out: Uint8Array[] = [head];
  for (const p of pages) {
    if (p.length !== PAGE_SIZE) fail("invalid-argument", `page of ${p.length} bytes, expected 4096`);
    out.push(p);
  }
  return out;
}

/** Total bytes of a gather list. */
export function gatherLength(parts: readonly Uint8Array[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}

/** Concatenates a gather list (for files and tests; the engine should write the list as is). */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(gatherLength(parts));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
