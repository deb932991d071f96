/**
 * colo's own records (private range, all mandatory). Layouts: docs/stream-format.md §5.
 *
 * libxc level: MODULE_IDENTITY, CHECKPOINT_INFO, GUEST_CONTEXT, FS_DIRTY_BLOCK_LIST.
 * libxl level: MIGRATION_RECEIVED, MIGRATION_GO, MIGRATION_RESUMED, CHECKPOINT_SEQ,
 * CHECKPOINT_DIGEST, MIGRATION_TARGET_READY.
 */
import {
  type BodyCodec,
  blobCodec,
  emptyCodec,
  entryListCodec,
  fail,
  putBytes,
  readSafeU64,
  requireLength,
  requireMinLength,
  requireZero,
  viewOf,
  writeSafeU64,
} from "../codec.ts";
import {
  CHECKPOINT_DIGEST_SIZE,
  CHECKPOINT_INFO_SIZE,
  CHECKPOINT_SEQ_SIZE,
  FS_BLOCK_ENTRY_SIZE,
  LIBXC,
  LIBXL,
  MEMORY_PAGES_MAX,
  MODULE_IDENTITY_HEADER_SIZE,
  MODULE_VERSION_MAX,
  REC_LENGTH_MAX,
  SHA256_SIZE,
} from "../format.ts";

/** "\0asm" + version 1: every WebAssembly binary starts with these 8 bytes. */
const WASM_PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

