/**
 * The saving side of the memory stream engine (Xen's xg_sr_save.c + libxl_stream_write.c, as one
 * generic algorithm over the Domain ops contract; the engine never knows the guest is WebAssembly).
 *
 * One stream, in the order of the architecture ("What a checkpoint carries"):
 *
 *   libxl header, LIBXC_CONTEXT,
 *     libxc image header, domain header (wasm32),
 *     MODULE_IDENTITY, STATIC_DATA_END,
 *     CHECKPOINT_INFO (seq, pages)            — again whenever the memory size changed
 *     PAGE_DATA …                             — live: all pages, then each round's dirty pages;
 *                                               after suspend, the last dirty pages
 *     GUEST_CONTEXT,
 *     END (plain) | CHECKPOINT (checkpointed)
 *   EMULATOR_CONTEXT (WASI host id; captureHostState),
 *   END (plain) | CHECKPOINT_END (checkpointed)
 *
 * Pages are copied out of the domain with readPage into a pool of reusable 4 KiB buffers and
 * written as gather lists (header, pfn array, page views), at most 1,024 pfns per PAGE_DATA. The
 * domain's harvest contract (clear the mark before the copy) makes a page copied while the guest
 * runs safe: a racing store marks it again and the next round resends it.
 *
 * Live pre-copy stops iterating when the pages left would be sent within the downtime target at
 * the throughput measured so far, when the dirty set stops shrinking, or at the round limit.
 */
import { copyPageRuns, type Domain, PAGE_SIZE } from "../guest/domain.ts";
import type { ByteSink } from "./channel.ts";
import { Emitter, MAX_BATCH } from "./emit.ts";
import { SaveError } from "./errors.ts";

export interface LiveOptions {
  /** Stop pre-copy once the rest fits in this many ms at the measured throughput (default 20). */
  readonly downtimeTargetMs?: number;
  /** Most pre-copy rounds, the full first round included (default 30). */
  readonly maxRounds?: number;
  /** Rounds in a row the dirty set may fail to shrink before giving up on pre-copy (default 3). */
  readonly maxStalls?: number;
  /**
   * The part of the downtime that is not the last pages (suspend, context, host state, the
   * target's apply and the handshake), ms; the last round's pages get the rest of the target.
   * Default: half the target.
   */
  readonly fixedCostMs?: number;
  /**
   * A dirty set that fits the budget but is larger than this many pages is sent as one more
   * pre-copy round while rounds still halve it (default 64): the last pages travel inside the
   * downtime, so a round of a few ms that leaves a handful is worth it.
   */
  readonly minFinalPages?: number;
}

export interface SaveProgress {
  readonly phase: "precopy" | "stop-copy" | "handshake" | "done";
  /** Round number, 1-based (the last, stop-and-copy, round included). */
  readonly round: number;
  /** Pages sent in this round so far / pages to send in this round. */
  readonly pagesSent: number;
  readonly pagesInRound: number;
  /** Bytes written to the stream so far. */
  readonly bytes: number;
  /** Throughput measured so far, bytes per second (0 before the first batch). */
  readonly rate: number;
  /** Estimated downtime if pre-copy stopped now, ms. */
  readonly estimatedDowntimeMs: number;
  /** Pages the guest dirtied during the last complete round. */
  readonly dirtyPages: number;
}

export interface SaveReport {
  readonly rounds: number;
  /** Pages sent per round (the stop-and-copy round last). */
  readonly pagesPerRound: readonly number[];
  readonly bytes: number;
  readonly totalMs: number;
  /** From suspend to the target's RESUMED (migration), or to the end of the write (save), ms. */
  readonly downtimeMs: number;
  /** Where the downtime went (migration; the stop-and-copy of a save has no apply/resume). */
  readonly downtimeParts?: DowntimeParts;
  /** Migration: from the start until the target said it created its domain (part of totalMs), ms. */
  readonly targetReadyMs?: number;
  readonly memoryPages: number;
}

/**
 * The parts of a downtime, ms, measured on the source: `suspend` (stop request → guest unwound),
 * `pages` (the last dirty pages written), `context` and `hostState` (captured and written),
 * `apply` (until the target said RECEIVED: it finished reading, applied context and host state,
 * bound its service), `resume` (GO → the target said RESUMED). Their sum is the downtime.
 */
export interface DowntimeParts {
  readonly suspend: number;
  readonly pages: number;
  readonly context: number;
  readonly hostState: number;
  readonly apply: number;
  readonly resume: number;
}

