/**
 * The contract between the WebAssembly runtime (src/guest/wasm/, which owns the worker thread,
 * the instance, Asyncify and the dirty map) and the WASI preview 1 host (src/guest/wasi/, which
 * owns every piece of host state: fd table, connections, virtual file system, clocks).
 *
 * Both live inside the guest's worker thread. The runtime creates the host with a HostEnv, puts
 * `host.imports()` under the import module "wasi_snapshot_preview1" (wrapping each function so a
 * stop request can unwind the guest there), and calls the other methods when the main thread asks
 * (capture, apply, digest) — only while the guest is unwound, never re-entrantly.
 */
import type { FsBlockRef, FsBlockSelection } from "../domain.ts";
import type { PortInput, PortOutput, StdinInput } from "../port.ts";

/** What the runtime provides to the host. */
export interface HostEnv {
  /**
   * The guest's linear memory as it is now. Re-read after anything that can grow memory (any
   * call back into the guest); a host function may cache it for the length of one call only.
   */
  memory(): Uint8Array;
  /** Mark guest bytes [ptr, ptr+len) dirty, as a guest store would (host writes into guest memory). */
  markDirty(ptr: number, len: number): void;
  /**
   * Deliver every input event that has arrived from the main thread (calls host.deliver for
   * each), without blocking. Cheap when there are none.
   */
  pump(): void;
  /**
   * Block until an input event arrives (after which it has been delivered through pump), until
   * `deadlineNs` on the raw monotonic clock passes, or until a stop is requested. Returns "event"
   * or "timeout". On a stop request it throws StopRequested: the runtime unwinds the guest, and
   * on resume calls the same host function again with the same arguments. So a host function
   * must not change host state or guest memory before a wait() that may throw.
   */
  wait(deadlineNs: bigint | undefined): "event" | "timeout";
  /** Send one output event to the main thread (the port's listeners). */
  emit(event: PortOutput): void;
  /** Raw host clocks in ns. The host applies its own offsets, so that guest time never goes back across a restore. */
  monotonicNs(): bigint;
  realtimeNs(): bigint;
  /** Fill with cryptographically random bytes. */
  randomFill(buf: Uint8Array): void;
}

/** Thrown by HostEnv.wait when the main thread asked the guest to stop. */
export class StopRequested extends Error {
  override readonly name = "StopRequested";
}

/** Thrown by proc_exit; the runtime ends the guest with this code. */
export class ProcExit extends Error {
  override readonly name = "ProcExit";
  readonly code: number;
  constructor(code: number) {
    super(`guest exited with code ${code}`);
    this.code = code;
  }
}

export interface Preopen {
  /** Path the guest sees, e.g. "/data". */
  readonly guestPath: string;
  /** Host directory that seeds it at start and receives it back at exit; undefined for an empty in-memory dir. */
  readonly hostPath: string | undefined;
}

export interface WasiHostOptions {
  readonly args: readonly string[];
  /** Environment as "KEY=VALUE" strings; the host adds LISTEN_FDS=1 (fd 3 is the service socket). */
  readonly env: readonly string[];
  readonly preopens: readonly Preopen[];
  /** Cap on the total bytes of file data in the virtual file system (ENOSPC beyond it). */
  readonly fsLimitBytes: number;
  /**
   * fd 0: "empty" (default) reads EOF at once; "port" reads the StdinInput events the plug
   * delivers (blocking until one arrives). Only `colo run` feeds stdin; replicated modes keep
   * it empty so replicas see the same stdin.
   */
  readonly stdin?: "port" | "empty";
}

/** The host's side of the contract. */
export interface WasiHost {
  /** The "wasi_snapshot_preview1" import object. Functions take and return wasm values (i32 as number, i64 as bigint). */
  imports(): Record<string, (...args: never[]) => number | bigint | undefined>;
  /** Queue one input event into host state (called from HostEnv.pump). Returns bytes now queued unread for that conn (or stdin). */
  deliver(event: PortInput | StdinInput): number;
  /** Canonical encoding of the whole host state; file data limited to `fs`. Pure: same state, same bytes. */
  captureState(fs: FsBlockSelection): Uint8Array;
  /** Replace host state with a captured one. Validates fully first; on error throws and changes nothing. */
  applyState(body: Uint8Array): void;
  /** File blocks changed since the previous call; clears the record. */
  harvestFsDirty(): FsBlockRef[];
  /** Note that the guest is being suspended now (freeze guest-visible clocks for capture). */
  onSuspend(): void;
  /** Note that the guest resumes now (re-base clocks so guest time never goes back). */
  onResume(): void;
  /** Write preopened directories with a hostPath back to the host (at guest exit, active replica only). */
  writeBack(): Promise<void>;
}

/** Constructor signature the runtime uses; implemented in src/guest/wasi/host.ts. */
export type CreateWasiHost = (options: WasiHostOptions, env: HostEnv) => WasiHost;
