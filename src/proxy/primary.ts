/**
 * The primary's proxy: the service address of a replicated guest (architecture layer 5).
 *
 * Design. Clients connect to the proxy, never to a replica. Each client gets a connection id
 * (u32, never reused within one guest's life). Every client event (open, input chunk, eof) is
 * fed to the local replica's GuestPort (the PVM) and, in `colo` mode, sent unchanged, in the
 * same order and the same chunks, on the mirror link to the secondary's proxy, which feeds the
 * SVM. The SVM's outputs come back on the link. Per output stream (each connection, stdout,
 * stderr) a StreamCompare releases the common prefix of the two byte streams as soon as both
 * replicas produced it and reports the first difference (see compare.ts). Divergences and a
 * held-output cap are reported upward as events; the controller answers with a checkpoint:
 * `pauseForCheckpoint()` … `checkpointDone(seq)`, after which the PVM's output is the truth.
 *
 * Bounds (every queue; defaults in DEFAULTS):
 * - client input buffered in the proxy (checkpoint pause, full mirror link): `inputBufferCap`
 *   bytes, plus at most one socket read (64 KiB) per connection that arrives before its pause
 *   takes effect; above it every client socket is paused;
 * - the PVM's host queue per connection: `portQueueBound`; above it that client is paused until
 *   the port says "drained";
 * - the mirror link: its own bound; a full link pauses every client until it drains;
 * - held PVM output plus SVM output waiting for the PVM's: `heldCap`; reaching it emits
 *   "checkpoint-needed" (reason "held-cap") once per checkpoint interval and pauses client input
 *   until a checkpoint (or release) brings it down. Output a guest produces with no input at all
 *   is bounded only by the controller taking that checkpoint;
 * - a client's socket write buffer: above `clientWriteBound` that client's input is paused until
 *   the socket drains (a slow reader cannot make the proxy buffer without limit);
 * - SVM messages for a checkpoint not yet done (they can overtake SVM_READY): `futureCap` bytes,
 *   beyond which it is a protocol error;
 * - Remus checkpoints awaiting acknowledgement: `maxUnacked`, beyond which checkpointDone throws.
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import type { GuestEnd } from "../guest/domain.ts";
import type { ConnId, GuestPort, OutputStream, PortInput, PortOutput } from "../guest/port.ts";
import { type CompareMode, type Mismatch, type Step, StreamCompare, type StreamMark } from "./compare.ts";
import { ProxyError } from "./errors.ts";
import { type MirrorInput, type MirrorOutput, messageWeight, type PrimaryMirrorEnd } from "./link.ts";
import { DIVERGENCE_KINDS, type DivergenceKind, type PrimaryProxyMetrics } from "./metrics.ts";

export type ProxyMode = "colo" | "remus" | "unprotected";

/** A divergence, reported upward with event "divergence". */
export interface Divergence {
  readonly kind: DivergenceKind;
  /** Checkpoint number the divergence happened after. */
  readonly seq: number;
  /** The output stream, when the divergence is tied to one. */
  readonly stream: OutputStream | undefined;
  /** Output offset on that stream of the first disagreement, when there is one. */
  readonly offset: number | undefined;
  readonly detail: string;
}

/** Event "checkpoint-needed": the proxy wants a checkpoint soon. */
export interface CheckpointNeeded {
  readonly reason: "held-cap";
  /** Held PVM bytes plus SVM bytes waiting, at the moment of the event. */
  readonly heldBytes: number;
}

export interface PrimaryProxyEvents {
  divergence: [Divergence];
  "checkpoint-needed": [CheckpointNeeded];
  /** The mirror link broke the protocol (or a PVM output offset jumped): go unprotected. */
  "protocol-error": [ProxyError];
  /** A replica's end became known (replicaEnded(), or the SVM's mirror "end"). */
  "replica-ended": [replica: "pvm" | "svm", end: GuestEnd];
}

export interface PrimaryProxyOptions {
  /** The PVM's port. */
  readonly port: GuestPort;
  /** Mirror link toward the SVM; required in `colo` mode. */
  readonly link?: PrimaryMirrorEnd;
  /** Default "colo" when a link is given, else "unprotected". */
  readonly mode?: ProxyMode;
  /** A server to accept clients on (create it with `allowHalfOpen: true`); else one is created. */
  readonly server?: net.Server;
  /** Where a created server listens: default 127.0.0.1, port 0 (any). */
  readonly host?: string;
  readonly listenPort?: number;
  /** Checkpoint number the proxy starts after (the seed's); default 0. */
  readonly seq?: number;
  /** First connection id to assign (after a takeover: past every id the guest has seen). */
  readonly firstConnId?: number;
  /** Output offsets of stdout and stderr at start (after a takeover: the guest's current ones). */
  readonly stdioOffsets?: { readonly stdout: number; readonly stderr: number };
  /** Bytes; see the design header. */
  readonly heldCap?: number;
  readonly inputBufferCap?: number;
  readonly portQueueBound?: number;
  readonly clientWriteBound?: number;
  readonly futureCap?: number;
  readonly maxUnacked?: number;
  /** Milliseconds the SVM may stay silent on a stream where the PVM has output waiting. 0 = never. */
  readonly svmTimeoutMs?: number;
  /** Where released stdout/stderr bytes go; default process.stdout / process.stderr. */
  readonly stdio?: (stream: "stdout" | "stderr", bytes: Uint8Array) => void;
}