/** What the algorithm reports back while it runs. */
export type ProgressListener = (p: SaveProgress) => void;

/** One batch's page buffers: a slab of MAX_BATCH pages, free again once the sink flushed it. */
class Slab {
  readonly pages: Uint8Array[] = [];
  /** Sink byte offset at the end of the batch last written from this slab (0: never written). */
  releaseAt = 0;
  constructor(n: number) {
    const slab = new Uint8Array(n * PAGE_SIZE);
    for (let i = 0; i < n; i++) this.pages.push(slab.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
  }
}

/** Most slabs a saver keeps (4 MiB each): two alternate in steady state, the rest absorb a slow flush. */
const MAX_SLABS = 4;

/**
 * Batch buffers for copied pages, bounded and recycled. A sink that does not retain chunks
 * (a file: the kernel copied them before write() resolved) reuses one slab. A sink that retains
 * them but reports `flushed()` gets a slab back once every byte written from it has left the
 * sink's queue; while none is free and fewer than MAX_SLABS exist a new one is made, else the
 * pool waits (bounded: it polls the sink, which is draining because the engine awaits every
 * write). A retaining sink without `flushed()` (an in-memory pipe whose peer may hold the very
 * chunks) gets a fresh slab every batch.
 */
class SlabPool {
  readonly #sink: ByteSink;
  readonly #slabs: Slab[] = [];
  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  async acquire(): Promise<Slab> {
    const sink = this.#sink;
    if (sink.retains !== true) {
      if (this.#slabs.length === 0) this.#slabs.push(new Slab(MAX_BATCH));
      return this.#slabs[0] as Slab;
    }
    if (sink.flushed === undefined) return new Slab(MAX_BATCH);
    for (let spins = 0; ; spins++) {
      const flushed = sink.flushed();
      const free = this.#slabs.find((s) => s.releaseAt <= flushed);
      if (free !== undefined) return free;
      if (this.#slabs.length < MAX_SLABS) {
        const slab = new Slab(MAX_BATCH);
        this.#slabs.push(slab);
        return slab;
      }
      if (spins > 10_000) return new Slab(MAX_BATCH); // a sink that stopped draining: do not hang here
      await new Promise((r) => setTimeout(r, spins < 10 ? 0 : 1));
    }
  }
}

/**
 * The libxc+libxl writer for one stream. Owns the emitter and the counters; the three drivers
 * (saveDomain, the live migration, the checkpointed stream) call it in the documented order.
 */
export class StreamSaver {
  readonly domain: Domain;
  readonly sink: ByteSink;
  readonly emit = new Emitter();
  readonly #pool: SlabPool;
  #declaredPages = -1;
  #seq = 0n;
  bytes = 0;
  /** Wall time of page writing, ms, and bytes of page records: for the throughput estimate. */
  #pageMs = 0;
  #pageBytes = 0;
  /** The last writePages call's wall time and bytes (the most recent rate). */
  #lastMs = 0;
  #lastBytes = 0;

  constructor(domain: Domain, sink: ByteSink) {
    this.domain = domain;
    this.sink = sink;
    this.#pool = new SlabPool(sink);
  }

  /** Measured page throughput over everything sent so far, bytes/s (0 if nothing measured yet). */
  get rate(): number {
    return this.#pageMs > 0 ? (this.#pageBytes * 1000) / this.#pageMs : 0;
  }

  /**
   * Page throughput of the most recent round, bytes/s, when it was large enough to time (≥ 1 ms
   * and 64 pages), else the overall rate. Pre-copy estimates the stop-and-copy from it: the first
   * round may have been slowed by the target creating its domain, the latest one shows the link.
   */
  get recentRate(): number {
    return this.#lastMs >= 1 && this.#lastBytes >= 64 * PAGE_SIZE
      ? (this.#lastBytes * 1000) / this.#lastMs
      : this.rate;
  }

  async #write(chunks: readonly Uint8Array[], record: string): Promise<void> {
    let n = 0;
    for (const c of chunks) n += c.byteLength;
    try {
      await this.sink.write(chunks);
    } catch (e) {
      throw new SaveError("io", "writing the stream failed", { offset: this.bytes, record, cause: e });
    }
    this.bytes += n;
  }

  /** libxl header, LIBXC_CONTEXT, libxc headers, MODULE_IDENTITY, STATIC_DATA_END. */
  async writeStart(): Promise<void> {
    await this.#write(this.emit.streamStart(this.domain.identity), "stream headers");
  }

