/**
 * The history checker of the fault tests (pure; no I/O).
 *
 * A history is a list of writes, each putting a unique value under a key, with its invocation
 * and completion times and its outcome as the client saw it:
 * - "ok": the server acknowledged it (a reply was seen): it must survive any single failure;
 * - "failed": it provably never took effect (never sent, or an error reply);
 * - "indeterminate": it was sent and no reply was seen: it may or may not have taken effect.
 *
 * After a failover every key is read from the survivor. The rule (issue 6): each read returns
 * the latest acknowledged write to its key, or a later indeterminate one. "Latest" is by the
 * write's position in its key's history; the workload writes each key from one client, one
 * write at a time, so a key's writes are totally ordered by invocation. A read that returns
 * anything else is a lost write:
 * - "stale": an older write's value (or no value) while an acknowledged write came after it;
 * - "phantom": a value no write put (or a failed write's value);
 * - "missing": no value at all although a write was acknowledged.
 * For a key with no acknowledged write, no value and any indeterminate write's value are fine.
 */

export type WriteOutcome = "ok" | "failed" | "indeterminate";

export interface Write {
  readonly key: string;
  /** Unique across the whole history. */
  readonly value: string;
  /** Milliseconds (any monotonic clock): when the client sent it. */
  readonly invokedAt: number;
  /** When the client saw the reply or gave up. */
  readonly completedAt: number;
  readonly outcome: WriteOutcome;
}

export type Violation =
  | { readonly kind: "stale"; readonly key: string; readonly read: string | null; readonly expected: string }
  | { readonly kind: "phantom"; readonly key: string; readonly read: string }
  | { readonly kind: "missing"; readonly key: string; readonly expected: string };

export interface HistoryVerdict {
  readonly keys: number;
  readonly writes: number;
  readonly acknowledged: number;
  readonly indeterminate: number;
  readonly failed: number;
  /** Reads that returned an indeterminate write's value (it took effect). */
  readonly indeterminateApplied: number;
  /** Keys whose read broke the rule: each one a lost (or invented) write. */
  readonly violations: readonly Violation[];
}

/** Thrown for a history that is malformed (not a verdict about the system under test). */
export class HistoryError extends Error {
  override readonly name = "HistoryError";
  readonly code = "bad-history";
}

/**
 * Check the final reads of every key against the history. `reads` must hold an entry (value or
 * null for "no such key") for every key written; a key missing from `reads` is a HistoryError.
 */
export function checkHistory(
  writes: readonly Write[],
  reads: ReadonlyMap<string, string | null>,
): HistoryVerdict {
  const byKey = new Map<string, Write[]>();
  const values = new Set<string>();
  let acknowledged = 0;
  let indeterminate = 0;
  let failed = 0;
  for (const w of writes) {
    if (values.has(w.value))
      throw new HistoryError(`value '${w.value}' written twice: values must be unique`);
    values.add(w.value);
    if (!(w.completedAt >= w.invokedAt))
      throw new HistoryError(`write '${w.value}' completes before it starts`);
    let list = byKey.get(w.key);
    if (list === undefined) {
      list = [];
      byKey.set(w.key, list);
    }
    list.push(w);
    if (w.outcome === "ok") acknowledged++;
    else if (w.outcome === "indeterminate") indeterminate++;
    else failed++;
  }
  const violations: Violation[] = [];
  let indeterminateApplied = 0;
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.invokedAt - b.invokedAt);
    for (let i = 1; i < list.length; i++) {
      if (list[i]!.invokedAt < list[i - 1]!.completedAt) {
        throw new HistoryError(`writes to '${key}' overlap: one client per key, one write at a time`);
      }
    }
    if (!reads.has(key)) throw new HistoryError(`no read of key '${key}'`);
    const read = reads.get(key) ?? null;
    let lastAck = -1;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i]!.outcome === "ok") {
        lastAck = i;
        break;
      }
    }
    if (read === null) {
      if (lastAck >= 0) violations.push({ kind: "missing", key, expected: list[lastAck]!.value });
      continue;
    }
    const at = list.findIndex((w) => w.value === read);
    const w = list[at];
    if (w === undefined || w.outcome === "failed") {
      violations.push({ kind: "phantom", key, read });
      continue;
    }
    if (at < lastAck) {
      violations.push({ kind: "stale", key, read, expected: list[lastAck]!.value });
      continue;
    }
    if (w.outcome === "indeterminate") indeterminateApplied++;
  }
  return {
    keys: byKey.size,
    writes: writes.length,
    acknowledged,
    indeterminate,
    failed,
    indeterminateApplied,
    violations,
  };
}

/** Totals over several runs, as every fault test prints them. */
export interface FaultTally {
  runs: number;
  kills: number;
  acknowledged: number;
  indeterminate: number;
  lost: number;
}

export function newTally(): FaultTally {
  return { runs: 0, kills: 0, acknowledged: 0, indeterminate: 0, lost: 0 };
}

export function addVerdict(t: FaultTally, v: HistoryVerdict): void {
  t.acknowledged += v.acknowledged;
  t.indeterminate += v.indeterminate;
  t.lost += v.violations.length;
}

export function formatTally(name: string, t: FaultTally): string {
  return `${name}: runs ${t.runs}, kills ${t.kills}, acknowledged writes ${t.acknowledged}, indeterminate ${t.indeterminate}, lost writes ${t.lost}`;
}
