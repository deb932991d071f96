/**
 * Errors of the WASI host layer. A guest's own mistakes never become exceptions: they become
 * errno values. These classes are for the host's callers (the runtime, the plug, the engine).
 */

export type WasiHostErrorCode =
  /** deliver(): an input event's offset is not the host's input offset for that connection. */
  | "input-offset"
  /** deliver(): "open" for a connection id already known, or data/eof after eof. */
  | "input-order"
  /** applyState(): the body is malformed (bad magic, version, length, reference, value). */
  | "state-invalid"
  /** Creation: a preopen's host directory could not be read or exceeds the file-system cap. */
  | "seed-failed"
  /** writeBack(): writing a preopen back to its host directory failed. */
  | "write-back-failed";

export interface WasiHostErrorDetails {
  /** Connection id, for input errors. */
  readonly conn?: number;
  /** Expected and actual input offsets, for "input-offset". */
  readonly expected?: number;
  readonly actual?: number;
  /** Byte offset into the state body, for "state-invalid". */
  readonly offset?: number;
  /** Which field of the state body, for "state-invalid". */
  readonly field?: string;
  /** Host path, for seeding and write-back. */
  readonly path?: string;
}

export class WasiHostError extends Error {
  override readonly name = "WasiHostError";
  readonly code: WasiHostErrorCode;
  readonly details: WasiHostErrorDetails;
  constructor(code: WasiHostErrorCode, message: string, details: WasiHostErrorDetails = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.details = details;
  }
}

/** Internal: thrown inside a host function to return an errno to the guest. Never escapes the host. */
export class Errno extends Error {
  readonly errno: number;
  constructor(errno: number) {
    super(`errno ${errno}`);
    this.errno = errno;
  }
}
