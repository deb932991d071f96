/**
 * Named hex vectors for every record type, valid and invalid, written by hand from the reference
 * (docs/stream-format.md; Xen's libxc/libxl stream specs), decoded through the record framing of
 * a back-channel-free headerless decode: each vector is one whole record (header + body + pad).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeBody } from "../../src/stream/codec.ts";
import { StreamError } from "../../src/stream/errors.ts";
import * as F from "../../src/stream/format.ts";
import { domainHeader, imageHeader, libxlHeader, xlHeader } from "../../src/stream/headers.ts";
import { codecFor, LIBXC_CODECS, LIBXL_CODECS } from "../../src/stream/registry.ts";
import { hex } from "./oracle.ts";

interface Vector {
  readonly name: string;
  readonly layer: F.Layer;
  readonly type: number;
  /** Body only (the record header is added with the body's length). */
  readonly body: string;
  /** Expected error code, or a check of the decoded value. */
  readonly error?: string;
  readonly check?: (v: Record<string, unknown>) => void;
}

const page = (b: string) => b.repeat(4096);

const VECTORS: Vector[] = [
  // libxc signalling records: empty
  { name: "END empty", layer: "libxc", type: 0x00, body: "" },
  { name: "END with a body", layer: "libxc", type: 0x00, body: "00", error: "bad-length" },
  { name: "VERIFY empty", layer: "libxc", type: 0x0d, body: "" },
  { name: "CHECKPOINT empty", layer: "libxc", type: 0x0e, body: "" },
  {
    name: "CHECKPOINT with a body",
    layer: "libxc",
    type: 0x0e,
    body: "0000000000000000",
    error: "bad-length",
  },
  { name: "STATIC_DATA_END empty", layer: "libxc", type: 0x10, body: "" },
  // PAGE_DATA
  {
    name: "PAGE_DATA one NOTAB page",
    layer: "libxc",
    type: 0x01,
    body: `01000000 00000000 0500000000000000 ${page("ab")}`,
    check: (v) => {
      assert.equal(v.count, 1);
      assert.equal(v.pageCount, 1);
      assert.deepEqual([...(v.pfns as Float64Array)], [5]);
    },
  },
  {
    name: "PAGE_DATA XTAB needs no data",
    layer: "libxc",
    type: 0x01,
    body: "01000000 00000000 07000000000000f0",
    check: (v) => assert.deepEqual([...(v.types as Uint8Array)], [0xf]),
  },
  {
    name: "PAGE_DATA pinned L1 (0x9) carries data, pfn 2^52-1",
    layer: "libxc",
    type: 0x01,
    body: `01000000 00000000 ffffffffffff0f90 ${page("01")}`,
    check: (v) => assert.deepEqual([...(v.pfns as Float64Array)], [2 ** 52 - 1]),
  },
  {
    name: "PAGE_DATA count 0",
    layer: "libxc",
    type: 0x01,
    body: "00000000 00000000 0000000000000000",
    error: "bad-value",
  },
  {
    name: "PAGE_DATA reserved word",
    layer: "libxc",
    type: 0x01,
    body: "01000000 01000000 00000000000000f0",
    error: "reserved-nonzero",
  },
  {
    name: "PAGE_DATA type 0x5 invalid",
    layer: "libxc",
    type: 0x01,
    body: "01000000 00000000 0000000000000050",
    error: "bad-value",
  },
  {
    name: "PAGE_DATA type 0x8 invalid",
    layer: "libxc",
    type: 0x01,
    body: "01000000 00000000 0000000000000080",
    error: "bad-value",
  },
  {
    name: "PAGE_DATA reserved pfn bits",
    layer: "libxc",
    type: 0x01,
    body: "01000000 00000000 00000000000010f0",
    error: "reserved-nonzero",
  },
  {
    name: "PAGE_DATA missing page",
    layer: "libxc",
    type: 0x01,
    body: "01000000 00000000 0000000000000000",
    error: "bad-length",
  },
  {
    name: "PAGE_DATA count beyond body",
    layer: "libxc",
    type: 0x01,
    body: "02000000 00000000 00000000000000f0",
    error: "bad-length",
  },
  { name: "PAGE_DATA too short", layer: "libxc", type: 0x01, body: "01000000 00000000", error: "bad-length" },
  // x86
  {
    name: "X86_PV_INFO 64-bit 4 levels",
    layer: "libxc",
    type: 0x02,
    body: "08 04 0000 00000000",
    check: (v) => assert.equal(v.guestWidth, 8),
  },
  {
    name: "X86_PV_INFO width 5",
    layer: "libxc",
    type: 0x02,
    body: "05 04 0000 00000000",
    error: "bad-value",
  },
  {
    name: "X86_PV_INFO levels 2",
    layer: "libxc",
    type: 0x02,
    body: "08 02 0000 00000000",
    error: "bad-value",
  },
  {
    name: "X86_PV_INFO reserved",
    layer: "libxc",
    type: 0x02,
    body: "08 04 0100 00000000",
    error: "reserved-nonzero",
  },
  { name: "X86_PV_INFO short", layer: "libxc", type: 0x02, body: "08 04 0000", error: "bad-length" },
  {
    name: "X86_PV_P2M_FRAMES one frame",
    layer: "libxc",
    type: 0x03,
    body: "00000000 ff010000 1234000000000000",
    check: (v) => assert.deepEqual(v.frames, [0x3412n]),
  },
  {
    name: "X86_PV_P2M_FRAMES start > end",
    layer: "libxc",
    type: 0x03,
    body: "02000000 01000000",
    error: "bad-value",
  },
  {
    name: "X86_PV_P2M_FRAMES ragged",
    layer: "libxc",
    type: 0x03,
    body: "00000000 00000000 1234",
    error: "bad-length",
  },
  {
    name: "X86_PV_VCPU_BASIC vcpu 3",
    layer: "libxc",
    type: 0x04,
    body: "03000000 00000000 aabbcc",
    check: (v) => assert.equal(v.vcpuId, 3),
  },
  { name: "X86_PV_VCPU_EXTENDED empty blob", layer: "libxc", type: 0x05, body: "01000000 00000000" },
  {
    name: "X86_PV_VCPU_XSAVE reserved",
    layer: "libxc",
    type: 0x06,
    body: "01000000 00000001",
    error: "reserved-nonzero",
  },
  { name: "X86_PV_VCPU_XSAVE blob", layer: "libxc", type: 0x06, body: "00000000 00000000 0102" },
  { name: "X86_PV_VCPU_MSRS blob", layer: "libxc", type: 0x0c, body: "00000000 00000000 01" },
  { name: "X86_PV_VCPU_BASIC short", layer: "libxc", type: 0x04, body: "03000000", error: "bad-length" },
  {
    name: "X86_PV_VCPU_EXTENDED reserved",
    layer: "libxc",
    type: 0x05,
    body: "01000000 ff000000",
    error: "reserved-nonzero",
  },
  { name: "VERIFY with a body", layer: "libxc", type: 0x0d, body: "01", error: "bad-length" },
  { name: "STATIC_DATA_END with a body", layer: "libxc", type: 0x10, body: "01", error: "bad-length" },
  { name: "libxl END with a body", layer: "libxl", type: 0x00, body: "01", error: "bad-length" },
  { name: "CHECKPOINT_END with a body", layer: "libxl", type: 0x04, body: "01", error: "bad-length" },
  {
    name: "MIGRATION_RECEIVED with a body",
    layer: "libxl",
    type: 0x434f4c20,
    body: "01",
    error: "bad-length",
  },
  {
    name: "MIGRATION_TARGET_READY with a body",
    layer: "libxl",
    type: 0x434f4c25,
    body: "01",
    error: "bad-length",
  },
  {
    name: "MIGRATION_RESUMED with a body",
    layer: "libxl",
    type: 0x434f4c22,
    body: "01",
    error: "bad-length",
  },
  { name: "X86_PV_VCPU_MSRS short", layer: "libxc", type: 0x0c, body: "01000000", error: "bad-length" },
  { name: "SHARED_INFO one page", layer: "libxc", type: 0x07, body: page("00") },
  { name: "SHARED_INFO short", layer: "libxc", type: 0x07, body: "00", error: "bad-length" },
  {
    name: "X86_TSC_INFO",
    layer: "libxc",
    type: 0x08,
    body: "01000000 80841e00 0100000000000000 02000000 00000000",
    check: (v) => {
      assert.equal(v.khz, 2_000_000);
      assert.equal(v.nsec, 1n);
    },
  },
  {
    name: "X86_TSC_INFO reserved",
    layer: "libxc",
    type: 0x08,
    body: "01000000 80841e00 0100000000000000 02000000 01000000",
    error: "reserved-nonzero",
  },
  { name: "HVM_CONTEXT blob", layer: "libxc", type: 0x09, body: "010203" },
  { name: "HVM_CONTEXT empty", layer: "libxc", type: 0x09, body: "", error: "bad-length" },
  {
    name: "HVM_PARAMS one",
    layer: "libxc",
    type: 0x0a,
    body: "01000000 00000000 0100000000000000 feff0f0000000000",
    check: (v) => assert.deepEqual(v.params, [{ index: 1n, value: 0xffffen }]),
  },
  { name: "HVM_PARAMS empty list", layer: "libxc", type: 0x0a, body: "00000000 00000000" },
  {
    name: "HVM_PARAMS count mismatch",
    layer: "libxc",
    type: 0x0a,
    body: "02000000 00000000 0100000000000000 0200000000000000",
    error: "bad-length",
  },
  {
    name: "HVM_PARAMS reserved",
    layer: "libxc",
    type: 0x0a,
    body: "00000000 01000000",
    error: "reserved-nonzero",
  },
  { name: "TOOLSTACK decodes (the verifier rejects it)", layer: "libxc", type: 0x0b, body: "00" },
  {
    name: "CHECKPOINT_DIRTY_PFN_LIST two",
    layer: "libxc",
    type: 0x0f,
    body: "0500000000000000 0900000000000000",
    check: (v) => assert.deepEqual([...(v.pfns as Float64Array)], [5, 9]),
  },
  { name: "CHECKPOINT_DIRTY_PFN_LIST empty", layer: "libxc", type: 0x0f, body: "" },
  {
    name: "CHECKPOINT_DIRTY_PFN_LIST ragged",
    layer: "libxc",
    type: 0x0f,
    body: "05000000",
    error: "bad-length",
  },
  {
    name: "X86_CPUID_POLICY one leaf",
    layer: "libxc",
    type: 0x11,
    body: "00000000 ffffffff 0d000000 47656e75 6e74656c 696e6549",
    check: (v) => assert.equal((v.leaves as { subleaf: number }[])[0]!.subleaf, 0xffffffff),
  },
  { name: "X86_CPUID_POLICY empty", layer: "libxc", type: 0x11, body: "", error: "bad-length" },
  {
    name: "X86_CPUID_POLICY ragged",
    layer: "libxc",
    type: 0x11,
    body: `${"00".repeat(24)}00000000`,
    error: "bad-length",
  },
  { name: "X86_MSR_POLICY one", layer: "libxc", type: 0x12, body: "ce000000 00000000 0000008000000000" },
  {
    name: "X86_MSR_POLICY flags set",
    layer: "libxc",
    type: 0x12,
    body: "ce000000 01000000 0000008000000000",
    error: "reserved-nonzero",
  },
  // colo libxc
  {
    name: "MODULE_IDENTITY",
    layer: "libxc",
    type: 0x434f4c10,
    body: `08000000 02000000 ${"ab".repeat(32)} 0061736d01000000 7631`,
    check: (v) => assert.equal(v.transformVersion, "v1"),
  },
  {
    name: "MODULE_IDENTITY not wasm",
    layer: "libxc",
    type: 0x434f4c10,
    body: `08000000 02000000 ${"ab".repeat(32)} 0061736d02000000 7631`,
    error: "bad-value",
  },
  {
    name: "MODULE_IDENTITY length mismatch",
    layer: "libxc",
    type: 0x434f4c10,
    body: `08000000 03000000 ${"ab".repeat(32)} 0061736d01000000 7631`,
    error: "bad-length",
  },
  {
    name: "MODULE_IDENTITY empty version",
    layer: "libxc",
    type: 0x434f4c10,
    body: `09000000 00000000 ${"ab".repeat(32)} 0061736d0100000000`,
    error: "bad-value",
  },
  {
    name: "MODULE_IDENTITY bad utf-8",
    layer: "libxc",
    type: 0x434f4c10,
    body: `08000000 01000000 ${"ab".repeat(32)} 0061736d01000000 ff`,
    error: "bad-value",
  },
  {
    name: "CHECKPOINT_INFO seq 7, 16 pages",
    layer: "libxc",
    type: 0x434f4c11,
    body: "0700000000000000 10000000 00000000",
    check: (v) => {
      assert.equal(v.seq, 7n);
      assert.equal(v.memoryPages, 16);
    },
  },
  {
    name: "CHECKPOINT_INFO reserved",
    layer: "libxc",
    type: 0x434f4c11,
    body: "0700000000000000 10000000 01000000",
    error: "reserved-nonzero",
  },
  {
    name: "CHECKPOINT_INFO > 4 GiB",
    layer: "libxc",
    type: 0x434f4c11,
    body: "0700000000000000 01001000 00000000",
    error: "bad-value",
  },
  {
    name: "CHECKPOINT_INFO short",
    layer: "libxc",
    type: 0x434f4c11,
    body: "0700000000000000",
    error: "bad-length",
  },
  { name: "GUEST_CONTEXT blob", layer: "libxc", type: 0x434f4c12, body: "01" },
  { name: "GUEST_CONTEXT empty", layer: "libxc", type: 0x434f4c12, body: "", error: "bad-length" },
  {
    name: "FS_DIRTY_BLOCK_LIST one",
    layer: "libxc",
    type: 0x434f4c13,
    body: "0300000000000000 0400000000000000",
    check: (v) => assert.deepEqual(v.blocks, [{ ino: 3, block: 4 }]),
  },
  {
    name: "FS_DIRTY_BLOCK_LIST ragged",
    layer: "libxc",
    type: 0x434f4c13,
    body: "0300000000000000",
    error: "bad-length",
  },
  {
    name: "FS_DIRTY_BLOCK_LIST inode ≥ 2^53",
    layer: "libxc",
    type: 0x434f4c13,
    body: "0000000000002000 0400000000000000",
    error: "bad-value",
  },
  // libxl
  { name: "libxl END", layer: "libxl", type: 0x00, body: "" },
  { name: "LIBXC_CONTEXT", layer: "libxl", type: 0x01, body: "" },
  { name: "LIBXC_CONTEXT with body", layer: "libxl", type: 0x01, body: "00", error: "bad-length" },
  {
    name: "EMULATOR_XENSTORE_DATA one pair",
    layer: "libxl",
    type: 0x02,
    body: "02000000 00000000 6b00 7600",
    check: (v) => assert.deepEqual(v.pairs, [["k", "v"]]),
  },
  { name: "EMULATOR_XENSTORE_DATA no pairs", layer: "libxl", type: 0x02, body: "02000000 00000000" },
  {
    name: "EMULATOR_XENSTORE_DATA not NUL-terminated",
    layer: "libxl",
    type: 0x02,
    body: "02000000 00000000 6b00 76",
    error: "bad-value",
  },
  {
    name: "EMULATOR_XENSTORE_DATA odd strings",
    layer: "libxl",
    type: 0x02,
    body: "02000000 00000000 6b00",
    error: "bad-value",
  },
  {
    name: "EMULATOR_XENSTORE_DATA unknown emulator",
    layer: "libxl",
    type: 0x02,
    body: "07000000 00000000",
    error: "bad-value",
  },
  { name: "EMULATOR_CONTEXT qemu upstream", layer: "libxl", type: 0x03, body: "02000000 00000000 5145" },
  {
    name: "EMULATOR_CONTEXT WASI host",
    layer: "libxl",
    type: 0x03,
    body: "024c4f43 00000000 01",
    check: (v) => assert.equal(v.emulatorId, F.EMULATOR_ID.WASI_HOST),
  },
  { name: "EMULATOR_CONTEXT short", layer: "libxl", type: 0x03, body: "02000000", error: "bad-length" },
  { name: "CHECKPOINT_END", layer: "libxl", type: 0x04, body: "" },
  {
    name: "CHECKPOINT_STATE NEW, length 4 (libxl)",
    layer: "libxl",
    type: 0x05,
    body: "00000000",
    check: (v) => assert.equal(v.id, 0),
  },
  {
    name: "CHECKPOINT_STATE SVM_READY, length 8 (spec)",
    layer: "libxl",
    type: 0x05,
    body: "02000000 00000000",
    check: (v) => assert.equal(v.id, 2),
  },
  { name: "CHECKPOINT_STATE id 4", layer: "libxl", type: 0x05, body: "04000000", error: "bad-value" },
  { name: "CHECKPOINT_STATE empty", layer: "libxl", type: 0x05, body: "", error: "bad-length" },
  {
    name: "CHECKPOINT_STATE non-zero tail",
    layer: "libxl",
    type: 0x05,
    body: "01000000 01000000",
    error: "reserved-nonzero",
  },
  // colo libxl
  { name: "MIGRATION_RECEIVED", layer: "libxl", type: 0x434f4c20, body: "" },
  { name: "MIGRATION_GO", layer: "libxl", type: 0x434f4c21, body: "" },
  { name: "MIGRATION_RESUMED", layer: "libxl", type: 0x434f4c22, body: "" },
  { name: "MIGRATION_TARGET_READY", layer: "libxl", type: 0x434f4c25, body: "" },
  { name: "MIGRATION_GO with body", layer: "libxl", type: 0x434f4c21, body: "00", error: "bad-length" },
  {
    name: "CHECKPOINT_SEQ 2^64-1",
    layer: "libxl",
    type: 0x434f4c23,
    body: "ffffffffffffffff",
    check: (v) => assert.equal(v.seq, 2n ** 64n - 1n),
  },
  { name: "CHECKPOINT_SEQ short", layer: "libxl", type: 0x434f4c23, body: "01", error: "bad-length" },
  {
    name: "CHECKPOINT_DIGEST",
    layer: "libxl",
    type: 0x434f4c24,
    body: `0300000000000000 ${"5a".repeat(32)}`,
    check: (v) => assert.equal(v.seq, 3n),
  },
  {
    name: "CHECKPOINT_DIGEST short digest",
    layer: "libxl",
    type: 0x434f4c24,
    body: `0300000000000000 ${"5a".repeat(31)}`,
    error: "bad-length",
  },
];

