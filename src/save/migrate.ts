/**
 * Live migration and the checkpointed stream, over one full-duplex connection: the forward
 * stream (source → target) and the back channel (target → source) are distinct in the API, as
 * in the seed: the saving side has `sink` and `recvBack()`, the restoring side has `reader` and
 * `sendBack()`.
 *
 * Plain migration (architecture: "Connections"):
 *
 *   source: headers, MODULE_IDENTITY, STATIC_DATA_END
 *   target:     creates its domain from the module                          → MIGRATION_TARGET_READY
 *   source: pre-copy rounds … suspend, last pages, GUEST_CONTEXT, END, EMULATOR_CONTEXT, END
 *   target:                       (applied into a not-yet-started domain)   → MIGRATION_RECEIVED
 *   source: MIGRATION_GO, destroys its guest
 *   target: resumes the guest                                               → MIGRATION_RESUMED
 *
 * Without RECEIVED the source resumes its guest and keeps running; without GO the target
 * destroys what it received. Downtime is measured on the source from suspend to RESUMED.
 *
 * Checkpointed form (COLO, Remus, re-protection): the seed is the first checkpoint of a stream
 * that never ends (… CHECKPOINT, EMULATOR_CONTEXT, CHECKPOINT_END), acknowledged by
 * CHECKPOINT_STATE(SVM_READY) + CHECKPOINT_SEQ on the back channel; then the source keeps
 * running and the controller sends further checkpoints with `sendCheckpoint()`.
 */
import type { Domain, DomainSnapshot, FsBlockRef } from "../guest/domain.ts";
import { CHECKPOINT_STATE, CHECKPOINT_STATE_NAMES } from "../stream/format.ts";
import type { ByteSink, ByteSource } from "./channel.ts";
import { Emitter, MAX_BATCH } from "./emit.ts";
import { RestoreError, SaveError } from "./errors.ts";
import { itemName, RecordReader } from "./reader.ts";
import { CheckpointReceiver, type CheckpointSummary } from "./receiver.ts";
import {
  asRestoreError,
  forEachPage,
  type RestoredSeed,
  type RestoreOptions,
  restoreSeed,
} from "./restore.ts";
import {
  type LiveOptions,
  type ProgressListener,
  type SaveReport,
  StreamSaver,
  sendFirstCheckpoint,
} from "./save.ts";

// ---------------------------------------------------------------------------------------------
// The back channel, decoded

/** One message on the back channel (target → source). */
export type BackRecord =
  /** CHECKPOINT_STATE with the CHECKPOINT_SEQ that follows it. */
  | { readonly kind: "state"; readonly id: number; readonly seq: bigint }
  /** CHECKPOINT_DIRTY_PFN_LIST: the secondary's dirty set B. */
  | { readonly kind: "dirty-pfns"; readonly pfns: Float64Array }
  /** FS_DIRTY_BLOCK_LIST: the secondary's changed file-system blocks. */
  | { readonly kind: "fs-blocks"; readonly blocks: readonly FsBlockRef[] }
  /** CHECKPOINT_DIGEST (--verify). */
  | { readonly kind: "digest"; readonly seq: bigint; readonly digest: Uint8Array }
  /** MIGRATION_TARGET_READY: the target created its domain (first record of a migration or seed). */
  | { readonly kind: "target-ready" }
  | { readonly kind: "received" }
  | { readonly kind: "resumed" };

/** Reads BackRecords from the back channel's bytes (a headerless record sequence). */
export class BackChannelReader {
  readonly reader: RecordReader;
  #ready = false;
  constructor(source: ByteSource) {
    this.reader = new RecordReader(source, { start: "back-channel" });
  }

  /** True once MIGRATION_TARGET_READY was read (by `waitReady`). */
  get targetReady(): boolean {
    return this.#ready;
  }

  /**
   * Read the back channel's first record, which must be MIGRATION_TARGET_READY. Rejects with
   * SaveError "no-ready" if the channel ends, fails or says anything else first, or after
   * `timeoutMs` (the read then stays pending: the caller gives up on the channel).
   */
  waitReady(timeoutMs: number): Promise<void> {
    if (this.#ready) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new SaveError("no-ready", `the target did not create its domain within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.recv().then(
        (m) => {
          clearTimeout(timer);
          if (m?.kind === "target-ready") {
            this.#ready = true;
            resolve();
            return;
          }
          reject(
            new SaveError(
              "no-ready",
              m === null
                ? "the target closed the connection before it was ready"
                : `the target said ${describeBack(m)} before it was ready`,
            ),
          );
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(
            new SaveError("no-ready", "the back channel failed before the target was ready", { cause: e }),
          );
        },
      );
    });
  }

  /** The next back-channel message, or null when the target closed the channel. */
  async recv(): Promise<BackRecord | null> {
    let item: Awaited<ReturnType<RecordReader["next"]>>;
    try {
      item = await this.reader.next();
    } catch (e) {
      throw new SaveError("back-channel", "the back channel failed", {
        offset: this.reader.offset,
        cause: e,
      });
    }
    if (item === null) return null;
    if (item.kind !== "record") throw new SaveError("back-channel", "a header on the back channel");
    const v = item.value;
    switch (v.kind) {
      case "checkpoint-state": {
        const seqItem = await this.reader.next().catch((e: unknown) => {
          throw new SaveError("back-channel", "the back channel failed", {
            offset: this.reader.offset,
            cause: e,
          });
        });
        if (seqItem?.kind !== "record" || seqItem.value.kind !== "checkpoint-seq") {
          throw new SaveError("back-channel", "CHECKPOINT_STATE not followed by CHECKPOINT_SEQ", {
            offset: item.offset,
            record: itemName(item),
          });
        }
        return { kind: "state", id: v.id, seq: seqItem.value.seq };
      }
      case "dirty-pfn-list":
        return { kind: "dirty-pfns", pfns: v.pfns.slice() };
      case "fs-dirty-block-list":
        return { kind: "fs-blocks", blocks: v.blocks.map((b) => ({ ino: b.ino, block: b.block })) };
      case "checkpoint-digest":
        return { kind: "digest", seq: v.seq, digest: v.digest.slice() };
      case "migration-target-ready":
        return { kind: "target-ready" };
      case "migration-received":
        return { kind: "received" };
      case "migration-resumed":
        return { kind: "resumed" };
      default:
        throw new SaveError("back-channel", `unexpected ${itemName(item)} on the back channel`, {
          offset: item.offset,
          record: itemName(item),
        });
    }
  }
}

