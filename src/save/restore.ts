/**
 * The restoring side of the memory stream engine (Xen's xg_sr_restore.c + libxl_stream_read.c).
 *
 * Reads the stream the saver writes, incrementally, through the stream layer's decoder, and
 * drives a restore-target Domain that has not been started:
 *
 *   - MODULE_IDENTITY creates the target (the caller's factory builds a domain from the module
 *     bytes) and is checked: the instrumented hash and transform version must equal what this
 *     host produces for those bytes, or the stream is refused ("identity-mismatch");
 *   - before the first END / CHECKPOINT (the plain stream, or the seed of a checkpointed one),
 *     pages go straight into the not-yet-started target, as Xen does; the guest context and the
 *     host state are held and applied only when the stream (or seed checkpoint) is complete.
 *     A reader with `streamPageData: true` (plain restore, plain migration) hands PAGE_DATA over
 *     as it arrives: every pfn is checked at page-data-begin, then pages are written from views
 *     of the input, one copy instead of two;
 *   - after the seed, each checkpoint is buffered whole in a CheckpointReceiver and applied only
 *     when its CHECKPOINT_END has arrived (see checkpointed.ts).
 *
 * The target never starts from an incomplete stream: on any error before completion the target
 * is destroyed and a RestoreError names the offset and the record.
 */
import type { Domain, ModuleIdentity } from "../guest/domain.ts";
import { PAGE_SIZE } from "../guest/domain.ts";
import type { PageDataItem } from "../stream/decoder.ts";
import { StreamError } from "../stream/errors.ts";
import { DHDR_TYPE_WASM32, EMULATOR_ID } from "../stream/format.ts";
import type { DomainHeader } from "../stream/headers.ts";
import {
  forEachPiece,
  forEachStreamedRun,
  type PageData,
  pageTypeHasData,
} from "../stream/records/page-data.ts";
import type { ByteSource } from "./channel.ts";
import { RestoreError } from "./errors.ts";
import { itemName, RecordReader, type StreamedItem } from "./reader.ts";

/**
 * Builds a restore target: a domain in state "created" for these module bytes, whose `identity`
 * is what this host produces for them. The engine compares it with the stream's identity.
 */
export type RestoreTargetFactory = (
  moduleBytes: Uint8Array,
  streamIdentity: ModuleIdentity,
) => Promise<Domain>;

export interface RestoreOptions {
  readonly createTarget: RestoreTargetFactory;
  /** Called once the target exists and its identity matched (before any page is applied). */
  readonly onCreated?: (domain: Domain) => Promise<void> | void;
  /**
   * Called once, after the first CHECKPOINT_INFO sized the target's memory (resize; a WebAssembly
   * target also maps the pages then), before any page is applied: a migration target says
   * MIGRATION_TARGET_READY here.
   */
  readonly onSized?: (domain: Domain) => Promise<void> | void;
}

export type RestoreEnd =
  /** libxl END: a plain stream, complete. */
  | "end"
  /** CHECKPOINT_END: the seed checkpoint of a checkpointed stream, complete. */
  | "checkpoint";

export interface RestoredSeed {
  /** The target, state created, with pages, context and host state applied; not resumed. */
  readonly domain: Domain;
  readonly end: RestoreEnd;
  /** The seed's checkpoint sequence number (from CHECKPOINT_INFO). */
  readonly seq: bigint;
  readonly memoryPages: number;
  readonly bytes: number;
  /** The host state applied (EMULATOR_CONTEXT body): e.g. to find the connections it holds. */
  readonly hostState: Uint8Array;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Wrap whatever went wrong into a RestoreError that names the place. */
export function asRestoreError(e: unknown, reader: RecordReader<boolean>, item?: StreamedItem): RestoreError {
  if (e instanceof RestoreError) return e;
  const where = {
    offset: item?.offset ?? reader.offset,
    record: item === undefined ? undefined : itemName(item),
    cause: e,
  };
  if (e instanceof StreamError) {
    const at = {
      offset: e.offset ?? where.offset,
      record: e.typeName === undefined ? undefined : `${e.typeName} (${e.typeHex})`,
      cause: e,
    };
    if (e.code === "truncated")
      return new RestoreError("truncated", "the stream ended before it was complete", at);
    return new RestoreError("malformed", "the stream is malformed", at);
  }
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string" && (e as Error).name === "TransportError") {
    return new RestoreError("io", "the connection failed", where);
  }
  // The domain's own refusals: DomainError from the contract; GuestError / WasiHostError as the
  // guest's worker reports them (a context or host state it will not take, a module it refuses).
  const name = (e as Error)?.name;
  if (name === "DomainError" || name === "GuestError" || name === "WasiHostError")
    return new RestoreError("domain", "the target refused the stream's state", where);
  return new RestoreError("io", "reading the stream failed", where);
}

