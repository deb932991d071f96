/**
 * Errors of the memory stream engine. Outcomes are decided by `code`, never by message text.
 *
 * Each error names where it happened: `offset` is the byte offset in the forward stream (or the
 * back channel, for the back-channel codes) of the record concerned, `record` its name as the
 * stream layer prints it (e.g. "PAGE_DATA (0x00000001)"), and `cause` the underlying error (a
 * StreamError, a DomainError, a transport error, an fs error).
 */

export const SAVE_ERROR_CODES = [
  /** The domain refused an operation (bad state, trap) while saving. */
  "domain",
  /** Writing to the channel or file failed (closed, reset, disk full). */
  "io",
  /** The peer did not say RECEIVED (or said something else) after END. */
  "no-received",
  /** A live migration's target never said it had created its domain (MIGRATION_TARGET_READY). */
  "no-ready",
  /** The back channel carried something unexpected or malformed. */
  "back-channel",
  /** The target refused the stream (it reported an error on the back channel). */
  "refused",
  /** The output file exists and --force was not given. */
  "exists",
  /** The operation was aborted by the caller. */
  "aborted",
  /** A checkpointed-stream call out of order (e.g. sendCheckpoint before the seed). */
  "bad-state",
] as const;
export type SaveErrorCode = (typeof SAVE_ERROR_CODES)[number];

export const RESTORE_ERROR_CODES = [
  /** The stream ended before it was complete (truncated file, dropped connection). */
  "truncated",
  /** A record failed to decode or broke an ordering rule (the stream layer's error is the cause). */
  "malformed",
  /** MODULE_IDENTITY does not match what this host produces for the module bytes. */
  "identity-mismatch",
  /** A page number at or beyond the memory size the stream declared. */
  "pfn-out-of-range",
  /** The domain refused what the stream carried (context, host state, resize). */
  "domain",
  /** Reading from the channel or file failed. */
  "io",
  /** The source never said GO (it went away or said something else). */
  "no-go",
  /** A checkpoint's sequence number is not the one after the last applied (replay, reorder). */
  "sequence",
  /** The operation was aborted by the caller. */
  "aborted",
  /** A call out of order on the checkpoint receiver. */
  "bad-state",
] as const;
export type RestoreErrorCode = (typeof RESTORE_ERROR_CODES)[number];

export interface EngineErrorDetails {
  /** Byte offset in the stream of the record concerned, when known. */
  readonly offset?: number | undefined;
  /** Record name with its type in hex, when a record is concerned. */
  readonly record?: string | undefined;
  readonly cause?: unknown;
}

function describe(message: string, d: EngineErrorDetails): string {
  const where: string[] = [];
  if (d.record !== undefined) where.push(d.record);
  if (d.offset !== undefined) where.push(`at offset ${d.offset}`);
  const causeText = d.cause instanceof Error ? `: ${d.cause.message}` : "";
  return `${message}${where.length > 0 ? ` (${where.join(" ")})` : ""}${causeText}`;
}

/** What both engine errors carry; `code` is the stable outcome. */
abstract class EngineError<C extends string> extends Error {
  readonly code: C;
  readonly offset: number | undefined;
  readonly record: string | undefined;
  constructor(code: C, message: string, details: EngineErrorDetails = {}) {
    super(describe(message, details), details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.offset = details.offset;
    this.record = details.record;
  }
}

export class SaveError extends EngineError<SaveErrorCode> {
  override readonly name = "SaveError";
}

export class RestoreError extends EngineError<RestoreErrorCode> {
  override readonly name = "RestoreError";
}

export function isSaveError(e: unknown, code?: SaveErrorCode): e is SaveError {
  return e instanceof SaveError && (code === undefined || e.code === code);
}

export function isRestoreError(e: unknown, code?: RestoreErrorCode): e is RestoreError {
  return e instanceof RestoreError && (code === undefined || e.code === code);
}
