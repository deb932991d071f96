/**
 * An in-memory channel pair for tests: two ends wired to each other, with the same contract as a
 * socket (channel.ts), delivery on a later turn of the event loop, and fault injection per
 * direction (drop, truncate, corrupt, delay, replay bytes).
 *
 * Backpressure: a writer's queue holds bytes not yet accepted by the peer's reader; when the
 * peer pauses (or its inbox fills) the queue grows, write() returns false at the high-water mark,
 * and "drain" follows once the peer has taken the queue below it.
 */
import { BaseChannel, type ChannelOptions } from "./channel.ts";
import { TransportError } from "./errors.ts";

/**
 * A fault hook for one direction: sees every chunk with the stream offset of its first byte and
 * returns what the peer receives instead (any chunks, possibly none), or "cut" to deliver nothing
 * more and reset the connection.
 */
export type Interceptor = (chunk: Uint8Array, offset: number) => Uint8Array[] | "cut";

export interface Faults {
  intercept?: Interceptor;
  /** Delay every chunk's delivery by this many ms (order kept). */
  delayMs?: number;
}

/** Ready-made interceptors; compose with `chain`. */
export const fault = {
  /** Drop `length` bytes starting at stream offset `at`. */
  drop(at: number, length: number): Interceptor {
    return (chunk, offset) => mapRange(chunk, offset, at, length, () => new Uint8Array(0));
  },
  /** XOR the byte at stream offset `at` with `mask` (default 0xff). */
  corrupt(at: number, mask = 0xff): Interceptor {
    return (chunk, offset) => mapRange(chunk, offset, at, 1, (b) => Uint8Array.of((b[0] ?? 0) ^ mask));
  },
  /** Deliver the first `at` bytes, then reset the connection (a cut link, a killed peer). */
  truncate(at: number): Interceptor {
    let done = false;
    return (chunk, offset) => {
      if (done) return "cut";
      if (offset + chunk.byteLength <= at) return [chunk];
      done = true;
      return at > offset ? [chunk.subarray(0, at - offset), CUT_MARK] : "cut";
    };
  },
  /** After stream offset `at + length`, deliver bytes [at, at + length) a second time. */
  replay(at: number, length: number): Interceptor {
    const saved: Uint8Array[] = [];
    let replayed = false;
    return (chunk, offset) => {
      const end = offset + chunk.byteLength;
      const lo = Math.max(at, offset);
      const hi = Math.min(at + length, end);
      if (hi > lo) saved.push(chunk.slice(lo - offset, hi - offset));
      if (!replayed && end >= at + length) {
        replayed = true;
        return [chunk, ...saved];
      }
      return [chunk];
    };
  },
  chain(...hooks: Interceptor[]): Interceptor {
    return (chunk, offset) => {
      let chunks = [chunk];
      for (const hook of hooks) {
        const next: Uint8Array[] = [];
        for (const c of chunks) {
          const r = hook(c, offset);
          if (r === "cut") return next.length > 0 ? [...next, CUT_MARK] : "cut";
          next.push(...r);
          if (r.includes(CUT_MARK)) return next;
        }
        chunks = next;
      }
      return chunks;
    };
  },
};

/** Sentinel an interceptor may put last in its result: deliver what precedes, then cut. */
const CUT_MARK = new Uint8Array(0);

function mapRange(
  chunk: Uint8Array,
  offset: number,
  at: number,
  length: number,
  f: (bytes: Uint8Array) => Uint8Array,
): Uint8Array[] {
  const end = offset + chunk.byteLength;
  const lo = Math.max(at, offset);
  const hi = Math.min(at + length, end);
  if (hi <= lo) return [chunk];
  return [
    chunk.subarray(0, lo - offset),
    f(chunk.subarray(lo - offset, hi - offset)),
    chunk.subarray(hi - offset),
  ];
}

export interface PairOptions extends ChannelOptions {
  /** Faults on bytes a writes and b reads. */
  aToB?: Faults;
  /** Faults on bytes b writes and a reads. */
  bToA?: Faults;
}