/**
 * Read a stream up to and including its libxl END (plain) or first CHECKPOINT_END (checkpointed)
 * and apply it to a fresh target. On success the target holds the whole state, not resumed; on
 * failure it has been destroyed. `reader` is left positioned after the last record read, so a
 * checkpointed stream can go on being read.
 */
export async function restoreSeed(
  reader: RecordReader<boolean>,
  opts: RestoreOptions,
): Promise<RestoredSeed> {
  const seed = new SeedApplier(opts, reader);
  let item: StreamedItem | null | undefined;
  try {
    for (;;) {
      // PAGE_DATA is applied synchronously as its chunks arrive (no await per 16 KiB TLS
      // record); any other record comes back here.
      item = await reader.nextExcept((i) => seed.pageItem(i));
      if (item === null) {
        throw new RestoreError("truncated", "the stream ended before it was complete", {
          offset: reader.offset,
        });
      }
      const done = await seed.handle(item);
      if (done !== undefined) return { ...done, bytes: reader.offset };
    }
  } catch (e) {
    const err = asRestoreError(e, reader, item ?? undefined);
    await seed.domain?.destroy().catch(() => {});
    throw err;
  } finally {
    if (seed.pieces) reader.decoder.setPagePieces(false);
  }
}

/** The per-record actions of a plain stream or a seed checkpoint (applied into a fresh target). */
class SeedApplier {
  readonly opts: RestoreOptions;
  domain: Domain | undefined;
  #declared = -1;
  #seq: bigint | undefined;
  #context: Uint8Array | undefined;
  #hostState: Uint8Array | undefined;
  #libxcDone: RestoreEnd | undefined;
  /** pfns of the data pages of the PAGE_DATA record being streamed. */
  #dataPfns: Float64Array = new Float64Array(0);

  readonly #reader: RecordReader<boolean>;
  /** The decoder hands out split pages as pieces (a target with writeBytes takes them). */
  pieces = false;

  constructor(opts: RestoreOptions, reader: RecordReader<boolean>) {
    this.opts = opts;
    this.#reader = reader;
  }

