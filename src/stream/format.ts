/**
 * Wire constants of the Xen migration streams (libxc v3 — v2 accepted — and libxl v2), the xl
 * save-file header, and colo's own numbers. Constants only: no logic lives here.
 *
 * Facts: ../../docs/stream-format.md and Xen's docs/specs/{libxc,libxl}-migration-stream.pandoc.
 *
 * ## colo's private range
 *
 * Xen reserves every number it has not assigned, so any number we take could in principle be
 * assigned by Xen later. Xen assigns record types, domain types and emulator ids densely upwards
 * from 0 (libxc records stop at 0x12, libxl records at 0x5, domain types at 0x2, emulator ids at
 * 0x2). We therefore take one block far from that frontier and from the optional space (bit 31):
 *
 *   COLO_RANGE_FIRST = 0x434F4C00 … COLO_RANGE_LAST = 0x434F4CFF   ("COL" + one byte)
 *
 * Every colo number — our domain type, our emulator id, and all our record types of both layers —
 * lies in this block, and every one of them is distinct from every other one (even across number
 * spaces), so a single number names a single thing in messages and on the back channel. All our
 * record types have bit 31 clear: they are mandatory, and a reader that does not know them fails.
 */

// ---------------------------------------------------------------------------------------------
// Framing (both layers)

/** Record header: u32 type, u32 body length (bytes, excluding header and padding). */
export const RECORD_HEADER_SIZE = 8;
/** Every record's total size (header + body + padding) is a multiple of this. */
export const RECORD_ALIGN = 8;
/** Largest padded record body libxc accepts (`REC_LENGTH_MAX`, 128 MiB). */
export const REC_LENGTH_MAX = 128 * 1024 * 1024;
/** Bit 31 of a record type: set = optional (an unknown one may be skipped), clear = mandatory. */
export const REC_TYPE_OPTIONAL = 0x8000_0000;

// ---------------------------------------------------------------------------------------------
// libxc image header (24 bytes, big-endian) and domain header (16 bytes, stream byte order = LE)

export const IHDR_SIZE = 24;
/** First 8 bytes of a libxc stream: all ones. */
export const IHDR_MARKER = 0xffff_ffff_ffff_ffffn;
/** "XENF" */
export const IHDR_ID = 0x58454e46;
export const IHDR_VERSION = 3;
/** Oldest image version a reader accepts. */
export const IHDR_VERSION_MIN = 2;
/** Image header options bit 0: the rest of the stream is big-endian. */
export const IHDR_OPT_BIG_ENDIAN = 0x0001;
/** Reserved option bits (must be zero). */
export const IHDR_OPT_RESERVED_MASK = 0xfffe;

export const DHDR_SIZE = 16;
export const DHDR_TYPE_X86_PV = 0x0000_0001;
export const DHDR_TYPE_X86_HVM = 0x0000_0002;
/** Listed by Xen's Python tooling (x86 PVH, Arm); accepted by its verifier, not by its restorer. */
export const DHDR_TYPE_X86_PVH = 0x0000_0003;
export const DHDR_TYPE_ARM = 0x0000_0004;
/** log2 of the page size; always 12 (4 KiB). */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;

// ---------------------------------------------------------------------------------------------
// libxc record types

export const LIBXC = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
  // colo (private range, mandatory)
  /** Module bytes, SHA-256 of the instrumented module, transform version. Static data. */
  MODULE_IDENTITY: 0x434f4c10,
  /** Checkpoint sequence number (u64) and memory size in pages; before that round's PAGE_DATA. */
  CHECKPOINT_INFO: 0x434f4c11,
  /** Opaque guest context (globals, tables, Asyncify stack); buffered like HVM_CONTEXT. */
  GUEST_CONTEXT: 0x434f4c12,
  /** Back channel, S→P: (inode u64, block u64) pairs of file-system blocks S changed. */
  FS_DIRTY_BLOCK_LIST: 0x434f4c13,
} as const;

/** libxc record types introduced by image version 3 (forbidden in a v2 stream). */
export const LIBXC_V3_TYPES: readonly number[] = [
  LIBXC.STATIC_DATA_END,
  LIBXC.X86_CPUID_POLICY,
  LIBXC.X86_MSR_POLICY,
];

