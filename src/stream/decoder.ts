/**
 * Incremental, I/O-free decoder for the nested Xen streams.
 *
 * Feed bytes in any split with `write(chunk)`, pull whole items with `next()` (or do both with
 * `push(chunk)`), and call `end()` when the input ends. It understands the nesting:
 *
 *   [xl header] libxl header, libxl records … LIBXC_CONTEXT
 *     → libxc image header, domain header, libxc records … END (plain) | CHECKPOINT (checkpointed)
 *     → libxl records … END | CHECKPOINT_END
 *        (checkpointed: after CHECKPOINT_END, [CHECKPOINT_STATE] [CHECKPOINT_SEQ], then the next
 *         checkpoint's libxc records, with no new headers)
 *     → after libxl END: [MIGRATION_GO], then nothing.
 *
 * and a headerless "back-channel" mode where the caller says, before each `next()`, which records
 * are acceptable (`expect`), since the two layers' type numbers overlap.
 *
 * Guarantees:
 * - Every length is checked against the type's bounds and the cap before anything is buffered.
 * - Padding and reserved fields are checked; an item is returned only once fully validated.
 * - Unknown optional libxc records (bit 31) are skipped without buffering; unknown mandatory ones,
 *   and any unknown libxl type, are errors.
 * - It holds at most one partial item (a record spanning chunks is assembled in one buffer of its
 *   exact padded size) plus the unconsumed rest of the current chunk.
 * - After an error every call throws the same StreamError.
 *
 * Backpressure / ownership contract: call `next()` until it returns undefined before the next
 * `write()` (write throws otherwise). Bodies are views: into your chunk when the record lay
 * within it (do not modify that memory while you use the record), else into a buffer owned by
 * the record — or, with `reuseBuffer`, into a buffer reused by the next spanning record, so use
 * the record before calling `next()` again.
 *
 * Streaming PAGE_DATA (`streamPageData: true`, opt-in): instead of one whole record, each
 * PAGE_DATA record comes out as
 *
 *   page-data-begin (header and the whole pfn array validated: count, reserved bits, types,
 *                    exact length 8 + 8C + 4096N, cap)
 *   page-data-pages × k (k ≥ 0; each a whole number of pages, in order, no copy)
 *   page-data-end
 *
 * so a record that spans chunks is never assembled: its pages are handed out as views into the
 * caller's chunks, and the only copy is the caller's own into its destination. A page split
 * across two chunks is staged in one of two 4 KiB buffers owned by the decoder and handed out
 * whole. Lifetime rule: a `page-data-pages` view is valid only until the next `write()` (the
 * staging buffers are reused after that; a view into a chunk is the caller's memory, but the
 * decoder promises nothing about it either). Nothing of a record is emitted before its pfn array
 * is valid, so a consumer can check every pfn (e.g. against its memory size) at `page-data-begin`
 * before it writes a byte. If the input ends mid-record, `end()` throws "truncated" — after some
 * pages may already have been handed out, so a consumer that writes them as they come must treat
 * its destination as incomplete until `page-data-end` (Xen's restorer writes pages straight into
 * a domain that is not started before the stream's end, which is exactly this case).
 */

import type { BodyCodec } from "./codec.ts";
import { paddingFor } from "./encode.ts";
import { recordName, StreamError } from "./errors.ts";
import {
  DHDR_SIZE,
  DHDR_TYPE_X86_PV,
  IHDR_SIZE,
  type Layer,
  LIBXC,
  LIBXL,
  LIBXL_HDR_SIZE,
  PAGE_DATA_HEADER_SIZE,
  PAGE_SIZE,
  REC_LENGTH_MAX,
  REC_TYPE_OPTIONAL,
  RECORD_HEADER_SIZE,
  XL_HEADER_SIZE,
} from "./format.ts";
import {
  type DomainHeader,
  domainHeader,
  type ImageHeader,
  imageHeader,
  type LibxlHeader,
  libxlHeader,
  type XlHeader,
  xlHeader,
} from "./headers.ts";
import {
  dataPfnsOf,
  type PageEntries,
  pageData,
  pageDataCount,
  pageDataEntries,
} from "./records/page-data.ts";
import { codecFor, type RecordValue } from "./registry.ts";