for (const v of VECTORS) {
  test(`vector ${v.layer} ${F.LIBXC_NAMES.get(v.type) ?? ""} ${v.name}`, () => {
    const codec = codecFor(v.layer, v.type);
    assert.ok(codec, "codec exists");
    const body = hex(v.body);
    let run: () => Record<string, unknown> = () => codec.decode(body) as unknown as Record<string, unknown>;
    // The length bounds are checked by the decoder before buffering; apply them here too.
    if (body.length < codec.minLength || body.length > codec.maxLength) {
      run = () => {
        throw new StreamError("bad-length", "outside the type's length bounds");
      };
    }
    if (v.error !== undefined) {
      assert.throws(run, (e: unknown) => e instanceof StreamError && e.code === v.error);
    } else {
      const value = run();
      v.check?.(value);
      // re-encoding the decoded value gives the same bytes (canonical forms only)
      if (!(v.type === 0x05 && v.layer === "libxl" && body.length !== 4)) {
        assert.deepEqual(encodeBody(codec, value as never), body);
      }
    }
  });
}

test("every record type of both layers has at least one valid and one invalid vector", () => {
  const missing: string[] = [];
  for (const c of [...LIBXC_CODECS, ...LIBXL_CODECS]) {
    const vs = VECTORS.filter((v) => v.layer === c.layer && v.type === c.type);
    assert.ok(
      vs.some((v) => v.error === undefined),
      `${c.layer} ${c.name}: no valid vector`,
    );
    if (c.name !== "TOOLSTACK") {
      missing.push(...(vs.some((v) => v.error !== undefined) ? [] : [`${c.layer} ${c.name}`]));
    }
  }
  assert.deepEqual(missing, []);
});