// PAGE_DATA
/** PAGE_DATA body header: u32 count, u32 reserved. */
export const PAGE_DATA_HEADER_SIZE = 8;
/** Most pfns a saver puts in one PAGE_DATA record (Xen's MAX_BATCH_SIZE). */
export const MAX_BATCH_SIZE = 1024;
/** Bits 51–0 of a pfn entry. */
export const PFN_MASK = 0x000f_ffff_ffff_ffffn;
/** Bits 59–52 of a pfn entry: reserved, zero. */
export const PFN_RESERVED_MASK = 0x0ff0_0000_0000_0000n;
/** Bits 63–60 of a pfn entry: the page type nibble. */
export const PFN_TYPE_MASK = 0xf000_0000_0000_0000n;
export const PFN_TYPE_SHIFT = 60;
/** Largest pfn (52 bits); fits a JS number exactly. */
export const PFN_MAX = 2 ** 52 - 1;
/** Page type nibbles (XEN_DOMCTL_PFINFO_* >> 28). */
export const PAGE_TYPE = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  /** Bit of the nibble marking a pinned page table (0x9–0xC). */
  LPINTAB: 0x8,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;
/** Nibbles 0x5–0x8: invalid, a reader must fail. */
export const PAGE_TYPE_INVALID_FIRST = 0x5;
export const PAGE_TYPE_INVALID_LAST = 0x8;

// Fixed body sizes of libxc records
export const X86_PV_INFO_SIZE = 8;
export const X86_PV_VCPU_HEADER_SIZE = 8;
export const X86_PV_P2M_FRAMES_HEADER_SIZE = 8;
export const SHARED_INFO_SIZE = 4096;
export const X86_TSC_INFO_SIZE = 24;
export const HVM_PARAMS_HEADER_SIZE = 8;
export const HVM_PARAMS_ENTRY_SIZE = 16;
export const X86_CPUID_ENTRY_SIZE = 24;
export const X86_MSR_ENTRY_SIZE = 16;
/** CPUID subleaf meaning "no subleaf". */
export const CPUID_NO_SUBLEAF = 0xffff_ffff;
export const PFN_LIST_ENTRY_SIZE = 8;

// colo libxc bodies
/** MODULE_IDENTITY fixed part: u32 module length, u32 version length, 32-byte SHA-256. */
export const MODULE_IDENTITY_HEADER_SIZE = 40;
/** Longest transform version string (UTF-8 bytes). */
export const MODULE_VERSION_MAX = 1024;
export const SHA256_SIZE = 32;
/** CHECKPOINT_INFO: u64 sequence, u32 memory pages, u32 reserved. */
export const CHECKPOINT_INFO_SIZE = 16;
/** Largest memory size in 4 KiB pages a wasm32 guest can have (4 GiB). */
export const MEMORY_PAGES_MAX = 0x10_0000;
/** FS_DIRTY_BLOCK_LIST entry: u64 inode, u64 block index. */
export const FS_BLOCK_ENTRY_SIZE = 16;

// ---------------------------------------------------------------------------------------------
// libxl header (16 bytes, big-endian) and records

export const LIBXL_HDR_SIZE = 16;
/** "LibxlFmt" */
export const LIBXL_IDENT = 0x4c69_6278_6c46_6d74n;
export const LIBXL_VERSION = 2;
export const LIBXL_OPT_BIG_ENDIAN = 0x0000_0001;
export const LIBXL_OPT_LEGACY = 0x0000_0002;
export const LIBXL_OPT_RESERVED_MASK = 0xffff_fffc;

export const LIBXL = {
  END: 0x00,
  LIBXC_CONTEXT: 0x01,
  EMULATOR_XENSTORE_DATA: 0x02,
  EMULATOR_CONTEXT: 0x03,
  CHECKPOINT_END: 0x04,
  CHECKPOINT_STATE: 0x05,
  // colo (private range, mandatory)
  /** Plain migration, target → source (back channel): the whole stream arrived. Empty. */
  MIGRATION_RECEIVED: 0x434f4c20,
  /** Plain migration, source → target (main channel, after END): resume, source is gone. Empty. */
  MIGRATION_GO: 0x434f4c21,
  /** Plain migration, target → source (back channel): the guest runs on the target. Empty. */
  MIGRATION_RESUMED: 0x434f4c22,
  /** u64 checkpoint sequence number; immediately follows every CHECKPOINT_STATE, either channel. */
  CHECKPOINT_SEQ: 0x434f4c23,
  /** Back channel, after SVM_READY with --verify: u64 sequence, SHA-256 of S's whole state. */
  CHECKPOINT_DIGEST: 0x434f4c24,
  /**
   * Back channel, target → source, first record of a plain migration (and of a checkpointed
   * seed): the target created its domain from MODULE_IDENTITY and takes pages now. Empty.
   */
  MIGRATION_TARGET_READY: 0x434f4c25,
} as const;