  /** CHECKPOINT_INFO for `seq` if forced, or if the seq or the memory size changed since the last one. */
  async declare(seq: bigint, force = false): Promise<number> {
    const pages = this.domain.pageCount();
    if (force || pages !== this.#declaredPages || seq !== this.#seq) {
      await this.#write(this.emit.checkpointInfo(seq, pages), "CHECKPOINT_INFO");
      this.#declaredPages = pages;
      this.#seq = seq;
    }
    return pages;
  }

  /**
   * CHECKPOINT_INFO for `seq` (always) and PAGE_DATA for `pfns` (those at or past the domain's
   * size skipped), built now, with copies of the pages: for a caller that lets the domain run
   * before the records are written (`writeRaw`). Returns the records, the memory size declared
   * and the pages carried.
   */
  copyCheckpointStart(
    seq: bigint,
    pfns: ArrayLike<number>,
  ): { readonly chunks: Uint8Array[]; readonly memoryPages: number; readonly pages: number } {
    const memoryPages = this.domain.pageCount();
    this.#declaredPages = memoryPages;
    this.#seq = seq;
    const { chunks, pages } = this.copyPages(pfns);
    return { chunks: [...this.emit.checkpointInfo(seq, memoryPages), ...chunks], memoryPages, pages };
  }

  /**
   * copyCheckpointStart() for pages copied already (a DomainSnapshot): CHECKPOINT_INFO declaring
   * `memoryPages`, then PAGE_DATA for `pfns` (all below it) with page i at byte i × PAGE_SIZE of
   * `pages`, in batches of ≤ 1,024 (views of `pages`: it must not change until written).
   */
  snapshotCheckpointStart(
    seq: bigint,
    pfns: Uint32Array,
    pages: Uint8Array,
    memoryPages: number,
  ): { readonly chunks: Uint8Array[]; readonly pages: number } {
    if (pages.length !== pfns.length * PAGE_SIZE)
      throw new SaveError("bad-state", `${pfns.length} pfns but ${pages.length} bytes of pages`);
    for (let i = 0; i < pfns.length; i++) {
      if (pfns[i]! >= memoryPages)
        throw new SaveError("bad-state", `pfn ${pfns[i]} past the snapshot's ${memoryPages} pages`);
    }
    this.#declaredPages = memoryPages;
    this.#seq = seq;
    const chunks = [...this.emit.checkpointInfo(seq, memoryPages), ...this.#pageChunks(pfns, pages)];
    return { chunks, pages: pfns.length };
  }

  /** PAGE_DATA records, ≤ 1,024 pages each, for `pfns` whose page i is at i × PAGE_SIZE of `copy`. */
  #pageChunks(pfns: ArrayLike<number>, copy: Uint8Array): Uint8Array[] {
    const chunks: Uint8Array[] = [];
    for (let b = 0; b < pfns.length; b += MAX_BATCH) {
      const n = Math.min(MAX_BATCH, pfns.length - b);
      const batch = new Float64Array(n);
      const pages: Uint8Array[] = new Array(n);
      for (let i = 0; i < n; i++) {
        batch[i] = pfns[b + i] as number;
        pages[i] = copy.subarray((b + i) * PAGE_SIZE, (b + i + 1) * PAGE_SIZE);
      }
      chunks.push(...this.emit.pageData(batch, pages));
    }
    return chunks;
  }