test("fixed sizes are pinned", () => {
  const fixed: [string, number, number][] = [
    ["libxc", F.LIBXC.X86_PV_INFO, 8],
    ["libxc", F.LIBXC.SHARED_INFO, 4096],
    ["libxc", F.LIBXC.X86_TSC_INFO, 24],
    ["libxc", F.LIBXC.CHECKPOINT_INFO, 16],
    ["libxl", F.LIBXL.CHECKPOINT_SEQ, 8],
    ["libxl", F.LIBXL.CHECKPOINT_DIGEST, 40],
    ...[F.LIBXC.END, F.LIBXC.VERIFY, F.LIBXC.CHECKPOINT, F.LIBXC.STATIC_DATA_END].map(
      (t) => ["libxc", t, 0] as [string, number, number],
    ),
    ...[F.LIBXL.END, F.LIBXL.LIBXC_CONTEXT, F.LIBXL.CHECKPOINT_END, F.LIBXL.MIGRATION_GO].map(
      (t) => ["libxl", t, 0] as [string, number, number],
    ),
  ];
  for (const [layer, type, size] of fixed) {
    const c = codecFor(layer as F.Layer, type)!;
    assert.equal(c.minLength, size, c.name);
    assert.equal(c.maxLength, size, c.name);
  }
  assert.equal(F.IHDR_SIZE, 24);
  assert.equal(F.DHDR_SIZE, 16);
  assert.equal(F.LIBXL_HDR_SIZE, 16);
  assert.equal(F.XL_HEADER_SIZE, 48);
  assert.equal(F.EMULATOR_HEADER_SIZE, 8);
  assert.equal(F.REC_LENGTH_MAX, 128 * 1024 * 1024);
  assert.equal(
    codecFor("libxl", F.LIBXL.CHECKPOINT_STATE)!.size({ kind: "checkpoint-state", id: 0 } as never),
    4,
  );
});