export type HeaderKind = "xl" | "libxl" | "libxc-image" | "libxc-domain";

export interface DecodedHeader {
  readonly kind: "header";
  readonly header: HeaderKind;
  /** Stream offset of the header's first byte. */
  readonly offset: number;
  /** Header size in bytes (the xl header includes its optional data). */
  readonly size: number;
  readonly value: XlHeader | LibxlHeader | ImageHeader | DomainHeader;
}

export interface DecodedRecord {
  readonly kind: "record";
  readonly layer: Layer;
  readonly type: number;
  /** Type in words, e.g. "PAGE_DATA". */
  readonly name: string;
  /** Stream offset of the record's 8-byte header. */
  readonly offset: number;
  /** Body length from the header (padding excluded). */
  readonly length: number;
  /** The body (no padding); a view, not a copy, where possible. */
  readonly body: Uint8Array;
  /** The validated, decoded body; narrow on `value.kind`. */
  readonly value: RecordValue;
}

export type DecodedItem = DecodedHeader | DecodedRecord;

/** Streaming PAGE_DATA: the record's header and whole pfn array, validated. */
export interface PageDataBegin {
  readonly kind: "page-data-begin";
  /** Stream offset of the record's 8-byte header. */
  readonly offset: number;
  /** Body length from the header. */
  readonly length: number;
  readonly entries: PageEntries;
  /** pfn of each data page, in data order (`dataPfns[k]` is the pfn of data page k). */
  readonly dataPfns: Float64Array;
}

/**
 * Streaming PAGE_DATA: the next whole pages of the record's page data. `bytes` is a view
 * (length a positive multiple of 4096) into the caller's chunk, or into a decoder-owned 4 KiB
 * staging buffer for a page that was split across chunks. Valid only until the next `write()`.
 */
export interface PageDataPages {
  readonly kind: "page-data-pages";
  /** Stream offset of `bytes[0]`. */
  readonly offset: number;
  /** Stream offset of the record's header. */
  readonly recordOffset: number;
  /** Data-page index (0 … pageCount−1) of the first page in `bytes`. */
  readonly firstDataIndex: number;
  /**
   * Byte offset within that page of `bytes[0]`: 0, and `bytes` whole pages, unless the decoder
   * hands out page pieces (`setPagePieces(true)`); then `bytes` may begin and end inside a page.
   */
  readonly pageOffset: number;
  readonly bytes: Uint8Array;
}

/** Streaming PAGE_DATA: every page has been handed out; the record is complete. */
export interface PageDataEnd {
  readonly kind: "page-data-end";
  /** Stream offset of the record's header. */
  readonly offset: number;
  readonly length: number;
}

export type PageDataItem = PageDataBegin | PageDataPages | PageDataEnd;

/** What a decoder with `streamPageData: true` returns: PAGE_DATA streamed, all else whole. */
export type StreamedItem = DecodedItem | PageDataItem;

/** The item type of a decoder: streamed PAGE_DATA items only when `streamPageData` is true. */
export type ItemOf<S extends boolean> = S extends true ? StreamedItem : DecodedItem;

/** A record a back-channel reader may accept next. */
export interface RecordKey {
  readonly layer: Layer;
  readonly type: number;
}

/** Every record that may travel on the back channel (S → P). */
export const BACK_CHANNEL_RECORDS: readonly RecordKey[] = [
  { layer: "libxl", type: LIBXL.CHECKPOINT_STATE },
  { layer: "libxl", type: LIBXL.CHECKPOINT_SEQ },
  { layer: "libxl", type: LIBXL.CHECKPOINT_DIGEST },
  { layer: "libxl", type: LIBXL.MIGRATION_TARGET_READY },
  { layer: "libxl", type: LIBXL.MIGRATION_RECEIVED },
  { layer: "libxl", type: LIBXL.MIGRATION_RESUMED },
  { layer: "libxc", type: LIBXC.CHECKPOINT_DIRTY_PFN_LIST },
  { layer: "libxc", type: LIBXC.FS_DIRTY_BLOCK_LIST },
];

