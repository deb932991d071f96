/**
 * Failover policy: what each end does when it loses its peer, as small pure-ish functions the
 * controllers (primary.ts, secondary.ts) call, so that the rules live in one place and are
 * tested without processes (architecture: "Errors, failover, switchover").
 *
 * Rules.
 * - Secondary, heartbeat lost: take over, unless a fencing hook is configured and it loses
 *   (then stand down: never serve). A replica that never completed a checkpoint (no seed) has
 *   nothing to continue from: stand down. A checkpoint in flight is discarded whole by the
 *   caller before the replica continues from its last applied state.
 * - Secondary, protocol error (malformed, replayed, out-of-order record): stand down, never take
 *   over, whatever the heartbeat says (two serving replicas is the worse failure).
 * - Secondary, replication stream ended or reset: no decision; the heartbeat decides.
 * - Secondary, manual `colo failover`: as a heartbeat loss (the hook, if any, is still asked:
 *   an operator's command does not make a cut link safe).
 * - Primary, secondary lost (heartbeat, link, protocol error): run on unprotected and release
 *   held outputs, unless a fencing hook is configured: then hold every output until the hook
 *   answers; won = run on unprotected, lost = stop serving.
 */
import { MAX_TIMER_MS } from "./config.ts";
import {
  DEFAULT_FENCE_TIMEOUT_MS,
  type Fence,
  type FenceOutcome,
  type FenceReason,
  fenceFromOptions,
  SPLIT_BRAIN_WARNING,
} from "./fence.ts";

export const DEFAULT_HEARTBEAT_MS = 100;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 500;

/** What happened to the peer, as the controller saw it. */
export type PeerLossCause =
  /** Heartbeats stopped (timeout, or the heartbeat connection dropped without a goodbye). */
  | "heartbeat-lost"
  /** The replication or mirror stream ended or reset. */
  | "link-ended"
  /** The peer broke the protocol. */
  | "protocol-error"
  /** `colo failover NAME`. */
  | "manual";

export type SecondaryAction =
  /** Continue the replica from its last applied checkpoint and serve the --service address. */
  | "take-over"
  /** Stop the replica, serve nothing, wait to be protected anew. */
  | "stand-down"
  /** Nothing yet: the heartbeat decides. */
  | "wait";

export type PrimaryAction =
  /** Release held outputs, keep serving without a secondary. */
  | "run-unprotected"
  /** Lost the fence: stop serving (close the service address, stop the guest). */
  | "stop-serving";

export interface Decision<A> {
  readonly action: A;
  /** One line for the log and status. */
  readonly detail: string;
  /** The fence's answer, when it was asked. */
  readonly fence: FenceOutcome | undefined;
}

export interface SecondaryState {
  /** Checkpoints applied so far (0 = not even the seed: nothing to continue from). */
  readonly appliedSeq: number;
  readonly name?: string | undefined;
  readonly peer?: string | undefined;
  readonly session?: string | undefined;
}

function reasonOf(cause: PeerLossCause): FenceReason {
  return cause === "manual" ? "manual" : "peer-lost";
}

/**
 * The secondary's decision on losing its primary. Asks the fence (if any) only when it would
 * otherwise take over. Never throws.
 */
export async function decideTakeover(
  cause: PeerLossCause,
  state: SecondaryState,
  fence: Fence | undefined,
): Promise<Decision<SecondaryAction>> {
  if (cause === "protocol-error") {
    return {
      action: "stand-down",
      detail: "protocol error: standing down, never taking over on one",
      fence: undefined,
    };
  }
  if (cause === "link-ended") {
    return {
      action: "wait",
      detail: "replication stream ended: waiting for the heartbeat's verdict",
      fence: undefined,
    };
  }
  if (state.appliedSeq < 1) {
    return {
      action: "stand-down",
      detail: "primary lost before the seed was applied: nothing to take over",
      fence: undefined,
    };
  }
  const why = cause === "manual" ? "manual failover" : "primary's heartbeat lost";
  if (fence === undefined) {
    return {
      action: "take-over",
      detail: `${why}: taking over from checkpoint ${state.appliedSeq} (no fencing hook: if the link was only cut, both sides now serve)`,
      fence: undefined,
    };
  }
  const outcome = await fence.attempt({
    role: "secondary",
    reason: reasonOf(cause),
    name: state.name,
    peer: state.peer,
    session: state.session,
    seq: state.appliedSeq,
  });
  return outcome.won
    ? {
        action: "take-over",
        detail: `${why}: fence won (${outcome.detail}, ${outcome.elapsedMs.toFixed(0)} ms): taking over from checkpoint ${state.appliedSeq}`,
        fence: outcome,
      }
    : {
        action: "stand-down",
        detail: `${why}: fence lost (${outcome.detail}): standing down, not serving`,
        fence: outcome,
      };
}

export interface PrimaryState {
  readonly seq: number;
  readonly name?: string | undefined;
  readonly peer?: string | undefined;
  readonly session?: string | undefined;
}

/**
 * The primary's decision on losing its secondary. With a fence the caller must keep every
 * output held until this resolves (the proxy stays paused/held); without one it resolves at once.
 */