  /**
   * PAGE_DATA for `pfns` below the declared size, built now with copies of the pages (one buffer
   * for all of them, filled a run of consecutive pages at a time), in batches of ≤ 1,024.
   */
  copyPages(pfns: ArrayLike<number>): { readonly chunks: Uint8Array[]; readonly pages: number } {
    const limit = this.#declaredPages;
    const keep: number[] = [];
    for (let i = 0; i < pfns.length; i++) if ((pfns[i] as number) < limit) keep.push(pfns[i] as number);
    const copy = new Uint8Array(keep.length * PAGE_SIZE);
    // One view of the whole memory where the domain offers it: a run of consecutive pfns is one
    // copy, with no per-page call into the domain.
    let mem: Uint8Array | undefined;
    try {
      mem =
        keep.length > 0 && this.domain.pageView !== undefined ? this.domain.pageView(0, limit) : undefined;
    } catch (e) {
      throw new SaveError("domain", "reading the pages failed", { cause: e });
    }
    if (mem !== undefined) copyPageRuns(mem, keep, copy);
    else {
      for (let i = 0; i < keep.length; i++) {
        try {
          this.domain.readPage(keep[i]!, copy.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
        } catch (e) {
          throw new SaveError("domain", `reading page ${keep[i]} failed`, { cause: e });
        }
      }
    }
    return { chunks: this.#pageChunks(keep, copy), pages: keep.length };
  }

  /**
   * PAGE_DATA for `pfns` (ascending or not), in batches of ≤ 1,024. pfns at or past the declared
   * size are skipped (the memory shrank, or a peer's list named pages we do not have).
   * `onBatch(sent)` is called after each batch. Returns the number of pages sent.
   *
   * `borrow`: send views of the domain's memory itself (Domain.pageView, no copy; runs of
   * consecutive pfns become one chunk) instead of copies. Only where a torn page cannot matter:
   * during live pre-copy (a store racing the send marks the page again and the next round resends
   * it), or while the domain stays suspended until the sink has written the bytes (the final
   * round of a migration or a seed: the source stays suspended until the target acknowledged
   * everything; a save to a file: the kernel copies before write() resolves). Checkpoints after
   * which the source may resume at once (Remus) must copy.
   */
  async writePages(
    pfns: ArrayLike<number>,
    onBatch?: (sent: number) => void,
    borrow = false,
  ): Promise<number> {
    const limit = this.#declaredPages;
    const view = borrow ? this.domain.pageView?.bind(this.domain) : undefined;
    const batch = new Float64Array(MAX_BATCH);
    const pages: Uint8Array[] = new Array(MAX_BATCH);
    let slab: Slab | undefined;
    let n = 0;
    let sent = 0;
    const t0 = performance.now();
    const bytes0 = this.bytes;
    const flush = async (): Promise<void> => {
      if (n === 0) return;
      const t1 = performance.now();
      const before = this.bytes;
      await this.#write(this.emit.pageData(batch.subarray(0, n), pages.slice(0, n)), "PAGE_DATA");
      this.#pageMs += performance.now() - t1;
      this.#pageBytes += this.bytes - before;
      if (slab !== undefined) {
        slab.releaseAt = this.sink.written ?? 0;
        slab = undefined;
      }
      sent += n;
      n = 0;
      onBatch?.(sent);
    };
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i] as number;
      if (pfn >= limit) continue;
      try {
        if (view !== undefined) pages[n] = view(pfn, 1);
        else {
          slab ??= await this.#pool.acquire();
          const buf = slab.pages[n] as Uint8Array;
          this.domain.readPage(pfn, buf);
          pages[n] = buf;
        }
      } catch (e) {
        throw new SaveError("domain", `reading page ${pfn} failed`, { cause: e });
      }
      batch[n++] = pfn;
      if (n === MAX_BATCH) await flush();
    }
    await flush();
    this.#lastMs = performance.now() - t0;
    this.#lastBytes = this.bytes - bytes0;
    return sent;
  }

  /** GUEST_CONTEXT (captureContext), then END or CHECKPOINT. Domain must be suspended. */
  async writeContext(checkpointed: boolean): Promise<void> {
    let body: Uint8Array;
    try {
      body = await this.domain.captureContext();
    } catch (e) {
      throw new SaveError("domain", "capturing the guest context failed", { cause: e });
    }
    await this.#write(this.emit.guestContext(body, checkpointed), "GUEST_CONTEXT");
  }

  /** EMULATOR_CONTEXT (captureHostState with `fs`), then libxl END or CHECKPOINT_END. */
  async writeHostState(checkpointed: boolean, fs: Parameters<Domain["captureHostState"]>[0]): Promise<void> {
    let body: Uint8Array;
    try {
      body = await this.domain.captureHostState(fs);
    } catch (e) {
      throw new SaveError("domain", "capturing the host state failed", { cause: e });
    }
    await this.#write(this.emit.hostState(body, checkpointed), "EMULATOR_CONTEXT");
  }