export interface DecoderOptions {
  /**
   * Where the input starts. "auto" (default) recognises the xl magic, "LibxlFmt" or the libxc
   * marker from the first 8 bytes; "back-channel" expects bare records and no header.
   */
  readonly start?: "auto" | "xl" | "libxl" | "libxc" | "back-channel";
  /** Cap on one record's padded body, bytes (default and maximum REC_LENGTH_MAX, 128 MiB). */
  readonly maxRecordLength?: number;
  /**
   * Main channel: whether a CHECKPOINT_STATE record may follow CHECKPOINT_END (COLO) — needed
   * because type 5 is also libxc's X86_PV_VCPU_XSAVE. Default: yes unless the domain is x86 PV.
   */
  readonly checkpointState?: boolean;
  /** Reuse one buffer for records that span chunks (see the ownership contract above). */
  readonly reuseBuffer?: boolean;
}

/** Options of a decoder that streams PAGE_DATA (see "Streaming PAGE_DATA" above). */
export interface StreamingDecoderOptions<S extends boolean> extends DecoderOptions {
  /**
   * Hand out PAGE_DATA as page-data-begin / page-data-pages… / page-data-end items whose pages
   * are views into the input (no staging copy). Default false: whole records.
   */
  readonly streamPageData?: S;
}

type PageDataPhase = "head" | "pfns" | "pages" | "end";

type Phase =
  | "detect"
  | "xl-fixed"
  | "xl-optional"
  | "libxl-header"
  | "libxc-image"
  | "libxc-domain"
  | "libxl-records"
  | "libxc-records"
  | "interlude"
  | "after-end"
  | "done"
  | "back-channel";

interface PendingRecord {
  readonly layer: Layer;
  readonly type: number;
  readonly length: number;
  readonly offset: number;
  /** undefined: an unknown optional record being skipped. */
  readonly codec: BodyCodec<RecordValue> | undefined;
}

const EMPTY = new Uint8Array(0);
const XL_PREFIX = xlHeader.magic.subarray(0, 8);
const LIBXL_PREFIX = libxlHeader.encode().subarray(0, 8);

export class StreamDecoder<S extends boolean = false> {
  private phase: Phase;
  private readonly cap: number;
  private readonly reuse: boolean;
  private streamPages: boolean;
  private stateFollows: boolean | undefined;
  private accept: readonly RecordKey[] = BACK_CHANNEL_RECORDS;

  // input
  private chunk: Uint8Array = EMPTY;
  private pos = 0;
  /** Bytes consumed from the input so far (stream offset of chunk[pos]). */
  private consumed = 0;
  // one partial item
  private stage: Uint8Array | null = null;
  private staged = 0;
  private spare: Uint8Array | null = null;
  private carry: Uint8Array | null = null;
  private itemOffset = -1;
  private pending: PendingRecord | null = null;
  private skipLeft = 0;
  private xlFixed: { mandatoryFlags: number; optionalFlags: number; optionalDataLength: number } | null =
    null;
  // nesting
  private libxcStarted = false;
  private bareLibxc = false;
  private libxcEndedBy: "end" | "checkpoint" | null = null;
  private atCheckpointBoundary = false;
  private failed: StreamError | null = null;
  // streaming PAGE_DATA (null phase: not inside a streamed record)
  private pdPhase: PageDataPhase | null = null;
  private pdCount = 0;
  private pdDataIndex = 0;
  /** Page-data bytes of the current record not handed out yet. */
  private pdLeft = 0;
  /** Two 4 KiB buffers, alternated, for pages split across chunks (allocated on first use). */
  private pageStage: Uint8Array[] = [];
  private pageStageIx = 0;
  /** Bytes of the split page staged so far (0: none). */
  private pageFill = 0;
  /** Hand out split pages as pieces (setPagePieces); pdPageOffset: where the next byte lies in its page. */
  private pieces = false;
  private pdPageOffset = 0;

