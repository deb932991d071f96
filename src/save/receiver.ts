/**
 * The receiving side of one checkpoint: buffer everything a checkpoint carries, apply it only
 * when the whole checkpoint has arrived (architecture: "the restoring side buffers a whole
 * checkpoint and applies it only when complete"; Xen: `buffer_all_records` in xg_sr_restore.c).
 *
 * State machine (one instance per checkpoint; `reset()` starts the next one):
 *
 *   idle ──begin(seq, pages)──▶ buffering ──finish()──▶ complete ──apply()──▶ applied
 *                                  │                        │          ├──(domain refused midway)──▶ failed
 *                                  │                        │          └──(refused by validate*)──▶ discarded
 *                                  └──────discard()─────────┴──▶ discarded
 *
 * While buffering, pages are copied into buffers owned by the receiver (the decoder's views are
 * only borrowed), keyed by pfn so a page sent twice keeps its last contents: the buffer is bounded
 * by the checkpoint's declared memory size. Everything the engine can check is checked before the
 * first change to the domain: sequence number, every pfn below the declared size, the guest
 * context and the host state present; then, before the first change, the domain's own checks of
 * the context and host state (Domain.validateContext / validateHostState, where it has them): a
 * body it refuses discards the checkpoint with the domain untouched. `failed` means the domain
 * refused something midway anyway (resize, or a worker that died: the replica is no longer a
 * consistent copy; the controller stands down).
 */
import { type Domain, PAGE_SIZE } from "../guest/domain.ts";
import { RestoreError } from "./errors.ts";

export type CheckpointState = "idle" | "buffering" | "complete" | "applied" | "discarded" | "failed";

export interface CheckpointSummary {
  readonly seq: bigint;
  /** Memory size in pages declared by CHECKPOINT_INFO. */
  readonly memoryPages: number;
  /** Distinct pages carried. */
  readonly pages: number;
  readonly contextBytes: number;
  readonly hostStateBytes: number;
}

export class CheckpointReceiver {
  readonly domain: Domain;
  #state: CheckpointState = "idle";
  #seq = 0n;
  #memoryPages = 0;
  #pages = new Map<number, Uint8Array>();
  #context: Uint8Array | undefined;
  #hostState: Uint8Array | undefined;
  #lastApplied: bigint | undefined;
  #discardReason: unknown;

  /** `lastApplied`: sequence number of the checkpoint the domain already holds (the seed's), if any. */
  constructor(domain: Domain, lastApplied?: bigint) {
    this.domain = domain;
    this.#lastApplied = lastApplied;
  }

  get state(): CheckpointState {
    return this.#state;
  }
  /** Sequence number of the last checkpoint applied whole. */
  get lastApplied(): bigint | undefined {
    return this.#lastApplied;
  }
  get discardReason(): unknown {
    return this.#discardReason;
  }

  #expect(op: string, ...states: CheckpointState[]): void {
    if (!states.includes(this.#state)) {
      throw new RestoreError("bad-state", `checkpoint receiver: ${op} in state ${this.#state}`);
    }
  }

  /** CHECKPOINT_INFO: a new checkpoint starts. Its seq must follow the last applied one. */
  begin(seq: bigint, memoryPages: number): void {
    this.#expect("begin", "idle");
    if (this.#lastApplied !== undefined && seq !== this.#lastApplied + 1n) {
      throw new RestoreError(
        "sequence",
        `checkpoint ${seq} does not follow checkpoint ${this.#lastApplied} (replayed or out of order)`,
      );
    }
    this.#seq = seq;
    this.#memoryPages = memoryPages;
    this.#state = "buffering";
  }

  /** Buffer one page (copied). Throws "pfn-out-of-range" for a pfn at or past the declared size. */
  addPage(pfn: number, data: Uint8Array): void {
    this.#expect("addPage", "buffering");
    if (pfn >= this.#memoryPages) {
      throw new RestoreError(
        "pfn-out-of-range",
        `pfn ${pfn} is past the checkpoint's ${this.#memoryPages} pages`,
      );
    }
    let buf = this.#pages.get(pfn);
    if (buf === undefined) {
      buf = new Uint8Array(PAGE_SIZE);
      this.#pages.set(pfn, buf);
    }
    buf.set(data.subarray(0, PAGE_SIZE));
  }

  setContext(body: Uint8Array): void {
    this.#expect("setContext", "buffering");
    this.#context = body.slice();
  }

  setHostState(body: Uint8Array): void {
    this.#expect("setHostState", "buffering");
    this.#hostState = body.slice();
  }

  /** CHECKPOINT_END arrived: the checkpoint is whole. Checks that nothing is missing. */
  finish(): CheckpointSummary {
    this.#expect("finish", "buffering");
    if (this.#context === undefined)
      throw new RestoreError("malformed", `checkpoint ${this.#seq} has no guest context`);
    if (this.#hostState === undefined)
      throw new RestoreError("malformed", `checkpoint ${this.#seq} has no host state`);
    this.#state = "complete";
    return this.summary();
  }

  summary(): CheckpointSummary {
    return {
      seq: this.#seq,
      memoryPages: this.#memoryPages,
      pages: this.#pages.size,
      contextBytes: this.#context?.length ?? 0,
      hostStateBytes: this.#hostState?.length ?? 0,
    };
  }

  /**
   * Apply the whole checkpoint to the (suspended or not yet started) domain. `beforeWrite` runs
   * once the domain accepted the context and host state, right before the first change (the cache
   * strategy puts back its pages there, so a refused checkpoint changes nothing).
   */
  async apply(beforeWrite?: () => void): Promise<CheckpointSummary> {
    this.#expect("apply", "complete");
    const summary = this.summary();
    const context = this.#context;
    const hostState = this.#hostState;
    if (context === undefined || hostState === undefined)
      throw new RestoreError("bad-state", "complete without parts");
    // All or nothing: the domain checks the context and host state before the first change to
    // it, so a body it refuses discards the checkpoint and leaves the domain as it was.
    try {
      this.domain.validateContext?.(context);
      this.domain.validateHostState?.(hostState);
    } catch (e) {
      this.discard(e);
      throw new RestoreError("domain", `checkpoint ${this.#seq} refused by the domain, nothing applied`, {
        cause: e,
      });
    }
    try {
      beforeWrite?.();
      if (this.domain.pageCount() !== this.#memoryPages) await this.domain.resize(this.#memoryPages);
      for (const [pfn, data] of this.#pages) this.domain.writePage(pfn, data);
      // Both requests in flight at once: one wake-up of the guest's worker, not two round trips.
      const results = await Promise.allSettled([
        this.domain.applyContext(context),
        this.domain.applyHostState(hostState),
      ]);
      for (const r of results) if (r.status === "rejected") throw r.reason;
    } catch (e) {
      this.#state = "failed";
      this.#drop();
      throw new RestoreError("domain", `applying checkpoint ${this.#seq} failed`, { cause: e });
    }
    this.#lastApplied = this.#seq;
    this.#state = "applied";
    this.#drop();
    return summary;
  }

  /** Throw away a partial (or complete but unapplied) checkpoint; the domain is left untouched. */
  discard(reason?: unknown): void {
    if (this.#state === "applied" || this.#state === "failed") return;
    this.#discardReason = reason;
    this.#state = "discarded";
    this.#drop();
  }

  /** Ready for the next checkpoint (after applied or discarded). */
  reset(): void {
    this.#expect("reset", "applied", "discarded", "idle");
    this.#state = "idle";
    this.#drop();
  }

  #drop(): void {
    this.#pages = new Map();
    this.#context = undefined;
    this.#hostState = undefined;
  }
}