export const DEFAULTS = {
  heldCap: 4 << 20,
  inputBufferCap: 1 << 20,
  portQueueBound: 256 << 10,
  clientWriteBound: 1 << 20,
  futureCap: 4 << 20,
  maxUnacked: 1024,
  svmTimeoutMs: 2000,
} as const;

const U32_MAX = 0xffff_ffff;

interface Conn {
  readonly id: ConnId;
  readonly cmp: StreamCompare;
  socket: net.Socket | undefined;
  /** Next input offset to assign. */
  inOff: number;
  eofQueued: boolean;
  /** The guest closed the connection and the close was released. */
  closed: boolean;
  /** Client gone (reset or closed): released output is discarded. */
  dropOutput: boolean;
  portBlocked: boolean;
  clientBlocked: boolean;
  reading: boolean;
  /** When (performance.now()) the PVM started waiting for the SVM on this stream; -1: not waiting. */
  waitSince: number;
}

interface Stdio {
  readonly name: "stdout" | "stderr";
  readonly cmp: StreamCompare;
  /** When (performance.now()) the PVM started waiting for the SVM on this stream; -1: not waiting. */
  waitSince: number;
}

type Target = Conn | Stdio;

interface Pending {
  readonly conn: Conn;
  readonly event: PortInput;
}

function compareModeOf(mode: ProxyMode): CompareMode {
  return mode === "colo" ? "colo" : mode === "remus" ? "hold" : "pass";
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new ProxyError("invalid-argument", `${name} must be a non-negative number`, { details: { value } });
  }
  return value;
}

/** What the PVM produced after a checkpoint cut, in order (see PrimaryProxy.checkpointCut). */
type PvmLater =
  | Exclude<PortOutput, { kind: "drained" } | { kind: "stdin-drained" }>
  | {
      readonly kind: "end";
      readonly end: GuestEnd;
    };

export class PrimaryProxy extends EventEmitter<PrimaryProxyEvents> {
  readonly #port: GuestPort;
  #link: PrimaryMirrorEnd | undefined;
  #mode: ProxyMode;
  readonly #server: net.Server;
  readonly #ownServer: boolean;
  readonly #host: string;
  readonly #listenPort: number;
  readonly #heldCap: number;
  readonly #inputBufferCap: number;
  readonly #portQueueBound: number;
  readonly #clientWriteBound: number;
  readonly #futureCap: number;
  readonly #maxUnacked: number;
  readonly #svmTimeoutMs: number;
  readonly #stdioSink: (stream: "stdout" | "stderr", bytes: Uint8Array) => void;

  #seq: number;
  #state: "running" | "paused" | "closed" = "running";
  /**
   * Between checkpointCut() and checkpointDone() (or a switch to unprotected): the PVM runs again
   * ahead of the checkpoint's end, and what it produces waits here, in order, to be compared
   * after the resync (see checkpointCut).
   */
  #cut: { later: PvmLater[]; covered: PvmLater[]; bytes: number } | undefined;
  #nextId: number;
  readonly #conns = new Map<ConnId, Conn>();
  readonly #stdout: Stdio;
  readonly #stderr: Stdio;
  #pending: Pending[] = [];
  #pendingHead = 0;
  #pendingBytes = 0;
  #linkBlocked = false;
  #globalPaused = false;
  #heldTotal = 0;
  #svmAheadTotal = 0;
  #capSignalled = false;
  #future: MirrorOutput[] = [];
  #futureBytes = 0;
  #unacked: { seq: number; marks: Map<Target, StreamMark> }[] = [];
  #ended: { pvm: GuestEnd | undefined; svm: GuestEnd | undefined } = { pvm: undefined, svm: undefined };
  #endTimer: NodeJS.Timeout | undefined;
  /** The SVM-silence sweep (see #armTimer). */
  #sweepTimer: NodeJS.Timeout | undefined;
  #endReported = false;
  readonly #unsubscribe: (() => void)[] = [];
  #linkUnsubscribe: (() => void)[] = [];
  readonly #onConnection = (socket: net.Socket) => this.#accept(socket);