  constructor(options: StreamingDecoderOptions<S> = {}) {
    const start = options.start ?? "auto";
    this.phase =
      start === "auto"
        ? "detect"
        : start === "xl"
          ? "xl-fixed"
          : start === "libxl"
            ? "libxl-header"
            : start === "libxc"
              ? "libxc-image"
              : "back-channel";
    this.bareLibxc = start === "libxc";
    this.cap = Math.min(options.maxRecordLength ?? REC_LENGTH_MAX, REC_LENGTH_MAX);
    this.stateFollows = options.checkpointState;
    this.reuse = options.reuseBuffer ?? false;
    this.streamPages = options.streamPageData ?? false;
  }

  /** Stream offset of the next unconsumed byte. */
  get offset(): number {
    return this.consumed;
  }

  /**
   * Switch streaming PAGE_DATA on or off for the records that follow (the seed of a checkpointed
   * stream is streamed into the fresh target; its later checkpoints are buffered whole). Call
   * between items; throws inside a streamed PAGE_DATA record. A record already being assembled
   * whole stays whole.
   */
  /**
   * Streamed PAGE_DATA only: with `on`, a page split across two chunks is not staged but handed
   * out as two pieces, each a view of its chunk (see PageDataPages.pageOffset), so no byte of
   * page data is ever copied by the decoder. Switch between items, not while a page is staged.
   */
  setPagePieces(on: boolean): void {
    if (this.pageFill > 0) throw new Error("StreamDecoder.setPagePieces while a page is staged");
    this.pieces = on;
  }

  setStreamPageData(on: boolean): void {
    if (this.pdPhase !== null)
      throw new Error("StreamDecoder.setStreamPageData inside a streamed PAGE_DATA record");
    this.streamPages = on;
  }

  /** Back channel: the records acceptable next (default BACK_CHANNEL_RECORDS). */
  expect(accept: readonly RecordKey[] = BACK_CHANNEL_RECORDS): void {
    this.accept = accept;
  }

  /** Hands the decoder the next chunk. Call `next()` until undefined first. */
  write(chunk: Uint8Array): void {
    this.throwIfFailed();
    if (this.pos < this.chunk.length)
      throw new Error("StreamDecoder.write before the previous chunk was drained");
    this.chunk = chunk;
    this.pos = 0;
  }

  /** The next complete, validated item, or undefined when more input is needed. */
  next(): ItemOf<S> | undefined {
    this.throwIfFailed();
    try {
      return this.step() as ItemOf<S> | undefined;
    } catch (e) {
      this.failed =
        e instanceof StreamError
          ? e
          : new StreamError("invalid-argument", String(e), { offset: this.itemOffset, cause: e });
      throw this.failed;
    }
  }

  /** write(chunk), then every item it completes. */
  push(chunk: Uint8Array): ItemOf<S>[] {
    this.write(chunk);
    const out: ItemOf<S>[] = [];
    for (let item = this.next(); item !== undefined; item = this.next()) out.push(item);
    return out;
  }

  /**
   * The input ended. Throws "truncated" if it ended inside a header or record, or at a record
   * boundary where the stream may not end (a plain stream before its last END; a checkpointed
   * one inside a checkpoint). A back channel may end at any record boundary.
   */
  end(): void {
    this.throwIfFailed();
    const inItem = this.stage !== null || this.carry !== null || this.pending !== null || this.skipLeft > 0;
    if (inItem) {
      this.failed = new StreamError("truncated", "input ended inside a header or record", {
        offset: this.itemOffset,
        ...(this.pending ? { layer: this.pending.layer, type: this.pending.type } : {}),
        details: { consumed: this.consumed },
      });
      throw this.failed;
    }
    const ok =
      this.phase === "done" ||
      this.phase === "after-end" ||
      this.phase === "back-channel" ||
      this.phase === "interlude" ||
      this.atCheckpointBoundary;
    if (!ok) {
      this.failed = new StreamError("truncated", `input ended before the stream's end (in ${this.phase})`, {
        offset: this.consumed,
        details: { phase: this.phase },
      });
      throw this.failed;
    }
  }

  private throwIfFailed(): void {
    if (this.failed !== null) throw this.failed;
  }