export interface ModuleIdentity {
  readonly kind: "module-identity";
  /** The original (uninstrumented) module bytes. */
  readonly moduleBytes: Uint8Array;
  /** SHA-256 of the instrumented module (32 bytes). */
  readonly instrumentedHash: Uint8Array;
  /** Transform version, e.g. "colo-xform/1 binaryen/132" (UTF-8, 1…1024 bytes). */
  readonly transformVersion: string;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

export const moduleIdentity: BodyCodec<ModuleIdentity> = {
  layer: "libxc",
  type: LIBXC.MODULE_IDENTITY,
  name: "MODULE_IDENTITY",
  minLength: MODULE_IDENTITY_HEADER_SIZE + WASM_PREAMBLE.length + 1,
  maxLength: REC_LENGTH_MAX,
  size: (v) => MODULE_IDENTITY_HEADER_SIZE + v.moduleBytes.length + utf8.encode(v.transformVersion).length,
  encode(v, view, offset) {
    const version = utf8.encode(v.transformVersion);
    if (v.instrumentedHash.length !== SHA256_SIZE)
      fail("invalid-argument", "instrumentedHash must be 32 bytes");
    view.setUint32(offset, v.moduleBytes.length, true);
    view.setUint32(offset + 4, version.length, true);
    let o = putBytes(view, offset + 8, v.instrumentedHash);
    o = putBytes(view, o, v.moduleBytes);
    return putBytes(view, o, version);
  },
  decode(body) {
    requireMinLength(body, MODULE_IDENTITY_HEADER_SIZE);
    const view = viewOf(body);
    const moduleLength = view.getUint32(0, true);
    const versionLength = view.getUint32(4, true);
    const expected = MODULE_IDENTITY_HEADER_SIZE + moduleLength + versionLength;
    if (expected !== body.length) {
      fail(
        "bad-length",
        `MODULE_IDENTITY length ${body.length}, expected 40 + ${moduleLength} + ${versionLength}`,
        {
          expected,
          actual: body.length,
        },
      );
    }
    if (versionLength === 0 || versionLength > MODULE_VERSION_MAX) {
      fail("bad-value", `transform version length ${versionLength} not in 1…${MODULE_VERSION_MAX}`);
    }
    const moduleBytes = body.subarray(
      MODULE_IDENTITY_HEADER_SIZE,
      MODULE_IDENTITY_HEADER_SIZE + moduleLength,
    );
    if (moduleLength < WASM_PREAMBLE.length || WASM_PREAMBLE.some((b, i) => moduleBytes[i] !== b)) {
      fail("bad-value", "module bytes do not start with the WebAssembly preamble \\0asm 1");
    }
    let transformVersion: string;
    try {
      transformVersion = utf8Strict.decode(body.subarray(MODULE_IDENTITY_HEADER_SIZE + moduleLength));
    } catch {
      fail("bad-value", "transform version is not valid UTF-8");
    }
    return {
      kind: "module-identity",
      moduleBytes,
      instrumentedHash: body.subarray(8, 8 + SHA256_SIZE),
      transformVersion,
    };
  },
};

export interface CheckpointInfo {
  readonly kind: "checkpoint-info";
  /** Checkpoint sequence number. */
  readonly seq: bigint;
  /** Guest memory size in 4 KiB pages (≤ 2^20, i.e. 4 GiB). */
  readonly memoryPages: number;
}

export const checkpointInfo: BodyCodec<CheckpointInfo> = {
  layer: "libxc",
  type: LIBXC.CHECKPOINT_INFO,
  name: "CHECKPOINT_INFO",
  minLength: CHECKPOINT_INFO_SIZE,
  maxLength: CHECKPOINT_INFO_SIZE,
  size: () => CHECKPOINT_INFO_SIZE,
  encode(v, view, offset) {
    view.setBigUint64(offset, v.seq, true);
    view.setUint32(offset + 8, v.memoryPages, true);
    view.setUint32(offset + 12, 0, true);
    return offset + CHECKPOINT_INFO_SIZE;
  },
  decode(body) {
    requireLength(body, CHECKPOINT_INFO_SIZE);
    requireZero(body, 12, 16, "CHECKPOINT_INFO reserved");
    const view = viewOf(body);
    const memoryPages = view.getUint32(8, true);
    if (memoryPages > MEMORY_PAGES_MAX) fail("bad-value", `memory size ${memoryPages} pages exceeds 4 GiB`);
    return { kind: "checkpoint-info", seq: view.getBigUint64(0, true), memoryPages };
  },
};

/** Opaque guest context (the guest layer owns its inner format); must not be empty. */
export const guestContext = blobCodec(
  "libxc",
  LIBXC.GUEST_CONTEXT,
  "GUEST_CONTEXT",
  "guest-context",
  1,
  REC_LENGTH_MAX,
);

export interface FsDirtyBlockList {
  readonly kind: "fs-dirty-block-list";
  /** u64 pairs on the wire; numbers here (values above 2^53−1 are refused). */
  readonly blocks: readonly { readonly ino: number; readonly block: number }[];
}

export const fsDirtyBlockList: BodyCodec<FsDirtyBlockList> = entryListCodec({
  layer: "libxc",
  type: LIBXC.FS_DIRTY_BLOCK_LIST,
  name: "FS_DIRTY_BLOCK_LIST",
  kind: "fs-dirty-block-list",
  field: "blocks",
  entrySize: FS_BLOCK_ENTRY_SIZE,
  minEntries: 0,
  writeEntry(view, o, b: { readonly ino: number; readonly block: number }) {
    writeSafeU64(view, o, b.ino);
    writeSafeU64(view, o + 8, b.block);
  },
  readEntry: (view, _body, o) => ({
    ino: readSafeU64(view, o, "inode"),
    block: readSafeU64(view, o + 8, "block"),
  }),
});

export const migrationReceived = emptyCodec(
  "libxl",
  LIBXL.MIGRATION_RECEIVED,
  "MIGRATION_RECEIVED",
  "migration-received",
);
export const migrationGo = emptyCodec("libxl", LIBXL.MIGRATION_GO, "MIGRATION_GO", "migration-go");
export const migrationResumed = emptyCodec(
  "libxl",
  LIBXL.MIGRATION_RESUMED,
  "MIGRATION_RESUMED",
  "migration-resumed",
);

/** Back channel: the target created its domain (MODULE_IDENTITY accepted); pages may come. */
export const migrationTargetReady = emptyCodec(
  "libxl",
  LIBXL.MIGRATION_TARGET_READY,
  "MIGRATION_TARGET_READY",
  "migration-target-ready",
);

export interface CheckpointSeq {
  readonly kind: "checkpoint-seq";
  readonly seq: bigint;
}

export const checkpointSeq: BodyCodec<CheckpointSeq> = {
  layer: "libxl",
  type: LIBXL.CHECKPOINT_SEQ,
  name: "CHECKPOINT_SEQ",
  minLength: CHECKPOINT_SEQ_SIZE,
  maxLength: CHECKPOINT_SEQ_SIZE,
  size: () => CHECKPOINT_SEQ_SIZE,
  encode(v, view, offset) {
    view.setBigUint64(offset, v.seq, true);
    return offset + CHECKPOINT_SEQ_SIZE;
  },
  decode(body) {
    requireLength(body, CHECKPOINT_SEQ_SIZE);
    return { kind: "checkpoint-seq", seq: viewOf(body).getBigUint64(0, true) };
  },
};

export interface CheckpointDigest {
  readonly kind: "checkpoint-digest";
  readonly seq: bigint;
  /** SHA-256 of the secondary's whole state after applying checkpoint `seq`. */
  readonly digest: Uint8Array;
}

export const checkpointDigest: BodyCodec<CheckpointDigest> = {
  layer: "libxl",
  type: LIBXL.CHECKPOINT_DIGEST,
  name: "CHECKPOINT_DIGEST",
  minLength: CHECKPOINT_DIGEST_SIZE,
  maxLength: CHECKPOINT_DIGEST_SIZE,
  size: () => CHECKPOINT_DIGEST_SIZE,
  encode(v, view, offset) {
    if (v.digest.length !== SHA256_SIZE) fail("invalid-argument", "digest must be 32 bytes");
    view.setBigUint64(offset, v.seq, true);
    return putBytes(view, offset + 8, v.digest);
  },
  decode(body) {
    requireLength(body, CHECKPOINT_DIGEST_SIZE);
    return { kind: "checkpoint-digest", seq: viewOf(body).getBigUint64(0, true), digest: body.subarray(8) };
  },
};