export class MemoryChannel extends BaseChannel {
  readonly type = "memory" as const;
  readonly remote: string;
  readonly readable = true;
  readonly writable = true;
  peer!: MemoryChannel;
  #faults: Faults;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #sentOffset = 0;
  #needDrain = false;
  #sourcePaused = false;
  #pumpScheduled = false;
  #endQueued = false;
  #endDelivered = false;
  #inFlight = 0;

  constructor(remote: string, faults: Faults, options: ChannelOptions) {
    super(options);
    this.remote = remote;
    this.#faults = faults;
  }

  get writableLength(): number {
    return this.#queued;
  }

  /** Replace this direction's faults; offsets passed to the interceptor restart from 0. */
  setFaults(faults: Faults): void {
    this.#faults = faults;
    this.#sentOffset = 0;
  }

  protected writeChunks(chunks: readonly Uint8Array[], bytes: number): boolean {
    for (const c of chunks) if (c.byteLength > 0) this.#queue.push(c);
    this.#queued += bytes;
    this.#schedule();
    const ok = this.#queued < this.writableHighWaterMark;
    if (!ok) this.#needDrain = true;
    return ok;
  }

  protected endWrites(): void {
    this.#endQueued = true;
    this.#schedule();
  }

  protected destroySource(error: TransportError | undefined): void {
    this.#queue = [];
    this.#queued = 0;
    const peer = this.peer;
    if (!peer.closed) {
      peer.finishClose(new TransportError("reset", "peer destroyed the connection", { cause: error }));
    }
  }

  protected pauseSource(): void {
    this.#sourcePaused = true;
  }

  protected resumeSource(): void {
    this.#sourcePaused = false;
    this.peer.#schedule();
  }

  #schedule(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Move queued bytes to the peer's inbox while the peer accepts them. */
  #pump(): void {
    if (this.closed) return;
    const peer = this.peer;
    while (this.#queue.length > 0 && !peer.#sourcePaused && !peer.closed) {
      const chunk = this.#queue.shift()!;
      this.#queued -= chunk.byteLength;
      const offset = this.#sentOffset;
      this.#sentOffset += chunk.byteLength;
      const hook = this.#faults.intercept;
      const out = hook === undefined ? [chunk] : hook(chunk, offset);
      if (out === "cut" || out.includes(CUT_MARK)) {
        if (out !== "cut") for (const c of out) this.#deliver(c);
        this.#deliverCut();
        return;
      }
      for (const c of out) this.#deliver(c);
    }
    if (this.#needDrain && this.#queued < this.writableHighWaterMark) {
      this.#needDrain = false;
      this.emit("drain");
    }
    if (this.#queue.length === 0 && this.#endQueued && !this.#endDelivered) {
      this.#endDelivered = true;
      this.#later(() => {
        peer.pushEnd();
        this.#maybeBothEnded();
      });
    }
  }

  #deliver(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    this.#later(() => this.peer.push(chunk));
  }

  #deliverCut(): void {
    this.#later(() => {
      const err = new TransportError("reset", "connection cut (injected fault)");
      this.peer.destroy(err);
      this.destroy(err);
    });
  }

  /** Run now, or after the direction's delay, keeping order. */
  #later(f: () => void): void {
    const delay = this.#faults.delayMs ?? 0;
    if (delay <= 0 && this.#inFlight === 0) {
      f();
      return;
    }
    this.#inFlight++;
    setTimeout(() => {
      this.#inFlight--;
      f();
    }, delay);
  }

  #maybeBothEnded(): void {
    const peer = this.peer;
    if (this.#endDelivered && peer.#endDelivered && this.#inFlight === 0 && peer.#inFlight === 0) {
      this.finishClose(undefined);
      peer.finishClose(undefined);
    }
  }

  /** Test hook: the peer's end of the pair. */
  static pair(options: PairOptions = {}): [MemoryChannel, MemoryChannel] {
    const { aToB = {}, bToA = {}, ...channel } = options;
    const a = new MemoryChannel("memory:b", aToB, channel);
    const b = new MemoryChannel("memory:a", bToA, channel);
    a.peer = b;
    b.peer = a;
    return [a, b];
  }
}

/** Two in-memory ends wired to each other (see MemoryChannel). */
export function openPair(options: PairOptions = {}): [MemoryChannel, MemoryChannel] {
  return MemoryChannel.pair(options);
}
