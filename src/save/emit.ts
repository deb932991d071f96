/**
 * The bytes of every record the engine writes, as gather lists (arrays of chunks to be written in
 * order; page contents are borrowed views, never concatenated). Thin glue over the stream layer's
 * headers and body codecs: the engine decides the order, the stream layer owns every byte layout.
 */
import type { FsBlockRef, ModuleIdentity } from "../guest/domain.ts";
import type { BodyCodec } from "../stream/codec.ts";
import { encode, encodePageData, encodeRecord, type PageEntry } from "../stream/encode.ts";
import {
  CHECKPOINT_STATE,
  DHDR_TYPE_WASM32,
  EMULATOR_ID,
  MAX_BATCH_SIZE,
  PAGE_SHIFT,
} from "../stream/format.ts";
import { domainHeader, imageHeader, libxlHeader } from "../stream/headers.ts";
import * as colo from "../stream/records/colo.ts";
import * as libxc from "../stream/records/libxc.ts";
import * as libxl from "../stream/records/libxl.ts";

export const MAX_BATCH = MAX_BATCH_SIZE;
export { CHECKPOINT_STATE };

/** Xen version fields of our domain header: 0.0 would mean "converted from legacy"; we write 4.21. */
const XEN_MAJOR = 4;
const XEN_MINOR = 21;

/** Record header + body + padding of a small record, through its codec. */
function record<T>(codec: BodyCodec<T>, value: T): Uint8Array[] {
  return encode(codec, value);
}

export class Emitter {
  /** libxl header, LIBXC_CONTEXT, libxc image + domain headers, MODULE_IDENTITY, STATIC_DATA_END. */
  streamStart(identity: ModuleIdentity): Uint8Array[] {
    return [
      libxlHeader.encode(),
      ...record(libxl.libxcContext, { kind: "libxc-context" }),
      imageHeader.encode(),
      domainHeader.encode({
        type: DHDR_TYPE_WASM32,
        pageShift: PAGE_SHIFT,
        xenMajor: XEN_MAJOR,
        xenMinor: XEN_MINOR,
      }),
      ...record(colo.moduleIdentity, { kind: "module-identity", ...identity }),
      ...record(libxc.staticDataEnd, { kind: "static-data-end" }),
    ];
  }

  checkpointInfo(seq: bigint, memoryPages: number): Uint8Array[] {
    return record(colo.checkpointInfo, { kind: "checkpoint-info", seq, memoryPages });
  }

  /** PAGE_DATA: [header + count + pfn entries, page, page, …]; pages are borrowed. */
  pageData(pfns: Float64Array, pages: readonly Uint8Array[]): Uint8Array[] {
    const entries: PageEntry[] = new Array(pfns.length);
    for (let i = 0; i < pfns.length; i++) entries[i] = { pfn: pfns[i] as number };
    return encodePageData(entries, pages.length === pfns.length ? pages : pages.slice(0, pfns.length));
  }

  /** GUEST_CONTEXT then END (plain) or CHECKPOINT (checkpointed). */
  guestContext(body: Uint8Array, checkpointed: boolean): Uint8Array[] {
    return [
      ...encodeRecord(colo.guestContext.type, [body]),
      ...(checkpointed
        ? record(libxc.checkpoint, { kind: "checkpoint" })
        : record(libxc.libxcEnd, { kind: "end" })),
    ];
  }

  /** EMULATOR_CONTEXT (WASI host) then libxl END (plain) or CHECKPOINT_END (checkpointed). */
  hostState(body: Uint8Array, checkpointed: boolean): Uint8Array[] {
    const head = new Uint8Array(8);
    new DataView(head.buffer).setUint32(0, EMULATOR_ID.WASI_HOST, true);
    return [
      ...encodeRecord(libxl.emulatorContext.type, [head, body]),
      ...(checkpointed
        ? record(libxl.checkpointEnd, { kind: "checkpoint-end" })
        : record(libxl.libxlEnd, { kind: "libxl-end" })),
    ];
  }

  /** CHECKPOINT_STATE(id) followed by CHECKPOINT_SEQ(seq), on either channel. */
  checkpointState(id: number, seq: bigint): Uint8Array[] {
    return [
      ...record(libxl.checkpointState, { kind: "checkpoint-state", id }),
      ...record(colo.checkpointSeq, { kind: "checkpoint-seq", seq }),
    ];
  }

  /** Back channel: CHECKPOINT_DIRTY_PFN_LIST (B). */
  dirtyPfns(pfns: ArrayLike<number>): Uint8Array[] {
    return record(libxc.checkpointDirtyPfnList, {
      kind: "dirty-pfn-list",
      pfns: Float64Array.from(pfns as ArrayLike<number>),
    });
  }

  /** Back channel: FS_DIRTY_BLOCK_LIST. */
  fsBlocks(blocks: readonly FsBlockRef[]): Uint8Array[] {
    return record(colo.fsDirtyBlockList, { kind: "fs-dirty-block-list", blocks });
  }

  /** Back channel: CHECKPOINT_DIGEST. */
  checkpointDigest(seq: bigint, digest: Uint8Array): Uint8Array[] {
    return record(colo.checkpointDigest, { kind: "checkpoint-digest", seq, digest });
  }

  migrationReceived(): Uint8Array[] {
    return record(colo.migrationReceived, { kind: "migration-received" });
  }
  migrationGo(): Uint8Array[] {
    return record(colo.migrationGo, { kind: "migration-go" });
  }
  /**
   * Back channel: MIGRATION_TARGET_READY (empty): the target has created its domain and applies
   * pages as they come.
   */
  migrationTargetReady(): Uint8Array[] {
    return record(colo.migrationTargetReady, { kind: "migration-target-ready" });
  }
  migrationResumed(): Uint8Array[] {
    return record(colo.migrationResumed, { kind: "migration-resumed" });
  }
}
