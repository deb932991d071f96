/**
 * Errors of the replication controller. Outcomes follow from `code`, never from message text:
 *
 * - "protocol": the peer broke the checkpoint protocol (a malformed, replayed or out-of-order
 *   record, a record not allowed in the current state, a mirror message out of place). The
 *   secondary stands down, the primary runs on unprotected; never a takeover.
 * - "verify-mismatch": with --verify, the secondary's digest differs from the primary's after a
 *   checkpoint: the secondary is not a faithful copy. Protection stops, loudly.
 * - "peer-lost": the heartbeat declared the peer lost.
 * - "link": a replication connection ended or reset (not by itself a reason to take over).
 * - "domain": the local replica refused an operation (suspend, apply, resume).
 * - "config": bad options or a peer asking for something this end does not do.
 * - "bad-state": a call not allowed in the controller's current state.
 * - "fenced-out": the primary lost its fencing hook after losing the secondary: it stopped serving.
 * - "switchover": a planned switchover could not be completed.
 */
export const REPLICATION_ERROR_CODES = [
  "protocol",
  "verify-mismatch",
  "peer-lost",
  "link",
  "domain",
  "config",
  "bad-state",
  /** The fencing hook lost: the other side serves, this one stopped. */
  "fenced-out",
  /** A planned switchover failed. */
  "switchover",
] as const;
export type ReplicationErrorCode = (typeof REPLICATION_ERROR_CODES)[number];

export interface ReplicationErrorDetails {
  /** Checkpoint sequence number concerned, when there is one. */
  readonly seq?: bigint | undefined;
  readonly cause?: unknown;
  readonly details?: Readonly<Record<string, unknown>>;
}

export class ReplicationError extends Error {
  override readonly name = "ReplicationError";
  readonly code: ReplicationErrorCode;
  readonly seq: bigint | undefined;
  readonly details: Readonly<Record<string, unknown>>;
  constructor(code: ReplicationErrorCode, message: string, options: ReplicationErrorDetails = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.seq = options.seq;
    this.details = options.details ?? {};
  }
}

export function isReplicationError(e: unknown, code?: ReplicationErrorCode): e is ReplicationError {
  return e instanceof ReplicationError && (code === undefined || e.code === code);
}

/** The `code` of any layer's error (save, restore, proxy, transport), or undefined. */
export function codeOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null | undefined)?.code;
  return typeof c === "string" ? c : undefined;
}

/** A one-line description of an error with its code and the first causes' codes. */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur !== undefined && cur !== null; i++) {
    const code = codeOf(cur);
    const msg = cur instanceof Error ? cur.message : String(cur);
    parts.push(code === undefined ? msg : `${msg} [${code}]`);
    cur = (cur as { cause?: unknown }).cause;
  }
  return parts.join(": ");
}
