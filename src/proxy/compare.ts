/**
 * Output comparison for one output stream (a connection, stdout or stderr): I/O-free, so the
 * property tests drive it directly.
 *
 * Both replicas' outputs are byte streams; chunk boundaries are meaningless (the replicas may
 * split the same bytes differently). The comparator keeps the *common prefix* released and
 * holds what only one side has produced so far:
 *
 *     offset:  released == matched            pvmEnd (or svmEnd)
 *              |                              |
 *     PVM  ----+------ held (PVM ahead) ------+
 *     SVM  ----+
 *
 * At any moment at most one side is ahead of the matched offset (bytes on both sides past it are
 * compared at once), so one queue `ahead` suffices, tagged with its side. PVM bytes past the
 * matched offset are held; SVM bytes past it wait for the PVM's. The first differing byte makes
 * the stream *diverged*: comparison stops, everything the PVM produces from then on is held, the
 * SVM's output is ignored, until a checkpoint (`resync`) makes the PVM's output the truth.
 *
 * The guest's shutdown and close are markers at an output offset on each side; they must agree
 * (same offset, and no bytes past a side's marker on the other side), and are released once the
 * released offset reaches them and, in `colo` mode, both sides have them.
 *
 * Modes: `colo` compares; `hold` (Remus) holds PVM output until `releaseTo` (the checkpoint that
 * covers it is acknowledged); `pass` (unprotected) releases at once.
 */
import { ProxyError } from "./errors.ts";

export type CompareMode = "colo" | "hold" | "pass";
export type Side = "pvm" | "svm";

/** A mismatch found by the comparator. Offsets are output offsets on this stream. */
export interface Mismatch {
  readonly kind: "output" | "close-mismatch";
  readonly offset: number;
  readonly detail: string;
}

/** What one call made releasable, in order, and a mismatch if this call found the first one. */
export interface Step {
  readonly released: Uint8Array[];
  readonly mismatch: Mismatch | undefined;
}

