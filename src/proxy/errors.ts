/**
 * The proxy layer's one error class. Outcomes are decided by `code`, never by message text.
 */

/** Stable error codes of the proxy layer. */
export type ProxyErrorCode =
  /** A mirror message broke the protocol: an input or output offset gap or overlap, a message for
   * a connection that was never opened, a checkpoint number that skips ahead, a bad message kind. */
  | "protocol"
  /** A bounded queue would overflow in a way the protocol does not allow (e.g. mirror messages
   * for a checkpoint not yet done beyond `futureCap`). */
  | "overflow"
  /** A method was called in a state that does not allow it (e.g. after close()). */
  | "bad-state"
  /** Caller misuse: bad option values or arguments. */
  | "invalid-argument"
  /** Connection ids are exhausted (u32, never reused within one guest's life). */
  | "ids-exhausted";

export interface ProxyErrorOptions {
  /** Typed extra facts (conn id, expected and actual offsets, checkpoint numbers, …). */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

export class ProxyError extends Error {
  override readonly name = "ProxyError";
  readonly code: ProxyErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ProxyErrorCode, message: string, options: ProxyErrorOptions = {}) {
    super(`proxy ${code}: ${message}`, options.cause === undefined ? {} : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}