  /** Apply a streamed PAGE_DATA item (true), or leave any other item to `handle` (false). */
  pageItem(item: StreamedItem): item is PageDataItem {
    switch (item.kind) {
      case "page-data-begin": {
        need(this.domain, item);
        const where = { offset: item.offset, record: itemName(item) };
        if (this.#declared < 0)
          throw new RestoreError("malformed", "PAGE_DATA before CHECKPOINT_INFO", where);
        for (const pfn of item.dataPfns) checkPfn(pfn, this.#declared, where);
        this.#dataPfns = item.dataPfns;
        // A target that writes bytes at any alignment takes a page split across two chunks as
        // its two pieces: the decoder then stages (copies) no page.
        if (!this.pieces && this.domain!.writeBytes !== undefined) {
          this.pieces = true;
          this.#reader.decoder.setPagePieces(true);
        }
        return true;
      }
      case "page-data-pages": {
        const d = need(this.domain, item);
        if (this.pieces && d.writeBytes !== undefined) {
          // one call per stretch of contiguous destination (a pre-copy round sends pfns ascending)
          const write = d.writeBytes.bind(d);
          forEachPiece(this.#dataPfns, item.firstDataIndex, item.pageOffset, item.bytes, write);
          return true;
        }
        if (d.writePages !== undefined) {
          // one call per run of consecutive pfns (a pre-copy round sends them ascending)
          const write = d.writePages.bind(d);
          forEachStreamedRun(this.#dataPfns, item.firstDataIndex, item.bytes, write);
          return true;
        }
        const n = item.bytes.length / PAGE_SIZE;
        for (let k = 0; k < n; k++) {
          const page = item.bytes.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
          d.writePage(this.#dataPfns[item.firstDataIndex + k] as number, page);
        }
        return true;
      }
      case "page-data-end":
        return true;
    }
    return false;
  }

  async handle(item: StreamedItem): Promise<Omit<RestoredSeed, "bytes"> | undefined> {
    const where = { offset: item.offset, record: itemName(item) };
    if (this.pageItem(item)) return undefined;
    if (item.kind === "header") {
      if (item.header === "libxc-domain") {
        const t = (item.value as DomainHeader).type;
        if (t !== DHDR_TYPE_WASM32) {
          throw new RestoreError(
            "malformed",
            `domain type 0x${t.toString(16)} is not a WebAssembly guest`,
            where,
          );
        }
      }
      return undefined;
    }
    const v = item.value;
    switch (v.kind) {
      case "module-identity": {
        this.domain = await this.opts.createTarget(v.moduleBytes, v);
        const mine = this.domain.identity;
        if (
          !sameBytes(mine.instrumentedHash, v.instrumentedHash) ||
          mine.transformVersion !== v.transformVersion
        ) {
          throw new RestoreError(
            "identity-mismatch",
            `the stream's module was instrumented to ${hex8(v.instrumentedHash)} by "${v.transformVersion}"; this host makes ${hex8(mine.instrumentedHash)} by "${mine.transformVersion}"`,
            where,
          );
        }
        await this.opts.onCreated?.(this.domain);
        return undefined;
      }
      case "checkpoint-info": {
        const d = need(this.domain, item);
        if (this.#seq !== undefined && v.seq !== this.#seq) {
          throw new RestoreError(
            "sequence",
            `CHECKPOINT_INFO seq ${v.seq} inside checkpoint ${this.#seq}`,
            where,
          );
        }
        const first = this.#declared < 0;
        this.#seq = v.seq;
        this.#declared = v.memoryPages;
        if (d.pageCount() !== v.memoryPages) await d.resize(v.memoryPages);
        if (first) await this.opts.onSized?.(d);
        return undefined;
      }
      case "page-data": {
        const d = need(this.domain, item);
        if (this.#declared < 0)
          throw new RestoreError("malformed", "PAGE_DATA before CHECKPOINT_INFO", where);
        forEachPage(v, this.#declared, where, (pfn, page) => d.writePage(pfn, page));
        return undefined;
      }
      case "guest-context":
        this.#context = v.data.slice();
        return undefined;
      case "end":
        this.#libxcDone = "end";
        return undefined;
      case "checkpoint":
        this.#libxcDone = "checkpoint";
        return undefined;
      case "emulator-context":
        if (v.emulatorId !== EMULATOR_ID.WASI_HOST) {
          throw new RestoreError(
            "malformed",
            `emulator id 0x${v.emulatorId.toString(16)} is not the WASI host`,
            where,
          );
        }
        this.#hostState = v.data.slice();
        return undefined;
      case "libxl-end":
      case "checkpoint-end": {
        const end: RestoreEnd = v.kind === "libxl-end" ? "end" : "checkpoint";
        const d = need(this.domain, item);
        if (this.#libxcDone !== end) {
          throw new RestoreError("malformed", `${item.name} does not match the libxc stream's end`, where);
        }
        if (this.#context === undefined || this.#hostState === undefined || this.#seq === undefined) {
          throw new RestoreError(
            "malformed",
            "the stream completed without guest context, host state or CHECKPOINT_INFO",
            where,
          );
        }
        // Independent parts (guest context; WASI host state), so both requests go out at once:
        // a WebAssembly domain's worker then takes them in one wake-up, not two, inside the
        // downtime. On failure the caller destroys the target either way.
        await Promise.all([d.applyContext(this.#context), d.applyHostState(this.#hostState)]);
        return { domain: d, end, seq: this.#seq, memoryPages: this.#declared, hostState: this.#hostState };
      }
      default:
        // LIBXC_CONTEXT, STATIC_DATA_END, …: structure the decoder already checked.
        return undefined;
    }
  }
}

/** Call `f` for every data-carrying entry of a PAGE_DATA record; pfns must be below `limit`. */
export function forEachPage(
  v: PageData,
  limit: number,
  where: { offset: number; record: string },
  f: (pfn: number, page: Uint8Array) => void,
): void {
  let k = 0;
  for (let i = 0; i < v.count; i++) {
    if (!pageTypeHasData(v.types[i] as number)) continue;
    const pfn = v.pfns[i] as number;
    checkPfn(pfn, limit, where);
    f(pfn, v.pages.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
    k++;
  }
}

function checkPfn(pfn: number, limit: number, where: { offset: number; record: string }): void {
  if (pfn >= limit)
    throw new RestoreError("pfn-out-of-range", `pfn ${pfn} is past the declared ${limit} pages`, where);
}

function hex8(b: Uint8Array): string {
  return `${Buffer.from(b.subarray(0, 8)).toString("hex")}…`;
}

function need(domain: Domain | undefined, item: StreamedItem): Domain {
  if (domain === undefined) {
    throw new RestoreError("malformed", `${itemName(item)} before MODULE_IDENTITY`, {
      offset: item.offset,
      record: itemName(item),
    });
  }
  return domain;
}

/** Restore a plain stream (a saved file) from `source`: the target, complete and not resumed. */
export async function restoreFromSource(source: ByteSource, opts: RestoreOptions): Promise<RestoredSeed> {
  const reader = new RecordReader(source, { streamPageData: true });
  const seed = await restoreSeed(reader, opts);
  if (seed.end !== "end") {
    await seed.domain.destroy().catch(() => {});
    throw new RestoreError(
      "malformed",
      "a checkpointed stream is not a saved guest (restore it with `colo secondary`)",
      { offset: reader.offset },
    );
  }
  try {
    await reader.expectEof();
  } catch (e) {
    await seed.domain.destroy().catch(() => {});
    throw asRestoreError(e, reader);
  }
  return seed;
}