/** Emulator sub-header at the start of EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT: id, index. */
export const EMULATOR_HEADER_SIZE = 8;
export const EMULATOR_ID = {
  UNKNOWN: 0,
  QEMU_TRADITIONAL: 1,
  QEMU_UPSTREAM: 2,
  /** colo: the WASI host's state. */
  WASI_HOST: 0x434f4c02,
} as const;

/** CHECKPOINT_STATE body: u32 control id (+ 4 zero bytes in the spec; libxl writes length 4). */
export const CHECKPOINT_STATE_LENGTH = 4;
/** Longest CHECKPOINT_STATE body accepted (extra bytes must be zero). */
export const CHECKPOINT_STATE_LENGTH_MAX = 64;
export const CHECKPOINT_STATE = {
  NEW: 0,
  SVM_SUSPENDED: 1,
  SVM_READY: 2,
  SVM_RESUMED: 3,
} as const;
export const CHECKPOINT_SEQ_SIZE = 8;
/** CHECKPOINT_DIGEST: u64 sequence, 32-byte SHA-256. */
export const CHECKPOINT_DIGEST_SIZE = 40;

// ---------------------------------------------------------------------------------------------
// colo's own domain type

export const COLO_RANGE_FIRST = 0x434f4c00;
export const COLO_RANGE_LAST = 0x434f4cff;
/** Domain header type of a WebAssembly (wasm32-wasi) guest. */
export const DHDR_TYPE_WASM32 = 0x434f4c01;

// ---------------------------------------------------------------------------------------------
// xl save-file / migration header

/** 32 bytes: "Xen saved domain, xl format\n \0 \r". */
export const XL_MAGIC = "Xen saved domain, xl format\n \0 \r";
export const XL_MAGIC_SIZE = 32;
/** magic, byteorder marker, mandatory flags, optional flags, optional data length. */
export const XL_HEADER_SIZE = 48;
/** Written in native order; little-endian hosts write 04 03 02 01. */
export const XL_BYTEORDER_MARKER = 0x01020304;
export const XL_MANDATORY_FLAG_JSON = 0x1;
export const XL_MANDATORY_FLAG_STREAMV2 = 0x2;
export const XL_MANDATORY_FLAGS_KNOWN = 0x3;
/** Cap on the xl optional data (config) we accept. */
export const XL_OPTIONAL_DATA_MAX = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Names, for messages: "0x00000001 PAGE_DATA"

export const LIBXC_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(LIBXC).map(([name, type]) => [type, name]),
);
export const LIBXL_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(LIBXL).map(([name, type]) => [type, name]),
);
export const CHECKPOINT_STATE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(CHECKPOINT_STATE).map(([name, id]) => [id, name]),
);
export const EMULATOR_ID_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(EMULATOR_ID).map(([name, id]) => [id, name]),
);
export const DHDR_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [DHDR_TYPE_X86_PV, "x86 PV"],
  [DHDR_TYPE_X86_HVM, "x86 HVM"],
  [DHDR_TYPE_X86_PVH, "x86 PVH"],
  [DHDR_TYPE_ARM, "ARM"],
  [DHDR_TYPE_WASM32, "wasm32 (colo)"],
]);
export const PAGE_TYPE_NAMES: readonly string[] = [
  "NOTAB",
  "L1TAB",
  "L2TAB",
  "L3TAB",
  "L4TAB",
  "INVALID5",
  "INVALID6",
  "INVALID7",
  "INVALID8",
  "L1TAB|PIN",
  "L2TAB|PIN",
  "L3TAB|PIN",
  "L4TAB|PIN",
  "BROKEN",
  "XALLOC",
  "XTAB",
];

/** The two record layers. */
export type Layer = "libxl" | "libxc";
