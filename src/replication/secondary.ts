/**
 * The secondary's replication controller (Xen: libxl's COLO/Remus restore side).
 *
 * Design. One controller serves one protection session: `serve(links)` receives the seed,
 * then every checkpoint, and resolves with how the session ended. States:
 *
 *   seeding ──seed applied──▶ running (COLO) | standby (Remus)
 *   running ──NEW(n)──▶ suspended ──B sent──▶ buffering ──CHECKPOINT_END──▶ applying ──▶ running …
 *   standby ──checkpoint complete──▶ applying ──▶ standby …
 *   any ──protocol error / primary's goodbye──▶ stood-down      (replica destroyed; never serves)
 *   any ──heartbeat lost──▶ took-over                            (replica resumes from its own state)
 *
 * The replica only ever changes by a whole checkpoint: the engine (CheckpointedTarget) buffers
 * every record of checkpoint n and this controller applies it only after CHECKPOINT_END, after
 * checking that n is the one after the last applied and that NEW(n) came first (COLO).
 *
 * Per COLO checkpoint n: NEW(n) → stop the SVM, pause the mirror receiver, start buffering the
 * checkpoint → harvest B and the changed file blocks (at once when the stop found the SVM waiting
 * in a host call, else once it unwound) → SVM_SUSPENDED(n) [+ CHECKPOINT_DIRTY_PFN_LIST(B) +
 * FS_DIRTY_BLOCK_LIST] → the checkpoint buffered whole, the SVM unwound → (cache: restore B from
 * the cache) apply it whole → [digest] → SVM_READY(n) [+ CHECKPOINT_DIGEST(n)] → (cache: copy
 * what it wrote into the cache) → resume the SVM → the mirror receiver drops input the checkpoint
 * already holds and feeds the rest → SVM_RESUMED(n).
 * Remus: the replica never runs; each complete checkpoint is applied, then SVM_READY(n) [+ DIGEST].
 *
 * Errors (architecture: "Errors, failover, switchover"): a malformed, replayed or out-of-order
 * record, or a record not allowed in the current state, is a protocol error: discard any partial
 * checkpoint, drop every connection (with a heartbeat goodbye, so the primary runs on
 * unprotected) and stand down. A stream that ends or resets only discards the partial checkpoint;
 * then the heartbeat decides: lost → take over (resume the replica from its own last state and
 * serve this host's service address unprotected); the primary's goodbye → stand down.
 */
import { EventEmitter } from "node:events";
import type { Domain, FsBlockRef } from "../guest/domain.ts";
import { PAGE_SIZE } from "../guest/domain.ts";
import type { GuestPort } from "../guest/port.ts";
import type { PrimaryProxy } from "../proxy/primary.ts";
import { SecondaryProxy, type TakeoverOptions } from "../proxy/secondary.ts";
import type { CheckpointedTarget, TargetEvent } from "../save/migrate.ts";
import { receiveCheckpointed } from "../save/migrate.ts";
import type { RestoreTargetFactory } from "../save/restore.ts";
import { CHECKPOINT_STATE, CHECKPOINT_STATE_NAMES } from "../stream/format.ts";
import { type ReplicationSettings, settingsFromCapabilities } from "./config.ts";
import { codeOf, describeError, ReplicationError } from "./errors.ts";
import { type Decision, decideTakeover, type PeerLossCause, type SecondaryAction } from "./failover.ts";
import type { Fence } from "./fence.ts";
import { CONTROL, type SecondaryLinks } from "./links.ts";
import type { Log } from "./primary.ts";
import { Ring, type SecondaryCheckpointRecord, type SecondaryStep, stepClock } from "./stats.ts";
import { hostSummary, TrackedDomain } from "./tracked-domain.ts";

export type SecondaryState =
  | "waiting"
  | "seeding"
  | "running"
  | "standby"
  | "suspended"
  | "buffering"
  | "applying"
  | "stood-down"
  | "took-over";

