/**
 * The codec contract and small helpers shared by every record family.
 *
 * A body codec is an object: `size(value)` bytes, `encode(value, view, offset)` into a DataView,
 * `decode(body)` from a view of exactly the body (padding excluded), validating every field.
 * `minLength`/`maxLength` bound the body length and are checked against the record header before
 * any body byte is buffered. Decoding never copies bulk data: blobs come back as subarrays of the
 * body. All fields are little-endian (the only byte order Xen writes); `true` is spelled out at
 * every DataView call.
 */
import { StreamError, type StreamErrorCode } from "./errors.ts";
import { type Layer, REC_LENGTH_MAX } from "./format.ts";

export interface BodyCodec<T> {
  readonly layer: Layer;
  readonly type: number;
  readonly name: string;
  /** Smallest body length this type allows (bytes). */
  readonly minLength: number;
  /** Largest body length this type allows (bytes); at most REC_LENGTH_MAX. */
  readonly maxLength: number;
  /** Body size in bytes of `value` (no header, no padding). */
  size(value: T): number;
  /** Writes the body at `offset`; returns the offset after it. */
  encode(value: T, view: DataView, offset: number): number;
  /** Validates and decodes a body; throws StreamError without an offset (the caller places it). */
  decode(body: Uint8Array): T;
}

/** Throws a StreamError for a body (no position: the decoder adds the record's offset). */
export function fail(code: StreamErrorCode, reason: string, details?: Record<string, unknown>): never {
  throw new StreamError(code, reason, details === undefined ? {} : { details });
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function requireLength(body: Uint8Array, expected: number): void {
  if (body.length !== expected) {
    fail("bad-length", `body length ${body.length}, expected ${expected}`, {
      expected,
      actual: body.length,
    });
  }
}

export function requireMinLength(body: Uint8Array, min: number): void {
  if (body.length < min) {
    fail("bad-length", `body length ${body.length}, expected at least ${min}`, {
      min,
      actual: body.length,
    });
  }
}

export function requireMultiple(body: Uint8Array, unit: number, from = 0): void {
  if ((body.length - from) % unit !== 0) {
    fail("bad-length", `body length ${body.length} is not ${from} + a multiple of ${unit}`, {
      unit,
      actual: body.length,
    });
  }
}

/** Every byte of body[from, to) must be zero (reserved fields, padding). */
export function requireZero(body: Uint8Array, from: number, to: number, field: string): void {
  for (let i = from; i < to; i++) {
    if (body[i] !== 0) {
      fail("reserved-nonzero", `${field} must be zero (byte ${i} is 0x${body[i]!.toString(16)})`, {
        field,
        at: i,
      });
    }
  }
}

/** A u64 that must fit a JS number exactly (documented at each use). */
export function readSafeU64(view: DataView, offset: number, field: string): number {
  const lo = view.getUint32(offset, true);
  const hi = view.getUint32(offset + 4, true);
  if (hi > 0x1f_ffff) fail("bad-value", `${field} exceeds 2^53-1`, { field, at: offset });
  return hi * 0x1_0000_0000 + lo;
}

export function writeSafeU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Encodes one body into a fresh buffer of exactly `size(value)` bytes. */
export function encodeBody<T>(codec: BodyCodec<T>, value: T): Uint8Array {
  const size = codec.size(value);
  const out = new Uint8Array(size);
  const end = codec.encode(value, viewOf(out), 0);
  if (end !== size) throw new Error(`codec ${codec.name}: wrote ${end} bytes, size() said ${size}`);
  return out;
}

/** A record with no body (END, VERIFY, CHECKPOINT, …). */
export function emptyCodec<K extends string>(
  layer: Layer,
  type: number,
  name: string,
  kind: K,
): BodyCodec<{ readonly kind: K }> {
  return {
    layer,
    type,
    name,
    minLength: 0,
    maxLength: 0,
    size: () => 0,
    encode: (_v, _view, offset) => offset,
    decode: (body) => {
      requireLength(body, 0);
      return { kind };
    },
  };
}

/** An opaque blob of `minLength`…`maxLength` bytes. */
export function blobCodec<K extends string>(
  layer: Layer,
  type: number,
  name: string,
  kind: K,
  minLength: number,
  maxLength: number,
): BodyCodec<{ readonly kind: K; readonly data: Uint8Array }> {
  return {
    layer,
    type,
    name,
    minLength,
    maxLength,
    size: (v) => v.data.length,
    encode: (v, view, offset) => {
      new Uint8Array(view.buffer, view.byteOffset + offset, v.data.length).set(v.data);
      return offset + v.data.length;
    },
    decode: (body) => {
      requireMinLength(body, minLength);
      return { kind, data: body };
    },
  };
}

/** What `entryListCodec` needs to know about one record of the "array of fixed-size entries" shape. */
export interface EntryListSpec<K extends string, F extends string, E> {
  readonly layer: Layer;
  readonly type: number;
  readonly name: string;
  readonly kind: K;
  /** The value's field that holds the entries. */
  readonly field: F;
  /** Bytes per entry. */
  readonly entrySize: number;
  /** 1: an empty body is a bad length; 0: an empty list is valid. */
  readonly minEntries: 0 | 1;
  /** Writes one entry (all `entrySize` bytes, reserved ones zero) at `offset`. */
  writeEntry(view: DataView, offset: number, entry: E): void;
  /** Validates and reads entry `index`, which starts at body offset `offset`. */
  readEntry(view: DataView, body: Uint8Array, offset: number, index: number): E;
}

/**
 * A body that is nothing but entries of one size (CPUID leaves, MSRs, dirty fs blocks): length
 * at least `minEntries` entries and a whole number of them, then each entry validated in order.
 */
export function entryListCodec<K extends string, F extends string, E>(
  spec: EntryListSpec<K, F, E>,
): BodyCodec<{ readonly kind: K } & { readonly [P in F]: readonly E[] }> {
  const { entrySize, field } = spec;
  return {
    layer: spec.layer,
    type: spec.type,
    name: spec.name,
    minLength: entrySize * spec.minEntries,
    maxLength: REC_LENGTH_MAX,
    size: (v) => entrySize * v[field].length,
    encode(v, view, offset) {
      let o = offset;
      for (const e of v[field]) {
        spec.writeEntry(view, o, e);
        o += entrySize;
      }
      return o;
    },
    decode(body) {
      requireMinLength(body, entrySize * spec.minEntries);
      requireMultiple(body, entrySize);
      const view = viewOf(body);
      const entries: E[] = [];
      for (let o = 0; o < body.length; o += entrySize)
        entries.push(spec.readEntry(view, body, o, o / entrySize));
      return { kind: spec.kind, [field]: entries } as { readonly kind: K } & {
        readonly [P in F]: readonly E[];
      };
    },
  };
}

/** Writes `bytes` into `view` at `offset`; returns the offset after them. */
export function putBytes(view: DataView, offset: number, bytes: Uint8Array): number {
  new Uint8Array(view.buffer, view.byteOffset + offset, bytes.length).set(bytes);
  return offset + bytes.length;
}
