/**
 * The slow, obvious codec: streams written byte by byte from the reference tables (not through
 * src/stream's encoders), and a naive whole-buffer record splitter. Tests use it as the oracle
 * for the fast encoder and decoder, and test/fixtures/make-fixtures.ts uses it to write goldens.
 */

export type Bytes = number[];

export const u8 = (n: number): Bytes => [n & 0xff];
export const u16le = (n: number): Bytes => [n & 0xff, (n >>> 8) & 0xff];
export const u32le = (n: number): Bytes => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
export const u32be = (n: number): Bytes => u32le(n).reverse();
export function u64le(n: bigint | number): Bytes {
  let v = BigInt(n);
  const out: Bytes = [];
  for (let i = 0; i < 8; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}
export const u64be = (n: bigint | number): Bytes => u64le(n).reverse();
export const ascii = (s: string): Bytes => [...s].map((c) => c.charCodeAt(0));
export const zeros = (n: number): Bytes => new Array<number>(n).fill(0);

/** type u32 LE, length u32 LE, body, zero padding to a multiple of 8. */
export function rec(type: number, body: Bytes = []): Bytes {
  const pad = (8 - (body.length % 8)) % 8;
  return [...u32le(type), ...u32le(body.length), ...body, ...zeros(pad)];
}

/** Hex string (spaces and newlines ignored) to bytes. */
export function hex(s: string): Uint8Array {
  const clean = s.replace(/[^0-9a-fA-F]/g, "");
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => Number.parseInt(b, 16));
}

export const bytes = (...parts: Bytes[]): Uint8Array => Uint8Array.from(parts.flat());

// Headers, written from the reference tables
export const libxlHdr = (): Bytes => [...ascii("LibxlFmt"), ...u32be(2), ...u32be(0)];
export const ihdr = (version = 3): Bytes => [
  ...zeros(8).map(() => 0xff),
  ...ascii("XENF"),
  ...u32be(version),
  0,
  0,
  0,
  0,
  ...zeros(4),
];
export const dhdr = (type: number, major = 4, minor = 19): Bytes => [
  ...u32le(type),
  ...u16le(12),
  0,
  0,
  ...u32le(major),
  ...u32le(minor),
];
export function xlHdr(config: string): Bytes {
  const cfg = ascii(config);
  const optional = [...u32le(cfg.length), ...cfg];
  return [
    ...ascii("Xen saved domain, xl format\n \0 \r"),
    ...u32le(0x01020304),
    ...u32le(0x3),
    ...u32le(0),
    ...u32le(optional.length),
    ...optional,
  ];
}

/** PAGE_DATA body: entries (pfn, type) and page contents as fill bytes. */
export function pageDataBody(entries: readonly [number, number][], fills: readonly number[]): Bytes {
  const out: Bytes = [...u32le(entries.length), ...zeros(4)];
  for (const [pfn, type] of entries) out.push(...u64le((BigInt(type) << 60n) | BigInt(pfn)));
  for (const f of fills) out.push(...new Array<number>(4096).fill(f));
  return out;
}

export interface OracleRecord {
  readonly offset: number;
  readonly type: number;
  readonly length: number;
  readonly body: Uint8Array;
}

/** Splits a headerless run of records, naively, from a whole buffer. */
export function splitRecords(buf: Uint8Array, from = 0): OracleRecord[] {
  const out: OracleRecord[] = [];
  let o = from;
  while (o + 8 <= buf.length) {
    const type = buf[o]! | (buf[o + 1]! << 8) | (buf[o + 2]! << 16) | (buf[o + 3]! * 2 ** 24);
    const length = buf[o + 4]! | (buf[o + 5]! << 8) | (buf[o + 6]! << 16) | (buf[o + 7]! * 2 ** 24);
    out.push({ offset: o, type, length, body: buf.slice(o + 8, o + 8 + length) });
    o += 8 + length + ((8 - (length % 8)) % 8);
  }
  return out;
}
