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
import { type Domain, PAGE_SIZE } from "../guest/domain.ts";
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
  readonly memoryPages: number;
}

/** What the algorithm reports back while it runs. */
export type ProgressListener = (p: SaveProgress) => void;

/** A reusable pool of page buffers for one batch. */
class PagePool {
  readonly pages: Uint8Array[] = [];
  constructor(n: number) {
    const slab = new Uint8Array(n * PAGE_SIZE);
    for (let i = 0; i < n; i++) this.pages.push(slab.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
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
  #pool = new PagePool(MAX_BATCH);
  #declaredPages = -1;
  #seq = 0n;
  bytes = 0;
  /** Time spent writing pages, ms, and bytes of page records: for the throughput estimate. */
  #pageMs = 0;
  #pageBytes = 0;

  constructor(domain: Domain, sink: ByteSink) {
    this.domain = domain;
    this.sink = sink;
  }

  /** Measured page throughput, bytes/s (0 if nothing measured yet). */
  get rate(): number {
    return this.#pageMs > 0 ? (this.#pageBytes * 1000) / this.#pageMs : 0;
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
   * PAGE_DATA for `pfns` (ascending or not), in batches of ≤ 1,024. pfns at or past the declared
   * size are skipped (the memory shrank, or a peer's list named pages we do not have).
   * `onBatch(sent)` is called after each batch. Returns the number of pages sent.
   */
  async writePages(pfns: ArrayLike<number>, onBatch?: (sent: number) => void): Promise<number> {
    const limit = this.#declaredPages;
    const batch = new Float64Array(MAX_BATCH);
    let n = 0;
    let sent = 0;
    const flush = async (): Promise<void> => {
      if (n === 0) return;
      const t0 = performance.now();
      const before = this.bytes;
      await this.#write(this.emit.pageData(batch.subarray(0, n), this.#pool.pages.slice(0, n)), "PAGE_DATA");
      if (this.sink.retains === true) this.#pool = new PagePool(MAX_BATCH);
      this.#pageMs += performance.now() - t0;
      this.#pageBytes += this.bytes - before;
      sent += n;
      n = 0;
      onBatch?.(sent);
    };
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i] as number;
      if (pfn >= limit) continue;
      const buf = this.#pool.pages[n] as Uint8Array;
      try {
        this.domain.readPage(pfn, buf);
      } catch (e) {
        throw new SaveError("domain", `reading page ${pfn} failed`, { cause: e });
      }
      batch[n++] = pfn;
      if (n === MAX_BATCH) await flush();
    }
    await flush();
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
  /** Dirty pfns left for the stop-and-copy round (harvested after suspend). */
  readonly suspendedAt: number;
}

/**
 * Live pre-copy, then suspend and the stop-and-copy round, context, host state: everything of a
 * (first) checkpoint up to and including END/CHECKPOINT_END. Leaves the domain suspended.
 * `seq` is the checkpoint sequence number written in CHECKPOINT_INFO.
 */
export async function sendFirstCheckpoint(
  saver: StreamSaver,
  opts: {
    live: boolean | LiveOptions;
    checkpointed: boolean;
    seq: bigint;
    onProgress?: ProgressListener | undefined;
  },
): Promise<PrecopyResult> {
  const { domain } = saver;
  const live = opts.live !== false && domain.state === "running";
  const liveOpts: LiveOptions = typeof opts.live === "object" ? opts.live : {};
  const target = liveOpts.downtimeTargetMs ?? 20;
  const maxRounds = Math.max(1, liveOpts.maxRounds ?? 30);
  const maxStalls = liveOpts.maxStalls ?? 3;
  const pagesPerRound: number[] = [];
  const report = (
    phase: SaveProgress["phase"],
    pagesSent: number,
    pagesInRound: number,
    dirty: number,
  ): void => {
    const rate = saver.rate;
    opts.onProgress?.({
      phase,
      round: pagesPerRound.length + 1,
      pagesSent,
      pagesInRound,
      bytes: saver.bytes,
      rate,
      estimatedDowntimeMs: rate > 0 ? (dirty * PAGE_SIZE * 1000) / rate : 0,
      dirtyPages: dirty,
    });
  };

  await saver.writeStart();
  let pending: ArrayLike<number>;
  if (live) {
    // Round 1: every page, while the guest runs. Marks made before this round are irrelevant.
    domain.harvestDirty();
    let pages = await saver.declare(opts.seq);
    pending = allPfns(pages);
    let stalls = 0;
    let last = Number.POSITIVE_INFINITY;
    for (;;) {
      const inRound = pending.length;
      const sent = await saver.writePages(pending, (s) =>
        report("precopy", s, inRound, last === Number.POSITIVE_INFINITY ? 0 : last),
      );
      pagesPerRound.push(sent);
      pending = domain.harvestDirty();
      pages = await saver.declare(opts.seq);
      const dirty = pending.length;
      const rate = saver.rate;
      const estimate = rate > 0 ? (dirty * PAGE_SIZE * 1000) / rate : Number.POSITIVE_INFINITY;
      stalls = dirty >= last ? stalls + 1 : 0;
      last = dirty;
      report("precopy", sent, inRound, dirty);
      if (estimate <= target || stalls >= maxStalls || pagesPerRound.length + 1 >= maxRounds) break;
    }
    void pages;
  } else {
    pending = new Uint32Array(0);
  }

  // Stop and copy.
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
  const pages = await saver.declare(opts.seq);
  let final: ArrayLike<number>;
  if (live) {
    const more = domain.harvestDirty();
    final = mergeSorted(pending, more);
  } else {
    domain.harvestDirty();
    final = allPfns(pages);
  }
  const sent = await saver.writePages(final, (s) => report("stop-copy", s, final.length, final.length));
  pagesPerRound.push(sent);
  await saver.writeContext(opts.checkpointed);
  await saver.writeHostState(opts.checkpointed, { kind: "all" });
  if (opts.checkpointed) {
    // The seed carries the whole file system; later checkpoints carry changed blocks only.
    try {
      await domain.harvestFsDirty();
    } catch (e) {
      throw new SaveError("domain", "clearing the file-system dirty record failed", { cause: e });
    }
  }
  return { pagesPerRound, suspendedAt };
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