  /** n contiguous bytes, without copying when the current chunk holds them; else staged. */
  private take(n: number): Uint8Array | undefined {
    if (this.stage === null) {
      if (this.carry !== null) {
        this.stage = new Uint8Array(n);
        this.stage.set(this.carry);
        this.staged = this.carry.length;
        this.carry = null;
      } else {
        const avail = this.chunk.length - this.pos;
        if (avail >= n) {
          const v = this.chunk.subarray(this.pos, this.pos + n);
          this.pos += n;
          this.consumed += n;
          return v;
        }
        if (avail === 0) return undefined;
        if (this.reuse && n > 64 && this.spare !== null && this.spare.length >= n) {
          this.stage = this.spare.subarray(0, n);
        } else {
          this.stage = new Uint8Array(n);
          if (this.reuse && n > 64) this.spare = this.stage;
        }
        this.staged = 0;
      }
    }
    const k = Math.min(this.stage.length - this.staged, this.chunk.length - this.pos);
    this.stage.set(this.chunk.subarray(this.pos, this.pos + k), this.staged);
    this.staged += k;
    this.pos += k;
    this.consumed += k;
    if (this.staged < this.stage.length) return undefined;
    const out = this.stage;
    this.stage = null;
    return out;
  }

  private beginItem(): void {
    if (this.stage === null && this.pending === null && this.skipLeft === 0) {
      this.itemOffset = this.consumed - (this.carry?.length ?? 0);
    }
  }

  /** A whole header of `size` bytes, decoded; its StreamError placed at the header's offset. */
  private header<T>(size: number, decode: (bytes: Uint8Array) => T): T | undefined {
    const b = this.take(size);
    if (b === undefined) return undefined;
    try {
      return decode(b);
    } catch (e) {
      if (e instanceof StreamError) {
        throw new StreamError(e.code, e.reason, {
          offset: this.itemOffset,
          details: e.details,
          cause: e.cause,
        });
      }
      throw e;
    }
  }

  private step(): StreamedItem | undefined {
    for (;;) {
      if (this.pos >= this.chunk.length && this.carry === null && this.pdPhase !== "end") return undefined;
      this.beginItem();
      switch (this.phase) {
        case "detect": {
          const b = this.take(8);
          if (b === undefined) return undefined;
          this.carry = b.slice();
          this.phase = startsWith(b, XL_PREFIX)
            ? "xl-fixed"
            : startsWith(b, LIBXL_PREFIX)
              ? "libxl-header"
              : b.every((x) => x === 0xff)
                ? "libxc-image"
                : this.unrecognised();
          this.bareLibxc = this.phase === "libxc-image";
          continue;
        }
        case "xl-fixed": {
          const fixed = this.header(XL_HEADER_SIZE, xlHeader.decodeFixed);
          if (fixed === undefined) return undefined;
          this.xlFixed = fixed;
          this.phase = "xl-optional";
          if (this.xlFixed.optionalDataLength === 0) return this.emitXl(EMPTY);
          this.carry = null;
          continue;
        }
        case "xl-optional": {
          // itemOffset still points at the xl header's first byte
          const b = this.take(this.xlFixed!.optionalDataLength);
          if (b === undefined) return undefined;
          return this.emitXl(b);
        }
        case "libxl-header": {
          const value = this.header(LIBXL_HDR_SIZE, libxlHeader.decode);
          if (value === undefined) return undefined;
          this.phase = "libxl-records";
          return { kind: "header", header: "libxl", offset: this.itemOffset, size: LIBXL_HDR_SIZE, value };
        }
        case "libxc-image": {
          const value = this.header(IHDR_SIZE, imageHeader.decode);
          if (value === undefined) return undefined;
          this.phase = "libxc-domain";
          this.libxcStarted = true;
          return { kind: "header", header: "libxc-image", offset: this.itemOffset, size: IHDR_SIZE, value };
        }
        case "libxc-domain": {
          const value = this.header(DHDR_SIZE, domainHeader.decode);
          if (value === undefined) return undefined;
          this.stateFollows ??= value.type !== DHDR_TYPE_X86_PV;
          this.phase = "libxc-records";
          return { kind: "header", header: "libxc-domain", offset: this.itemOffset, size: DHDR_SIZE, value };
        }
        case "done": {
          throw new StreamError("trailing-data", "bytes after the stream's final record", {
            offset: this.consumed,
          });
        }
        default: {
          const rec = this.record();
          if (rec === undefined) {
            if (this.pos >= this.chunk.length) return undefined;
            continue; // a skipped optional record
          }
          return rec;
        }
      }
    }
  }

