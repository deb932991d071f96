/**
 * Replication settings shared by both ends, and how the primary announces them to the secondary:
 * as capability bits in the hello of its replication connection (src/transport/format.ts), so the
 * secondary never needs flags of its own for them.
 *
 *   mode colo + strategy back-channel   backChannel | fsBlocks
 *   mode colo + strategy cache          cacheStrategy
 *   mode colo + strategy full           (neither)
 *   mode remus                          remus
 *   --verify                            verify
 */
import { Capability } from "../transport/format.ts";
import { ReplicationError } from "./errors.ts";

/**
 * The longest delay a Node.js timer honours, ms (2^31 − 1, about 24.8 days). A larger one is
 * silently turned into 1 ms, so a flag such as `--heartbeat-timeout-ms 3e9` would declare the
 * peer lost at once: every millisecond flag is refused above this.
 */
export const MAX_TIMER_MS = 2_147_483_647;

export type ReplicationMode = "colo" | "remus";
export const MODES: readonly ReplicationMode[] = ["colo", "remus"];

/**
 * How the secondary's stale pages (B − A) are repaired at a checkpoint:
 * - back-channel: S sends B (and its changed file blocks); P sends D = A ∪ B;
 * - cache: S keeps the last checkpoint's memory and restores B itself; P sends only A;
 * - full: P sends every page (the baseline).
 */
export type Strategy = "back-channel" | "cache" | "full";
export const STRATEGIES: readonly Strategy[] = ["back-channel", "cache", "full"];

/**
 * When the PVM runs again at a COLO checkpoint:
 * - snapshot: at once: the guest's own thread copies its dirty pages A, context and host state as
 *   it stops and runs on (Domain.snapshot), before the secondary's list B is in; when B names
 *   pages (or file blocks) A lacks, the PVM is stopped again and the checkpoint is taken at that
 *   second stop instead (the output between the two is then covered by it);
 * - copied: as soon as every byte of the checkpoint (A ∪ B) is copied out of its memory by the
 *   main thread, while the bytes are still being written;
 * - ready: at SVM_READY, once the secondary has applied the checkpoint (Xen's and QEMU's order).
 * With snapshot and copied, the PVM's output from the resume on waits in the proxy until
 * SVM_READY and is then compared with the SVM's like any other.
 */
export type PvmResume = "snapshot" | "copied" | "ready";
export const PVM_RESUMES: readonly PvmResume[] = ["snapshot", "copied", "ready"];

export interface ReplicationSettings {
  readonly mode: ReplicationMode;
  readonly strategy: Strategy;
  /** Checkpoints never closer than this, ms (COLO). */
  readonly minIntervalMs: number;
  /** A checkpoint at least this often, ms (COLO). */
  readonly maxIntervalMs: number;
  /** Remus: one checkpoint per epoch, ms. */
  readonly epochMs: number;
  /** Compare whole-state digests after every checkpoint. */
  readonly verify: boolean;
  /** COLO: when the PVM resumes at a checkpoint (see PvmResume). The primary's alone. */
  readonly pvmResume: PvmResume;
}

export const DEFAULT_SETTINGS: ReplicationSettings = {
  mode: "colo",
  strategy: "back-channel",
  minIntervalMs: 2,
  maxIntervalMs: 2000,
  epochMs: 100,
  verify: false,
  pvmResume: "snapshot",
};

/** Fill in defaults and check ranges. Throws ReplicationError "config". */
export function settings(partial: Partial<ReplicationSettings> = {}): ReplicationSettings {
  const s = { ...DEFAULT_SETTINGS, ...partial };
  if (!MODES.includes(s.mode)) throw new ReplicationError("config", `unknown mode ${s.mode}`);
  if (!STRATEGIES.includes(s.strategy))
    throw new ReplicationError("config", `unknown strategy ${s.strategy}`);
  if (!PVM_RESUMES.includes(s.pvmResume))
    throw new ReplicationError("config", `unknown PVM resume point ${s.pvmResume}`);
  for (const k of ["minIntervalMs", "maxIntervalMs", "epochMs"] as const) {
    if (!Number.isFinite(s[k]) || s[k] < 0) throw new ReplicationError("config", `${k} must be >= 0`);
  }
  if (s.maxIntervalMs < s.minIntervalMs)
    throw new ReplicationError("config", "maxIntervalMs must be >= minIntervalMs");
  if (s.epochMs <= 0) throw new ReplicationError("config", "epochMs must be > 0");
  return s;
}

/** The capability bits the primary puts in its replication hello. */
export function capabilitiesOf(s: Pick<ReplicationSettings, "mode" | "strategy" | "verify">): bigint {
  let c = 0n;
  if (s.mode === "remus") c |= Capability.remus;
  else if (s.strategy === "back-channel") c |= Capability.backChannel | Capability.fsBlocks;
  else if (s.strategy === "cache") c |= Capability.cacheStrategy;
  if (s.verify) c |= Capability.verify;
  return c;
}

/** What the secondary reads from the primary's hello. */
export function settingsFromCapabilities(
  c: bigint,
): Pick<ReplicationSettings, "mode" | "strategy" | "verify"> {
  const has = (bit: bigint): boolean => (c & bit) !== 0n;
  if (has(Capability.remus) && (has(Capability.backChannel) || has(Capability.cacheStrategy))) {
    throw new ReplicationError("config", "the primary asked for Remus and a COLO strategy at once");
  }
  if (has(Capability.backChannel) && has(Capability.cacheStrategy)) {
    throw new ReplicationError("config", "the primary asked for two strategies at once");
  }
  return {
    mode: has(Capability.remus) ? "remus" : "colo",
    strategy: has(Capability.backChannel) ? "back-channel" : has(Capability.cacheStrategy) ? "cache" : "full",
    verify: has(Capability.verify),
  };
}
