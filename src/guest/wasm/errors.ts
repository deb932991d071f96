/**
 * Errors of the WebAssembly runtime (layer 2). Outcomes are decided by `code`, never by message.
 */

/** Why a module was refused at load, or why the runtime failed. Stable strings. */
export type GuestErrorCode =
  /** Not a WebAssembly binary binaryen can read. */
  | "not-wasm"
  /** The module declares a shared memory or uses threads of its own. */
  | "threads"
  /** A 64-bit memory (memory64). */
  | "memory64"
  /** No memory, or more than one. */
  | "no-memory"
  | "multi-memory"
  /** An import other than a wasi_snapshot_preview1 function we support (details.import). */
  | "unsupported-import"
  /** No `_start` export: not a WASI command module. */
  | "no-start"
  /** An instruction or feature the runtime cannot instrument (details.feature). */
  | "unsupported-feature"
  /** Transform options out of range (details name the option). */
  | "bad-options"
  /** binaryen produced an invalid module (a bug in the transform). */
  | "transform-failed"
  /** The worker thread failed (details.message). */
  | "worker-failed"
  /** A restore target's module is not the one the source runs (hash or transform version). */
  | "identity-mismatch"
  /** A context record that does not decode, or does not fit this module. */
  | "bad-context";

export class GuestError extends Error {
  override readonly name = "GuestError";
  readonly code: GuestErrorCode;
  readonly details: Readonly<Record<string, string | number>>;
  constructor(
    code: GuestErrorCode,
    message: string,
    details: Readonly<Record<string, string | number>> = {},
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
    this.code = code;
    this.details = details;
  }
}