  private unrecognised(): never {
    throw new StreamError("bad-magic", "not an xl file, a libxl stream or a libxc stream (leading bytes)", {
      offset: 0,
    });
  }

  private emitXl(optionalData: Uint8Array): DecodedHeader {
    const f = this.xlFixed!;
    this.phase = "libxl-header";
    return {
      kind: "header",
      header: "xl",
      offset: this.itemOffset,
      size: XL_HEADER_SIZE + optionalData.length,
      value: { mandatoryFlags: f.mandatoryFlags, optionalFlags: f.optionalFlags, optionalData },
    };
  }

  /** Which layer reads a record of `type` in the current phase. */
  private layerOf(type: number): Layer {
    switch (this.phase) {
      case "libxc-records":
        return "libxc";
      case "interlude":
        if (
          (type === LIBXL.CHECKPOINT_STATE && this.stateFollows !== false) ||
          type === LIBXL.CHECKPOINT_SEQ
        ) {
          return "libxl";
        }
        return "libxc";
      case "back-channel": {
        const key = this.accept.find((k) => k.type === type);
        if (key !== undefined) return key.layer;
        const known = codecFor("libxl", type) ?? codecFor("libxc", type);
        if (known !== undefined || (type & REC_TYPE_OPTIONAL) === 0) {
          throw new StreamError(
            known ? "order" : "unknown-mandatory",
            known
              ? `back channel: record 0x${type.toString(16)} not acceptable here (expected ${this.accept.map((k) => recordName(k.layer, k.type)).join(", ")})`
              : "back channel: unknown mandatory record",
            { offset: this.itemOffset, layer: known?.layer ?? "libxc", type },
          );
        }
        return "libxc"; // unknown optional: skipped below
      }
      default:
        return "libxl";
    }
  }

  private record(): DecodedRecord | PageDataItem | undefined {
    if (this.skipLeft > 0) {
      const k = Math.min(this.skipLeft, this.chunk.length - this.pos);
      this.skipLeft -= k;
      this.pos += k;
      this.consumed += k;
      if (this.skipLeft > 0) return undefined;
      this.pending = null;
      return undefined;
    }
    if (this.pending === null) {
      const h = this.take(RECORD_HEADER_SIZE);
      if (h === undefined) return undefined;
      // little-endian u32 type, u32 length (no DataView allocated per record)
      const type = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
      const length = (h[4]! | (h[5]! << 8) | (h[6]! << 16) | (h[7]! << 24)) >>> 0;
      this.pending = this.admit(type, length);
      if (this.pending.codec === undefined) {
        this.skipLeft = length + paddingFor(length);
        if (this.skipLeft === 0) this.pending = null;
        return undefined;
      }
      if (this.streamPages && this.pending.codec === pageData) this.pdPhase = "head";
    }
    const p = this.pending;
    if (this.pdPhase !== null) return this.streamPageData(p);
    const padded = p.length + paddingFor(p.length);
    const all = padded === 0 ? EMPTY : this.take(padded);
    if (all === undefined) return undefined;
    this.pending = null;
    for (let i = p.length; i < padded; i++) {
      if (all[i] !== 0) {
        throw new StreamError("bad-padding", `non-zero padding byte at body offset ${i}`, {
          offset: p.offset,
          layer: p.layer,
          type: p.type,
          details: { at: i },
        });
      }
    }
    const body = all.subarray(0, p.length);
    const value: RecordValue = this.placed(p, () => p.codec!.decode(body));
    this.advance(p);
    return {
      kind: "record",
      layer: p.layer,
      type: p.type,
      name: p.codec!.name,
      offset: p.offset,
      length: p.length,
      body,
      value,
    };
  }