/** Writes back-channel messages (the restoring side's `sendBack`). */
export class BackChannelWriter {
  readonly sink: ByteSink;
  readonly #emit = new Emitter();
  constructor(sink: ByteSink) {
    this.sink = sink;
  }
  async send(chunks: readonly Uint8Array[]): Promise<void> {
    try {
      await this.sink.write(chunks);
    } catch (e) {
      throw new RestoreError("io", "writing the back channel failed", { cause: e });
    }
  }
  state(id: number, seq: bigint): Promise<void> {
    return this.send(this.#emit.checkpointState(id, seq));
  }
  dirtyPfns(pfns: ArrayLike<number>): Promise<void> {
    return this.send(this.#emit.dirtyPfns(pfns));
  }
  fsBlocks(blocks: readonly FsBlockRef[]): Promise<void> {
    return this.send(this.#emit.fsBlocks(blocks));
  }
  digest(seq: bigint, digest: Uint8Array): Promise<void> {
    return this.send(this.#emit.checkpointDigest(seq, digest));
  }
  received(): Promise<void> {
    return this.send(this.#emit.migrationReceived());
  }
  /** MIGRATION_TARGET_READY: the target's domain exists; the source may stop its guest. */
  targetReady(): Promise<void> {
    return this.send(this.#emit.migrationTargetReady());
  }
  resumed(): Promise<void> {
    return this.send(this.#emit.migrationResumed());
  }
  /**
   * CHECKPOINT_STATE(SVM_SUSPENDED) + SEQ, then (when given) the dirty pfn list and the changed
   * file blocks, in one write (one TLS record, one syscall).
   */
  suspended(seq: bigint, pfns?: ArrayLike<number>, blocks?: readonly FsBlockRef[]): Promise<void> {
    const chunks = this.#emit.checkpointState(CHECKPOINT_STATE.SVM_SUSPENDED, seq);
    if (pfns !== undefined) chunks.push(...this.#emit.dirtyPfns(pfns));
    if (blocks !== undefined) chunks.push(...this.#emit.fsBlocks(blocks));
    return this.send(chunks);
  }
  /** CHECKPOINT_STATE(SVM_READY) + SEQ, then (when given) CHECKPOINT_DIGEST, in one write. */
  ready(seq: bigint, digest?: Uint8Array): Promise<void> {
    const chunks = this.#emit.checkpointState(CHECKPOINT_STATE.SVM_READY, seq);
    if (digest !== undefined) chunks.push(...this.#emit.checkpointDigest(seq, digest));
    return this.send(chunks);
  }
}

/** The saving side's two directions. */
export interface SourceLink {
  readonly sink: ByteSink;
  readonly back: ByteSource;
}

/** The restoring side's two directions. */
export interface TargetLink {
  readonly source: ByteSource;
  readonly back: ByteSink;
}

async function resumeQuietly(domain: Domain): Promise<void> {
  if (domain.state === "suspended") await domain.resume().catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Plain live migration

export interface MigrateOptions {
  /** Pre-copy tuning; `false` for a stop-and-copy migration. Default: live with defaults. */
  readonly live?: LiveOptions | false;
  readonly onProgress?: ProgressListener;
  /**
   * Longest wait for the target's MIGRATION_TARGET_READY before the stop-and-copy, ms (default
   * 120,000: instrumenting a large module the target has never seen takes seconds). Without it
   * the migration fails ("no-ready") and the source keeps running.
   */
  readonly readyTimeoutMs?: number;
}

/**
 * Migrate a running domain to the target at the other end of `link`. On success the source
 * domain has been destroyed and the report says how long it took; on failure before GO the
 * source domain is running again (or as it was) and a SaveError says why.
 *
 * The guest is suspended only after the target said MIGRATION_TARGET_READY (it created its
 * domain on MODULE_IDENTITY), so the target's start-up never counts as downtime.
 */
export async function migrate(
  domain: Domain,
  link: SourceLink,
  opts: MigrateOptions = {},
): Promise<SaveReport> {
  const t0 = performance.now();
  const saver = new StreamSaver(domain, link.sink);
  const back = new BackChannelReader(link.back);
  const readyTimeoutMs = opts.readyTimeoutMs ?? 120_000;
  let pagesPerRound: number[];
  let suspendedAt: number;
  let readyAt: number | undefined;
  let marks: Awaited<ReturnType<typeof sendFirstCheckpoint>>["marks"];
  let receivedAt: number;
  try {
    ({ pagesPerRound, suspendedAt, readyAt, marks } = await sendFirstCheckpoint(saver, {
      live: opts.live ?? true,
      checkpointed: false,
      seq: 0n,
      onProgress: opts.onProgress,
      readiness: {
        ready: () => back.targetReady,
        wait: () => back.waitReady(readyTimeoutMs),
      },
    }));
    opts.onProgress?.(handshakeProgress(saver, pagesPerRound.length));
    const msg = await back.recv();
    receivedAt = performance.now();
    if (msg?.kind !== "received") {
      throw new SaveError(
        "no-received",
        msg === null
          ? "the target closed the connection before saying RECEIVED"
          : `the target said ${msg.kind}, not RECEIVED`,
      );
    }
  } catch (e) {
    await resumeQuietly(domain);
    throw e instanceof SaveError
      ? e
      : new SaveError("io", "migration failed", { offset: saver.bytes, cause: e });
  }
  // Switch-over: from here on the target owns the guest.
  const memoryPages = domain.pageCount();
  let resumedAt = Number.NaN;
  try {
    await saver.writeRaw(saver.emit.migrationGo(), "MIGRATION_GO");
    const msg = await back.recv().catch(() => null);
    if (msg?.kind === "resumed") resumedAt = performance.now();
    await link.sink.end().catch(() => {});
  } finally {
    await domain.destroy();
  }
  return {
    rounds: pagesPerRound.length,
    pagesPerRound,
    bytes: saver.bytes,
    totalMs: (Number.isNaN(resumedAt) ? performance.now() : resumedAt) - t0,
    downtimeMs: resumedAt - suspendedAt,
    targetReadyMs: (readyAt ?? t0) - t0,
    downtimeParts: {
      suspend: marks.suspended - suspendedAt,
      pages: marks.pages - marks.suspended,
      context: marks.context - marks.pages,
      hostState: marks.hostState - marks.context,
      apply: receivedAt - marks.hostState,
      resume: resumedAt - receivedAt,
    },
    memoryPages,
  };
}

function handshakeProgress(saver: StreamSaver, rounds: number) {
  return {
    phase: "handshake" as const,
    round: rounds,
    pagesSent: 0,
    pagesInRound: 0,
    bytes: saver.bytes,
    rate: saver.rate,
    estimatedDowntimeMs: 0,
    dirtyPages: 0,
  };
}

/**
 * `opts` with MIGRATION_TARGET_READY said on `back` as soon as the domain exists and its memory
 * is sized (the first CHECKPOINT_INFO, which the source sends right after the static data; after
 * the caller's own onSized): the source sends no page and never suspends its guest before that.
 */
function readyOnSized<O extends RestoreOptions>(opts: O, back: BackChannelWriter): O {
  return {
    ...opts,
    onSized: async (d: Domain) => {
      await opts.onSized?.(d);
      await back.targetReady();
    },
  };
}

export interface ReceiveOptions extends RestoreOptions {
  /** Called once the stream is complete, before RECEIVED is sent (e.g. to bind the service). */
  readonly onReceived?: (domain: Domain, seed: RestoredSeed) => Promise<void> | void;
}

/**
 * Receive a plain migration: restore into a fresh target, say RECEIVED, wait for GO, resume the
 * guest, say RESUMED. Returns the running domain. Without GO the target is destroyed and a
 * RestoreError "no-go" is thrown.
 */
export async function receiveMigration(link: TargetLink, opts: ReceiveOptions): Promise<Domain> {
  // pre-copy rounds go straight into the not-yet-started target: stream PAGE_DATA (one copy)
  const reader = new RecordReader(link.source, { streamPageData: true });
  const back = new BackChannelWriter(link.back);
  const seed = await restoreSeed(reader, readyOnSized(opts, back));
  const { domain } = seed;
  try {
    if (seed.end !== "end") throw new RestoreError("malformed", "a checkpointed stream, not a migration");
    await opts.onReceived?.(domain, seed);
    await back.received();
    let go: Awaited<ReturnType<typeof reader.next>>;
    try {
      go = await reader.next();
    } catch (e) {
      throw new RestoreError("no-go", "the source went away before saying GO", {
        offset: reader.offset,
        cause: e,
      });
    }
    if (go?.kind !== "record" || go.value.kind !== "migration-go") {
      throw new RestoreError("no-go", "the source did not say GO", { offset: reader.offset });
    }
    await domain.resume();
  } catch (e) {
    await domain.destroy().catch(() => {});
    throw asRestoreError(e, reader);
  }
  await back.resumed().catch(() => {});
  await link.back.end().catch(() => {});
  return domain;
}

// ---------------------------------------------------------------------------------------------
// The checkpointed stream: saving side

export interface CheckpointedOptions {
  /** Pre-copy tuning of the seed; `false` for a stop-and-copy seed. Default: live. */
  readonly live?: LiveOptions | false;
  /** Sequence number of the seed checkpoint (default 1). Later checkpoints count up from it. */
  readonly seq?: bigint;
  /** Resume the source domain once the seed is acknowledged (default true). */
  readonly resume?: boolean;
  readonly onProgress?: ProgressListener;
  /**
   * Longest wait for the secondary's MIGRATION_TARGET_READY before any page is sent, ms (default
   * 120,000). Without it the seed fails ("no-ready") and the source keeps running.
   */
  readonly readyTimeoutMs?: number;
  /**
   * Called once, synchronously, right before the final suspend (after pre-copy and the target's
   * readiness): the last moment the guest runs before the seed's state is taken. The primary
   * pauses client input here, so every input fed before it is in the seed and every later one is
   * mirrored after it.
   */
  readonly beforeSuspend?: () => void;
}

export interface CheckpointSendReport {
  readonly seq: bigint;
  /** Pages sent (pfns at or past the memory size are skipped). */
  readonly pages: number;
  readonly bytes: number;
  readonly ms: number;
  readonly memoryPages: number;
  /**
   * performance.now() when the first part's PAGE_DATA was written (beginCheckpoint), when the
   * guest context and the host state were both in hand, and when the rest (PAGE_DATA of the late
   * pfns, GUEST_CONTEXT, CHECKPOINT, EMULATOR_CONTEXT, CHECKPOINT_END) was written.
   */
  readonly marks: { readonly pages: number; readonly captured: number; readonly end: number };
}

/** The rest of a checkpoint begun with CheckpointedStream.beginCheckpoint(). */
export interface CheckpointFinish {
  /**
   * Pages known only now (COLO: the secondary's B), any order, duplicates allowed: those the
   * first part did not carry are sent before the guest context.
   */
  readonly more?: ArrayLike<number>;
  /**
   * File-system blocks to carry in the host state: P's changed set ∪ S's changed set, or "all"
   * (strategies that get no list of S's changed blocks).
   */
  readonly fsBlocks: readonly FsBlockRef[] | "all";
  /** The guest context, when the caller already asked the domain for it; else asked for here. */
  readonly context?: Promise<Uint8Array>;
  /** The host state captured with exactly `fsBlocks`, when the caller already asked for it. */
  readonly hostState?: Promise<Uint8Array>;
  /**
   * A checkpoint begun with `copy`: called once every byte of it is in buffers of its own (the
   * pages copied, the context and the host state captured), right before it is written; from
   * then on the domain may run again.
   */
  readonly onCopied?: () => void;
}

/** A checkpoint whose first part is written (or being written) and whose rest is not. */
interface OpenCheckpoint {
  readonly seq: bigint;
  readonly t0: number;
  readonly bytes0: number;
  readonly borrow: boolean;
  /**
   * beginCheckpoint `copy`: the first part's records, built with copies of the pages and held
   * back until the rest is copied too (`written` then settles at once).
   */
  readonly held: Uint8Array[] | undefined;
  /** The first part's pfns (its PAGE_DATA, below `memoryPages`). */
  readonly pfns: ArrayLike<number>;
  /** Settles once the first part is written: the memory size declared and the pages sent. */
  readonly written: Promise<{ readonly memoryPages: number; readonly pages: number; readonly at: number }>;
  /** Begun from a DomainSnapshot: the domain runs; the checkpoint can take no page it lacks. */
  readonly snapshot: boolean;
}

export interface CheckpointRequest {
  /** This checkpoint's sequence number: the previous one + 1. */
  readonly seq: bigint;
  /** The pages to send: D = A ∪ B (any order, duplicates allowed). */
  readonly pfns: ArrayLike<number>;
  /**
   * File-system blocks to carry in the host state: P's changed set ∪ S's changed set, or "all"
   * (strategies that get no list of S's changed blocks).
   */
  readonly fsBlocks: readonly FsBlockRef[] | "all";
  /**
   * The guest context, when the caller already asked the domain for it (it may ask as soon as the
   * domain is suspended); else sendCheckpoint asks. Either way the context and the host state are
   * captured while the pages go out.
   */
  readonly context?: Promise<Uint8Array>;
  /** The host state captured with exactly `fsBlocks`, when the caller already asked for it. */
  readonly hostState?: Promise<Uint8Array>;
}

/**
 * An open checkpointed stream on the saving side. After the seed, the controller drives it:
 * `sendState(NEW, seq)`, `recvBack()` for SVM_SUSPENDED and the dirty lists, `sendCheckpoint()`
 * while the domain is suspended, `recvBack()` for SVM_READY. COLO splits the checkpoint in two
 * so that the pages the primary knows of go out while the secondary's list travels:
 * `beginCheckpoint(seq, A)` as soon as the domain is suspended, `finishCheckpoint({ more: B })`
 * once the list is in. Either way the stream carries, in order: CHECKPOINT_INFO, PAGE_DATA …,
 * GUEST_CONTEXT, CHECKPOINT, EMULATOR_CONTEXT, CHECKPOINT_END.
 */
export class CheckpointedStream {
  readonly domain: Domain;
  readonly seed: SaveReport;
  readonly #saver: StreamSaver;
  readonly #back: BackChannelReader;
  readonly #sink: ByteSink;
  #lastSeq: bigint;
  #open: OpenCheckpoint | undefined;

  constructor(
    domain: Domain,
    saver: StreamSaver,
    back: BackChannelReader,
    sink: ByteSink,
    seed: SaveReport,
    seq: bigint,
  ) {
    this.domain = domain;
    this.#saver = saver;
    this.#back = back;
    this.#sink = sink;
    this.seed = seed;
    this.#lastSeq = seq;
  }

  /** Sequence number of the last checkpoint sent. */
  get lastSeq(): bigint {
    return this.#lastSeq;
  }

  /** Bytes written to the forward stream so far. */
  get bytes(): number {
    return this.#saver.bytes;
  }

  /** CHECKPOINT_STATE(id) + CHECKPOINT_SEQ(seq) on the forward stream (e.g. NEW). */
  async sendState(id: number, seq: bigint): Promise<void> {
    await this.#saver.writeRaw(
      this.#saver.emit.checkpointState(id, seq),
      `CHECKPOINT_STATE ${CHECKPOINT_STATE_NAMES.get(id)}`,
    );
  }

  /**
   * Send one checkpoint: CHECKPOINT_INFO(seq, pages), PAGE_DATA for `pfns` (those at or past the
   * domain's size are skipped), GUEST_CONTEXT, CHECKPOINT, EMULATOR_CONTEXT (host state with
   * `fsBlocks`), CHECKPOINT_END. The domain must be suspended; it stays suspended.
   */
  async sendCheckpoint(req: CheckpointRequest): Promise<CheckpointSendReport> {
    // Both worker requests go out now, together (one wake-up of the guest's worker), and are
    // served while the main thread copies and writes the pages.
    const context = req.context ?? this.domain.captureContext();
    const hostState =
      req.hostState ??
      this.domain.captureHostState(
        req.fsBlocks === "all" ? { kind: "all" } : { kind: "some", blocks: req.fsBlocks },
      );
    context.catch(() => {});
    hostState.catch(() => {});
    this.beginCheckpoint(req.seq, req.pfns);
    return this.finishCheckpoint({ fsBlocks: req.fsBlocks, context, hostState });
  }

  /**
   * Start checkpoint `seq` (the domain suspended, and kept so until finishCheckpoint() settles):
   * CHECKPOINT_INFO(seq, pages) and PAGE_DATA for `pfns` (any order; those at or past the
   * domain's size are skipped) start going out now; a failure shows in finishCheckpoint().
   * `borrow`: write views of the guest's memory instead of copies, for a caller that keeps the
   * domain suspended until the target has acknowledged every byte (COLO: until SVM_READY).
   * `stopped`: the domain is still unwinding from a stop that has taken effect (the caller got
   * `pfns` from Domain.harvestStopped()): it is taken as suspended; it must be by
   * finishCheckpoint().
   * `copy`: copy the pages now and keep the records back: finishCheckpoint() copies the rest,
   * tells its `onCopied` that the domain may run again, and only then writes the whole
   * checkpoint (the encryption and the writes happen while the domain runs).
   */
  beginCheckpoint(
    seq: bigint,
    pfns: ArrayLike<number>,
    opts: {
      readonly borrow?: boolean;
      readonly stopped?: boolean;
      readonly copy?: boolean;
      readonly snapshot?: Pick<DomainSnapshot, "pages" | "memoryPages">;
    } = {},
  ): void {
    if (this.#open !== undefined) throw new SaveError("bad-state", "a checkpoint is already in progress");
    if (seq !== this.#lastSeq + 1n) {
      throw new SaveError("bad-state", `checkpoint ${seq} does not follow ${this.#lastSeq}`);
    }
    const t0 = performance.now();
    const saver = this.#saver;
    const bytes0 = saver.bytes;
    if (opts.snapshot !== undefined) {
      // A snapshot holds its own copies: the domain runs on meanwhile.
      const { memoryPages } = opts.snapshot;
      const first = saver.snapshotCheckpointStart(
        seq,
        Uint32Array.from(pfns),
        opts.snapshot.pages,
        memoryPages,
      );
      const written = Promise.resolve({ memoryPages, pages: first.pages, at: performance.now() });
      this.#open = { seq, t0, bytes0, borrow: false, held: first.chunks, pfns, written, snapshot: true };
      return;
    }
    if (this.domain.state !== "suspended" && !(opts.stopped === true && this.domain.state === "running")) {
      throw new SaveError("bad-state", `a checkpoint needs a suspended domain, it is ${this.domain.state}`);
    }
    if (opts.copy === true) {
      const first = saver.copyCheckpointStart(seq, pfns);
      const { memoryPages, pages } = first;
      const written = Promise.resolve({ memoryPages, pages, at: performance.now() });
      this.#open = { seq, t0, bytes0, borrow: false, held: first.chunks, pfns, written, snapshot: false };
      return;
    }
    const borrow = opts.borrow === true && this.domain.pageView !== undefined;
    const written = (async () => {
      const memoryPages = await saver.declare(seq, true);
      const pages = await saver.writePages(pfns, undefined, borrow);
      return { memoryPages, pages, at: performance.now() };
    })();
    written.catch(() => {});
    this.#open = { seq, t0, bytes0, borrow, held: undefined, pfns, written, snapshot: false };
  }

  /**
   * Drop the checkpoint begun with `copy` or `snapshot`, none of which is written yet (COLO: the
   * secondary's list names pages a snapshot lacks, and the primary takes the checkpoint again at
   * a later stop). Anything else is refused: part of it may be on the wire.
   */
  abandonCheckpoint(): void {
    const open = this.#open;
    if (open === undefined) throw new SaveError("bad-state", "no checkpoint in progress");
    if (open.held === undefined)
      throw new SaveError("bad-state", "a checkpoint whose first part is being written cannot be dropped");
    this.#open = undefined;
  }

  /**
   * Finish the checkpoint begun: PAGE_DATA for the pfns of `more` the first part did not carry,
   * then GUEST_CONTEXT, CHECKPOINT, EMULATOR_CONTEXT and CHECKPOINT_END, written together (one
   * gather write: the target wakes once for the end of the checkpoint).
   */
  async finishCheckpoint(req: CheckpointFinish): Promise<CheckpointSendReport> {
    const open = this.#open;
    if (open === undefined) throw new SaveError("bad-state", "finishCheckpoint without beginCheckpoint");
    if (open.snapshot) {
      if (req.context === undefined || req.hostState === undefined || req.fsBlocks === "all") {
        this.#open = undefined;
        throw new SaveError(
          "bad-state",
          "a checkpoint begun from a snapshot takes its context and host state",
        );
      }
      const { memoryPages } = await open.written;
      if (lateOnly(req.more, open.pfns, memoryPages).length > 0) {
        this.#open = undefined;
        throw new SaveError(
          "bad-state",
          "a checkpoint begun from a snapshot cannot take pages the snapshot lacks",
        );
      }
    } else if (this.domain.state !== "suspended") {
      this.#open = undefined;
      throw new SaveError("bad-state", `a checkpoint needs a suspended domain, it is ${this.domain.state}`);
    }
    const capture = <T>(p: Promise<T>, what: string): Promise<T> => {
      const q = p.catch((e: unknown) => {
        throw new SaveError("domain", `capturing the ${what} failed`, { cause: e });
      });
      q.catch(() => {});
      return q;
    };
    const context = capture(req.context ?? this.domain.captureContext(), "guest context");
    const hostState = capture(
      req.hostState ??
        this.domain.captureHostState(
          req.fsBlocks === "all" ? { kind: "all" } : { kind: "some", blocks: req.fsBlocks },
        ),
      "host state",
    );
    try {
      if (open.held !== undefined) return await this.#finishCopied(open, open.held, req, context, hostState);
      const first = await open.written;
      const late = lateOnly(req.more, open.pfns, first.memoryPages);
      const emit = this.#saver.emit;
      const chunks: Uint8Array[] = [];
      let latePages = 0;
      if (late.length > 0 && open.borrow) {
        // Views of the (suspended) memory go into the same gather write as the rest.
        for (let i = 0; i < late.length; i += MAX_BATCH) {
          const batch = late.subarray(i, i + MAX_BATCH);
          const pages = Array.from(batch, (pfn) => this.domain.pageView!(pfn, 1));
          chunks.push(...emit.pageData(batch, pages));
        }
        latePages = late.length;
      } else if (late.length > 0) {
        latePages = await this.#saver.writePages(late);
      }
      const [ctx, hs] = await Promise.all([context, hostState]);
      const captured = performance.now();
      chunks.push(...emit.guestContext(ctx, true), ...emit.hostState(hs, true));
      await this.#saver.writeRaw(chunks, "GUEST_CONTEXT … CHECKPOINT_END");
      this.#lastSeq = open.seq;
      const end = performance.now();
      return {
        seq: open.seq,
        pages: first.pages + latePages,
        bytes: this.#saver.bytes - open.bytes0,
        ms: end - open.t0,
        memoryPages: first.memoryPages,
        marks: { pages: first.at, captured, end },
      };
    } finally {
      this.#open = undefined;
    }
  }

  /** finishCheckpoint() of a checkpoint begun with `copy`, whose first part is `held`. */
  async #finishCopied(
    open: OpenCheckpoint,
    held: Uint8Array[],
    req: CheckpointFinish,
    context: Promise<Uint8Array>,
    hostState: Promise<Uint8Array>,
  ): Promise<CheckpointSendReport> {
    const saver = this.#saver;
    const emit = saver.emit;
    const { pages, memoryPages, at } = await open.written; // settled: the part was built
    const late = saver.copyPages(lateOnly(req.more, open.pfns, memoryPages));
    const [ctx, hs] = await Promise.all([context, hostState]);
    const captured = performance.now();
    const chunks = [...held, ...late.chunks, ...emit.guestContext(ctx, true), ...emit.hostState(hs, true)];
    // Every byte is in buffers of its own: the domain may run while they are written.
    req.onCopied?.();
    await saver.writeRaw(chunks, "CHECKPOINT_INFO … CHECKPOINT_END");
    this.#lastSeq = open.seq;
    const end = performance.now();
    return {
      seq: open.seq,
      pages: pages + late.pages,
      bytes: saver.bytes - open.bytes0,
      ms: end - open.t0,
      memoryPages,
      marks: { pages: at, captured, end },
    };
  }

  /** The next back-channel message (null when the target closed it). */
  recvBack(): Promise<BackRecord | null> {
    return this.#back.recv();
  }

  /** Close the forward stream (the target sees an end between checkpoints). */
  async close(): Promise<void> {
    await this.#sink.end().catch(() => {});
  }
}

/**
 * Seed a checkpointed stream: headers and MODULE_IDENTITY, then wait for the secondary's
 * MIGRATION_TARGET_READY (its domain exists), live pre-copy, suspend, the first checkpoint, then
 * wait for SVM_READY (with the seed's seq) on the back channel, then resume the source (unless
 * told not to). On failure the source domain is resumed if it was suspended here.
 */
export async function openCheckpointedStream(
  domain: Domain,
  link: SourceLink,
  opts: CheckpointedOptions = {},
): Promise<CheckpointedStream> {
  const t0 = performance.now();
  const seq = opts.seq ?? 1n;
  const saver = new StreamSaver(domain, link.sink);
  const back = new BackChannelReader(link.back);
  try {
    const { pagesPerRound, suspendedAt } = await sendFirstCheckpoint(saver, {
      live: opts.live ?? true,
      checkpointed: true,
      seq,
      onProgress: opts.onProgress,
      beforeSuspend: opts.beforeSuspend,
      readiness: {
        ready: () => back.targetReady,
        wait: () => back.waitReady(opts.readyTimeoutMs ?? 120_000),
      },
    });
    opts.onProgress?.(handshakeProgress(saver, pagesPerRound.length));
    const msg = await back.recv();
    if (msg?.kind !== "state" || msg.id !== CHECKPOINT_STATE.SVM_READY || msg.seq !== seq) {
      throw new SaveError(
        "no-received",
        msg === null
          ? "the secondary closed the connection before SVM_READY"
          : `expected SVM_READY ${seq}, got ${describeBack(msg)}`,
      );
    }
    const readyAt = performance.now();
    if (opts.resume ?? true) await domain.resume();
    const seed: SaveReport = {
      rounds: pagesPerRound.length,
      pagesPerRound,
      bytes: saver.bytes,
      totalMs: performance.now() - t0,
      downtimeMs: ((opts.resume ?? true) ? performance.now() : readyAt) - suspendedAt,
      memoryPages: domain.pageCount(),
    };
    return new CheckpointedStream(domain, saver, back, link.sink, seed, seq);
  } catch (e) {
    await resumeQuietly(domain);
    throw e instanceof SaveError
      ? e
      : new SaveError("io", "seeding the checkpointed stream failed", { cause: e });
  }
}

/** The pfns of `more` below `limit` that `sent` does not hold, ascending, each once. */
function lateOnly(more: ArrayLike<number> | undefined, sent: ArrayLike<number>, limit: number): Float64Array {
  if (more === undefined || more.length === 0) return new Float64Array(0);
  const have = new Set<number>();
  for (let i = 0; i < sent.length; i++) have.add(sent[i]!);
  const late = new Set<number>();
  for (let i = 0; i < more.length; i++) {
    const p = more[i]!;
    if (p < limit && !have.has(p)) late.add(p);
  }
  return Float64Array.from(late).sort();
}

export function describeBack(m: BackRecord): string {
  return m.kind === "state" ? `${CHECKPOINT_STATE_NAMES.get(m.id) ?? m.id} ${m.seq}` : m.kind;
}

// ---------------------------------------------------------------------------------------------
// The checkpointed stream: restoring side

/** What the forward stream brought, as the secondary's controller sees it. */
export type TargetEvent =
  /** CHECKPOINT_STATE from the primary (NEW), with its sequence number. */
  | { readonly kind: "state"; readonly id: number; readonly seq: bigint }
  /** A whole checkpoint is buffered (receiver state "complete"); call `apply()` or `discard()`. */
  | { readonly kind: "checkpoint"; readonly summary: CheckpointSummary }
  /** The primary closed the stream between checkpoints. */
  | { readonly kind: "end" };

/**
 * An open checkpointed stream on the restoring side, after the seed. `next()` reads until the
 * next event; a whole checkpoint is buffered in the receiver and applied only by `apply()`. On a
 * malformed record, a replayed or out-of-order sequence number, or a stream cut mid-checkpoint,
 * `next()` discards the partial checkpoint (the domain is untouched) and throws a RestoreError
 * ("malformed", "sequence", "truncated", "io", "pfn-out-of-range"). After an error the stream is
 * unusable (the decoder is poisoned): the controller stands down.
 */
export class CheckpointedTarget {
  readonly domain: Domain;
  readonly receiver: CheckpointReceiver;
  readonly #reader: RecordReader;
  readonly #back: BackChannelWriter;
  readonly #backSink: ByteSink;

  constructor(domain: Domain, seedSeq: bigint, reader: RecordReader, back: ByteSink) {
    this.domain = domain;
    this.receiver = new CheckpointReceiver(domain, seedSeq);
    this.#reader = reader;
    this.#back = new BackChannelWriter(back);
    this.#backSink = back;
  }

  /** Sequence number of the last checkpoint applied (the seed's after open). */
  get lastApplied(): bigint {
    return this.receiver.lastApplied ?? 0n;
  }

  /** The back channel (SVM_* states, dirty pfns, fs blocks, digests). */
  get back(): BackChannelWriter {
    return this.#back;
  }

  /** Raw back-channel records (already encoded). */
  sendBack(chunks: readonly Uint8Array[]): Promise<void> {
    return this.#back.send(chunks);
  }

  async next(): Promise<TargetEvent> {
    const r = this.receiver;
    if (r.state === "complete")
      throw new RestoreError("bad-state", "next() before apply() or discard() of the complete checkpoint");
    if (r.state === "applied" || r.state === "discarded") r.reset();
    let item: Awaited<ReturnType<RecordReader["next"]>> | undefined;
    try {
      for (;;) {
        item = await this.#reader.next();
        if (item === null) {
          if (r.state === "buffering")
            throw new RestoreError("truncated", "the stream ended inside a checkpoint", {
              offset: this.#reader.offset,
            });
          return { kind: "end" };
        }
        if (item.kind !== "record")
          throw new RestoreError("malformed", `${itemName(item)} inside a checkpointed stream`);
        const where = { offset: item.offset, record: itemName(item) };
        const v = item.value;
        switch (v.kind) {
          case "checkpoint-state": {
            const s = await this.#reader.next();
            if (s?.kind !== "record" || s.value.kind !== "checkpoint-seq") {
              throw new RestoreError("malformed", "CHECKPOINT_STATE not followed by CHECKPOINT_SEQ", where);
            }
            return { kind: "state", id: v.id, seq: s.value.seq };
          }
          case "checkpoint-info":
            if (r.state === "buffering")
              throw new RestoreError("malformed", "a second CHECKPOINT_INFO in one checkpoint", where);
            r.begin(v.seq, v.memoryPages);
            break;
          case "page-data":
            if (r.state !== "buffering")
              throw new RestoreError("malformed", "PAGE_DATA before CHECKPOINT_INFO", where);
            forEachPage(v, r.summary().memoryPages, where, (pfn, page) => r.addPage(pfn, page));
            break;
          case "guest-context":
            r.setContext(v.data);
            break;
          case "emulator-context":
            r.setHostState(v.data);
            break;
          case "checkpoint":
            break;
          case "checkpoint-end":
            return { kind: "checkpoint", summary: r.finish() };
          default:
            throw new RestoreError("malformed", `unexpected ${itemName(item)} inside a checkpoint`, where);
        }
      }
    } catch (e) {
      r.discard(e);
      throw asRestoreError(e, this.#reader, item ?? undefined);
    }
  }

  /**
   * Apply the complete checkpoint, whole (domain suspended or not yet started;
   * CheckpointReceiver.apply, `beforeWrite` as there).
   */
  apply(beforeWrite?: () => void): Promise<CheckpointSummary> {
    return this.receiver.apply(beforeWrite);
  }

  /** Drop the complete (or partial) checkpoint without applying it. */
  discard(reason?: unknown): void {
    this.receiver.discard(reason);
  }

  async close(): Promise<void> {
    await this.#backSink.end().catch(() => {});
  }
}

export interface ReceiveCheckpointedOptions extends RestoreOptions {
  /** Acknowledge the seed with SVM_READY on the back channel (default true). */
  readonly ack?: boolean;
}

/**
 * Receive the seed of a checkpointed stream into a fresh target (not resumed: the controller
 * resumes it), acknowledge it with SVM_READY + CHECKPOINT_SEQ(seed seq), and return the open
 * target side. On failure the target has been destroyed.
 *
 * As in a plain migration, MIGRATION_TARGET_READY goes back as soon as the domain exists, and
 * the seed's pages are written into the not-yet-started target as they arrive (streamed
 * PAGE_DATA, one copy), as Xen does before the first CHECKPOINT; from the seed's CHECKPOINT_END
 * on, PAGE_DATA is read whole and every checkpoint is buffered until complete.
 */
export async function receiveCheckpointed(
  link: TargetLink,
  opts: ReceiveCheckpointedOptions,
): Promise<CheckpointedTarget> {
  const streamed = new RecordReader(link.source, { streamPageData: true });
  const seed = await restoreSeed(streamed, readyOnSized(opts, new BackChannelWriter(link.back)));
  const reader = streamed.wholePageData();
  const target = new CheckpointedTarget(seed.domain, seed.seq, reader, link.back);
  try {
    if (seed.end !== "checkpoint")
      throw new RestoreError("malformed", "a plain stream, not a checkpointed one");
    if (opts.ack ?? true) await target.back.state(CHECKPOINT_STATE.SVM_READY, seed.seq);
  } catch (e) {
    await seed.domain.destroy().catch(() => {});
    throw asRestoreError(e, reader);
  }
  return target;
}