/** A FIFO of byte chunks; take() splits a chunk when needed (subarrays, no copies). */
export class ChunkQueue {
  #chunks: Uint8Array[] = [];
  #head = 0;
  /** Bytes already consumed from the head chunk. */
  #skip = 0;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.#chunks.push(bytes);
    this.#length += bytes.byteLength;
  }

  /** Remove and return the first `n` bytes (n <= length) as chunks. */
  take(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.#chunks[this.#head]!;
      const avail = chunk.byteLength - this.#skip;
      if (avail <= left) {
        out.push(this.#skip === 0 ? chunk : chunk.subarray(this.#skip));
        left -= avail;
        this.#head++;
        this.#skip = 0;
      } else {
        out.push(chunk.subarray(this.#skip, this.#skip + left));
        this.#skip += left;
        left = 0;
      }
    }
    this.#length -= n;
    if (this.#head > 64 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    return out;
  }

  takeAll(): Uint8Array[] {
    return this.take(this.#length);
  }

  clear(): void {
    this.#chunks = [];
    this.#head = 0;
    this.#skip = 0;
    this.#length = 0;
  }

  /**
   * Compare `bytes` with the queue's first min(bytes.length, length) bytes: the index of the
   * first difference, or -1 when they agree over that span. Consumes nothing.
   */
  mismatch(bytes: Uint8Array): number {
    const n = Math.min(bytes.byteLength, this.#length);
    let i = 0;
    let ci = this.#head;
    let skip = this.#skip;
    while (i < n) {
      const chunk = this.#chunks[ci]!;
      const span = Math.min(chunk.byteLength - skip, n - i);
      // Long spans: one native compare of the two views first; the byte loop finds the index.
      if (
        span >= 64 &&
        Buffer.compare(chunk.subarray(skip, skip + span), bytes.subarray(i, i + span)) === 0
      ) {
        i += span;
        ci++;
        skip = 0;
        continue;
      }
      for (let k = 0; k < span; k++) {
        if (chunk[skip + k] !== bytes[i + k]) return i + k;
      }
      i += span;
      ci++;
      skip = 0;
    }
    return -1;
  }

  /** The byte at index i from the head (i < length). */
  at(i: number): number {
    let ci = this.#head;
    let idx = i + this.#skip;
    for (;;) {
      const chunk = this.#chunks[ci]!;
      if (idx < chunk.byteLength) return chunk[idx]!;
      idx -= chunk.byteLength;
      ci++;
    }
  }
}

const NONE: Uint8Array[] = [];

function markerText(shut: number | undefined, close: number | undefined): string {
  if (close !== undefined) return `close@${close}`;
  if (shut !== undefined) return `shutdown@${shut}`;
  return "open";
}

export class StreamCompare {
  #mode: CompareMode;
  /** Offset of the first PVM byte not yet released. */
  #released: number;
  #pvmEnd: number;
  #svmEnd: number;
  readonly #ahead = new ChunkQueue();
  #aheadSide: Side = "pvm";
  #diverged: Mismatch | undefined;
  #pvmShut: number | undefined;
  #pvmClose: number | undefined;
  #svmShut: number | undefined;
  #svmClose: number | undefined;
  /** Hold mode: markers covered by an acknowledged checkpoint. */
  #shutCovered = false;
  #closeCovered = false;
  #shutReleased = false;
  #closeReleased = false;

  /** `offset`: both replicas' output offset on this stream when comparison starts. */
  constructor(mode: CompareMode, offset = 0) {
    this.#mode = mode;
    this.#released = offset;
    this.#pvmEnd = offset;
    this.#svmEnd = offset;
  }

  get mode(): CompareMode {
    return this.#mode;
  }
  /** Offset of the first byte not yet released. */
  get released(): number {
    return this.#released;
  }
  get pvmEnd(): number {
    return this.#pvmEnd;
  }
  get svmEnd(): number {
    return this.#svmEnd;
  }
  /** PVM bytes produced but not released. */
  get heldBytes(): number {
    return this.#aheadSide === "pvm" ? this.#ahead.length : 0;
  }
  /** SVM bytes produced past the PVM's, waiting for the PVM's. */
  get svmAheadBytes(): number {
    return this.#aheadSide === "svm" ? this.#ahead.length : 0;
  }
  get diverged(): Mismatch | undefined {
    return this.#diverged;
  }
  get pvmShut(): boolean {
    return this.#pvmShut !== undefined;
  }
  get pvmClosed(): boolean {
    return this.#pvmClose !== undefined;
  }
  /** Colo mode: the PVM has output (bytes or a marker) the SVM has not matched yet. */
  get pvmWaiting(): boolean {
    if (this.#mode !== "colo" || this.#diverged !== undefined) return false;
    return (
      this.heldBytes > 0 ||
      (this.#pvmShut !== undefined && this.#svmShut === undefined) ||
      (this.#pvmClose !== undefined && this.#svmClose === undefined)
    );
  }

  /** The PVM produced `bytes` at pvmEnd. */
  pushPvm(bytes: Uint8Array): Step {
    const start = this.#pvmEnd;
    this.#pvmEnd += bytes.byteLength;
    if (this.#mode === "pass") {
      this.#released = this.#pvmEnd;
      return { released: bytes.byteLength === 0 ? NONE : [bytes], mismatch: undefined };
    }
    if (this.#mode === "hold" || this.#diverged !== undefined || this.#aheadSide === "pvm") {
      this.#aheadSide = "pvm";
      this.#ahead.push(bytes);
      return { released: NONE, mismatch: this.#checkMarkers() };
    }
    return this.#meet(bytes, start, "pvm");
  }

  /** The SVM produced `bytes` at svmEnd (colo mode; ignored otherwise and once diverged). */
  pushSvm(bytes: Uint8Array): Step {
    const start = this.#svmEnd;
    this.#svmEnd += bytes.byteLength;
    if (this.#mode !== "colo" || this.#diverged !== undefined) return { released: NONE, mismatch: undefined };
    if (this.#aheadSide === "svm" || this.#ahead.length === 0) {
      this.#aheadSide = "svm";
      this.#ahead.push(bytes);
      return { released: NONE, mismatch: this.#checkMarkers() };
    }
    return this.#meet(bytes, start, "svm");
  }

  /**
   * `bytes` from `side` at `start` meet the other side's queued bytes at the matched offset
   * (== released, == start): release what agrees, queue what goes past the other side.
   */
  #meet(bytes: Uint8Array, start: number, side: Side): Step {
    const at = this.#ahead.mismatch(bytes);
    if (at >= 0) {
      const offset = start + at;
      const other = this.#ahead.at(at);
      const mine = bytes[at]!;
      const [pvm, svm] = side === "pvm" ? [mine, other] : [other, mine];
      const theirs = this.#ahead.take(at);
      const released = side === "svm" ? theirs : [bytes.subarray(0, at)];
      this.#released = offset;
      // From here on: hold everything the PVM has past the common prefix.
      if (side === "pvm") {
        this.#ahead.clear();
        this.#ahead.push(bytes.subarray(at));
      }
      this.#aheadSide = "pvm";
      this.#diverged = {
        kind: "output",
        offset,
        detail: `first differing byte at offset ${offset}: PVM 0x${hex2(pvm)}, SVM 0x${hex2(svm)}`,
      };
      return { released: at === 0 ? NONE : released, mismatch: this.#diverged };
    }
    const common = Math.min(bytes.byteLength, this.#ahead.length);
    const theirs = this.#ahead.take(common);
    const released = side === "svm" ? theirs : [bytes.subarray(0, common)];
    this.#released = start + common;
    if (common < bytes.byteLength) {
      this.#aheadSide = side;
      this.#ahead.push(bytes.subarray(common));
    }
    return { released: common === 0 ? NONE : released, mismatch: this.#checkMarkers() };
  }

  /** The replica shut down its sending side here (close implies shutdown). */
  marker(side: Side, kind: "shutdown" | "close"): Mismatch | undefined {
    if (side === "pvm") {
      this.#pvmShut ??= this.#pvmEnd;
      if (kind === "close") this.#pvmClose ??= this.#pvmEnd;
    } else {
      if (this.#mode !== "colo" || this.#diverged !== undefined) return undefined;
      this.#svmShut ??= this.#svmEnd;
      if (kind === "close") this.#svmClose ??= this.#svmEnd;
    }
    return this.#checkMarkers();
  }

  #checkMarkers(): Mismatch | undefined {
    if (this.#mode !== "colo" || this.#diverged !== undefined) return undefined;
    const ps = this.#pvmShut;
    const ss = this.#svmShut;
    const pc = this.#pvmClose;
    const sc = this.#svmClose;
    let offset: number | undefined;
    if (ps !== undefined && ss !== undefined && ps !== ss) offset = Math.min(ps, ss);
    else if (pc !== undefined && sc !== undefined && pc !== sc) offset = Math.min(pc, sc);
    else if (ps !== undefined && this.#svmEnd > ps) offset = ps;
    else if (ss !== undefined && this.#pvmEnd > ss) offset = ss;
    if (offset === undefined) return undefined;
    this.#diverged = {
      kind: "close-mismatch",
      offset,
      detail: `PVM ${markerText(ps, pc)} (output to ${this.#pvmEnd}), SVM ${markerText(ss, sc)} (output to ${this.#svmEnd})`,
    };
    if (this.#aheadSide === "svm") this.#ahead.clear();
    this.#aheadSide = "pvm";
    return this.#diverged;
  }

  /**
   * Markers newly releasable: shutdown once the released offset reached it and (colo) both sides
   * agree, (hold) a checkpoint covering it is acknowledged; close likewise. Each reported once.
   */
  takeMarkers(): { shutdown: boolean; close: boolean } {
    const ready = (mine: number | undefined, other: number | undefined, covered: boolean): boolean => {
      if (mine === undefined || this.#released !== mine || this.heldBytes > 0) return false;
      if (this.#mode === "pass") return true;
      if (this.#mode === "hold") return covered;
      return this.#diverged === undefined && other === mine;
    };
    const shutdown = !this.#shutReleased && ready(this.#pvmShut, this.#svmShut, this.#shutCovered);
    if (shutdown) this.#shutReleased = true;
    const close =
      this.#shutReleased && !this.#closeReleased && ready(this.#pvmClose, this.#svmClose, this.#closeCovered);
    if (close) this.#closeReleased = true;
    return { shutdown, close };
  }

  /** Hold mode: what a checkpoint taken now covers (PVM output end and markers). */
  snapshot(): StreamMark {
    return { end: this.#pvmEnd, shut: this.#pvmShut !== undefined, close: this.#pvmClose !== undefined };
  }

  /** Hold mode: release PVM output up to `mark` (a snapshot() of an acknowledged checkpoint). */
  releaseTo(mark: StreamMark): Uint8Array[] {
    if (mark.shut) this.#shutCovered = true;
    if (mark.close) this.#closeCovered = true;
    const n = Math.min(mark.end - this.#released, this.heldBytes);
    if (n <= 0) return NONE;
    this.#released += n;
    return this.#ahead.take(n);
  }

  /**
   * After a checkpoint (colo): the PVM's output is the truth. Release everything held, forget
   * the SVM's unmatched output and any divergence, and compare afresh from the PVM's current
   * offset (the SVM's is the same now: its host state is the PVM's).
   */
  resync(): Uint8Array[] {
    const released = this.heldBytes > 0 ? this.#ahead.takeAll() : NONE;
    this.#ahead.clear();
    this.#aheadSide = "pvm";
    this.#released = this.#pvmEnd;
    this.#svmEnd = this.#pvmEnd;
    this.#svmShut = this.#pvmShut;
    this.#svmClose = this.#pvmClose;
    this.#diverged = undefined;
    return released;
  }

  /**
   * Colo, right after resync(): PVM output a checkpoint covers although the SVM never produced it
   * (the checkpoint was taken at a later stop of the PVM): released at once, and both replicas'
   * offsets move past it (the SVM's state is the PVM's from the checkpoint on).
   */
  cover(bytes: Uint8Array): Uint8Array[] {
    if (this.heldBytes > 0 || this.#diverged !== undefined)
      throw new ProxyError("bad-state", "cover() needs a stream just resynchronised");
    this.#pvmEnd += bytes.byteLength;
    this.#svmEnd = this.#released = this.#pvmEnd;
    return bytes.byteLength === 0 ? NONE : [bytes];
  }

  /** Colo, after cover(): a shutdown or close of the PVM that the checkpoint covers (both replicas made it). */
  coverMarker(kind: "shutdown" | "close"): void {
    this.#pvmShut ??= this.#pvmEnd;
    this.#svmShut ??= this.#pvmShut;
    if (kind === "close") {
      this.#pvmClose ??= this.#pvmEnd;
      this.#svmClose ??= this.#pvmClose;
    }
  }

  /**
   * Pass mode only: the replica's output offset is `offset` (a proxy plugged into a running
   * guest learns its offsets from its output). Nothing is held in pass mode, so nothing is lost.
   */
  realign(offset: number): void {
    if (this.#mode !== "pass") throw new ProxyError("bad-state", "realign() is for pass mode only");
    this.#released = this.#pvmEnd = this.#svmEnd = offset;
  }

  /** Switch mode. To `pass`: release everything held. To `hold` or `colo`: start afresh. */
  setMode(mode: CompareMode): Uint8Array[] {
    const released = this.resync();
    this.#mode = mode;
    this.#shutCovered = this.#closeCovered = mode === "pass";
    return released;
  }
}

/** What a checkpoint covers on one stream (hold mode). */
export interface StreamMark {
  readonly end: number;
  readonly shut: boolean;
  readonly close: boolean;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