  /**
   * One step of a streamed PAGE_DATA record: header, pfn array (both staged if split, then
   * validated whole), then pages as views, then the end item.
   */
  private streamPageData(p: PendingRecord): PageDataItem | undefined {
    if (this.pdPhase === "head") {
      const head = this.take(PAGE_DATA_HEADER_SIZE);
      if (head === undefined) return undefined;
      this.pdCount = this.placed(p, () => pageDataCount(head, p.length));
      this.pdPhase = "pfns";
    }
    if (this.pdPhase === "pfns") {
      const raw = this.take(8 * this.pdCount);
      if (raw === undefined) return undefined;
      const entries = this.placed(p, () => pageDataEntries(raw, this.pdCount, p.length));
      // 8 + 8C + 4096N is a multiple of 8: a valid PAGE_DATA record has no padding.
      this.pdLeft = entries.pageCount * PAGE_SIZE;
      this.pdDataIndex = 0;
      this.pdPageOffset = 0;
      this.pdPhase = this.pdLeft > 0 ? "pages" : "end";
      const dataPfns = dataPfnsOf(entries);
      return { kind: "page-data-begin", offset: p.offset, length: p.length, entries, dataPfns };
    }
    if (this.pdPhase === "pages") {
      const avail = this.chunk.length - this.pos;
      if (this.pieces) {
        const n = Math.min(avail, this.pdLeft);
        if (n === 0) return undefined;
        const item: PageDataPages = {
          kind: "page-data-pages",
          offset: this.consumed,
          recordOffset: p.offset,
          firstDataIndex: this.pdDataIndex,
          pageOffset: this.pdPageOffset,
          bytes: this.chunk.subarray(this.pos, this.pos + n),
        };
        this.pos += n;
        this.consumed += n;
        const through = this.pdPageOffset + n;
        this.pdDataIndex += Math.floor(through / PAGE_SIZE);
        this.pdPageOffset = through % PAGE_SIZE;
        this.pdLeft -= n;
        if (this.pdLeft === 0) this.pdPhase = "end";
        return item;
      }
      if (this.pageFill > 0) {
        // finish the page split across the previous chunk(s)
        const stage = this.pageStage[this.pageStageIx]!;
        const k = Math.min(PAGE_SIZE - this.pageFill, avail);
        stage.set(this.chunk.subarray(this.pos, this.pos + k), this.pageFill);
        this.pos += k;
        this.consumed += k;
        this.pageFill += k;
        if (this.pageFill < PAGE_SIZE) return undefined;
        this.pageFill = 0;
        this.pageStageIx ^= 1;
        return this.pages(p, stage, this.consumed - PAGE_SIZE);
      }
      const whole = Math.floor(Math.min(avail, this.pdLeft) / PAGE_SIZE) * PAGE_SIZE;
      if (whole > 0) {
        const at = this.consumed;
        const view = this.chunk.subarray(this.pos, this.pos + whole);
        this.pos += whole;
        this.consumed += whole;
        return this.pages(p, view, at);
      }
      if (avail === 0) return undefined;
      // a page starts here and ends in a later chunk: stage its head (avail < 4096 ≤ pdLeft)
      if (this.pageStage.length === 0)
        this.pageStage = [new Uint8Array(PAGE_SIZE), new Uint8Array(PAGE_SIZE)];
      this.pageStage[this.pageStageIx]!.set(this.chunk.subarray(this.pos, this.pos + avail), 0);
      this.pos += avail;
      this.consumed += avail;
      this.pageFill = avail;
      return undefined;
    }
    this.pdPhase = null;
    this.pending = null;
    this.advance(p);
    return { kind: "page-data-end", offset: p.offset, length: p.length };
  }

  private pages(p: PendingRecord, bytes: Uint8Array, at: number): PageDataPages {
    const item: PageDataPages = {
      kind: "page-data-pages",
      offset: at,
      recordOffset: p.offset,
      firstDataIndex: this.pdDataIndex,
      pageOffset: 0,
      bytes,
    };
    this.pdDataIndex += bytes.length / PAGE_SIZE;
    this.pdLeft -= bytes.length;
    if (this.pdLeft === 0) this.pdPhase = "end";
    return item;
  }

  /** Runs a body check, placing its StreamError at the record. */
  private placed<T>(p: PendingRecord, check: () => T): T {
    try {
      return check();
    } catch (e) {
      if (e instanceof StreamError) throw e.at(p.offset, p.layer, p.type);
      throw e;
    }
  }