test("private range: every colo number inside it, distinct, mandatory", () => {
  const ours = [
    F.DHDR_TYPE_WASM32,
    F.EMULATOR_ID.WASI_HOST,
    F.LIBXC.MODULE_IDENTITY,
    F.LIBXC.CHECKPOINT_INFO,
    F.LIBXC.GUEST_CONTEXT,
    F.LIBXC.FS_DIRTY_BLOCK_LIST,
    F.LIBXL.MIGRATION_RECEIVED,
    F.LIBXL.MIGRATION_GO,
    F.LIBXL.MIGRATION_RESUMED,
    F.LIBXL.MIGRATION_TARGET_READY,
    F.LIBXL.CHECKPOINT_SEQ,
    F.LIBXL.CHECKPOINT_DIGEST,
  ];
  assert.equal(new Set(ours).size, ours.length);
  for (const n of ours) {
    assert.ok(n >= F.COLO_RANGE_FIRST && n <= F.COLO_RANGE_LAST);
    assert.equal(n & F.REC_TYPE_OPTIONAL, 0);
  }
});

test("header vectors (big-endian headers, LE domain header)", () => {
  assert.deepEqual(imageHeader.encode(), hex("ffffffffffffffff 58454e46 00000003 0000 0000 00000000"));
  assert.deepEqual(imageHeader.decode(hex("ffffffffffffffff 58454e46 00000002 0000 0000 00000000")), {
    version: 2,
  });
  const ihdrErr = (h: string, code: string) =>
    assert.throws(
      () => imageHeader.decode(hex(h)),
      (e: unknown) => e instanceof StreamError && e.code === code,
    );
  ihdrErr("fffffffffffffffe 58454e46 00000003 0000 0000 00000000", "bad-magic");
  ihdrErr("ffffffffffffffff 58454e47 00000003 0000 0000 00000000", "bad-magic");
  ihdrErr("ffffffffffffffff 58454e46 00000004 0000 0000 00000000", "bad-version");
  ihdrErr("ffffffffffffffff 58454e46 00000003 0001 0000 00000000", "big-endian");
  ihdrErr("ffffffffffffffff 58454e46 00000003 0002 0000 00000000", "reserved-nonzero");
  ihdrErr("ffffffffffffffff 58454e46 00000003 0000 0000 00000001", "reserved-nonzero");
  assert.deepEqual(domainHeader.decode(hex("02000000 0c00 0000 04000000 13000000")), {
    type: 2,
    pageShift: 12,
    xenMajor: 4,
    xenMinor: 19,
  });
  assert.throws(() => domainHeader.decode(hex("05000000 0c00 0000 04000000 13000000")), {
    code: "bad-value",
  });
  assert.throws(() => domainHeader.decode(hex("02000000 0d00 0000 04000000 13000000")), {
    code: "bad-value",
  });
  assert.throws(() => domainHeader.decode(hex("02000000 0c00 0100 04000000 13000000")), {
    code: "reserved-nonzero",
  });
  assert.deepEqual(libxlHeader.encode(), hex("4c6962786c466d74 00000002 00000000"));
  assert.deepEqual(libxlHeader.decode(hex("4c6962786c466d74 00000002 00000002")), { legacy: true });
  assert.throws(() => libxlHeader.decode(hex("4c6962786c466d74 00000001 00000000")), { code: "bad-version" });
  assert.throws(() => libxlHeader.decode(hex("4c6962786c466d74 00000002 00000004")), {
    code: "reserved-nonzero",
  });
  assert.throws(() => libxlHeader.decode(hex("4c6962786c466d75 00000002 00000000")), { code: "bad-magic" });
  const xl = xlHeader.encode({ mandatoryFlags: 3, optionalFlags: 0, optionalData: new Uint8Array(0) });
  assert.deepEqual(
    xl,
    hex(
      `${Buffer.from("Xen saved domain, xl format\n \0 \r").toString("hex")} 04030201 03000000 00000000 00000000`,
    ),
  );
  assert.throws(
    () =>
      xlHeader.decodeFixed(
        xlHeader.encode({ mandatoryFlags: 1, optionalFlags: 0, optionalData: new Uint8Array(0) }),
      ),
    {
      code: "bad-version",
    },
  );
  assert.throws(
    () =>
      xlHeader.decodeFixed(
        xlHeader.encode({ mandatoryFlags: 7, optionalFlags: 0, optionalData: new Uint8Array(0) }),
      ),
    {
      code: "bad-value",
    },
  );
});
