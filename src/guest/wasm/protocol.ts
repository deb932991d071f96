/**
 * Messages between a WasmDomain (main thread) and its guest's worker. Control requests go over
 * the worker's parent port and are handled only while the guest is not running (unwound or not
 * started); port input events go over a separate MessagePort that the worker drains
 * synchronously (receiveMessageOnPort) from inside host calls.
 */
import type { MessagePort } from "node:worker_threads";
import type { FsBlockRef, FsBlockSelection } from "../domain.ts";
import type { PortOutput } from "../port.ts";
import type { WasiHostOptions } from "../wasi/contract.ts";
import type { GlobalType } from "./transform.ts";

/** The "queued" report's key for stdin (connection ids are u32, so never -1). */
export const STDIN_QUEUE = -1;

export interface WorkerInit {
  readonly module: WebAssembly.Module;
  readonly memory: WebAssembly.Memory;
  readonly control: WebAssembly.Memory;
  readonly input: MessagePort;
  /** URL of a module exporting `createWasiHost: CreateWasiHost`. */
  readonly hostModule: string;
  readonly host: WasiHostOptions;
  readonly globals: readonly GlobalType[];
  readonly asyncify: boolean;
  readonly writeBackOnExit: boolean;
}

export type Request =
  | { readonly op: "start" }
  | { readonly op: "resume" }
  | { readonly op: "captureContext" }
  | { readonly op: "applyContext"; readonly body: Uint8Array }
  | { readonly op: "captureHost"; readonly fs: FsBlockSelection }
  | { readonly op: "applyHost"; readonly body: Uint8Array }
  | { readonly op: "harvestFs" }
  | { readonly op: "reinstantiate"; readonly memory: WebAssembly.Memory; readonly copyPages: number }
  /** Touch 4 KiB pages [from, to) of the guest memory so the OS maps them now (restore target). */
  | { readonly op: "prefault"; readonly from: number; readonly to: number };

export type RequestMessage = Request & { readonly id: number };

/**
 * Requests asked for in one synchronous turn of the main thread (captures, applies), posted as
 * one message: the worker wakes once, serves them in order, and answers with one "replies".
 */
export interface BatchMessage {
  readonly op: "batch";
  readonly requests: readonly RequestMessage[];
}

/**
 * CTL_STOP values: 0 run; STOP_PLAIN stop; STOP_CAPTURE stop and send the capture (host state
 * with the stop's changed blocks) with "suspended"; STOP_CAPTURE_ALL the same with every block.
 */
export const STOP_PLAIN = 1;
export const STOP_CAPTURE = 2;
export const STOP_CAPTURE_ALL = 3;
/**
 * Take a snapshot and run on (Domain.snapshot): at most CTL_SNAP_MAX dirty pages, else a stop
 * as STOP_CAPTURE; STOP_SNAPSHOT_DIGEST also digests the state.
 */
export const STOP_SNAPSHOT = 4;
export const STOP_SNAPSHOT_DIGEST = 5;

/** What the worker took at a snapshot (Domain.snapshot; the pages buffer is transferred). */
export interface WorkerSnapshot {
  readonly pfns: Uint32Array;
  readonly pages: Uint8Array;
  readonly memoryPages: number;
  readonly fsBlocks: FsBlockRef[];
  readonly context: Uint8Array;
  readonly hostState: Uint8Array;
  readonly digest: Uint8Array | undefined;
  /** The worker's monotonic clock (ms) when the guest stopped, and when it ran on. */
  readonly stoppedAt: number;
  readonly resumedAt: number;
}

/** The guest context and the host state (with the stop's changed file blocks) taken as it unwound. */
export interface UnwindCapture {
  readonly context: Uint8Array;
  readonly hostState: Uint8Array;
  /** The host state carries every file block (STOP_CAPTURE_ALL), not the stop's changed ones. */
  readonly allBlocks: boolean;
}

export interface SerializedError {
  readonly name: string;
  readonly code: string | undefined;
  readonly message: string;
}

export type Reply =
  | {
      readonly t: "reply";
      readonly id: number;
      readonly ok: true;
      /** start/resume: when the guest ran again (the worker's process.hrtime, ms). */
      readonly value: Uint8Array | FsBlockRef[] | number | undefined;
    }
  | { readonly t: "reply"; readonly id: number; readonly ok: false; readonly error: SerializedError };

export type WorkerEvent =
  | Reply
  | { readonly t: "ready" }
  /**
   * The guest unwound; `fsDirty`: its changed file blocks, harvested (cleared) in the same step;
   * `captured`: when the stop asked for it (STOP_CAPTURE) and capturing succeeded.
   */
  | { readonly t: "suspended"; readonly fsDirty: FsBlockRef[]; readonly captured?: UnwindCapture }
  /** A snapshot was taken (STOP_SNAPSHOT*) and the guest runs on. */
  | { readonly t: "snapshot"; readonly snap: WorkerSnapshot }
  | { readonly t: "replies"; readonly replies: readonly Reply[] }
  | { readonly t: "exited"; readonly code: number }
  | { readonly t: "trapped"; readonly message: string }
  | { readonly t: "output"; readonly event: PortOutput }
  | { readonly t: "queued"; readonly conn: number; readonly bytes: number };