  /** Checks a record header against the phase, the type's bounds and the cap. */
  private admit(type: number, length: number): PendingRecord {
    const offset = this.itemOffset;
    const layer = this.layerOf(type);
    const codec = codecFor(layer, type);
    const padded = length + paddingFor(length);
    if (padded > this.cap) {
      throw new StreamError("length-cap", `record length ${length} exceeds the cap of ${this.cap} bytes`, {
        offset,
        layer,
        type,
        details: { length, cap: this.cap },
      });
    }
    if (codec === undefined) {
      const optional = (type & REC_TYPE_OPTIONAL) !== 0;
      if (optional && layer === "libxc") return { layer, type, length, offset, codec: undefined };
      throw new StreamError(
        optional ? "unknown-type" : "unknown-mandatory",
        optional ? "unknown optional record (libxl accepts no unknown types)" : "unknown mandatory record",
        { offset, layer, type },
      );
    }
    if (length < codec.minLength || length > codec.maxLength) {
      throw new StreamError(
        "bad-length",
        codec.minLength === codec.maxLength
          ? `length ${length}, expected ${codec.minLength}`
          : `length ${length}, expected ${codec.minLength}…${codec.maxLength}`,
        { offset, layer, type, details: { length, min: codec.minLength, max: codec.maxLength } },
      );
    }
    this.checkNesting(layer, type, offset);
    if (this.phase === "interlude" && layer === "libxc") this.phase = "libxc-records";
    return { layer, type, length, offset, codec };
  }

  /** Nesting rules that decide which layer's records come next. */
  private checkNesting(layer: Layer, type: number, offset: number): void {
    const bad = (reason: string): never => {
      throw new StreamError("order", reason, { offset, layer, type });
    };
    if (this.phase === "after-end" && !(layer === "libxl" && type === LIBXL.MIGRATION_GO)) {
      throw new StreamError("trailing-data", "only MIGRATION_GO may follow the libxl END record", {
        offset,
        layer,
        type,
      });
    }
    if (layer !== "libxl" || this.phase === "back-channel") return;
    if (type === LIBXL.LIBXC_CONTEXT && this.libxcStarted) bad("a second LIBXC_CONTEXT");
    if (type === LIBXL.CHECKPOINT_END && this.libxcEndedBy !== "checkpoint") {
      bad("CHECKPOINT_END without a preceding libxc CHECKPOINT");
    }
    if (this.phase === "interlude" && type === LIBXL.CHECKPOINT_STATE && this.stateFollows === false) {
      bad("CHECKPOINT_STATE on the main channel of a stream without checkpoint states");
    }
  }

  /** Moves the phase on after a record has been validated. */
  private advance(p: PendingRecord): void {
    this.atCheckpointBoundary = false;
    if (this.phase === "back-channel") return;
    if (p.layer === "libxc") {
      if (p.type === LIBXC.END) {
        this.libxcEndedBy = "end";
        this.phase = this.bareLibxc ? "done" : "libxl-records";
      } else if (p.type === LIBXC.CHECKPOINT) {
        this.libxcEndedBy = "checkpoint";
        if (this.bareLibxc) this.atCheckpointBoundary = true;
        else this.phase = "libxl-records";
      }
      return;
    }
    switch (p.type) {
      case LIBXL.LIBXC_CONTEXT:
        this.phase = "libxc-image";
        break;
      case LIBXL.CHECKPOINT_END:
        this.phase = "interlude";
        break;
      case LIBXL.END:
        this.phase = "after-end";
        break;
      case LIBXL.MIGRATION_GO:
        if (this.phase === "after-end") this.phase = "done";
        break;
      case LIBXL.CHECKPOINT_STATE:
      case LIBXL.CHECKPOINT_SEQ:
        break;
    }
  }
}

function startsWith(b: Uint8Array, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

/** Decodes a whole in-memory stream (convenience for files and tests). */
export function decodeAll(bytes: Uint8Array, options: DecoderOptions = {}): DecodedItem[] {
  const d = new StreamDecoder(options);
  const items = d.push(bytes);
  d.end();
  return items;
}
