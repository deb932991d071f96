/**
 * The stream layer's one error class. Outcomes are decided by `code`, never by message text.
 */
import { type Layer, LIBXC_NAMES, LIBXL_NAMES } from "./format.ts";

/** Stable error codes of the stream layer. */
export type StreamErrorCode =
  /** A header's magic / marker / ident is wrong, or the format is not recognised. */
  | "bad-magic"
  /** Unsupported header version. */
  | "bad-version"
  /** The stream is big-endian (no Xen reader supports that). */
  | "big-endian"
  /** A record (or header data) is longer than the cap; refused before allocating. */
  | "length-cap"
  /** Non-zero padding after a record body. */
  | "bad-padding"
  /** A reserved field or reserved bits are non-zero. */
  | "reserved-nonzero"
  /** Unknown mandatory record type (bit 31 clear). */
  | "unknown-mandatory"
  /** Unknown optional type where the layer rejects unknown types (libxl, back channel). */
  | "unknown-type"
  /** A record's length does not match its type's layout. */
  | "bad-length"
  /** A field holds a value outside its domain (page type 5–8, width 3, bad emulator id, …). */
  | "bad-value"
  /** Input ended mid-header, mid-record, or before the stream's last record. */
  | "truncated"
  /** A record (or header) arrived where the stream's order does not allow it. */
  | "order"
  /** A checkpoint sequence number is stale, replayed or skips ahead. */
  | "bad-sequence"
  /** A record deprecated by Xen (TOOLSTACK). */
  | "deprecated"
  /** Bytes after the stream's final record. */
  | "trailing-data"
  /** Caller misuse of the API (e.g. bad arguments to an encoder). */
  | "invalid-argument";

export interface StreamErrorOptions {
  /** Stream offset (bytes from the stream's first byte) of the header or record at fault. */
  readonly offset?: number;
  readonly layer?: Layer;
  readonly type?: number;
  /** Typed extra facts (expected/actual lengths, index of the bad entry, …). */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

/** `0x0000000e` */
export function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
}

/** Name of a record type, or "UNKNOWN" (with "optional" when bit 31 is set). */
export function recordName(layer: Layer, type: number): string {
  const name = (layer === "libxc" ? LIBXC_NAMES : LIBXL_NAMES).get(type);
  if (name !== undefined) return name;
  return type >= 0x8000_0000 ? "UNKNOWN_OPTIONAL" : "UNKNOWN_MANDATORY";
}

export class StreamError extends Error {
  override readonly name = "StreamError";
  readonly code: StreamErrorCode;
  /** Stream offset of the header or record at fault (undefined when not tied to a position). */
  readonly offset: number | undefined;
  readonly layer: Layer | undefined;
  readonly type: number | undefined;
  /** `type` as `0x%08x`. */
  readonly typeHex: string | undefined;
  /** `type` in words (e.g. "PAGE_DATA"). */
  readonly typeName: string | undefined;
  readonly details: Readonly<Record<string, unknown>>;
  /** The message without the position prefix. */
  readonly reason: string;

  constructor(code: StreamErrorCode, reason: string, options: StreamErrorOptions = {}) {
    const { offset, layer, type } = options;
    const typeHex = type === undefined ? undefined : hex32(type);
    const typeName = type === undefined || layer === undefined ? undefined : recordName(layer, type);
    const where: string[] = [];
    if (offset !== undefined) where.push(`offset ${offset}`);
    if (typeHex !== undefined) where.push(`${layer ?? ""} record ${typeHex} ${typeName ?? ""}`.trim());
    super(where.length > 0 ? `${where.join(", ")}: ${reason}` : reason, { cause: options.cause });
    this.code = code;
    this.reason = reason;
    this.offset = offset;
    this.layer = layer;
    this.type = type;
    this.typeHex = typeHex;
    this.typeName = typeName;
    this.details = options.details ?? {};
  }

  /**
   * A copy of this error placed at a record: `offset` is the stream offset of the record's header
   * (body codecs throw without a position; where inside the body is in `details`).
   */
  at(offset: number, layer: Layer, type: number): StreamError {
    return new StreamError(this.code, this.reason, {
      offset,
      layer,
      type,
      details: this.details,
      cause: this.cause,
    });
  }
}
