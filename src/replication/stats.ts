/**
 * What the controllers count: one record per checkpoint (kept in a bounded ring for `colo status`
 * and the demo) and running totals (for /metrics). Units: pages of 4 KiB, bytes, milliseconds.
 */

/** Why a checkpoint was taken. */
export type Trigger = "seed" | "divergence" | "held-cap" | "max-interval" | "epoch" | "request";

/** One checkpoint as the primary saw it. */
export interface CheckpointRecord {
  readonly seq: number;
  readonly trigger: Trigger;
  /** |A|: pages the PVM dirtied since the last checkpoint. */
  readonly a: number;
  /** |B|: pages the SVM dirtied (back-channel strategy only; 0 where no list travels). */
  readonly b: number;
  /** |A ∪ B| within the PVM's memory size: the dirty set to repair. */
  readonly d: number;
  /** PAGE_DATA pages actually sent (d, or every page with strategy full). */
  readonly pagesSent: number;
  /** Bytes of the forward stream for this checkpoint (NEW through CHECKPOINT_END). */
  readonly bytes: number;
  /** Bytes on the back channel for this checkpoint (states, lists, digest). */
  readonly backBytes: number;
  /** File-system blocks carried. */
  readonly fsBlocks: number;
  /**
   * PVM pause, ms. COLO: from the checkpoint's start (the PVM's stop asked, NEW written in the
   * same turn) until the PVM's worker ran the guest again; Remus: from the stop until resumed.
   */
  readonly pauseMs: number;
  /** Time to write the checkpoint's records, ms. */
  readonly sendMs: number;
  /** Digest compared equal (true), differed (false), or not checked (undefined). */
  readonly verified: boolean | undefined;
  /**
   * pvmResume "snapshot": taken again at a second stop (S changed pages or blocks the snapshot
   * lacked); the pause is then the sum of both stops.
   */
  readonly retaken?: boolean;
  /** COLO: when each step of the pause ended, ms after NEW was sent (see PRIMARY_STEPS). */
  readonly steps?: Readonly<Partial<Record<PrimaryStep, number>>>;
  /**
   * COLO: when the checkpoint started, ms since the Unix epoch with the monotonic clock's
   * precision (`performance.timeOrigin + performance.now()`): lines the two ends' steps up on
   * one host.
   */
  readonly startedAt?: number;
}

/**
 * The primary's steps of one COLO checkpoint, in the order they usually end (steps that overlap
 * may end in another order): NEW written; PVM suspended; A and P's changed blocks harvested;
 * PAGE_DATA of A written (strategy full: of every page); SVM_SUSPENDED received; S's dirty lists
 * received; guest context and host state captured; the rest written (PAGE_DATA of B − A, guest
 * context, CHECKPOINT, host state, CHECKPOINT_END); SVM_READY received (with its digest compared,
 * --verify); PVM resumed (when its worker ran the guest again); SVM_RESUMED received.
 */
export const PRIMARY_STEPS = [
  "newSent",
  "pvmSuspended",
  "harvested",
  "pagesSent",
  "svmSuspended",
  "listReceived",
  "captured",
  "endWritten",
  "svmReady",
  "pvmResumed",
  "svmResumed",
] as const;
export type PrimaryStep = (typeof PRIMARY_STEPS)[number];

/**
 * The secondary's steps of one COLO checkpoint, ms after NEW was received: SVM suspended; B and
 * S's changed blocks harvested; SVM_SUSPENDED and the lists written; CHECKPOINT_END received
 * (the whole checkpoint buffered); applied; SVM_READY written (after the digest, --verify); SVM
 * resumed; SVM_RESUMED written.
 */
export const SECONDARY_STEPS = [
  "suspended",
  "harvested",
  "listSent",
  "endReceived",
  "applied",
  "readySent",
  "resumed",
  "resumedSent",
] as const;
export type SecondaryStep = (typeof SECONDARY_STEPS)[number];

/**
 * Records `name` → ms since `t0` (performance.now()) when each step ends: now, or at `at` (a
 * performance.now() instant taken elsewhere, e.g. when a worker resumed the guest).
 */
export function stepClock<K extends string>(
  t0: number,
): { readonly steps: Partial<Record<K, number>>; mark(name: K, at?: number): void } {
  const steps: Partial<Record<K, number>> = {};
  const mark = (name: K, at?: number): void => {
    steps[name] = (at ?? performance.now()) - t0;
  };
  return { steps, mark };
}

/** One checkpoint as the secondary saw it. */
export interface SecondaryCheckpointRecord {
  readonly seq: number;
  /** SVM pause: NEW received → the SVM's worker ran it again (Remus: receive → applied), ms. */
  readonly pauseMs: number;
  /** Pages the checkpoint carried. */
  readonly pages: number;
  /** |B| harvested on this side. */
  readonly b: number;
  /** Pages restored from the cache (strategy cache). */
  readonly fromCache: number;
  readonly applyMs: number;
  /** COLO: when each step ended, ms after NEW was received (see SECONDARY_STEPS). */
  readonly steps?: Readonly<Partial<Record<SecondaryStep, number>>>;
  /** COLO: when NEW was received, ms since the Unix epoch (as `CheckpointRecord.startedAt`). */
  readonly startedAt?: number;
}

/** A bounded ring of the most recent records. */
export class Ring<T> {
  readonly #cap: number;
  #items: T[] = [];
  constructor(cap = 1024) {
    this.#cap = cap;
  }
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.#cap) this.#items.splice(0, this.#items.length - this.#cap);
  }
  get last(): T | undefined {
    return this.#items[this.#items.length - 1];
  }
  toArray(): T[] {
    return this.#items.slice();
  }
}

/** Running totals of the primary. */
export interface PrimaryTotals {
  checkpoints: number;
  pagesA: number;
  pagesB: number;
  pagesD: number;
  pagesSent: number;
  bytes: number;
  backBytes: number;
  verified: number;
  verifyFailures: number;
  /**
   * COLO pvmResume "snapshot": checkpoints taken again at a second stop of the PVM, because S's
   * list named pages or blocks its snapshot lacked.
   */
  retaken: number;
  pauseMsTotal: number;
  triggers: Record<Trigger, number>;
}

export function emptyTotals(): PrimaryTotals {
  return {
    checkpoints: 0,
    pagesA: 0,
    pagesB: 0,
    pagesD: 0,
    pagesSent: 0,
    bytes: 0,
    backBytes: 0,
    verified: 0,
    verifyFailures: 0,
    retaken: 0,
    pauseMsTotal: 0,
    triggers: { seed: 0, divergence: 0, "held-cap": 0, "max-interval": 0, epoch: 0, request: 0 },
  };
}

export function addRecord(t: PrimaryTotals, r: CheckpointRecord): void {
  t.checkpoints++;
  t.pagesA += r.a;
  t.pagesB += r.b;
  t.pagesD += r.d;
  t.pagesSent += r.pagesSent;
  t.bytes += r.bytes;
  t.backBytes += r.backBytes;
  t.pauseMsTotal += r.pauseMs;
  t.triggers[r.trigger]++;
  if (r.verified === true) t.verified++;
  if (r.verified === false) t.verifyFailures++;
}

/** p-th percentile (0..100) of a list, nearest rank; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