/** How a session ended. */
export type SecondaryOutcome =
  | { readonly kind: "stood-down"; readonly reason: ReplicationError }
  | {
      readonly kind: "took-over";
      readonly proxy: PrimaryProxy;
      readonly domain: Domain;
      /** A planned switchover: the old primary waits on `listen` (HOST:PORT) to be protected. */
      readonly switchover?: { readonly listen: string } | undefined;
    };

export interface SecondaryControllerOptions {
  /** Builds the replica from the seed's module bytes (real runtime: a WasmDomain restore target). */
  readonly createTarget: RestoreTargetFactory;
  /** Where to serve after a takeover (the proxy's server options). */
  readonly takeover?: TakeoverOptions;
  readonly log?: Log;
  /** Fencing hook asked before any takeover (src/replication/fence.ts); none: take over on loss. */
  readonly fence?: Fence | undefined;
  /** The guest's name, passed to the fencing hook. */
  readonly name?: string | undefined;
}

export interface SecondaryEvents {
  state: [SecondaryState];
  checkpoint: [SecondaryCheckpointRecord];
  "stood-down": [ReplicationError];
  "took-over": [PrimaryProxy];
}

export interface SecondaryStatus {
  readonly role: "secondary";
  readonly mode: ReplicationSettings["mode"] | undefined;
  readonly strategy: ReplicationSettings["strategy"] | undefined;
  readonly verify: boolean | undefined;
  readonly state: SecondaryState;
  readonly peer: string | undefined;
  readonly applied: number;
  readonly checkpoints: number;
  readonly lastPauseMs: number | undefined;
  readonly last: SecondaryCheckpointRecord | undefined;
  readonly reason: string | undefined;
}

/** Codes of the engine's RestoreError that mean "the stream broke", not "the stream lied". */
const LINK_CODES = new Set(["truncated", "io"]);

const noLog: Log = () => {};

export class SecondaryController extends EventEmitter<SecondaryEvents> {
  readonly #createTarget: RestoreTargetFactory;
  readonly #takeoverOptions: TakeoverOptions;
  readonly #log: Log;
  readonly #fence: Fence | undefined;
  readonly #name: string | undefined;
  #state: SecondaryState = "waiting";
  #settings: Pick<ReplicationSettings, "mode" | "strategy" | "verify"> | undefined;
  #links: SecondaryLinks | undefined;
  #target: CheckpointedTarget | undefined;
  #domain: TrackedDomain | undefined;
  #sproxy: SecondaryProxy | undefined;
  #applied = 0n;
  #reason: ReplicationError | undefined;
  #outcome: ((o: SecondaryOutcome) => void) | undefined;
  #finished = false;
  #takeoverWanted = false;
  /** Strategy cache: the memory of the last checkpoint applied, page by page. */
  #cache: Uint8Array | undefined;
  #pendingB: Uint32Array = new Uint32Array(0);
  #newAt = 0;
  /** The SVM's stop in flight (NEW received, not yet unwound): a takeover waits for it. */
  #stopping: Promise<void> | undefined;
  #bHarvested = 0;
  readonly #records = new Ring<SecondaryCheckpointRecord>(4096);
  #count = 0;

  constructor(o: SecondaryControllerOptions) {
    super();
    this.#createTarget = o.createTarget;
    this.#takeoverOptions = o.takeover ?? {};
    this.#log = o.log ?? noLog;
    this.#fence = o.fence;
    this.#name = o.name;
  }

  /**
   * Manual failover (`colo failover NAME`): decide as on a lost heartbeat (the fencing hook, if
   * any, is asked) and act on it. Resolves with the decision.
   */
  failover(): Promise<Decision<SecondaryAction>> {
    if (this.#finished || this.#links === undefined) {
      return Promise.resolve({
        action: "stand-down",
        detail: `nothing to take over (state ${this.#state})`,
        fence: undefined,
      });
    }
    return this.#primaryLost("manual");
  }

