/**
 * Writes samples/colo-checkpointed.stream: a checkpointed libxl+libxc stream of colo's wasm32
 * domain type with two checkpoints (the seed, then one COLO checkpoint after CHECKPOINT_STATE
 * NEW), made with the stream layer's encoders. Deterministic: same bytes on every run.
 *
 *   node samples/make-sample.ts [OUT]
 */
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import {
  CHECKPOINT_STATE,
  checkpoint,
  checkpointEnd,
  checkpointInfo,
  checkpointSeq,
  checkpointState,
  concat,
  DHDR_TYPE_WASM32,
  domainHeader,
  EMULATOR_ID,
  emulatorContext,
  encode,
  encodePageData,
  guestContext,
  imageHeader,
  libxcContext,
  libxlHeader,
  moduleIdentity,
  staticDataEnd,
} from "../src/stream/index.ts";

export function makeSampleStream(): Uint8Array {
  // A tiny valid module: preamble only ("\0asm", version 1).
  const moduleBytes = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  const instrumentedHash = createHash("sha256").update(moduleBytes).digest();
  const page = (fill: number) => new Uint8Array(4096).fill(fill);
  const memoryPages = 32;
  const parts: Uint8Array[] = [
    libxlHeader.encode(),
    ...encode(libxcContext, { kind: "libxc-context" }),
    imageHeader.encode(),
    domainHeader.encode({ type: DHDR_TYPE_WASM32, pageShift: 12, xenMajor: 0, xenMinor: 1 }),
    ...encode(moduleIdentity, {
      kind: "module-identity",
      moduleBytes,
      instrumentedHash,
      transformVersion: "colo-xform/1 binaryen/132",
    }),
    ...encode(staticDataEnd, { kind: "static-data-end" }),
    // checkpoint 1: the seed, all of memory
    ...encode(checkpointInfo, { kind: "checkpoint-info", seq: 1n, memoryPages }),
    ...encodePageData(
      Array.from({ length: 16 }, (_, i) => ({ pfn: i })),
      Array.from({ length: 16 }, (_, i) => page(i)),
    ),
    ...encodePageData(
      Array.from({ length: 16 }, (_, i) => ({ pfn: 16 + i, type: i < 12 ? 0 : 0xf })),
      Array.from({ length: 12 }, (_, i) => page(16 + i)),
    ),
    ...encode(guestContext, { kind: "guest-context", data: new TextEncoder().encode("globals+asyncify stack") }),
    ...encode(checkpoint, { kind: "checkpoint" }),
    ...encode(emulatorContext, {
      kind: "emulator-context",
      emulatorId: EMULATOR_ID.WASI_HOST,
      index: 0,
      data: new TextEncoder().encode("wasi host state v1"),
    }),
    ...encode(checkpointEnd, { kind: "checkpoint-end" }),
    // checkpoint 2: D = A ∪ B
    ...encode(checkpointState, { kind: "checkpoint-state", id: CHECKPOINT_STATE.NEW }),
    ...encode(checkpointSeq, { kind: "checkpoint-seq", seq: 2n }),
    ...encode(checkpointInfo, { kind: "checkpoint-info", seq: 2n, memoryPages }),
    ...encodePageData(
      [{ pfn: 3 }, { pfn: 4 }, { pfn: 5 }, { pfn: 20 }],
      [page(0xa3), page(0xa4), page(0xa5), page(0xb4)],
    ),
    ...encode(guestContext, { kind: "guest-context", data: new TextEncoder().encode("globals+asyncify stack 2") }),
    ...encode(checkpoint, { kind: "checkpoint" }),
    ...encode(emulatorContext, {
      kind: "emulator-context",
      emulatorId: EMULATOR_ID.WASI_HOST,
      index: 0,
      data: new TextEncoder().encode("wasi host state v2"),
    }),
    ...encode(checkpointEnd, { kind: "checkpoint-end" }),
  ];
  return concat(parts);
}

if (import.meta.main) {
  const out = process.argv[2] ?? new URL("./colo-checkpointed.stream", import.meta.url).pathname;
  writeFileSync(out, makeSampleStream());
  process.stdout.write(`wrote ${out}\n`);
}
