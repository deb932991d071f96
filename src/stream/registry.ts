/**
 * Every known record type of both layers, mapped to its body codec, and the union of decoded
 * values (discriminated by `kind`).
 */
import type { BodyCodec } from "./codec.ts";
import type { Layer } from "./format.ts";
import * as colo from "./records/colo.ts";
import * as libxc from "./records/libxc.ts";
import * as libxl from "./records/libxl.ts";
import { pageData } from "./records/page-data.ts";
import * as x86 from "./records/x86.ts";

export const LIBXC_CODECS: readonly BodyCodec<RecordValue>[] = [
  libxc.libxcEnd,
  pageData,
  x86.x86PvInfo,
  x86.x86PvP2mFrames,
  x86.x86PvVcpuBasic,
  x86.x86PvVcpuExtended,
  x86.x86PvVcpuXsave,
  x86.sharedInfo,
  x86.x86TscInfo,
  libxc.hvmContext,
  libxc.hvmParams,
  libxc.toolstack,
  x86.x86PvVcpuMsrs,
  libxc.verify,
  libxc.checkpoint,
  libxc.checkpointDirtyPfnList,
  libxc.staticDataEnd,
  x86.x86CpuidPolicy,
  x86.x86MsrPolicy,
  colo.moduleIdentity,
  colo.checkpointInfo,
  colo.guestContext,
  colo.fsDirtyBlockList,
] as unknown as readonly BodyCodec<RecordValue>[];

export const LIBXL_CODECS: readonly BodyCodec<RecordValue>[] = [
  libxl.libxlEnd,
  libxl.libxcContext,
  libxl.emulatorXenstoreData,
  libxl.emulatorContext,
  libxl.checkpointEnd,
  libxl.checkpointState,
  colo.migrationReceived,
  colo.migrationGo,
  colo.migrationResumed,
  colo.checkpointSeq,
  colo.checkpointDigest,
  colo.migrationTargetReady,
] as unknown as readonly BodyCodec<RecordValue>[];

const LIBXC_BY_TYPE = new Map(LIBXC_CODECS.map((c) => [c.type, c]));
const LIBXL_BY_TYPE = new Map(LIBXL_CODECS.map((c) => [c.type, c]));

/** The codec of a record type, or undefined when the type is unknown in that layer. */
export function codecFor(layer: Layer, type: number): BodyCodec<RecordValue> | undefined {
  return (layer === "libxc" ? LIBXC_BY_TYPE : LIBXL_BY_TYPE).get(type);
}

type Decoded<C> = C extends BodyCodec<infer T> ? T : never;

/** Any decoded record body; narrow on `kind`. */
export type RecordValue =
  | Decoded<typeof libxc.libxcEnd>
  | Decoded<typeof libxc.verify>
  | Decoded<typeof libxc.checkpoint>
  | Decoded<typeof libxc.staticDataEnd>
  | Decoded<typeof libxc.hvmContext>
  | Decoded<typeof libxc.toolstack>
  | libxc.HvmParams
  | libxc.DirtyPfnList
  | import("./records/page-data.ts").PageData
  | x86.X86PvInfo
  | x86.X86PvP2mFrames
  | x86.X86PvVcpu
  | Decoded<typeof x86.sharedInfo>
  | x86.X86TscInfo
  | x86.X86CpuidPolicy
  | x86.X86MsrPolicy
  | colo.ModuleIdentity
  | colo.CheckpointInfo
  | Decoded<typeof colo.guestContext>
  | colo.FsDirtyBlockList
  | Decoded<typeof libxl.libxlEnd>
  | Decoded<typeof libxl.libxcContext>
  | Decoded<typeof libxl.checkpointEnd>
  | libxl.EmulatorXenstoreData
  | libxl.EmulatorContext
  | libxl.CheckpointState
  | Decoded<typeof colo.migrationReceived>
  | Decoded<typeof colo.migrationGo>
  | Decoded<typeof colo.migrationResumed>
  | colo.CheckpointSeq
  | colo.CheckpointDigest
  | Decoded<typeof colo.migrationTargetReady>;