  /** The primary is lost (or the operator says so): src/replication/failover.ts decides. */
  async #primaryLost(cause: PeerLossCause): Promise<Decision<SecondaryAction>> {
    const d = await decideTakeover(
      cause,
      {
        appliedSeq: Number(this.#applied),
        name: this.#name,
        peer: this.#links?.peer,
        session: this.#links?.session,
      },
      this.#fence,
    );
    this.#log(d.action === "take-over" ? "warn" : "error", d.detail);
    if (d.action === "take-over") await this.#takeover();
    else if (d.action === "stand-down") this.#standDown(new ReplicationError("peer-lost", d.detail));
    return d;
  }

  get state(): SecondaryState {
    return this.#state;
  }
  get applied(): bigint {
    return this.#applied;
  }
  /** The replica (undefined before the seed and after standing down). */
  get domain(): Domain | undefined {
    return this.#domain?.inner;
  }
  records(): SecondaryCheckpointRecord[] {
    return this.#records.toArray();
  }

  status(): SecondaryStatus {
    const last = this.#records.last;
    return {
      role: "secondary",
      mode: this.#settings?.mode,
      strategy: this.#settings?.strategy,
      verify: this.#settings?.verify,
      state: this.#state,
      peer: this.#links?.peer,
      applied: Number(this.#applied),
      checkpoints: this.#count,
      lastPauseMs: last?.pauseMs,
      last,
      reason: this.#reason === undefined ? undefined : describeError(this.#reason),
    };
  }

  #setState(s: SecondaryState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.emit("state", s);
  }