  // metrics
  #accepted = 0;
  #bytesIn = 0;
  #bytesMirrored = 0;
  #bytesReleased = 0;
  #bytesDiscarded = 0;
  #svmBytes = 0;
  #svmStaleBytes = 0;
  readonly #divergences: Record<DivergenceKind, number> = Object.fromEntries(
    DIVERGENCE_KINDS.map((k) => [k, 0]),
  ) as Record<DivergenceKind, number>;
  #checkpointsNeeded = 0;
  #inputPauses = 0;
  #compareMs = 0;

  constructor(options: PrimaryProxyOptions) {
    super();
    this.#port = options.port;
    this.#mode = options.mode ?? (options.link === undefined ? "unprotected" : "colo");
    if (this.#mode === "colo" && options.link === undefined) {
      throw new ProxyError("invalid-argument", "colo mode needs a mirror link");
    }
    this.#heldCap = positive("heldCap", options.heldCap ?? DEFAULTS.heldCap);
    this.#inputBufferCap = positive("inputBufferCap", options.inputBufferCap ?? DEFAULTS.inputBufferCap);
    this.#portQueueBound = positive("portQueueBound", options.portQueueBound ?? DEFAULTS.portQueueBound);
    this.#clientWriteBound = positive(
      "clientWriteBound",
      options.clientWriteBound ?? DEFAULTS.clientWriteBound,
    );
    this.#futureCap = positive("futureCap", options.futureCap ?? DEFAULTS.futureCap);
    this.#maxUnacked = positive("maxUnacked", options.maxUnacked ?? DEFAULTS.maxUnacked);
    this.#svmTimeoutMs = positive("svmTimeoutMs", options.svmTimeoutMs ?? DEFAULTS.svmTimeoutMs);
    this.#seq = options.seq ?? 0;
    this.#nextId = options.firstConnId ?? 0;
    if (!Number.isInteger(this.#nextId) || this.#nextId < 0 || this.#nextId > U32_MAX + 1) {
      throw new ProxyError("invalid-argument", "firstConnId must be a u32", {
        details: { firstConnId: this.#nextId },
      });
    }
    this.#stdioSink =
      options.stdio ?? ((s, b) => (s === "stdout" ? process.stdout : process.stderr).write(b));
    const cm = compareModeOf(this.#mode);
    this.#stdout = {
      name: "stdout",
      cmp: new StreamCompare(cm, options.stdioOffsets?.stdout ?? 0),
      waitSince: -1,
    };
    this.#stderr = {
      name: "stderr",
      cmp: new StreamCompare(cm, options.stdioOffsets?.stderr ?? 0),
      waitSince: -1,
    };
    this.#host = options.host ?? "127.0.0.1";
    this.#listenPort = options.listenPort ?? 0;
    this.#ownServer = options.server === undefined;
    this.#server = options.server ?? net.createServer({ allowHalfOpen: true, noDelay: true });
    this.#server.on("connection", this.#onConnection);
    this.#unsubscribe.push(this.#port.onOutput((e) => this.#onPvm(e)));
    if (options.link !== undefined) this.#attachLink(options.link);
  }

  /** Start accepting clients (listens when the server is not listening yet). Resolves to its address. */
  async listen(): Promise<net.AddressInfo> {
    if (!this.#server.listening) {
      await new Promise<void>((resolve, reject) => {
        this.#server.once("error", reject);
        this.#server.listen(this.#listenPort, this.#host, () => {
          this.#server.off("error", reject);
          resolve();
        });
      });
    }
    return this.#server.address() as net.AddressInfo;
  }

  get mode(): ProxyMode {
    return this.#mode;
  }
  get seq(): number {
    return this.#seq;
  }
  /** The next connection id the proxy would assign. */
  get nextConnId(): number {
    return this.#nextId;
  }

  // ───────────────────────────── controller interface ─────────────────────────────

  /**
   * A checkpoint begins: stop feeding new input to both replicas (client input is buffered up
   * to `inputBufferCap`, then clients are paused) and stop the SVM-silence timers (both
   * replicas are about to stop). Call before suspending the PVM.
   */
  pauseForCheckpoint(): void {
    this.#assertOpen();
    if (this.#state === "paused") return;
    this.#state = "paused";
    for (const t of this.#targets()) this.#clearTimer(t);
    this.#refreshGlobal();
  }

  /**
   * Checkpoint `seq` is complete (colo: the SVM is an exact copy; remus: the PVM's state is
   * captured). Call before resuming the PVM: its output so far is what this checkpoint covers.
   * colo: release all held PVM output, drop the SVM's unmatched output, compare afresh from the
   * PVM's current offsets. remus: record each stream's offsets for `releaseUpTo(seq)`.
   * Then resume feeding input.
   */
  checkpointDone(seq: number): void {
    this.#assertOpen();
    if (!Number.isInteger(seq) || seq <= this.#seq) {
      throw new ProxyError("invalid-argument", `checkpoint ${seq} does not follow ${this.#seq}`, {
        details: { seq, current: this.#seq },
      });
    }
    if (this.#mode === "remus") {
      if (this.#unacked.length >= this.#maxUnacked) {
        throw new ProxyError("overflow", `more than ${this.#maxUnacked} unacknowledged checkpoints`, {
          details: { seq },
        });
      }
      const marks = new Map<Target, StreamMark>();
      for (const t of this.#targets()) marks.set(t, t.cmp.snapshot());
      this.#unacked.push({ seq, marks });
    }
    const { later, covered } = this.#takeCut();
    this.#seq = seq;
    if (this.#mode === "colo") {
      for (const t of this.#targets()) {
        this.#clearTimer(t);
        this.#measured(t, () => ({ released: t.cmp.resync(), mismatch: undefined }));
      }
      for (const e of covered) this.#cover(e);
      this.#ended.svm = this.#ended.pvm;
      this.#clearEndTimer();
      this.#endReported = false;
    }
    this.#capSignalled = false;
    this.#state = "running";
    if (this.#mode === "colo") this.#replayFuture();
    this.#replayLater(later);
    // A PVM that ended after the cut: no new input for either replica (PrimaryController.pvmEnded
    // asked for the pause while the cut was open).
    if (later.some((e) => e.kind === "end")) this.#state = "paused";
    else this.#pump();
    this.#refreshGlobal();
  }

  /**
   * colo: the PVM is about to run again before checkpoint `seq` is done (the primary resumes it
   * once every byte of the checkpoint is copied out of its memory, without waiting for
   * SVM_READY). Call between pauseForCheckpoint() and checkpointDone(), right before the resume.
   * Client input stays paused; the PVM's output and its end from now on belong after the
   * checkpoint: they wait, in order, until checkpointDone() has released the held output and
   * reset the comparison to the PVM's offsets at this cut, and are then compared with the SVM's
   * (which resumes from the same state), as if they had come after it. A switch to
   * `unprotected` (the secondary lost) releases them. They are held like any output; what a PVM
   * produces with no input at all in that window is bounded by the window (the primary waits at
   * most its answer timeout for SVM_READY).
   */
  checkpointCut(): void {
    this.#assertOpen();
    if (this.#mode !== "colo") return;
    if (this.#state !== "paused") {
      throw new ProxyError(
        "bad-state",
        "checkpointCut() outside a checkpoint (call pauseForCheckpoint first)",
      );
    }
    this.#cut ??= { later: [], covered: [], bytes: 0 };
  }

  /**
   * colo: the checkpoint is being taken again at a later stop of the PVM (its first instant
   * lacked pages the secondary needs), so what the PVM produced since checkpointCut() belongs
   * before it now: checkpointDone() releases it like the output held before the cut, unmatched
   * by the SVM (which takes the PVM's state), and compares afresh past it. Call with the PVM
   * stopped again, then checkpointCut() again before it resumes. A PVM that ended after the cut
   * cannot be stopped again: refused.
   */
  checkpointCover(): void {
    this.#assertOpen();
    if (this.#mode !== "colo") return;
    const cut = this.#cut;
    if (cut === undefined) throw new ProxyError("bad-state", "checkpointCover() without checkpointCut()");
    if (cut.later.some((e) => e.kind === "end"))
      throw new ProxyError("bad-state", "the PVM ended after the cut: no later stop can cover it");
    cut.covered.push(...cut.later);
    cut.later = [];
  }

  #takeCut(): { later: PvmLater[]; covered: PvmLater[] } {
    const cut = this.#cut;
    if (cut === undefined) return { later: [], covered: [] };
    this.#heldTotal -= cut.bytes;
    this.#cut = undefined;
    return { later: cut.later, covered: cut.covered };
  }

  /** One PVM event a checkpoint covers (checkpointCover), right after the resync. */
  #cover(e: PvmLater): void {
    if (this.#state === "closed" || e.kind === "end") return;
    if (e.kind === "data") {
      const t = this.#targetOf(e.stream);
      if (t === undefined) return;
      if (e.offset !== t.cmp.pvmEnd) {
        this.#offsetError(t, e);
        return;
      }
      this.#measured(t, () => ({ released: t.cmp.cover(e.bytes), mismatch: undefined }));
      return;
    }
    const conn = this.#conns.get(e.conn);
    if (conn === undefined) return;
    this.#measured(conn, () => {
      conn.cmp.coverMarker(e.kind);
      return { released: [], mismatch: undefined };
    });
  }

  #replayLater(later: readonly PvmLater[]): void {
    for (const e of later) {
      if (this.#state === "closed") return;
      if (e.kind === "end") this.replicaEnded("pvm", e.end);
      else this.#onPvm(e);
    }
  }

  /** Remus: checkpoint `seq` (and every earlier one) is acknowledged; release what it covers. */
  releaseUpTo(seq: number): void {
    this.#assertOpen();
    if (this.#mode !== "remus") return;
    let mark: { seq: number; marks: Map<Target, StreamMark> } | undefined;
    while (this.#unacked.length > 0 && this.#unacked[0]!.seq <= seq) mark = this.#unacked.shift();
    if (mark === undefined) return;
    for (const [t, m] of mark.marks) {
      if (t.cmp.mode !== "hold") continue;
      this.#measured(t, () => ({ released: t.cmp.releaseTo(m), mismatch: undefined }));
    }
    this.#capSignalled = false;
    this.#refreshGlobal();
  }

  /**
   * Switch mode. To `unprotected` (the secondary is lost): release everything held, stop
   * mirroring, resume input. To `colo` (re-protection; give the new link) or `remus`: call at a
   * checkpoint (between pauseForCheckpoint and checkpointDone); comparison starts afresh.
   */
  setMode(mode: ProxyMode, link?: PrimaryMirrorEnd): void {
    this.#assertOpen();
    if (mode === "colo" && link === undefined && this.#link === undefined) {
      throw new ProxyError("invalid-argument", "colo mode needs a mirror link");
    }
    if (link !== undefined) this.#attachLink(link);
    const cut = this.#takeCut();
    const later = [...cut.covered, ...cut.later];
    this.#mode = mode;
    const cm = compareModeOf(mode);
    for (const t of this.#targets()) {
      this.#clearTimer(t);
      this.#measured(t, () => ({ released: t.cmp.setMode(cm), mismatch: undefined }));
    }
    this.#unacked = [];
    this.#future = [];
    this.#futureBytes = 0;
    this.#clearEndTimer();
    this.#capSignalled = false;
    if (mode === "unprotected") {
      this.#detachLink();
      this.#state = "running";
      // What the PVM produced after a cut is simply its output now.
      this.#replayLater(later);
      this.#pump();
    } else this.#replayLater(later); // after the comparison's fresh start
    this.#refreshGlobal();
  }

  /**
   * The controller saw a replica end (trap or exit). In colo mode, an end in one replica only
   * (the other does not end the same way within `svmTimeoutMs`) is a divergence "end-mismatch".
   */
  replicaEnded(replica: "pvm" | "svm", end: GuestEnd): void {
    this.#assertOpen();
    if (this.#mode !== "colo") return;
    if (replica === "pvm" && this.#cut !== undefined) {
      this.#cut.later.push({ kind: "end", end }); // after the checkpoint (checkpointCut)
      return;
    }
    this.#ended[replica] = end;
    this.emit("replica-ended", replica, end);
    const { pvm, svm } = this.#ended;
    if (pvm !== undefined && svm !== undefined) {
      this.#clearEndTimer();
      const same =
        pvm.kind === svm.kind && (pvm.kind !== "exit" || svm.kind !== "exit" || pvm.code === svm.code);
      if (!same) this.#reportEnd(`PVM ${endText(pvm)}, SVM ${endText(svm)}`);
      return;
    }
    if (this.#endTimer === undefined && this.#svmTimeoutMs > 0) {
      this.#endTimer = setTimeout(() => {
        this.#endTimer = undefined;
        const p = this.#ended.pvm;
        const s = this.#ended.svm;
        if ((p === undefined) !== (s === undefined)) {
          this.#reportEnd(
            `PVM ${p === undefined ? "running" : endText(p)}, SVM ${s === undefined ? "running" : endText(s)}`,
          );
        }
      }, this.#svmTimeoutMs);
      this.#endTimer.unref();
    }
  }

  /**
   * The replica's end since the last checkpoint, once known; waits up to `ms` for it (colo mode:
   * the SVM's mirror "end"). Resolves undefined if none came in time or the proxy closed.
   */
  whenReplicaEnded(replica: "pvm" | "svm", ms: number): Promise<GuestEnd | undefined> {
    const known = this.#ended[replica];
    if (known !== undefined || this.#state === "closed" || this.#mode !== "colo")
      return Promise.resolve(known);
    return new Promise((resolve) => {
      const done = (end: GuestEnd | undefined): void => {
        clearTimeout(timer);
        this.off("replica-ended", on);
        resolve(end);
      };
      const on = (r: "pvm" | "svm", end: GuestEnd): void => {
        if (r === replica) done(end);
      };
      const timer = setTimeout(() => done(undefined), ms);
      this.on("replica-ended", on);
    });
  }

  /** Counters for the controller to export. */
  metrics(): PrimaryProxyMetrics {
    return {
      mode: this.#mode,
      seq: this.#seq,
      connectionsAccepted: this.#accepted,
      connectionsOpen: this.#conns.size,
      bytesIn: this.#bytesIn,
      bytesMirrored: this.#bytesMirrored,
      bytesReleased: this.#bytesReleased,
      bytesDiscarded: this.#bytesDiscarded,
      heldBytes: this.#heldTotal,
      svmAheadBytes: this.#svmAheadTotal,
      pendingInputBytes: this.#pendingBytes,
      svmBytes: this.#svmBytes,
      svmStaleBytes: this.#svmStaleBytes,
      divergences: { ...this.#divergences },
      checkpointsNeeded: this.#checkpointsNeeded,
      inputPauses: this.#inputPauses,
      compareSeconds: this.#compareMs / 1e3,
    };
  }

  /** Stop accepting, reset every client, detach from the port and the link. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#takeCut();
    this.#server.off("connection", this.#onConnection);
    for (const t of this.#targets()) this.#clearTimer(t);
    this.#clearEndTimer();
    if (this.#sweepTimer !== undefined) clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    for (const c of this.#conns.values()) c.socket?.destroy();
    this.#conns.clear();
    for (const u of this.#unsubscribe) u();
    this.#detachLink();
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#ownServer && this.#server.listening) {
      await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    }
  }

  // ───────────────────────────── clients and input ─────────────────────────────

  #accept(socket: net.Socket): void {
    if (this.#state === "closed" || this.#nextId > U32_MAX) {
      socket.destroy();
      return;
    }
    const id = this.#nextId++;
    this.#accepted++;
    const conn: Conn = {
      id,
      cmp: new StreamCompare(compareModeOf(this.#mode)),
      socket,
      inOff: 0,
      eofQueued: false,
      closed: false,
      dropOutput: false,
      portBlocked: false,
      clientBlocked: false,
      reading: true,
      waitSince: -1,
    };
    this.#conns.set(id, conn);
    socket.setNoDelay(true);
    this.#enqueue(conn, { kind: "open", conn: id });
    socket.on("data", (chunk: Buffer) => {
      if (conn.closed || conn.eofQueued) return;
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const event: PortInput = { kind: "data", conn: id, offset: conn.inOff, bytes };
      conn.inOff += bytes.byteLength;
      this.#enqueue(conn, event);
    });
    socket.on("end", () => this.#clientEof(conn));
    socket.on("drain", () => {
      conn.clientBlocked = false;
      this.#updateFlow(conn);
    });
    socket.on("error", () => {
      // A reset: the client will never read what follows.
      conn.dropOutput = true;
    });
    socket.on("close", () => {
      conn.dropOutput = true;
      conn.socket = undefined;
      this.#clientEof(conn);
      if (conn.closed) this.#retire(conn);
    });
    this.#updateFlow(conn);
  }

  #clientEof(conn: Conn): void {
    if (conn.eofQueued || conn.closed || this.#state === "closed") return;
    conn.eofQueued = true;
    this.#enqueue(conn, { kind: "eof", conn: conn.id });
  }

  #enqueue(conn: Conn, event: PortInput): void {
    if (this.#pendingHead === this.#pending.length && this.#canFeed()) {
      this.#feed(conn, event);
      return;
    }
    this.#pending.push({ conn, event });
    if (event.kind === "data") this.#pendingBytes += event.bytes.byteLength;
    this.#refreshGlobal();
  }

  #canFeed(): boolean {
    return this.#state === "running" && !this.#linkBlocked;
  }

  #pump(): void {
    while (this.#pendingHead < this.#pending.length && this.#canFeed()) {
      const p = this.#pending[this.#pendingHead]!;
      this.#pendingHead++;
      if (p.event.kind === "data") this.#pendingBytes -= p.event.bytes.byteLength;
      this.#feed(p.conn, p.event);
    }
    if (this.#pendingHead === this.#pending.length) {
      this.#pending = [];
      this.#pendingHead = 0;
    } else if (this.#pendingHead > 1024 && this.#pendingHead * 2 > this.#pending.length) {
      this.#pending = this.#pending.slice(this.#pendingHead);
      this.#pendingHead = 0;
    }
    this.#refreshGlobal();
  }

  /** Feed one event to the PVM and mirror it, same chunk, same order. */
  #feed(conn: Conn, event: PortInput): void {
    if (this.#state === "closed") return;
    const queued = this.#port.input(event);
    if (event.kind === "data") {
      this.#bytesIn += event.bytes.byteLength;
      if (queued > this.#portQueueBound && !conn.portBlocked) {
        conn.portBlocked = true;
        this.#updateFlow(conn);
      }
    }
    if (this.#mode === "colo" && this.#link !== undefined) {
      // After an eof no more data is queued for the connection, so inOff is the eof's offset.
      const message: MirrorInput =
        event.kind === "eof"
          ? { ...event, seq: this.#seq, offset: conn.inOff }
          : { ...event, seq: this.#seq };
      const ok = this.#link.send(message);
      if (event.kind === "data") this.#bytesMirrored += event.bytes.byteLength;
      if (!ok && !this.#linkBlocked) {
        this.#linkBlocked = true;
        this.#refreshGlobal();
      }
    }
  }

  #refreshGlobal(): void {
    const paused =
      this.#linkBlocked ||
      this.#pendingBytes >= this.#inputBufferCap ||
      (this.#heldCap > 0 && this.#heldTotal + this.#svmAheadTotal >= this.#heldCap);
    if (paused === this.#globalPaused) return;
    this.#globalPaused = paused;
    for (const c of this.#conns.values()) this.#updateFlow(c);
  }

  #updateFlow(conn: Conn): void {
    const socket = conn.socket;
    if (socket === undefined) return;
    const read = !this.#globalPaused && !conn.portBlocked && !conn.clientBlocked && this.#state !== "closed";
    if (read === conn.reading) return;
    conn.reading = read;
    if (read) socket.resume();
    else {
      this.#inputPauses++;
      socket.pause();
    }
  }

  // ───────────────────────────── outputs ─────────────────────────────

  #targetOf(stream: OutputStream): Target | undefined {
    if (stream.kind === "stdout") return this.#stdout;
    if (stream.kind === "stderr") return this.#stderr;
    return this.#conns.get(stream.id);
  }

  *#targets(): Iterable<Target> {
    yield this.#stdout;
    yield this.#stderr;
    yield* this.#conns.values();
  }

  #onPvm(event: PortOutput): void {
    if (this.#state === "closed" || event.kind === "stdin-drained") return; // no stdin here
    if (this.#cut !== undefined && event.kind !== "drained") {
      this.#cut.later.push(event);
      if (event.kind === "data") {
        this.#cut.bytes += event.bytes.byteLength;
        this.#heldTotal += event.bytes.byteLength;
      }
      return;
    }
    if (event.kind === "drained") {
      const conn = this.#conns.get(event.conn);
      if (conn?.portBlocked) {
        conn.portBlocked = false;
        this.#updateFlow(conn);
      }
      return;
    }
    if (event.kind === "data") {
      const t = this.#targetOf(event.stream);
      if (t === undefined) return; // a connection this proxy never had (before a takeover)
      // The SVM has ended and the PVM runs on: output the SVM can never match is a divergence now.
      if (this.#mode === "colo" && this.#ended.svm !== undefined && this.#ended.pvm === undefined)
        this.#reportEnd(`SVM ${endText(this.#ended.svm)}, PVM running and producing output`);
      if (event.offset !== t.cmp.pvmEnd) {
        if (t.cmp.mode !== "pass") {
          this.#offsetError(t, event);
          return;
        }
        // Unprotected (e.g. after a takeover): learn the guest's offset; nothing is held.
        t.cmp.realign(event.offset);
      }
      this.#measured(t, () => t.cmp.pushPvm(event.bytes));
      return;
    }
    const conn = this.#conns.get(event.conn);
    if (conn === undefined) return;
    this.#measured(conn, () => ({ released: [], mismatch: conn.cmp.marker("pvm", event.kind) }));
  }

  /** PVM output that does not continue its stream: a protocol error naming both offsets. */
  #offsetError(t: Target, e: { readonly stream: OutputStream; readonly offset: number }): void {
    this.#protocolError(
      `PVM output offset ${e.offset} on ${streamText(e.stream)}, expected ${t.cmp.pvmEnd}`,
      {
        stream: streamText(e.stream),
        offset: e.offset,
        expected: t.cmp.pvmEnd,
      },
    );
  }

  #onSvm(message: MirrorOutput): void {
    if (this.#state === "closed" || this.#mode !== "colo") return;
    const weight = message.kind === "data" ? message.bytes.byteLength : 0;
    if (!Number.isInteger(message.seq) || message.seq < this.#seq) {
      this.#svmStaleBytes += weight;
      return;
    }
    if (message.seq > this.#seq) {
      if (this.#state !== "paused") {
        this.#protocolError(`SVM output for checkpoint ${message.seq} while at ${this.#seq}`, {
          seq: message.seq,
          current: this.#seq,
        });
        return;
      }
      const w = messageWeight(message);
      if (this.#futureBytes + w > this.#futureCap) {
        this.#protocolError(
          `more than ${this.#futureCap} bytes of SVM output ahead of checkpoint ${this.#seq}`,
          {
            seq: message.seq,
          },
          "overflow",
        );
        return;
      }
      this.#future.push(message);
      this.#futureBytes += w;
      return;
    }
    this.#svmCurrent(message);
  }

  #svmCurrent(message: MirrorOutput): void {
    if (message.kind === "end") {
      this.replicaEnded("svm", message.end);
      return;
    }
    const stream: OutputStream =
      message.kind === "data" ? message.stream : { kind: "conn", id: message.conn };
    const t = this.#targetOf(stream);
    if (t === undefined) {
      if (stream.kind === "conn" && stream.id >= this.#nextId) {
        this.#protocolError(`SVM output on connection ${stream.id}, never opened`, { conn: stream.id });
      }
      return; // a connection already retired here
    }
    if (message.kind === "data") {
      if (message.offset !== t.cmp.svmEnd) {
        this.#protocolError(
          `SVM output offset ${message.offset} on ${streamText(stream)}, expected ${t.cmp.svmEnd}`,
          {
            stream: streamText(stream),
            offset: message.offset,
            expected: t.cmp.svmEnd,
          },
        );
        return;
      }
      this.#svmBytes += message.bytes.byteLength;
      this.#clearTimer(t);
      this.#measured(t, () => t.cmp.pushSvm(message.bytes));
      return;
    }
    this.#clearTimer(t);
    this.#measured(t, () => ({ released: [], mismatch: t.cmp.marker("svm", message.kind) }));
  }

  #replayFuture(): void {
    const future = this.#future;
    this.#future = [];
    this.#futureBytes = 0;
    for (const m of future) this.#onSvm(m);
  }

  /** Run one comparator step on `t`, keeping totals, timing it, and acting on its result. */
  #measured(t: Target, fn: () => Step): void {
    const held = t.cmp.heldBytes;
    const ahead = t.cmp.svmAheadBytes;
    const t0 = performance.now();
    const step = fn();
    this.#compareMs += performance.now() - t0;
    this.#heldTotal += t.cmp.heldBytes - held;
    this.#svmAheadTotal += t.cmp.svmAheadBytes - ahead;
    const released = step.released;
    if (released.length === 1) this.#deliver(t, released[0]!);
    else if (released.length > 1) {
      // Several chunks for one client: one socket write.
      const socket = "id" in t ? t.socket : undefined;
      socket?.cork();
      for (const chunk of released) this.#deliver(t, chunk);
      socket?.uncork();
    }
    if (step.mismatch !== undefined) this.#reportMismatch(t, step.mismatch);
    if ("id" in t) this.#markers(t);
    this.#armTimer(t);
    this.#checkCap();
  }

  #deliver(t: Target, chunk: Uint8Array): void {
    this.#bytesReleased += chunk.byteLength;
    if (!("id" in t)) {
      this.#stdioSink(t.name, chunk);
      return;
    }
    const socket = t.socket;
    if (t.dropOutput || socket === undefined || socket.destroyed) {
      this.#bytesDiscarded += chunk.byteLength;
      return;
    }
    socket.write(chunk);
    if (socket.writableLength > this.#clientWriteBound && !t.clientBlocked) {
      t.clientBlocked = true;
      this.#updateFlow(t);
    }
  }

  #markers(conn: Conn): void {
    const m = conn.cmp.takeMarkers();
    if (m.shutdown && conn.socket !== undefined && !conn.socket.destroyed) conn.socket.end();
    if (m.close) {
      conn.closed = true;
      conn.socket?.destroySoon();
      this.#retire(conn);
    }
  }

  #retire(conn: Conn): void {
    this.#clearTimer(conn);
    this.#heldTotal -= conn.cmp.heldBytes;
    this.#svmAheadTotal -= conn.cmp.svmAheadBytes;
    this.#conns.delete(conn.id);
  }

  #checkCap(): void {
    const total = this.#heldTotal + this.#svmAheadTotal;
    if (this.#heldCap > 0 && total >= this.#heldCap && !this.#capSignalled && this.#mode !== "unprotected") {
      this.#capSignalled = true;
      this.#checkpointsNeeded++;
      this.emit("checkpoint-needed", { reason: "held-cap", heldBytes: total });
    }
    this.#refreshGlobal();
  }

  // ───────────────────────────── divergences ─────────────────────────────

  #reportMismatch(t: Target, m: Mismatch): void {
    const stream: OutputStream = "id" in t ? { kind: "conn", id: t.id } : { kind: t.name };
    this.#clearTimer(t);
    this.#diverge({
      kind: m.kind,
      seq: this.#seq,
      stream,
      offset: m.offset,
      detail: `${streamText(stream)}: ${m.detail}`,
    });
  }

  #diverge(d: Divergence): void {
    this.#divergences[d.kind]++;
    this.emit("divergence", d);
  }

  #reportEnd(detail: string): void {
    if (this.#endReported) return;
    this.#endReported = true;
    this.#diverge({ kind: "end-mismatch", seq: this.#seq, stream: undefined, offset: undefined, detail });
  }

  /**
   * The SVM-silence watch: no timer per chunk, only a timestamp per waiting stream and one sweep
   * timer for the proxy, armed while some stream waits.
   */
  #armTimer(t: Target): void {
    if (!t.cmp.pvmWaiting || this.#state !== "running") {
      t.waitSince = -1;
      return;
    }
    if (t.waitSince >= 0 || this.#svmTimeoutMs === 0) return;
    t.waitSince = performance.now();
    if (this.#sweepTimer === undefined) this.#armSweep(this.#svmTimeoutMs);
  }

  #armSweep(ms: number): void {
    this.#sweepTimer = setTimeout(() => this.#sweep(), ms);
    this.#sweepTimer.unref();
  }

  #sweep(): void {
    this.#sweepTimer = undefined;
    if (this.#state === "closed") return;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const t of this.#targets()) {
      if (t.waitSince < 0) continue;
      if (!t.cmp.pvmWaiting || this.#state !== "running") {
        t.waitSince = -1;
        continue;
      }
      const due = t.waitSince + this.#svmTimeoutMs;
      if (due > now + 1) {
        next = Math.min(next, due);
        continue;
      }
      t.waitSince = -1;
      const stream: OutputStream = "id" in t ? { kind: "conn", id: t.id } : { kind: t.name };
      this.#diverge({
        kind: "svm-timeout",
        seq: this.#seq,
        stream,
        offset: t.cmp.released,
        detail: `${streamText(stream)}: SVM silent for ${this.#svmTimeoutMs} ms with PVM output to ${t.cmp.pvmEnd} waiting (SVM at ${t.cmp.svmEnd})`,
      });
    }
    if (next !== Number.POSITIVE_INFINITY && this.#sweepTimer === undefined) {
      this.#armSweep(Math.max(1, next - now));
    }
  }

  #clearTimer(t: Target): void {
    t.waitSince = -1;
  }

  #clearEndTimer(): void {
    if (this.#endTimer !== undefined) {
      clearTimeout(this.#endTimer);
      this.#endTimer = undefined;
    }
  }

  // ───────────────────────────── link ─────────────────────────────

  #attachLink(link: PrimaryMirrorEnd): void {
    this.#detachLink();
    this.#link = link;
    this.#linkUnsubscribe = [
      link.onMessage((m) => this.#onSvm(m)),
      link.onDrain(() => {
        if (!this.#linkBlocked) return;
        this.#linkBlocked = false;
        this.#pump();
      }),
    ];
  }

  #detachLink(): void {
    for (const u of this.#linkUnsubscribe) u();
    this.#linkUnsubscribe = [];
    this.#link = undefined;
    if (this.#linkBlocked) {
      this.#linkBlocked = false;
      this.#pump();
    }
  }

  #protocolError(
    message: string,
    details: Record<string, unknown>,
    code: "protocol" | "overflow" = "protocol",
  ): void {
    this.emit("protocol-error", new ProxyError(code, message, { details }));
  }

  #assertOpen(): void {
    if (this.#state === "closed") throw new ProxyError("bad-state", "the proxy is closed");
  }
}

export function streamText(stream: OutputStream): string {
  return stream.kind === "conn" ? `connection ${stream.id}` : stream.kind;
}

function endText(end: GuestEnd): string {
  return end.kind === "exit" ? `exit ${end.code}` : `trap (${end.message})`;
}
