/**
 * The primary's replication controller (Xen: libxl's COLO/Remus save side; architecture layer 6).
 *
 * Design. The PVM runs and serves clients through a PrimaryProxy from the start (unprotected).
 * `protect(links)` seeds the secondary with the checkpointed stream (live migration as checkpoint
 * 1) and from then on drives one checkpoint at a time over the replication connection, reading
 * the secondary's answers on its back channel, in the order of docs/replication.md:
 *
 *   unprotected ──protect()──▶ seeding ──SVM_READY──▶ protected ⇄ checkpointing
 *        ▲                        │                        │
 *        └──── seed failed ───────┘                        ├─ peer lost / protocol error / stop ─▶ unprotected-after-loss
 *                                                          └─ --verify mismatch ─▶ verify-failed
 *
 * COLO checkpoint n (strategy back-channel): trigger (proxy divergence, held-output cap, or the
 * maximum interval; never sooner than the minimum interval after the last one) → ask the PVM to
 * stop, pause the proxy's input, NEW(n) (one turn) → harvest A (at once when the stop found the
 * PVM waiting in a host call, else once it unwound) → CHECKPOINT_INFO, PAGE_DATA(A) ∥ S stops →
 * SVM_SUSPENDED(n), B, S's file blocks → D = A ∪ B below the PVM's size → PAGE_DATA(B − A),
 * GUEST_CONTEXT, CHECKPOINT, EMULATOR_CONTEXT, CHECKPOINT_END (one write; context and host state
 * captured by the worker as the PVM unwound) → SVM_READY(n) [+ DIGEST(n)] → resume the PVM, proxy
 * checkpointDone(n) (held output released) → SVM_RESUMED(n). The pause ends when the PVM's worker
 * runs the guest again.
 * Strategy cache: no dirty list travels, D = A (S repairs B from its cache). Strategy full: every
 * page. Both carry the whole file system (no list of S's changed blocks travels).
 *
 * Remus: only the PVM runs; every epoch: pause input, suspend, harvest A, send the checkpoint,
 * checkpointDone(n) (the proxy records what n covers), resume at once; SVM_READY(n) [+ DIGEST]
 * arrive later and release the output n covers (proxy releaseUpTo).
 *
 * Seeding and clients: the PVM serves unprotected (outputs released at once) through the seed's
 * pre-copy; client input is held (the proxy's pause) only from right before the seed's final
 * suspend to its acknowledgement; clients may connect and are never refused. Every connection the
 * PVM holds at that suspend is in the seed's host state, with every input fed before it, so all of
 * them are mirrored from the seed's offsets on.
 *
 * Losing the secondary (heartbeat lost, its goodbye, a protocol error on any connection, a
 * checkpoint that gets no answer within `answerTimeoutMs`): the proxy goes unprotected (held
 * output released), the PVM resumes if a checkpoint had suspended it, and the connections are
 * closed, with a heartbeat goodbye so the secondary stands down rather than takes over.
 * --verify mismatch: the same, in state "verify-failed", and the event "verify-failed" (the CLI
 * exits with status 3: a mismatch is a bug in colo, not a condition to run on with).
 */
import { EventEmitter } from "node:events";
import { type Domain, type FsBlockRef, type GuestEnd, unionBlocks } from "../guest/domain.ts";
import type { Divergence, PrimaryProxy } from "../proxy/primary.ts";
import type { ByteSource } from "../save/channel.ts";
import {
  type BackRecord,
  type CheckpointedStream,
  type CheckpointFinish,
  type CheckpointSendReport,
  describeBack,
  openCheckpointedStream,
} from "../save/migrate.ts";
import { allPfns, type LiveOptions } from "../save/save.ts";
import { CHECKPOINT_STATE, CHECKPOINT_STATE_NAMES } from "../stream/format.ts";
import type { ReplicationSettings } from "./config.ts";
import { describeError, ReplicationError } from "./errors.ts";
import { decideUnprotected, type PeerLossCause, type SwitchoverReport } from "./failover.ts";
import type { Fence } from "./fence.ts";
import { CONTROL, type PrimaryLinks } from "./links.ts";
import {
  addRecord,
  type CheckpointRecord,
  emptyTotals,
  type PrimaryStep,
  type PrimaryTotals,
  Ring,
  stepClock,
  type Trigger,
} from "./stats.ts";

/**
 * pvmResume "copied" copies a checkpoint's first part (A; strategy full: every page) only up to
 * this many pages (64 MiB); a larger one goes out as views of the stopped PVM's memory, which then
 * waits for SVM_READY as with "ready".
 */
export const MAX_COPY_PAGES = 16_384;

/** pvmResume "copied": how long the main thread waits for the PVM to run again, at most (ms). */
export const RESUME_HAND_OFF_MS = 0.3;

/** How long pvmEnded() waits for the SVM to end the same way before handing over (ms). */
export const PVM_END_GRACE_MS = 1000;

/** pvmEnded()'s verdict: exit with the guest's status, or the secondary serves from now on. */
export interface PvmEndOutcome {
  readonly action: "propagate" | "hand-over";
  readonly detail: string;
}

export type PrimaryState =
  | "unprotected"
  | "seeding"
  | "protected"
  | "checkpointing"
  | "unprotected-after-loss"
  /** Lost the secondary with a fencing hook configured: outputs held until the hook answers. */
  | "fencing"
  /** Lost the fence: the secondary serves; this side closed its service and stopped the PVM. */
  | "fenced-out"
  /** Planned switchover: input paused, the secondary told to serve; waiting for it to say so. */
  | "switching-over"
  /** The secondary serves; this side's clients were reset (the caller becomes its secondary). */
  | "switched-over"
  | "verify-failed"
  | "stopped";

export type Log = (
  level: "info" | "warn" | "error",
  message: string,
  details?: Record<string, unknown>,
) => void;

export interface PrimaryControllerOptions {
  /** The PVM, running. */
  readonly domain: Domain;
  /** The proxy on the PVM's port, serving clients (unprotected until protect()). */
  readonly proxy: PrimaryProxy;
  readonly settings: ReplicationSettings;
  /** Pre-copy tuning of the seed (default: live with the engine's defaults). */
  readonly live?: LiveOptions | false;
  /** Ms to wait for each answer of the secondary during a checkpoint (default 10 000). */
  readonly answerTimeoutMs?: number;
  readonly log?: Log;
  /**
   * Fencing hook (src/replication/fence.ts): on losing a protected secondary, every output stays
   * held until it wins (then unprotected) or loses (then stop serving: state "fenced-out").
   * None: run on unprotected at once (a cut link can leave both sides serving).
   */
  readonly fence?: Fence | undefined;
  /** The guest's name, passed to the fencing hook. */
  readonly name?: string | undefined;
  /** pvmResume "copied": the largest first part copied, pages (default MAX_COPY_PAGES). */
  readonly maxCopyPages?: number;
}