  /** Any bare libxl record on the forward stream (handshake GO, CHECKPOINT_STATE NEW …). */
  async writeRaw(chunks: readonly Uint8Array[], record: string): Promise<void> {
    await this.#write(chunks, record);
  }
}

/** All pfns [0, n). */
export function allPfns(n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

export interface PrecopyResult {
  readonly pagesPerRound: number[];
  /** performance.now() marks of the stop-and-copy: suspend asked, suspended, pages, context, host state written. */
  readonly suspendedAt: number;
  /** When the target said it was ready (with `readiness`). */
  readonly readyAt: number | undefined;
  readonly marks: {
    readonly suspended: number;
    readonly pages: number;
    readonly context: number;
    readonly hostState: number;
  };
}

/** How pre-copy learns that the target is ready for the stop-and-copy (a migration's target). */
export interface TargetReadiness {
  /** True once the target said it created its domain. */
  readonly ready: () => boolean;
  /** Resolves when it did; rejects if the back channel failed or timed out. */
  readonly wait: () => Promise<void>;
}

/**
 * Live pre-copy, then suspend and the stop-and-copy round, context, host state: everything of a
 * (first) checkpoint up to and including END/CHECKPOINT_END. Leaves the domain suspended.
 * `seq` is the checkpoint sequence number written in CHECKPOINT_INFO.
 *
 * Stop-and-copy decision: after each round, the pages dirtied during it are what a stop now would
 * send. Their time at the most recent round's throughput must fit the page budget: the downtime
 * target less the fixed part of a stop (suspend, context, host state, the target's apply and the
 * GO/RESUMED round trips; `fixedCostMs`, default half the target); a set that fits but is still
 * above `minFinalPages` goes as one more round while rounds halve it (the stop then carries a
 * handful of pages, not hundreds). Pre-copy also stops when the dirty set stopped shrinking
 * (`maxStalls` rounds) or at `maxRounds`. With `readiness`, the guest
 * is never suspended before the target said it is ready (its domain instantiated): pre-copy goes
 * on with what was dirtied while waiting, so the target's start-up is never downtime.
 *
 * Pages are sent as views of the domain's memory (no copy) when the domain offers them: safe in
 * pre-copy, and in the final round because the domain stays suspended until the caller (the
 * migration, the seed, the save) has the target's acknowledgement or the file is written.
 */
export async function sendFirstCheckpoint(
  saver: StreamSaver,
  opts: {
    live: boolean | LiveOptions;
    checkpointed: boolean;
    seq: bigint;
    onProgress?: ProgressListener | undefined;
    readiness?: TargetReadiness | undefined;
    /** Called synchronously right before the final suspend (see CheckpointedOptions). */
    beforeSuspend?: (() => void) | undefined;
  },
): Promise<PrecopyResult> {
  const { domain } = saver;
  const live = opts.live !== false && domain.state === "running";
  const liveOpts: LiveOptions = typeof opts.live === "object" ? opts.live : {};
  const target = liveOpts.downtimeTargetMs ?? 20;
  const budget = Math.max(0.5, target - (liveOpts.fixedCostMs ?? target / 2));
  const maxRounds = Math.max(1, liveOpts.maxRounds ?? 30);
  const maxStalls = liveOpts.maxStalls ?? 3;
  const minFinalPages = liveOpts.minFinalPages ?? 64;
  const pagesPerRound: number[] = [];
  const estimateMs = (dirty: number): number => {
    const rate = saver.recentRate;
    return rate > 0 ? (dirty * PAGE_SIZE * 1000) / rate : Number.POSITIVE_INFINITY;
  };
  const report = (
    phase: SaveProgress["phase"],
    pagesSent: number,
    pagesInRound: number,
    dirty: number,
  ): void => {
    if (opts.onProgress === undefined) return;
    const est = estimateMs(dirty);
    opts.onProgress({
      phase,
      round: pagesPerRound.length + 1,
      pagesSent,
      pagesInRound,
      bytes: saver.bytes,
      rate: saver.rate,
      estimatedDowntimeMs: Number.isFinite(est) ? est + (target - budget) : 0,
      dirtyPages: dirty,
    });
  };

  await saver.writeStart();
  let readyAt: number | undefined;
  if (opts.readiness !== undefined) {
    // The target creates its domain on MODULE_IDENTITY and sizes (and maps) its memory on the
    // first CHECKPOINT_INFO, then says it is ready: no page leaves before it can take them (they
    // would only pile up in socket buffers), and the stream's throughput is measured from here.
    await saver.declare(opts.seq);
    await opts.readiness.wait();
    readyAt = performance.now();
  }
  let pending: ArrayLike<number>;
  if (live) {
    // Round 1: every page, while the guest runs. Marks made before this round are irrelevant.
    domain.harvestDirty();
    await saver.declare(opts.seq);
    pending = allPfns(domain.pageCount());
    let stalls = 0;
    let last = Number.POSITIVE_INFINITY;
    for (;;) {
      const inRound = pending.length;
      const sent = await saver.writePages(
        pending,
        (s) => report("precopy", s, inRound, last === Number.POSITIVE_INFINITY ? 0 : last),
        true,
      );
      pagesPerRound.push(sent);
      pending = domain.harvestDirty();
      await saver.declare(opts.seq);
      const dirty = pending.length;
      stalls = dirty >= last ? stalls + 1 : 0;
      last = dirty;
      report("precopy", sent, inRound, dirty);
      const fits = estimateMs(dirty) <= budget;
      const giveUp = stalls >= maxStalls || pagesPerRound.length + 1 >= maxRounds;
      // Fits, but not yet small while rounds still halve the set: one more round is cheap.
      const oneMore = fits && dirty > minFinalPages && dirty * 2 <= inRound;
      if (!((fits && !oneMore) || giveUp)) continue;
      if (opts.readiness !== undefined && !opts.readiness.ready()) {
        // The target is still creating its domain: wait, then send what was dirtied meanwhile.
        await opts.readiness.wait();
        if (pagesPerRound.length + 1 < maxRounds) continue;
      }
      break;
    }
  } else {
    pending = new Uint32Array(0);
  }

  // Stop and copy.
  opts.beforeSuspend?.();
  const suspendedAt = performance.now();
  if (domain.state === "running") {
    try {
      await domain.suspend();
    } catch (e) {
      throw new SaveError("domain", "suspending the guest failed", { cause: e });
    }
  }
  if (domain.state !== "suspended") {
    throw new SaveError("domain", `the guest is ${domain.state}, not suspended: nothing to save`);
  }
  const suspended = performance.now();
  const pages = await saver.declare(opts.seq);
  let final: ArrayLike<number>;
  if (live) {
    const more = domain.harvestDirty();
    final = mergeSorted(pending, more);
  } else {
    domain.harvestDirty();
    final = allPfns(pages);
  }
  const sent = await saver.writePages(final, (s) => report("stop-copy", s, final.length, final.length), true);
  pagesPerRound.push(sent);
  const pagesDone = performance.now();
  await saver.writeContext(opts.checkpointed);
  const contextDone = performance.now();
  await saver.writeHostState(opts.checkpointed, { kind: "all" });
  const hostDone = performance.now();
  if (opts.checkpointed) {
    // The seed carries the whole file system; later checkpoints carry changed blocks only.
    try {
      await domain.harvestFsDirty();
    } catch (e) {
      throw new SaveError("domain", "clearing the file-system dirty record failed", { cause: e });
    }
  }
  return {
    pagesPerRound,
    suspendedAt,
    readyAt,
    marks: { suspended, pages: pagesDone, context: contextDone, hostState: hostDone },
  };
}

/** Union of two pfn lists, ascending, no duplicates. */
export function mergeSorted(a: ArrayLike<number>, b: ArrayLike<number>): Uint32Array {
  const set = new Set<number>();
  for (let i = 0; i < a.length; i++) set.add(a[i] as number);
  for (let i = 0; i < b.length; i++) set.add(b[i] as number);
  return Uint32Array.from(set).sort();
}

/**
 * Plain save (to a file, or any sink): stop the guest, write the whole state, END.
 * Leaves the domain suspended: the caller destroys it once the file is safely in place, or resumes
 * it if writing failed (`colo save` semantics). Closes the sink on success.
 */
export async function saveDomain(
  domain: Domain,
  sink: ByteSink,
  opts: { onProgress?: ProgressListener } = {},
): Promise<SaveReport> {
  const t0 = performance.now();
  const saver = new StreamSaver(domain, sink);
  const { pagesPerRound, suspendedAt } = await sendFirstCheckpoint(saver, {
    live: false,
    checkpointed: false,
    seq: 0n,
    onProgress: opts.onProgress,
  });
  try {
    await sink.end();
  } catch (e) {
    throw new SaveError("io", "closing the stream failed", { offset: saver.bytes, cause: e });
  }
  const t1 = performance.now();
  return {
    rounds: pagesPerRound.length,
    pagesPerRound,
    bytes: saver.bytes,
    totalMs: t1 - t0,
    downtimeMs: t1 - suspendedAt,
    memoryPages: domain.pageCount(),
  };
}
