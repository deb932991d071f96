/**
 * The transport layer's one error class. Outcomes are decided by `code`, never by message text.
 */

/** Stable error codes of the transport layer. */
export type TransportErrorCode =
  /** The channel was used after end()/destroy(), or closed underneath the caller. */
  | "closed"
  /** The peer reset the connection, or it ended while a read was still expected (EOF mid-frame). */
  | "reset"
  /** A connect, handshake or hello did not complete in time. */
  | "timeout"
  /** The writer ignored `write() === false` and pushed past the hard buffer cap. */
  | "backpressure"
  /** TLS refused the peer: wrong pre-shared key, unknown identity, bad or missing certificate. */
  | "auth"
  /** Any other TLS failure (protocol version, cipher, garbage instead of a TLS record). */
  | "tls"
  /** No key or certificate given and no explicit insecure flag; bad key file; bad address policy. */
  | "config"
  /** The hello's magic is wrong: not a colo peer. */
  | "hello-magic"
  /** The hello is malformed: length out of range, reserved bytes non-zero, unknown role/kind. */
  | "hello-malformed"
  /** Protocol versions differ. */
  | "hello-version"
  /** The peer's role is not one this end accepts. */
  | "hello-role"
  /** The peer's channel kind is not one this end accepts (or differs from the one dialled). */
  | "hello-kind"
  /** The peer's session id is not the current session. */
  | "hello-session"
  /** The peer lacks a required capability. */
  | "hello-capabilities"
  /** A connection with this session, kind and nonce was already seen: a replay. */
  | "hello-replay"
  /** The peer refused our hello (its verdict code is in details.verdict). */
  | "refused"
  /** A frame's declared length is above the cap (refused before allocating). */
  | "frame-too-large"
  /** A frame's reserved field is non-zero or its type is unknown where types are closed. */
  | "frame-malformed"
  /** Input ended in the middle of a frame. */
  | "frame-truncated"
  /** A message body does not match its type's layout. */
  | "message-malformed"
  /** An operating-system I/O error (details.errno / details.syscall). */
  | "io"
  /** Caller misuse (bad arguments). */
  | "invalid-argument";

export interface TransportErrorOptions {
  /** Byte offset in the channel's input (from its first byte after the hello) of the fault. */
  readonly offset?: number;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

export class TransportError extends Error {
  override readonly name = "TransportError";
  readonly code: TransportErrorCode;
  readonly offset: number | undefined;
  readonly details: Readonly<Record<string, unknown>>;
  /** The message without the position prefix. */
  readonly reason: string;

  constructor(code: TransportErrorCode, reason: string, options: TransportErrorOptions = {}) {
    super(options.offset === undefined ? reason : `offset ${options.offset}: ${reason}`, {
      cause: options.cause,
    });
    this.code = code;
    this.reason = reason;
    this.offset = options.offset;
    this.details = options.details ?? {};
  }
}

const RESET_ERRNOS = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE"]);
const TIMEOUT_ERRNOS = new Set(["ETIMEDOUT"]);

/**
 * Map an error raised by node:net / node:tls / node:fs into a TransportError (kept as `cause`).
 * TLS codes that mean "this peer does not hold the key or certificate" become "auth".
 */
export function fromNodeError(err: unknown, context: string): TransportError {
  if (err instanceof TransportError) return err;
  const e = err as NodeJS.ErrnoException & { library?: string; reason?: string };
  const code = typeof e?.code === "string" ? e.code : "";
  const details = { nodeCode: code, syscall: e?.syscall, errno: e?.errno };
  if (RESET_ERRNOS.has(code))
    return new TransportError("reset", `${context}: ${code}`, { details, cause: err });
  if (TIMEOUT_ERRNOS.has(code))
    return new TransportError("timeout", `${context}: ${code}`, { details, cause: err });
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_") || e?.library === "SSL routines") {
    const auth =
      /BINDER|DECRYPT|BAD_RECORD_MAC|CIPHER_OPERATION|CERTIFICATE|SIGNATURE|PSK|HANDSHAKE_FAILURE|UNKNOWN_CA|SELF_SIGNED|UNABLE_TO|PEER_DID_NOT_RETURN|NO_SHARED_CIPHER|NO_SUITABLE/.test(
        code,
      );
    return new TransportError(auth ? "auth" : "tls", `${context}: ${e?.message ?? code}`, {
      details,
      cause: err,
    });
  }
  if (/^(UNABLE_TO|SELF_SIGNED|CERT_|DEPTH_ZERO|ERR_TLS_CERT)/.test(code)) {
    return new TransportError("auth", `${context}: ${e?.message ?? code}`, { details, cause: err });
  }
  return new TransportError("io", `${context}: ${e?.message ?? String(err)}`, { details, cause: err });
}