export interface PrimaryEvents {
  state: [PrimaryState];
  checkpoint: [CheckpointRecord];
  /** Protection ended (the reason says why). */
  unprotected: [ReplicationError];
  "verify-failed": [ReplicationError];
  /** The fencing hook lost: this side stopped serving (the CLI exits with its own status). */
  "fenced-out": [ReplicationError];
  /** A planned switchover completed: the old secondary serves. */
  "switched-over": [SwitchoverReport];
}

/** What `colo status` shows for a primary. */
export interface PrimaryStatus {
  readonly role: "primary";
  readonly mode: ReplicationSettings["mode"];
  readonly strategy: ReplicationSettings["strategy"];
  /** COLO: when the PVM resumes at a checkpoint (copied, or ready as Xen). */
  readonly pvmResume: ReplicationSettings["pvmResume"];
  readonly verify: boolean;
  readonly state: PrimaryState;
  readonly peer: string | undefined;
  readonly seq: number;
  readonly checkpoints: number;
  readonly divergences: number;
  readonly lastPauseMs: number | undefined;
  readonly last: CheckpointRecord | undefined;
  readonly totals: PrimaryTotals;
  readonly reason: string | undefined;
}

const noLog: Log = () => {};

/** A Remus checkpoint sent and not yet acknowledged. */
interface RemusSent {
  readonly record: Omit<CheckpointRecord, "verified" | "backBytes">;
  readonly digest: Uint8Array | undefined;
}

/** A ByteSource that counts what it hands out. */
class CountingSource implements ByteSource {
  readonly inner: ByteSource;
  bytes = 0;
  constructor(inner: ByteSource) {
    this.inner = inner;
  }
  async read(): Promise<Uint8Array | null> {
    const c = await this.inner.read();
    if (c !== null) this.bytes += c.byteLength;
    return c;
  }
}

function unionBelow(a: ArrayLike<number>, b: ArrayLike<number>, limit: number): Uint32Array {
  const set = new Set<number>();
  for (let i = 0; i < a.length; i++) {
    const p = a[i]!;
    if (p < limit) set.add(p);
  }
  for (let i = 0; i < b.length; i++) {
    const p = b[i]!;
    if (p < limit) set.add(p);
  }
  return Uint32Array.from(set).sort();
}