export async function decideUnprotected(
  cause: PeerLossCause,
  state: PrimaryState,
  fence: Fence | undefined,
): Promise<Decision<PrimaryAction>> {
  const why =
    cause === "protocol-error"
      ? "secondary broke the protocol"
      : cause === "link-ended"
        ? "replication link to the secondary ended"
        : "secondary's heartbeat lost";
  if (fence === undefined) {
    return {
      action: "run-unprotected",
      detail: `${why}: running UNPROTECTED, held outputs released`,
      fence: undefined,
    };
  }
  const outcome = await fence.attempt({
    role: "primary",
    reason: "peer-lost",
    name: state.name,
    peer: state.peer,
    session: state.session,
    seq: state.seq,
  });
  return outcome.won
    ? {
        action: "run-unprotected",
        detail: `${why}: fence won (${outcome.detail}): running UNPROTECTED, held outputs released`,
        fence: outcome,
      }
    : {
        action: "stop-serving",
        detail: `${why}: fence lost (${outcome.detail}): the secondary serves; stopping`,
        fence: outcome,
      };
}

// ---------------------------------------------------------------------------------------------
// Flags shared by `colo primary` and `colo secondary`

/** parseArgs option specs; spread into the command's own. */
export const FAILOVER_FLAGS = {
  "heartbeat-ms": { type: "string" },
  "heartbeat-timeout-ms": { type: "string" },
  "fence-cmd": { type: "string" },
  "fence-module": { type: "string" },
  "fence-timeout-ms": { type: "string" },
} as const;

export const FAILOVER_USAGE = `  --heartbeat-ms N          heartbeat interval (default ${DEFAULT_HEARTBEAT_MS})
  --heartbeat-timeout-ms N  peer lost after N ms of silence (default ${DEFAULT_HEARTBEAT_TIMEOUT_MS})
  --fence-cmd "CMD"         fencing hook: a shell command, exit 0 = this side may serve
  --fence-module PATH.js    fencing hook: a module exporting fence(ctx): Promise<boolean>
  --fence-timeout-ms N      a hook silent this long has lost (default ${DEFAULT_FENCE_TIMEOUT_MS})
`;

export interface FailoverConfig {
  readonly heartbeatMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly fence: Fence | undefined;
}

/** Thrown for bad failover flags (a usage error, exit status 2). */
export class FailoverConfigError extends Error {
  override readonly name = "FailoverConfigError";
  readonly code = "usage";
}

function ms(name: string, text: string | undefined, dflt: number): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !(n > 0) || n > MAX_TIMER_MS)
    throw new FailoverConfigError(`--${name} must be a positive integer of ms up to ${MAX_TIMER_MS}`);
  return n;
}

/** Read the FAILOVER_FLAGS values. Throws FailoverConfigError. */
export async function failoverConfig(values: Readonly<Record<string, unknown>>): Promise<FailoverConfig> {
  const str = (k: string): string | undefined =>
    typeof values[k] === "string" ? (values[k] as string) : undefined;
  const heartbeatMs = ms("heartbeat-ms", str("heartbeat-ms"), DEFAULT_HEARTBEAT_MS);
  const heartbeatTimeoutMs = ms(
    "heartbeat-timeout-ms",
    str("heartbeat-timeout-ms"),
    DEFAULT_HEARTBEAT_TIMEOUT_MS,
  );
  if (heartbeatTimeoutMs <= heartbeatMs) {
    throw new FailoverConfigError("--heartbeat-timeout-ms must be larger than --heartbeat-ms");
  }
  try {
    const fence = await fenceFromOptions({
      command: str("fence-cmd"),
      module: str("fence-module"),
      timeoutMs: ms("fence-timeout-ms", str("fence-timeout-ms"), DEFAULT_FENCE_TIMEOUT_MS),
    });
    return { heartbeatMs, heartbeatTimeoutMs, fence };
  } catch (e) {
    throw new FailoverConfigError((e as Error).message, { cause: e });
  }
}

/** The status fields this module owns (merged into `colo status`). */
export interface FailoverStatus {
  readonly protection: "protected" | "unprotected" | "standing-down" | "stopped";
  readonly fence: string;
  /** True when no hook is configured: a cut link can leave both sides serving. */
  readonly splitBrainRisk: boolean;
  readonly warning: string | undefined;
  readonly heartbeatMs: number;
  readonly heartbeatTimeoutMs: number;
}

export function failoverStatus(
  config: FailoverConfig,
  protection: FailoverStatus["protection"],
): FailoverStatus {
  return {
    protection,
    fence: config.fence?.description ?? "none",
    splitBrainRisk: config.fence === undefined,
    warning: config.fence === undefined ? SPLIT_BRAIN_WARNING : undefined,
    heartbeatMs: config.heartbeatMs,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
  };
}

/** The protection a primary in `state` (PrimaryController's) gives its guest, for status. */
export function protectionOf(state: string): FailoverStatus["protection"] {
  if (state === "protected" || state === "checkpointing") return "protected";
  if (state === "fenced-out" || state === "stopped" || state === "verify-failed") return "stopped";
  return "unprotected";
}

/** The line each end prints at start about fencing (stderr, "PREFIX: …"). */
export function fencingNotice(config: FailoverConfig): string {
  return config.fence === undefined
    ? `WARNING: ${SPLIT_BRAIN_WARNING}`
    : `fencing hook: ${config.fence.description}`;
}

// ---------------------------------------------------------------------------------------------
// Control-socket operations of failover, switchover and re-protection (src/cli/{failover,
// switchover,protect}.ts send them; the controllers serve them).

export const FAILOVER_OPS = {
  /** On a secondary: take over now. Result: { action, detail }. */
  failover: "failover",
  /** On a primary: planned handover. Args { to?: "HOST:PORT" }. Result: SwitchoverReport. */
  switchover: "switchover",
  /** On an unprotected primary: args { secondary: "HOST:PORT", pskFile?, insecure? }. */
  protect: "protect",
} as const;

export interface SwitchoverReport {
  /** Client-visible gap: from pausing client input to the new primary serving (ms). */
  readonly gapMs: number;
  readonly finalSeq: number;
  readonly newPrimaryService: string | undefined;
}
