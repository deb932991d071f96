/**
 * Counters the proxy keeps for the controller to export (Prometheus, `colo status`). Plain
 * numbers: counters only grow; gauges (marked) are read at the moment of the call.
 */

/** Why the proxy reports a divergence. */
export type DivergenceKind =
  /** First differing byte on a connection, stdout or stderr. */
  | "output"
  /** Shutdown or close at different output offsets, or one side wrote past the other's. */
  | "close-mismatch"
  /** A trap or exit in one replica only (or different exit codes / end kinds). */
  | "end-mismatch"
  /** The SVM stayed silent past the timeout while the PVM had output waiting. */
  | "svm-timeout";

export const DIVERGENCE_KINDS: readonly DivergenceKind[] = [
  "output",
  "close-mismatch",
  "end-mismatch",
  "svm-timeout",
] as const;

export interface PrimaryProxyMetrics {
  readonly mode: string;
  /** Current checkpoint number. */
  readonly seq: number;
  readonly connectionsAccepted: number;
  /** Gauge: connections the proxy still tracks. */
  readonly connectionsOpen: number;
  /** Client input bytes fed to the PVM. */
  readonly bytesIn: number;
  /** Client input bytes sent on the mirror link. */
  readonly bytesMirrored: number;
  /** PVM output bytes released (to clients, stdout or stderr). */
  readonly bytesReleased: number;
  /** Released bytes dropped because the client was gone (reset or closed). */
  readonly bytesDiscarded: number;
  /** Gauge: PVM output bytes held. */
  readonly heldBytes: number;
  /** Gauge: SVM output bytes received past the PVM's. */
  readonly svmAheadBytes: number;
  /** Gauge: client input bytes buffered in the proxy (checkpoint pause or full mirror link). */
  readonly pendingInputBytes: number;
  /** SVM output bytes received for the current checkpoint. */
  readonly svmBytes: number;
  /** SVM output bytes dropped as stale (from before the current checkpoint). */
  readonly svmStaleBytes: number;
  readonly divergences: Readonly<Record<DivergenceKind, number>>;
  /** "checkpoint-needed" events emitted. */
  readonly checkpointsNeeded: number;
  /** Times client input was paused for backpressure (mirror link, PVM queue, cap, client). */
  readonly inputPauses: number;
  /** Seconds spent comparing outputs. */
  readonly compareSeconds: number;
}

export interface SecondaryProxyMetrics {
  readonly seq: number;
  /** Mirrored input bytes fed to the SVM. */
  readonly bytesFed: number;
  /** Mirrored input bytes dropped because the applied checkpoint already contains them. */
  readonly bytesDropped: number;
  /** SVM output bytes sent back on the mirror link. */
  readonly bytesSent: number;
  /** Gauge: mirrored messages buffered during a checkpoint. */
  readonly bufferedMessages: number;
  /** Times the S → P link reported full (the SVM cannot be paused; see secondary.ts). */
  readonly linkFull: number;
}