function sameDigest(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function hex(d: Uint8Array): string {
  return Buffer.from(d).toString("hex").slice(0, 16);
}

/** A switchover asked for and not yet begun. */
interface SwitchRequest {
  readonly listen: string;
  readonly timeoutMs: number;
  readonly resolve: (r: SwitchoverReport) => void;
  readonly reject: (e: ReplicationError) => void;
}

export class PrimaryController extends EventEmitter<PrimaryEvents> {
  readonly domain: Domain;
  readonly proxy: PrimaryProxy;
  readonly settings: ReplicationSettings;
  readonly #live: LiveOptions | false | undefined;
  readonly #answerTimeoutMs: number;
  readonly #maxCopyPages: number;
  readonly #log: Log;
  readonly #fence: Fence | undefined;
  readonly #name: string | undefined;

  #state: PrimaryState = "unprotected";
  #links: PrimaryLinks | undefined;
  #stream: CheckpointedStream | undefined;
  #back: CountingSource | undefined;
  #seq = 0n;
  #reason: ReplicationError | undefined;
  #lastDoneAt = 0;
  #pending: Trigger | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #inCheckpoint = false;
  readonly #records = new Ring<CheckpointRecord>(4096);
  readonly #totals = emptyTotals();
  #divergences = 0;
  /** Remus: checkpoints sent and not yet acknowledged, with the PVM's digest (--verify). */
  readonly #unacked = new Map<bigint, Promise<RemusSent>>();
  readonly #unsubscribe: (() => void)[] = [];
  #switchReq: SwitchRequest | undefined;

  constructor(o: PrimaryControllerOptions) {
    super();
    this.domain = o.domain;
    this.proxy = o.proxy;
    this.settings = o.settings;
    this.#live = o.live;
    this.#answerTimeoutMs = o.answerTimeoutMs ?? 10_000;
    this.#maxCopyPages = o.maxCopyPages ?? MAX_COPY_PAGES;
    this.#log = o.log ?? noLog;
    this.#fence = o.fence;
    this.#name = o.name;
    // A proxy taken over from a secondary continues its checkpoint numbering.
    this.#seq = BigInt(o.proxy.seq);
    const onDivergence = (d: Divergence): void => {
      this.#divergences++;
      this.#log("info", `divergence after checkpoint ${d.seq}: ${d.kind} (${d.detail})`);
      this.#trigger("divergence");
    };
    const onNeeded = (): void => this.#trigger("held-cap");
    const onProxyError = (e: Error): void =>
      this.#lose(new ReplicationError("protocol", "mirror protocol error", { cause: e }));
    this.proxy.on("divergence", onDivergence);
    this.proxy.on("checkpoint-needed", onNeeded);
    this.proxy.on("protocol-error", onProxyError);
    this.#unsubscribe.push(
      () => this.proxy.off("divergence", onDivergence),
      () => this.proxy.off("checkpoint-needed", onNeeded),
      () => this.proxy.off("protocol-error", onProxyError),
    );
  }

  get state(): PrimaryState {
    return this.#state;
  }
  get seq(): bigint {
    return this.#seq;
  }
  /** Why protection ended, once it has. */
  get reason(): ReplicationError | undefined {
    return this.#reason;
  }
  records(): CheckpointRecord[] {
    return this.#records.toArray();
  }

  status(): PrimaryStatus {
    const last = this.#records.last;
    return {
      role: "primary",
      mode: this.settings.mode,
      strategy: this.settings.strategy,
      pvmResume: this.settings.pvmResume,
      verify: this.settings.verify,
      state: this.#state,
      peer: this.#links?.peer,
      seq: Number(this.#seq),
      checkpoints: this.#totals.checkpoints,
      divergences: this.#divergences,
      lastPauseMs: last?.pauseMs,
      last,
      totals: structuredClone(this.#totals),
      reason: this.#reason === undefined ? undefined : describeError(this.#reason),
    };
  }

  /** Ask for a checkpoint now (still no sooner than the minimum interval). */
  requestCheckpoint(): void {
    this.#trigger("request");
  }

  #setState(s: PrimaryState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.emit("state", s);
  }

  #trigger(t: Trigger): void {
    if (this.#state !== "protected" && this.#state !== "checkpointing") return;
    if (this.settings.mode === "remus") return; // Remus checkpoints by the epoch only
    this.#pending ??= t;
    this.#wake?.();
  }

  /**
   * Seed the secondary over `links` and protect the PVM from then on. Resolves once the seed is
   * acknowledged (state protected); rejects (state unprotected, links closed) if it fails.
   */
  async protect(links: PrimaryLinks): Promise<void> {
    if (this.#state !== "unprotected" && this.#state !== "unprotected-after-loss") {
      throw new ReplicationError("bad-state", `protect() in state ${this.#state}`);
    }
    this.#links = links;
    this.#reason = undefined;
    this.#pending = undefined;
    // A re-protection continues the numbering: the proxy only accepts a later checkpoint.
    const seedSeq = this.#seq + 1n;
    this.#setState("seeding");
    const hb = links.heartbeat;
    hb.on("lost", (loss) =>
      this.#lose(
        new ReplicationError(
          "peer-lost",
          `secondary lost (${loss.reason}, silent ${loss.silentMs.toFixed(0)} ms)`,
        ),
      ),
    );
    hb.on("closed", (info) => {
      if (info.by === "peer") this.#lose(new ReplicationError("link", "the secondary said goodbye"));
    });
    links.onMirrorError((e) =>
      this.#lose(new ReplicationError("protocol", "malformed mirror message", { cause: e })),
    );
    const t0 = performance.now();
    const back = new CountingSource(links.replication.back);
    this.#back = back;
    // The PVM serves unprotected (outputs released at once) through the seed's pre-copy; client
    // input pauses only for its final stop-and-copy (from right before the last suspend to
    // SVM_READY), so every input fed before the pause is in the seed's host state and every later
    // one is mirrored from the seed's offsets (checkpointDone below).
    this.#log(
      "info",
      `seeding ${links.peer}: not protected yet (outputs released at once) until the seed is acknowledged`,
    );
    let pausedAt: number | undefined;
    let inputPausedMs = 0;
    let stream: CheckpointedStream;
    try {
      stream = await openCheckpointedStream(
        this.domain,
        { sink: links.replication.sink, back },
        {
          seq: seedSeq,
          resume: false,
          beforeSuspend: () => {
            this.#checkAlive();
            this.proxy.pauseForCheckpoint();
            pausedAt = performance.now();
          },
          ...(this.#live === undefined ? {} : { live: this.#live }),
        },
      );
      this.#stream = stream;
      this.#checkAlive();
      // Heartbeats start once the seed is in: building the replica (compiling the module) can
      // block the secondary's main thread for longer than a heartbeat timeout. Until then a dead
      // secondary shows as a broken replication connection.
      hb.start();
      // Attach the mirror before anything else: the SVM may speak as soon as it resumes.
      this.proxy.setMode(
        this.settings.mode === "remus" ? "remus" : "colo",
        this.settings.mode === "colo" ? links.mirror : undefined,
      );
      const verified = this.settings.verify
        ? await this.#verify(seedSeq, await this.domain.digest())
        : undefined;
      this.domain.harvestDirty(); // nothing since the seed's last harvest, but be exact
      this.#seq = seedSeq;
      this.proxy.checkpointDone(Number(seedSeq));
      inputPausedMs = pausedAt === undefined ? 0 : performance.now() - pausedAt;
      await this.domain.resume();
      const pauseMs = performance.now() - t0;
      if (this.settings.mode === "colo") await this.#expectState(CHECKPOINT_STATE.SVM_RESUMED, seedSeq);
      this.#record({
        seq: Number(seedSeq),
        trigger: "seed",
        a: stream.seed.memoryPages,
        b: 0,
        d: stream.seed.memoryPages,
        pagesSent: stream.seed.pagesPerRound.reduce((x, y) => x + y, 0),
        bytes: stream.bytes,
        backBytes: back.bytes,
        fsBlocks: 0,
        pauseMs: stream.seed.downtimeMs,
        sendMs: pauseMs,
        verified,
      });
    } catch (e) {
      const err =
        e instanceof ReplicationError
          ? e
          : new ReplicationError("link", "seeding the secondary failed", { cause: e });
      this.#lose(err);
      throw err;
    }
    this.#lastDoneAt = performance.now();
    this.#setState("protected");
    this.#log(
      "info",
      `protected: secondary ${links.peer} seeded (${stream.seed.memoryPages} pages, ${stream.seed.bytes} bytes, ${stream.seed.downtimeMs.toFixed(1)} ms pause, client input paused ${inputPausedMs.toFixed(1)} ms)`,
    );
    this.#loop = this.#run();
    if (this.settings.mode === "remus") void this.#remusAcks();
  }

  /**
   * The PVM exited or trapped (the CLI calls this when its domain ends). A trap or exit in one
   * replica only is a divergence; in both, it is the guest's own behaviour. So, in colo mode
   * while protected: no new input reaches either replica, and the SVM gets `graceMs` to end too
   * (its mirror "end"). Both ended: the guest's end propagates ("propagate": protection stops
   * with a goodbye, the secondary stands down, the caller exits with the guest's status). The
   * PVM alone: its state is the divergent one and the SVM's survives ("hand-over"): the links
   * close WITHOUT a goodbye, so the secondary's heartbeat sees its primary gone and takes over
   * as on any failover (failover.ts decideTakeover, cause "heartbeat-lost": a fencing hook is
   * still asked); this side's proxy closes (its clients reconnect to the secondary's service).
   * Not protected, or Remus (only the PVM runs): "propagate".
   */
  async pvmEnded(end: GuestEnd, graceMs = PVM_END_GRACE_MS): Promise<PvmEndOutcome> {
    const text = (e: GuestEnd): string =>
      e.kind === "exit" ? `exited with ${e.code}` : `trapped (${e.message})`;
    if (this.settings.mode !== "colo" || !this.#protectedNow() || this.#links === undefined) {
      return { action: "propagate", detail: `the PVM ${text(end)}; not protected (${this.#state})` };
    }
    try {
      this.proxy.pauseForCheckpoint();
      this.proxy.replicaEnded("pvm", end);
    } catch {}
    const svm = await this.proxy.whenReplicaEnded("svm", graceMs);
    if (!this.#protectedNow()) {
      return {
        action: "propagate",
        detail: `the PVM ${text(end)}; protection ended meanwhile (${this.#state})`,
      };
    }
    if (svm !== undefined) {
      const detail = `both replicas ended (PVM ${text(end)}, SVM ${text(svm)}): the guest's own end`;
      this.#log("info", `${detail}; the secondary stands down`);
      this.#lose(new ReplicationError("domain", detail), "stopped");
      return { action: "propagate", detail };
    }
    const detail = `the PVM ${text(end)}, the SVM still runs after ${graceMs} ms: handing over to the secondary`;
    this.#log("warn", detail);
    this.#reason = new ReplicationError("domain", detail);
    this.#wake?.();
    this.#links.close(false); // no goodbye: the secondary takes over
    this.#setState("stopped");
    await this.#loop?.catch(() => {});
    await this.proxy.close().catch(() => {});
    return { action: "hand-over", detail };
  }

  #pvmGone(): boolean {
    return (
      this.settings.mode === "colo" && (this.domain.state === "exited" || this.domain.state === "trapped")
    );
  }

  /** Stop protecting (clean: a goodbye, so the secondary stands down). The PVM keeps running. */
  async stop(): Promise<void> {
    this.#lose(new ReplicationError("link", "stopped by the operator"), "stopped");
    await this.#loop?.catch(() => {});
    for (const u of this.#unsubscribe.splice(0)) u();
  }

  /**
   * Planned switchover (`colo switchover`; colo mode, protected): one more checkpoint (the
   * secondary becomes identical and every output it covers is released), then client input stays
   * paused and the PVM stopped; the secondary is told to serve (CONTROL.switchoverTakeOver, with
   * `listen`: where this side will wait as its new secondary). Once it says it serves, this
   * side's clients are reset (they reconnect to the new primary), the state is "switched-over"
   * and the caller destroys the PVM and listens on `listen`. No answer within `timeoutMs`: the
   * links are dropped without a goodbye (the secondary's heartbeat then makes it take over as on a
   * failover), this side stops serving, and the promise rejects ("switchover").
   */
  switchover(listen: string, timeoutMs = 10_000): Promise<SwitchoverReport> {
    if (this.settings.mode !== "colo")
      return Promise.reject(new ReplicationError("bad-state", "switchover needs --mode colo"));
    if (!this.#protectedNow() || this.#switchReq !== undefined)
      return Promise.reject(new ReplicationError("bad-state", `switchover in state ${this.#state}`));
    return new Promise<SwitchoverReport>((resolve, reject) => {
      this.#switchReq = { listen, timeoutMs, resolve, reject };
      this.#pending = "request";
      this.#wake?.();
    });
  }

  async #switchoverNow(req: SwitchRequest): Promise<void> {
    const links = this.#links!;
    this.#inCheckpoint = true;
    try {
      await this.#coloCheckpoint("request");
    } catch (e) {
      this.#inCheckpoint = false;
      this.#lose(
        e instanceof ReplicationError
          ? e
          : new ReplicationError("link", "the switchover's checkpoint failed", { cause: e }),
      );
      return;
    }
    this.#inCheckpoint = false;
    const t0 = performance.now();
    this.proxy.pauseForCheckpoint();
    if (this.domain.state === "running") await this.domain.suspend();
    this.#switchReq = undefined;
    this.#setState("switching-over");
    const seq = Number(this.#seq);
    const serving = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new ReplicationError("switchover", `the secondary did not take over within ${req.timeoutMs} ms`),
          ),
        req.timeoutMs,
      );
      links.onControl((type, body) => {
        if (type !== CONTROL.switchoverServing) return;
        clearTimeout(timer);
        resolve(typeof body.service === "string" ? body.service : "");
      });
    });
    links.sendControl(CONTROL.switchoverTakeOver, { seq, listen: req.listen });
    this.#log("info", `switchover: checkpoint ${seq} done, input paused; the secondary takes over`);
    let service: string;
    try {
      service = await serving;
    } catch (e) {
      const err = e as ReplicationError;
      this.#reason = err;
      this.#log("error", `switchover failed: ${err.message}; stopped serving`);
      links.close(false);
      this.#setState("stopped");
      await this.proxy.close().catch(() => {});
      req.reject(err);
      return;
    }
    const report: SwitchoverReport = {
      gapMs: performance.now() - t0,
      finalSeq: seq,
      newPrimaryService: service,
    };
    this.#reason = new ReplicationError("switchover", `switched over: the secondary serves on ${service}`);
    links.close(true);
    await this.proxy.close().catch(() => {});
    this.#setState("switched-over");
    this.#log("info", `switched over after checkpoint ${seq}: new primary on ${service}`);
    this.emit("switched-over", report);
    req.resolve(report);
  }

  // ─────────────────────────────── the checkpoint loop ───────────────────────────────

  #protectedNow(): boolean {
    return this.#state === "protected" || this.#state === "checkpointing";
  }

  #checkAlive(): void {
    if (this.#reason !== undefined) throw this.#reason;
  }

  async #run(): Promise<void> {
    while (this.#protectedNow()) {
      const trigger = await this.#nextTrigger();
      if (!this.#protectedNow()) break;
      if (this.#switchReq !== undefined) {
        await this.#switchoverNow(this.#switchReq);
        break;
      }
      this.#inCheckpoint = true;
      try {
        if (this.settings.mode === "remus") await this.#remusCheckpoint(trigger);
        else await this.#coloCheckpoint(trigger);
      } catch (e) {
        // The PVM ended: no checkpoint can capture it; pvmEnded() decides (never #lose here).
        if (this.#pvmGone()) break;
        const err =
          e instanceof ReplicationError
            ? e
            : new ReplicationError("link", `checkpoint ${this.#seq + 1n} failed`, {
                cause: e,
                seq: this.#seq + 1n,
              });
        this.#lose(err);
      } finally {
        this.#inCheckpoint = false;
        if (!this.#protectedNow() && this.#state !== "fencing" && this.#state !== "fenced-out") {
          // Protection ended during the checkpoint: never leave the PVM stopped or input paused
          // (a fencing hook in progress keeps both until it wins: #afterFence).
          if (this.domain.state === "suspended") await this.domain.resume().catch(() => {});
          try {
            this.proxy.setMode("unprotected");
          } catch {}
        }
      }
      this.#lastDoneAt = performance.now();
    }
  }

  async #nextTrigger(): Promise<Trigger> {
    const remus = this.settings.mode === "remus";
    const period = remus ? this.settings.epochMs : this.settings.maxIntervalMs;
    for (;;) {
      if (!this.#protectedNow()) return "request";
      const since = performance.now() - this.#lastDoneAt;
      if (this.#pending !== undefined && since >= this.settings.minIntervalMs) {
        const t = this.#pending;
        this.#pending = undefined;
        return t;
      }
      if (since >= period) return remus ? "epoch" : "max-interval";
      const wait = this.#pending !== undefined ? this.settings.minIntervalMs - since : period - since;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(0, wait));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = undefined;
    }
  }

  async #recv(): Promise<BackRecord> {
    const stream = this.#stream;
    if (stream === undefined) throw new ReplicationError("bad-state", "no stream");
    let timer: NodeJS.Timeout | undefined;
    try {
      const msg = await Promise.race([
        stream.recvBack(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new ReplicationError(
                  "link",
                  `no answer from the secondary within ${this.#answerTimeoutMs} ms`,
                ),
              ),
            this.#answerTimeoutMs,
          );
        }),
      ]);
      if (msg === null) throw new ReplicationError("link", "the secondary closed the back channel");
      return msg;
    } catch (e) {
      if (e instanceof ReplicationError) throw e;
      const code = (e as { code?: unknown }).code;
      // A back channel that fails to decode is a protocol error; one that breaks is a lost link.
      const cause = (e as { cause?: unknown }).cause;
      const broken = cause !== undefined && (cause as { code?: unknown }).code === "truncated";
      throw new ReplicationError(
        code === "back-channel" && !broken ? "protocol" : "link",
        "reading the back channel failed",
        {
          cause: e,
        },
      );
    } finally {
      clearTimeout(timer);
      this.#checkAlive();
    }
  }

  async #expectState(id: number, seq: bigint): Promise<void> {
    const m = await this.#recv();
    if (m.kind !== "state" || m.id !== id || m.seq !== seq) {
      throw new ReplicationError(
        "protocol",
        `expected ${CHECKPOINT_STATE_NAMES.get(id)} ${seq} on the back channel, got ${describeBack(m)}`,
        {
          seq,
        },
      );
    }
  }

  /** Read DIGEST(seq) and compare it with ours; a mismatch throws "verify-mismatch". */
  async #verify(seq: bigint, mine: Uint8Array): Promise<boolean> {
    const m = await this.#recv();
    if (m.kind !== "digest" || m.seq !== seq) {
      throw new ReplicationError("protocol", `expected CHECKPOINT_DIGEST ${seq}, got ${describeBack(m)}`, {
        seq,
      });
    }
    if (!sameDigest(m.digest, mine)) {
      this.#totals.verifyFailures++;
      throw new ReplicationError(
        "verify-mismatch",
        `checkpoint ${seq}: the secondary's state digest ${hex(m.digest)}… differs from the primary's ${hex(mine)}…`,
        { seq },
      );
    }
    return true;
  }

  async #coloCheckpoint(trigger: Trigger): Promise<void> {
    const stream = this.#stream!;
    const back = this.#back!;
    const seq = this.#seq + 1n;
    const strategy = this.settings.strategy;
    const t0 = performance.now();
    const { steps, mark } = stepClock<PrimaryStep>(t0);
    const bytes0 = stream.bytes;
    const back0 = back.bytes;
    this.#checkAlive();
    // No NEW once the PVM has ended: the SVM must run on to reach (or not) the same end.
    if (this.#pvmGone()) throw new ReplicationError("domain", "the PVM has ended", { seq });
    if (
      this.settings.pvmResume === "snapshot" &&
      strategy !== "full" &&
      this.domain.snapshot !== undefined &&
      this.domain.state === "running"
    )
      return this.#snapshotCheckpoint(trigger, { seq, t0, steps, mark, bytes0, back0 });
    // The PVM's stop is asked first (its worker wakes while this thread goes on); in the same turn
    // client input pauses and NEW goes out, so the SVM stops on its side while the PVM unwinds.
    // Both settle before anything else (never leave a stop in flight).
    const pvmStopped = (
      this.domain.state === "running"
        ? this.domain.suspend({ capture: strategy === "back-channel" ? true : "all" })
        : Promise.resolve()
    ).then(() => mark("pvmSuspended"));
    this.proxy.pauseForCheckpoint();
    const svmSuspended = this.#expectState(CHECKPOINT_STATE.SVM_SUSPENDED, seq);
    svmSuspended.catch(() => {});
    const newSent = stream.sendState(CHECKPOINT_STATE.NEW, seq).then(() => mark("newSent"));
    this.#setState("checkpointing");
    // While the SVM harvests and sends its lists: harvest A (every page: strategy full). A PVM
    // idle in a host call has stopped already (it unwinds as it wakes, before running any code of
    // its own): A is final at once. pvmResume "copied": A's pages are copied now and kept back;
    // the PVM runs again as soon as the rest is copied too (proxy.checkpointCut holds what it then
    // produces until SVM_READY), and only then is the checkpoint encrypted and written, so this
    // thread is free for S's lists meanwhile. "ready": A's pages start going out at once, as views
    // of the PVM's memory (it stays stopped until SVM_READY, when the secondary has every byte).
    // A checkpoint whose first part is larger than maxCopyPages (strategy full of a big guest) is
    // not copied: it goes out as views and the PVM waits for SVM_READY.
    let early = false;
    const how = (pfns: Uint32Array) => {
      early = this.settings.pvmResume !== "ready" && pfns.length <= this.#maxCopyPages;
      return early ? { copy: true } : { borrow: true };
    };
    const pagesOf = (a: Uint32Array) => (strategy === "full" ? allPfns(this.domain.pageCount()) : a);
    const stoppedA = this.domain.state === "running" ? this.domain.harvestStopped?.() : undefined;
    if (stoppedA !== undefined) {
      mark("harvested");
      const pfns = pagesOf(stoppedA);
      stream.beginCheckpoint(seq, pfns, { ...how(pfns), stopped: true });
    }
    for (const r of await Promise.allSettled([newSent, pvmStopped]))
      if (r.status === "rejected") throw r.reason;
    this.#checkAlive();
    if (this.domain.state !== "suspended") {
      throw new ReplicationError("domain", `the PVM is ${this.domain.state}, not suspended`, { seq });
    }
    // P's changed blocks, the guest context and the host state (the worker captured both as the
    // PVM unwound: no round trip). The host state is captured with P's blocks (all of them for
    // cache/full) on the bet that S's list adds none (it is captured again if it does).
    const a = stoppedA ?? this.domain.harvestDirty();
    const fsA = await this.domain.harvestFsDirty();
    const context = this.domain.captureContext();
    const captured = this.domain.captureHostState(
      strategy === "back-channel" ? { kind: "some", blocks: fsA } : { kind: "all" },
    );
    context.catch(() => {});
    captured.catch(() => {});
    if (stoppedA === undefined) {
      mark("harvested");
      const pfns = pagesOf(a);
      stream.beginCheckpoint(seq, pfns, how(pfns));
    }
    // Strategies cache and full need nothing from S: with "copied", the checkpoint is finished (and
    // the PVM resumed) without waiting for SVM_SUSPENDED, which is read after it.
    const listFirst = strategy === "back-channel" || !early;
    if (listFirst) {
      await svmSuspended;
      mark("svmSuspended");
    }
    let b: ArrayLike<number> = new Uint32Array(0);
    let fsBlocks: CheckpointFinish["fsBlocks"] = "all";
    if (strategy === "back-channel") {
      const lists = await this.#recvLists(seq);
      b = lists.b;
      mark("listReceived");
      const merged = unionBlocks(fsA, lists.fsB);
      fsBlocks = merged.length === fsA.length ? fsA : merged;
    }
    // The rest: B's pages that A lacked (P ignores pfns at or past its size), the context, the
    // host state, CHECKPOINT_END, in one write.
    const hostState = fsBlocks === "all" || fsBlocks === fsA ? captured : undefined;
    // pvmResume "copied": once every byte is copied, the PVM runs again (after its digest, with
    // --verify) while the bytes go out; the proxy holds its output from this cut on until
    // SVM_READY. A failure after it leaves the PVM running (#run's finally resumes it otherwise).
    const resume = early ? this.#resumeWhenCopied() : undefined;
    const sent = await stream.finishCheckpoint({
      more: b,
      fsBlocks,
      context,
      hostState,
      onCopied: resume?.onCopied,
    });
    if (!listFirst) {
      await svmSuspended;
      mark("svmSuspended");
    }
    const mine =
      resume !== undefined
        ? await resume.done()
        : this.settings.verify
          ? await this.domain.digest()
          : undefined;
    await this.#endColoCheckpoint({
      trigger,
      seq,
      t0,
      steps,
      mark,
      early,
      mine,
      pause: () => (this.domain.resumedAt ?? performance.now()) - t0,
      a,
      b,
      sent,
      bytes0,
      back0,
      fsBlocks: fsBlocks === "all" ? -1 : fsBlocks.length,
      retaken: false,
    });
  }

  /**
   * S's lists after SVM_SUSPENDED (back-channel): CHECKPOINT_DIRTY_PFN_LIST (B), then
   * FS_DIRTY_BLOCK_LIST; anything else is a protocol error.
   */
  async #recvLists(seq: bigint): Promise<{ b: Float64Array; fsB: readonly FsBlockRef[] }> {
    const m1 = await this.#recv();
    if (m1.kind !== "dirty-pfns")
      throw new ReplicationError("protocol", `expected CHECKPOINT_DIRTY_PFN_LIST, got ${describeBack(m1)}`, {
        seq,
      });
    const m2 = await this.#recv();
    if (m2.kind !== "fs-blocks")
      throw new ReplicationError("protocol", `expected FS_DIRTY_BLOCK_LIST, got ${describeBack(m2)}`, {
        seq,
      });
    return { b: m1.pfns, fsB: m2.blocks };
  }

  /**
   * The `onCopied` of a checkpoint copied out of the stopped PVM: once every byte is copied, the
   * PVM runs again (after its digest, with --verify) while the bytes go out; the proxy holds its
   * output from this cut on until SVM_READY. `done()` gives the digest once it runs. A failure
   * after it leaves the PVM running (#run's finally resumes it otherwise).
   */
  #resumeWhenCopied(): { onCopied: () => void; done: () => Promise<Uint8Array | undefined> } {
    let resumed: Promise<Uint8Array | undefined> = Promise.reject(
      new ReplicationError("domain", "the checkpoint was never copied"),
    );
    resumed.catch(() => {});
    return {
      onCopied: () => {
        resumed = (async () => {
          const digest = this.settings.verify ? await this.domain.digest() : undefined;
          this.#checkAlive();
          this.proxy.checkpointCut();
          // This thread steps off its core until the PVM runs (≤ RESUME_HAND_OFF_MS) before it
          // encrypts and writes the checkpoint: the woken worker would otherwise queue behind it.
          await this.domain.resume({ handOffMs: RESUME_HAND_OFF_MS });
          return digest;
        })();
        resumed.catch(() => {});
      },
      done: () => resumed,
    };
  }

  /**
   * The end of a COLO checkpoint once it is written: SVM_READY (and the digests, with --verify),
   * the proxy's release of the held output (after asking the PVM to resume, in the same turn, if
   * it still waits: "ready", or a first part over maxCopyPages), SVM_RESUMED, the record. `pause`
   * gives the PVM's pause once it runs again.
   */
  async #endColoCheckpoint(e: {
    readonly trigger: Trigger;
    readonly seq: bigint;
    readonly t0: number;
    readonly steps: Partial<Record<PrimaryStep, number>>;
    readonly mark: (step: PrimaryStep) => void;
    readonly early: boolean;
    readonly mine: Uint8Array | undefined;
    readonly pause: () => number;
    readonly a: ArrayLike<number>;
    readonly b: ArrayLike<number>;
    readonly sent: CheckpointSendReport;
    readonly bytes0: number;
    readonly back0: number;
    readonly fsBlocks: number;
    readonly retaken: boolean;
  }): Promise<void> {
    const { seq, steps, mark } = e;
    steps.pagesSent = e.sent.marks.pages - e.t0;
    steps.captured = e.sent.marks.captured - e.t0;
    steps.endWritten = e.sent.marks.end - e.t0;
    await this.#expectState(CHECKPOINT_STATE.SVM_READY, seq);
    const verified = e.mine === undefined ? undefined : await this.#verify(seq, e.mine);
    mark("svmReady");
    this.#seq = seq;
    // "ready": the resume request goes out first; the held output is released and the buffered
    // input fed in the same synchronous turn, before any output of the resumed PVM can reach the
    // proxy (its events are macrotasks), so the guest runs while the main thread releases and
    // feeds. Either way the pause ends when the worker resumed the guest (WasmDomain.resumedAt),
    // not when this thread hears of it.
    const resumed = e.early ? Promise.resolve() : this.domain.resume();
    resumed.catch(() => {});
    this.proxy.checkpointDone(Number(seq));
    await resumed;
    const pauseMs = e.pause();
    steps.pvmResumed = pauseMs;
    await this.#expectState(CHECKPOINT_STATE.SVM_RESUMED, seq);
    mark("svmResumed");
    this.#setState("protected");
    const d = unionBelow(e.a, e.b, e.sent.memoryPages);
    this.#record({
      seq: Number(seq),
      trigger: e.trigger,
      a: e.a.length,
      b: e.b.length,
      d: d.length,
      pagesSent: e.sent.pages,
      bytes: this.#stream!.bytes - e.bytes0,
      backBytes: this.#back!.bytes - e.back0,
      fsBlocks: e.fsBlocks,
      pauseMs,
      sendMs: e.sent.ms,
      verified,
      ...(e.retaken ? { retaken: true } : {}),
      steps,
      startedAt: performance.timeOrigin + e.t0,
    });
  }

  /**
   * pvmResume "snapshot" (strategies back-channel and cache): the PVM's own thread takes A, the
   * context and the host state as it stops and runs on at once (Domain.snapshot; the proxy's cut
   * is marked the moment this thread hears of it). The checkpoint is built from the snapshot.
   * When S's list names pages below P's size or file blocks that A lacks (their contents at the
   * snapshot are gone: the PVM ran on), the PVM is stopped again and the checkpoint taken at that
   * stop: A, what the PVM dirtied since and B, from the stopped memory; the output in between is
   * covered by it (proxy.checkpointCover). A first part over maxCopyPages makes the snapshot a
   * plain stop: the same stopped-memory checkpoint, sent as views, the PVM resumed at SVM_READY.
   */
  async #snapshotCheckpoint(
    trigger: Trigger,
    c: {
      readonly seq: bigint;
      readonly t0: number;
      readonly steps: Partial<Record<PrimaryStep, number>>;
      readonly mark: (step: PrimaryStep) => void;
      readonly bytes0: number;
      readonly back0: number;
    },
  ): Promise<void> {
    const stream = this.#stream!;
    const { seq, t0, steps, mark } = c;
    const strategy = this.settings.strategy;
    const verify = this.settings.verify;
    this.proxy.pauseForCheckpoint();
    const svmSuspended = this.#expectState(CHECKPOINT_STATE.SVM_SUSPENDED, seq);
    svmSuspended.catch(() => {});
    const taken = this.domain.snapshot!({
      maxPages: this.#maxCopyPages,
      digest: verify,
      onTaken: () => this.proxy.checkpointCut(),
    });
    taken.catch(() => {});
    const newSent = stream.sendState(CHECKPOINT_STATE.NEW, seq).then(() => mark("newSent"));
    this.#setState("checkpointing");
    const [r, n] = await Promise.allSettled([taken, newSent]);
    if (r.status === "rejected") throw r.reason;
    if (n.status === "rejected") throw n.reason;
    this.#checkAlive();
    const snap = r.value;
    // S's lists (back-channel), read after SVM_SUSPENDED; strategy cache gets none.
    let list: { b: Float64Array; fsB: readonly FsBlockRef[] } | undefined;
    const receiveList = async (): Promise<{ b: Float64Array; fsB: readonly FsBlockRef[] }> => {
      if (list !== undefined) return list;
      await svmSuspended;
      mark("svmSuspended");
      list = { b: new Float64Array(0), fsB: [] };
      if (strategy === "back-channel") {
        list = await this.#recvLists(seq);
        mark("listReceived");
      }
      return list;
    };
    let pauseMs = 0;
    let a: Uint32Array;
    let sent: CheckpointSendReport | undefined;
    let mine: Uint8Array | undefined;
    let early = true;
    let stoppedAt = t0;
    let retaken = false;
    let fsCount = 0;
    if (snap.kind === "snapshot") {
      pauseMs = snap.resumedAt - t0;
      steps.pvmSuspended = snap.resumedAt - snap.stoppedMs - t0;
      steps.pvmResumed = pauseMs;
      a = snap.pfns;
      mine = snap.digest;
      stream.beginCheckpoint(seq, a, { snapshot: snap });
      mark("harvested");
      const fsA = snap.fsBlocks;
      const { b, fsB } = strategy === "back-channel" ? await receiveList() : { b: undefined, fsB: [] };
      const inA = new Set(a);
      const fsInA = new Set(fsA.map((x) => `${x.ino}:${x.block}`));
      const lacking =
        b?.some((p) => p < snap.memoryPages && !inA.has(p)) ||
        fsB.some((x) => !fsInA.has(`${x.ino}:${x.block}`));
      if (!lacking) {
        fsCount = fsA.length;
        sent = await stream.finishCheckpoint({
          more: b,
          fsBlocks: fsA,
          context: Promise.resolve(snap.context),
          hostState: Promise.resolve(snap.hostState),
        });
      } else {
        // The snapshot lacks what S changed alone: take the checkpoint again, at a stop from now.
        stream.abandonCheckpoint();
        this.#totals.retaken++;
        retaken = true;
        stoppedAt = performance.now();
        await this.domain.suspend({ capture: true });
        this.#checkAlive();
        if (this.domain.state !== "suspended")
          throw new ReplicationError("domain", `the PVM is ${this.domain.state}, not suspended`, { seq });
        this.proxy.checkpointCover();
      }
    } else a = new Uint32Array(0);
    if (sent === undefined) {
      // The PVM is stopped (a snapshot over maxCopyPages, or taken again): the checkpoint from its
      // memory now, A (and what it dirtied since the snapshot) ∪ B.
      if (this.domain.state !== "suspended")
        throw new ReplicationError("domain", `the PVM is ${this.domain.state}, not suspended`, { seq });
      const fsBefore = snap.kind === "snapshot" ? snap.fsBlocks : [];
      const fsNow = await this.domain.harvestFsDirty();
      a = unionBelow(a, this.domain.harvestDirty(), Number.MAX_SAFE_INTEGER);
      const { b, fsB } = await receiveList();
      const pfns = unionBelow(a, b, this.domain.pageCount());
      early = pfns.length <= this.#maxCopyPages;
      stream.beginCheckpoint(seq, pfns, early ? { copy: true } : { borrow: true });
      mark("harvested");
      const fsBlocks = unionBlocks(unionBlocks(fsBefore, fsNow), fsB);
      fsCount = fsBlocks.length;
      const resume = early ? this.#resumeWhenCopied() : undefined;
      sent = await stream.finishCheckpoint({ fsBlocks, onCopied: resume?.onCopied });
      if (resume !== undefined) {
        mine = await resume.done();
        pauseMs += (this.domain.resumedAt ?? performance.now()) - stoppedAt;
      } else if (verify) mine = await this.domain.digest();
    }
    const { b } = await receiveList();
    await this.#endColoCheckpoint({
      trigger,
      seq,
      t0,
      steps,
      mark,
      early,
      mine,
      pause: () => (early ? pauseMs : (this.domain.resumedAt ?? performance.now()) - t0),
      a,
      b,
      sent,
      bytes0: c.bytes0,
      back0: c.back0,
      fsBlocks: fsCount,
      retaken,
    });
  }

  async #remusCheckpoint(trigger: Trigger): Promise<void> {
    const stream = this.#stream!;
    const seq = this.#seq + 1n;
    const t0 = performance.now();
    const bytes0 = stream.bytes;
    this.#checkAlive();
    this.#setState("checkpointing");
    this.proxy.pauseForCheckpoint();
    if (this.domain.state === "running") await this.domain.suspend();
    this.#checkAlive();
    if (this.domain.state !== "suspended") {
      throw new ReplicationError("domain", `the PVM is ${this.domain.state}, not suspended`, { seq });
    }
    const a = this.domain.harvestDirty();
    const fsA = await this.domain.harvestFsDirty();
    // Registered before the first byte goes out: the acknowledgement may overtake what follows.
    let settle: (v: RemusSent) => void = () => {};
    let fail: (e: unknown) => void = () => {};
    const sentEntry = new Promise<RemusSent>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    sentEntry.catch(() => {});
    this.#unacked.set(seq, sentEntry);
    try {
      const sent = await stream.sendCheckpoint({ seq, pfns: a, fsBlocks: fsA });
      const digest = this.settings.verify ? await this.domain.digest() : undefined;
      this.#seq = seq;
      this.proxy.checkpointDone(Number(seq));
      await this.domain.resume();
      settle({
        record: {
          seq: Number(seq),
          trigger,
          a: a.length,
          b: 0,
          d: a.length,
          pagesSent: sent.pages,
          bytes: stream.bytes - bytes0,
          fsBlocks: fsA.length,
          pauseMs: performance.now() - t0,
          sendMs: sent.ms,
        },
        digest,
      });
    } catch (e) {
      fail(e);
      throw e;
    }
    this.#setState("protected");
  }

  /** Remus: read SVM_READY(n) [+ DIGEST(n)] as they come and release what n covers. */
  async #remusAcks(): Promise<void> {
    const back = this.#back!;
    try {
      while (this.#protectedNow()) {
        const b0 = back.bytes;
        const m = await this.#stream!.recvBack();
        this.#checkAlive();
        if (m === null) throw new ReplicationError("link", "the secondary closed the back channel");
        if (m.kind !== "state" || m.id !== CHECKPOINT_STATE.SVM_READY) {
          throw new ReplicationError(
            "protocol",
            `expected SVM_READY on the Remus back channel, got ${describeBack(m)}`,
          );
        }
        const pending = this.#unacked.get(m.seq);
        if (pending === undefined) {
          throw new ReplicationError(
            "protocol",
            `SVM_READY ${m.seq} for no checkpoint in flight (replayed or out of order)`,
            {
              seq: m.seq,
            },
          );
        }
        const first = this.#unacked.keys().next().value;
        if (first !== m.seq)
          throw new ReplicationError("protocol", `SVM_READY ${m.seq} before ${first}`, { seq: m.seq });
        const entry = await pending;
        const verified = entry.digest === undefined ? undefined : await this.#verify(m.seq, entry.digest);
        this.#unacked.delete(m.seq);
        this.proxy.releaseUpTo(Number(m.seq));
        this.#record({ ...entry.record, backBytes: back.bytes - b0, verified });
      }
    } catch (e) {
      this.#lose(
        e instanceof ReplicationError
          ? e
          : new ReplicationError("link", "the Remus back channel failed", { cause: e }),
      );
    }
  }

  #record(r: CheckpointRecord): void {
    this.#records.push(r);
    addRecord(this.#totals, r);
    this.emit("checkpoint", r);
  }

  /**
   * End protection (idempotent): close the links with a goodbye (the secondary then stands down;
   * only a silent primary makes it take over), then, without a fencing hook, release held output
   * and run on unprotected at once. With a hook, and a secondary that was protecting us, every
   * output stays held and client input paused until the hook answers (#afterFence).
   */
  #lose(reason: ReplicationError, state?: PrimaryState): void {
    if (this.#reason !== undefined) return;
    if (this.#state === "unprotected" || this.#state === "stopped") return;
    if (this.#state === "switching-over" || this.#state === "switched-over") return;
    this.#switchReq?.reject(
      new ReplicationError("switchover", `switchover not done: ${describeError(reason)}`, { cause: reason }),
    );
    this.#switchReq = undefined;
    const wasProtected = this.#protectedNow();
    this.#reason = reason;
    const next: PrimaryState =
      state ?? (reason.code === "verify-mismatch" ? "verify-failed" : "unprotected-after-loss");
    this.#links?.close(true);
    this.#pending = undefined;
    this.#wake?.();
    this.#unacked.clear();
    if (this.#fence !== undefined && wasProtected && next === "unprotected-after-loss") {
      this.#log("warn", `secondary lost: ${describeError(reason)}; outputs held, asking the fencing hook`, {
        code: reason.code,
      });
      try {
        this.proxy.pauseForCheckpoint();
      } catch {}
      this.#setState("fencing");
      void this.#afterFence(reason);
      return;
    }
    const level = reason.code === "verify-mismatch" || reason.code === "protocol" ? "error" : "warn";
    this.#log(level, `running UNPROTECTED: ${describeError(reason)}`, { code: reason.code });
    this.#goUnprotected();
    this.#setState(next);
    this.emit("unprotected", reason);
    if (next === "verify-failed") this.emit("verify-failed", reason);
  }

  #goUnprotected(): void {
    try {
      this.proxy.setMode("unprotected");
    } catch (e) {
      this.#log("warn", `proxy: ${describeError(e)}`);
    }
    if (!this.#inCheckpoint && this.domain.state === "suspended") void this.domain.resume().catch(() => {});
  }

  /** The fencing hook decides (src/replication/failover.ts): run unprotected, or stop serving. */
  async #afterFence(reason: ReplicationError): Promise<void> {
    const cause: PeerLossCause =
      reason.code === "peer-lost"
        ? "heartbeat-lost"
        : reason.code === "link"
          ? "link-ended"
          : "protocol-error";
    const d = await decideUnprotected(
      cause,
      { seq: Number(this.#seq), name: this.#name, peer: this.#links?.peer, session: this.#links?.session },
      this.#fence,
    );
    await this.#loop?.catch(() => {}); // a checkpoint in flight has ended (it cannot finish)
    if (this.#state !== "fencing") return; // stopped meanwhile
    if (d.action === "run-unprotected") {
      this.#log("warn", `running UNPROTECTED: ${d.detail}`);
      this.#goUnprotected();
      this.#setState("unprotected-after-loss");
      this.emit("unprotected", reason);
      return;
    }
    const out = new ReplicationError("fenced-out", d.detail, { cause: reason });
    this.#reason = out;
    this.#log("error", `STOPPED SERVING: ${d.detail}`);
    this.#setState("fenced-out");
    this.emit("fenced-out", out);
    await this.proxy.close().catch(() => {});
    await this.domain.destroy().catch(() => {});
  }
}