  /** Serve one protection session over `links`; resolves when it ends. */
  serve(links: SecondaryLinks): Promise<SecondaryOutcome> {
    if (this.#state !== "waiting") throw new ReplicationError("bad-state", `serve() in state ${this.#state}`);
    this.#links = links;
    const outcome = new Promise<SecondaryOutcome>((resolve) => {
      this.#outcome = resolve;
    });
    try {
      this.#settings = settingsFromCapabilities(links.capabilities);
    } catch (e) {
      this.#standDown(e as ReplicationError);
      return outcome;
    }
    const hb = links.heartbeat;
    links.onControl((type, body) => {
      if (type === CONTROL.switchoverTakeOver) void this.#switchoverTakeOver(body);
    });
    hb.on("lost", (loss) => {
      if (this.#finished) return; // a switchover already made this side the primary
      this.#log("warn", `primary lost (${loss.reason}, silent ${loss.silentMs.toFixed(0)} ms)`);
      void this.#primaryLost("heartbeat-lost");
    });
    hb.on("closed", (info) => {
      if (info.by === "peer") this.#standDown(new ReplicationError("link", "the primary said goodbye"));
    });
    links.onMirrorError((e) =>
      this.#standDown(new ReplicationError("protocol", "malformed mirror message", { cause: e })),
    );
    this.#setState("seeding");
    void this.#run();
    return outcome;
  }

  async #run(): Promise<void> {
    const links = this.#links!;
    const settings = this.#settings!;
    try {
      const target = await receiveCheckpointed(links.replication, {
        createTarget: async (bytes, identity) => new TrackedDomain(await this.#createTarget(bytes, identity)),
        ack: false,
      });
      this.#target = target;
      this.#domain = target.domain as TrackedDomain;
      links.heartbeat.start(); // after the seed: see primary.ts
      if (this.#finished) {
        await target.domain.destroy().catch(() => {});
        return;
      }
      this.#applied = target.lastApplied;
      await this.#afterApply(this.#applied, true);
      this.#log(
        "info",
        `seeded by ${links.peer}: checkpoint ${this.#applied}, ${this.#domain.pageCount()} pages`,
      );
      if (settings.mode === "remus") await this.#remusLoop();
      else await this.#coloLoop();
    } catch (e) {
      await this.#onError(e);
    }
  }

  /**
   * After a checkpoint is applied (seed included): digest, SVM_READY [+ DIGEST], and in COLO resume
   * the replica, feed the mirror, SVM_RESUMED. SVM_READY goes out first: the primary resumes on
   * it, and nothing else here changes the replica (the cache and the mirror receiver's offsets
   * only need to be ready before the replica resumes).
   */
  async #afterApply(
    seq: bigint,
    seed: boolean,
    mark?: (step: SecondaryStep, at?: number) => void,
  ): Promise<void> {
    const settings = this.#settings!;
    const domain = this.#domain!;
    const target = this.#target!;
    // The seed's mirror receiver exists before SVM_READY: the primary mirrors from then on.
    if (settings.mode === "colo" && seed) {
      this.#sproxy = new SecondaryProxy({
        port: domain.inner as unknown as GuestPort,
        link: this.#links!.mirror,
        seq: Number(seq),
        inputOffsets: hostSummary(domain.lastHostState!).inputs,
      });
      this.#sproxy.on("protocol-error", (e) =>
        this.#standDown(new ReplicationError("protocol", "mirror protocol error", { cause: e })),
      );
    }
    const digest = settings.verify ? await domain.digest() : undefined;
    this.#checkFinished();
    await target.back.ready(seq, digest);
    mark?.("readySent");
    if (settings.mode === "colo" && settings.strategy === "cache") this.#updateCache(seed);
    const summary = hostSummary(domain.lastHostState!);
    if (settings.mode === "remus") {
      this.#setState("standby");
      return;
    }
    if (this.#takeoverWanted) {
      // A takeover waited for this apply (#recorded carries it out): the mirror receiver learns
      // the applied checkpoint's connections (the new primary's proxy ends and numbers from them),
      // and the state leaves "applying" so that #takeover no longer defers.
      if (!seed) this.#sproxy!.checkpointApplied(Number(seq), summary.inputs);
      this.#setState("suspended");
      return;
    }
    // As on the primary: the resume request first, then the mirrored input fed in the same turn.
    const resumed = domain.resume();
    resumed.catch(() => {});
    if (!seed) this.#sproxy!.checkpointApplied(Number(seq), summary.inputs);
    await resumed;
    // When the worker ran the replica again (WasmDomain.resumedAt), not when this thread heard.
    mark?.("resumed", domain.resumedAt);
    this.#watchEnd();
    await target.back.state(CHECKPOINT_STATE.SVM_RESUMED, seq);
    mark?.("resumedSent");
    this.#setState("running");
  }

  /**
   * Once the SVM runs: if it exits or traps, send the mirror "end" (the primary's proxy judges it
   * against the PVM; an end in the SVM only is a divergence, and the next checkpoint restores it).
   */
  #watchEnd(): void {
    const inner = this.#domain?.inner as (Domain & { whenStopped?: () => Promise<void> }) | undefined;
    if (inner?.whenStopped === undefined) return;
    void inner.whenStopped().then(() => {
      const end = inner.end;
      if (this.#finished || end === undefined) return;
      if (inner.state !== "exited" && inner.state !== "trapped") return;
      this.#log(
        "warn",
        `the SVM ${end.kind === "exit" ? `exited with ${end.code}` : `trapped: ${end.message}`}`,
      );
      this.#sproxy?.replicaEnded(end);
    });
  }

  /**
   * The SVM is stopped: suspended, or it exited or trapped alone (it said so with a mirror
   * "end"): such a replica is restored by the checkpoint like a suspended one (its dirty log
   * still holds what it wrote until it ended).
   */
  #checkStopped(seq: bigint): void {
    const st = this.#domain!.state;
    if (st !== "suspended" && st !== "exited" && st !== "trapped")
      throw new ReplicationError("domain", `the SVM is ${st}, not suspended`, { seq });
  }

  #checkFinished(): void {
    if (this.#finished) throw this.#reason ?? new ReplicationError("link", "session over");
  }

  async #coloLoop(): Promise<void> {
    const target = this.#target!;
    const domain = this.#domain!;
    const settings = this.#settings!;
    let clock = stepClock<SecondaryStep>(0);
    /** The checkpoint's records, read from NEW on (see below). */
    let reading: Promise<TargetEvent> | undefined;
    for (;;) {
      const ev = await (reading ?? target.next());
      reading = undefined;
      this.#checkFinished();
      if (ev.kind === "end") {
        // The primary closed the stream between checkpoints: its heartbeat decides what follows.
        this.#log("info", "the replication stream ended between checkpoints");
        return;
      }
      const expected = this.#applied + 1n;
      if (ev.kind === "state") {
        if (this.#state !== "running" || ev.id !== CHECKPOINT_STATE.NEW || ev.seq !== expected) {
          throw new ReplicationError(
            "protocol",
            `CHECKPOINT_STATE ${CHECKPOINT_STATE_NAMES.get(ev.id) ?? ev.id} ${ev.seq} in state ${this.#state} (expected NEW ${expected})`,
            { seq: ev.seq },
          );
        }
        this.#newAt = performance.now();
        clock = stepClock<SecondaryStep>(this.#newAt);
        // The stop first (the worker wakes while this thread goes on), the mirror paused in the
        // same turn. The primary sends A's pages right after NEW: they are read and buffered
        // while the SVM stops and its lists go out (buffering never touches the replica), so
        // that only the checkpoint's last write is left to read once the lists are sent.
        const stopped = domain.state === "running" ? domain.suspend() : undefined;
        this.#stopping = stopped;
        this.#setState("suspended");
        this.#sproxy!.pauseForCheckpoint();
        reading = target.next();
        reading.catch(() => {});
        // An SVM idle in a host call has stopped already (it unwinds as it wakes, before running
        // any code of its own): B is final now and the lists go out at once, while it unwinds
        // (the apply waits for that). Otherwise wait for the unwind, then harvest.
        let b = stopped === undefined ? undefined : domain.harvestStopped();
        let fsB: FsBlockRef[] = [];
        if (b === undefined) {
          await stopped;
          this.#stopping = undefined;
          this.#checkFinished();
          this.#checkStopped(ev.seq);
          b = domain.harvestDirty();
          fsB = await domain.harvestFsDirty();
        }
        clock.mark("suspended");
        clock.mark("harvested");
        this.#bHarvested = b.length;
        // SVM_SUSPENDED and the lists in one write.
        if (settings.strategy === "back-channel") await target.back.suspended(ev.seq, b, fsB);
        else await target.back.suspended(ev.seq);
        clock.mark("listSent");
        this.#pendingB = b;
        this.#setState("buffering");
        continue;
      }
      // A whole checkpoint is buffered.
      const seq = ev.summary.seq;
      if (this.#state !== "buffering" || seq !== expected) {
        target.discard();
        throw new ReplicationError(
          "protocol",
          `checkpoint ${seq} complete in state ${this.#state} (expected checkpoint ${expected} after NEW)`,
          { seq },
        );
      }
      clock.mark("endReceived");
      if (this.#stopping !== undefined) {
        await this.#stopping;
        this.#stopping = undefined;
        this.#checkFinished();
        this.#checkStopped(seq);
      }
      this.#setState("applying");
      const t0 = performance.now();
      let fromCache = 0;
      // The cache's pages go back only once the domain accepted the checkpoint's context and
      // host state: a refused checkpoint leaves the replica exactly as it was.
      await target.apply(() => {
        if (settings.strategy === "cache") fromCache = this.#restoreFromCache(this.#pendingB);
        domain.takeWritten();
      });
      this.#applied = seq;
      const applyMs = performance.now() - t0;
      clock.mark("applied");
      await this.#afterApply(seq, false, clock.mark);
      this.#count++;
      if (
        await this.#recorded({
          seq: Number(seq),
          pauseMs: clock.steps.resumed ?? performance.now() - this.#newAt,
          pages: ev.summary.pages,
          b: this.#bHarvested,
          fromCache,
          applyMs,
          steps: clock.steps,
          startedAt: performance.timeOrigin + this.#newAt,
        })
      )
        return;
    }
  }

  async #remusLoop(): Promise<void> {
    const target = this.#target!;
    for (;;) {
      const ev = await target.next();
      this.#checkFinished();
      if (ev.kind === "end") return;
      if (ev.kind === "state") {
        throw new ReplicationError(
          "protocol",
          `CHECKPOINT_STATE ${CHECKPOINT_STATE_NAMES.get(ev.id) ?? ev.id} in a Remus stream`,
          {
            seq: ev.seq,
          },
        );
      }
      const seq = ev.summary.seq;
      if (seq !== this.#applied + 1n) {
        target.discard();
        throw new ReplicationError("protocol", `checkpoint ${seq} does not follow ${this.#applied}`, { seq });
      }
      const t0 = performance.now();
      this.#setState("applying");
      await target.apply();
      this.#applied = seq;
      const applyMs = performance.now() - t0;
      await this.#afterApply(seq, false);
      this.#count++;
      if (
        await this.#recorded({
          seq: Number(seq),
          pauseMs: performance.now() - t0,
          pages: ev.summary.pages,
          b: 0,
          fromCache: 0,
          applyMs,
        })
      )
        return;
    }
  }

  /** Keep a checkpoint's record; true when a takeover waited for it (the loop must end). */
  async #recorded(rec: SecondaryCheckpointRecord): Promise<boolean> {
    this.#records.push(rec);
    this.emit("checkpoint", rec);
    if (!this.#takeoverWanted) return false;
    await this.#takeover();
    return true;
  }

  // ─────────────────────────────── strategy cache ───────────────────────────────

  /** Copy into the cache what the last apply wrote (the seed: every page). */
  #updateCache(seed: boolean): void {
    const domain = this.#domain!;
    const pages = domain.pageCount();
    const size = pages * PAGE_SIZE;
    if (this.#cache === undefined || this.#cache.length !== size) {
      const next = new Uint8Array(size);
      if (this.#cache !== undefined) next.set(this.#cache.subarray(0, Math.min(size, this.#cache.length)));
      this.#cache = next;
    }
    const cache = this.#cache;
    const written = domain.takeWritten();
    if (seed) {
      for (let pfn = 0; pfn < pages; pfn++)
        domain.readPage(pfn, cache.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE));
      return;
    }
    for (const pfn of written) {
      if (pfn < pages) domain.readPage(pfn, cache.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE));
    }
  }

  /** Put back the last checkpoint's contents of the pages the SVM dirtied (B). Returns how many. */
  #restoreFromCache(b: Uint32Array): number {
    const domain = this.#domain!;
    const cache = this.#cache!;
    const pages = domain.pageCount();
    const zero = new Uint8Array(PAGE_SIZE);
    let n = 0;
    for (const pfn of b) {
      if (pfn >= pages) continue;
      const off = pfn * PAGE_SIZE;
      // A page past the cache is memory grown since the checkpoint: it was zero then.
      domain.writePage(pfn, off + PAGE_SIZE <= cache.length ? cache.subarray(off, off + PAGE_SIZE) : zero);
      n++;
    }
    return n;
  }

  // ─────────────────────────────── endings ───────────────────────────────

  /**
   * Take over now, as on a heartbeat loss (manual `colo failover`): a checkpoint being applied
   * finishes first, a partial one is discarded. Resolves once the decision is carried out; the
   * outcome of serve() says which (a replica never seeded stands down instead).
   */
  async requestTakeover(): Promise<void> {
    await this.#takeover();
  }

  async #onError(e: unknown): Promise<void> {
    if (this.#finished) return;
    const code = codeOf(e);
    if (e instanceof ReplicationError && e.code !== "link") {
      this.#standDown(e);
      return;
    }
    if (
      e instanceof ReplicationError ||
      (code !== undefined && LINK_CODES.has(code)) ||
      this.#domain === undefined
    ) {
      if (this.#domain === undefined) {
        // Nothing was ever applied: there is no replica to take over with.
        this.#standDown(
          new ReplicationError(
            code === "truncated" || code === "io" ? "link" : "protocol",
            "the seed failed",
            { cause: e },
          ),
        );
        return;
      }
      // The stream broke: the partial checkpoint is already discarded; the heartbeat decides.
      this.#log(
        "warn",
        `replication stream broken: ${describeError(e)}; waiting for the heartbeat's verdict`,
      );
      this.#target?.discard(e);
      return;
    }
    this.#standDown(
      new ReplicationError("protocol", "protocol error on the replication stream", { cause: e }),
    );
  }

  /** Stand down (idempotent): drop everything, destroy the replica, never serve. */
  #standDown(reason: ReplicationError): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#reason = reason;
    this.#log(reason.code === "protocol" ? "error" : "warn", `standing down: ${describeError(reason)}`, {
      code: reason.code,
    });
    this.#target?.discard(reason);
    this.#sproxy?.close();
    this.#links?.close(true);
    void this.#domain?.destroy().catch(() => {});
    this.#setState("stood-down");
    this.emit("stood-down", reason);
    this.#outcome?.({ kind: "stood-down", reason });
  }

  /**
   * Planned switchover (CONTROL.switchoverTakeOver from the primary): between checkpoints, with
   * the last one applied the primary's own final one, take over as on a failover (no fencing
   * hook: the primary has stopped serving and asks for it), tell the primary where this side now
   * serves, then say goodbye. Refused (logged; the primary times out) in any other state.
   */
  async #switchoverTakeOver(body: Record<string, unknown>): Promise<void> {
    const listen = typeof body.listen === "string" ? body.listen : undefined;
    if (this.#state !== "running" || body.seq !== Number(this.#applied) || listen === undefined) {
      this.#log(
        "error",
        `switchover refused: asked after checkpoint ${String(body.seq)} in state ${this.#state} (applied ${this.#applied})`,
      );
      return;
    }
    this.#log(
      "info",
      `switchover: taking over at checkpoint ${this.#applied}; the old primary waits on ${listen}`,
    );
    await this.#takeover({ listen });
  }

  /**
   * Take over (idempotent): the primary is gone. A checkpoint being applied finishes first; a
   * partial one is discarded. The replica resumes from its own state and serves unprotected.
   */
  async #takeover(switchover?: { readonly listen: string }): Promise<void> {
    if (this.#finished) return;
    if (this.#state === "applying") {
      this.#takeoverWanted = true;
      return;
    }
    const domain = this.#domain;
    if (domain === undefined || this.#state === "seeding") {
      this.#standDown(new ReplicationError("peer-lost", "the primary was lost before the seed completed"));
      return;
    }
    this.#finished = true;
    this.#reason =
      switchover === undefined
        ? new ReplicationError("peer-lost", "the primary was lost")
        : new ReplicationError("switchover", "planned switchover: this side is the primary");
    const links = this.#links;
    // A switchover keeps the links until the primary hears where this side serves.
    if (switchover === undefined) links?.close(false);
    this.#target?.discard(this.#reason);
    try {
      // A stop asked for by NEW may still be unwinding the replica: resume it once it has.
      await this.#stopping?.catch(() => {});
      if (domain.state === "suspended" || domain.state === "created") await domain.resume();
      let proxy: PrimaryProxy;
      if (this.#sproxy !== undefined) {
        proxy = this.#sproxy.takeover(this.#takeoverOptions);
      } else {
        // Remus: the replica never ran; its clients are those of its last checkpoint.
        const { PrimaryProxy } = await import("../proxy/primary.ts");
        const s = hostSummary(domain.lastHostState!);
        const port = domain.inner as unknown as GuestPort;
        for (const id of s.inputs.keys()) port.input({ kind: "eof", conn: id });
        proxy = new PrimaryProxy({
          ...this.#takeoverOptions,
          port,
          mode: "unprotected",
          seq: Number(this.#applied),
          firstConnId: s.maxConn + 1,
          stdioOffsets: { stdout: s.stdout, stderr: s.stderr },
        });
      }
      const at = await proxy.listen();
      if (switchover !== undefined) {
        const host = at.address.includes(":") ? `[${at.address}]` : at.address;
        links?.sendControl(CONTROL.switchoverServing, { service: `${host}:${at.port}` });
        links?.close(true);
      }
      this.#setState("took-over");
      this.#log("warn", `TOOK OVER at checkpoint ${this.#applied}: serving unprotected`);
      this.emit("took-over", proxy);
      this.#outcome?.({ kind: "took-over", proxy, domain: domain.inner, switchover });
    } catch (e) {
      this.#finished = false;
      this.#standDown(new ReplicationError("domain", "taking over failed", { cause: e }));
    }
  }
}
