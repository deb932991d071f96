/**
 * The mirror link as the proxy sees it: one message channel between the primary's proxy and the
 * secondary's, carrying client input P → S and the SVM's outputs S → P (architecture:
 * "Connections", row "mirror"). The transport layer's mirror codec (src/transport/mirror.ts)
 * puts these messages on an authenticated channel; `MemoryMirrorLink` wires two ends in memory
 * for tests and benchmarks.
 *
 * Every message carries the checkpoint number `seq` it follows: input sent after
 * `checkpointDone(s)` and before the next checkpoint's pause carries `s`, and so do the SVM's
 * outputs produced after the secondary applied checkpoint `s`. A late or replayed message is
 * recognised by its number.
 *
 * Backpressure contract (as Node's Writable.write): `send()` always accepts the message and
 * returns false once the link's queue is at or above its bound; the sender then sends nothing
 * more until the next `onDrain` callback. Messages are delivered in order, each exactly once,
 * or the link reports that it is closed; it never drops a message silently.
 *
 * Ownership: the bytes of a sent message are owned by the link from then on (the sender must not
 * change them); the bytes of a received message belong to the receiver.
 */
import type { GuestEnd } from "../guest/domain.ts";
import type { ConnId, OutputStream } from "../guest/port.ts";

/** P → S: one client event, in the order the PVM got it, in the same chunks. */
export type MirrorInput =
  | { readonly kind: "open"; readonly seq: number; readonly conn: ConnId }
  | {
      readonly kind: "data";
      readonly seq: number;
      readonly conn: ConnId;
      /** Input offset of the first byte on this connection. */
      readonly offset: number;
      readonly bytes: Uint8Array;
    }
  /** The client closed its sending side after `offset` input bytes. */
  | { readonly kind: "eof"; readonly seq: number; readonly conn: ConnId; readonly offset: number };

/** S → P: one SVM output event, in the order the SVM produced it. */
export type MirrorOutput =
  | {
      readonly kind: "data";
      readonly seq: number;
      readonly stream: OutputStream;
      /** Output offset of the first byte on this stream. */
      readonly offset: number;
      readonly bytes: Uint8Array;
    }
  /**
   * The SVM shut down / closed a connection. `offset`: the SVM's output offset on it as the
   * secondary saw it (informational: the primary places the marker by its own count of the SVM's
   * bytes, which stays exact across checkpoints).
   */
  | { readonly kind: "shutdown"; readonly seq: number; readonly conn: ConnId; readonly offset: number }
  | { readonly kind: "close"; readonly seq: number; readonly conn: ConnId; readonly offset: number }
  /** The SVM exited or trapped (an end in one replica only is a divergence). */
  | { readonly kind: "end"; readonly seq: number; readonly end: GuestEnd };

/** One end of a message link: sends `Out`, receives `In`. */
export interface MirrorEnd<Out, In> {
  /** Queue one message; false when the queue is at or above its bound (wait for onDrain). */
  send(message: Out): boolean;
  /** Subscribe to received messages, in order. Returns unsubscribe. */
  onMessage(listener: (message: In) => void): () => void;
  /** Subscribe to "the queue fell below its bound". Returns unsubscribe. */
  onDrain(listener: () => void): () => void;
}

/** The primary's end: sends input, receives the SVM's outputs. */
export type PrimaryMirrorEnd = MirrorEnd<MirrorInput, MirrorOutput>;
/** The secondary's end: sends the SVM's outputs, receives input. */
export type SecondaryMirrorEnd = MirrorEnd<MirrorOutput, MirrorInput>;

/** Bytes a message weighs in a link's queue: its payload plus a fixed 32-byte header allowance. */
export function messageWeight(message: MirrorInput | MirrorOutput): number {
  return 32 + (message.kind === "data" ? message.bytes.byteLength : 0);
}

/** A one-way in-memory queue with a byte bound; delivery is asynchronous (a macrotask). */
class MemoryDirection<T extends MirrorInput | MirrorOutput> {
  readonly #bound: number;
  #queue: T[] = [];
  #head = 0;
  #bytes = 0;
  #full = false;
  #stalled = false;
  #scheduled = false;
  readonly #listeners = new Set<(message: T) => void>();
  readonly #drainListeners = new Set<() => void>();

  constructor(bound: number) {
    this.#bound = bound;
  }

  get queuedBytes(): number {
    return this.#bytes;
  }

  send(message: T): boolean {
    this.#queue.push(message);
    this.#bytes += messageWeight(message);
    this.#schedule();
    if (this.#bytes >= this.#bound) this.#full = true;
    return !this.#full;
  }

  stall(on: boolean): void {
    this.#stalled = on;
    if (!on) this.#schedule();
  }

  onMessage(listener: (message: T) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  onDrain(listener: () => void): () => void {
    this.#drainListeners.add(listener);
    return () => this.#drainListeners.delete(listener);
  }

  #schedule(): void {
    if (this.#scheduled || this.#stalled) return;
    this.#scheduled = true;
    setImmediate(() => this.#deliver());
  }

  /** Deliver what is queued now (at most 1024 messages per turn, to let I/O in). */
  #deliver(): void {
    this.#scheduled = false;
    let n = 0;
    while (!this.#stalled && this.#head < this.#queue.length && n < 1024) {
      const message = this.#queue[this.#head]!;
      this.#head++;
      n++;
      this.#bytes -= messageWeight(message);
      for (const listener of this.#listeners) listener(message);
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (!this.#stalled) {
      this.#schedule();
    }
    if (this.#full && this.#bytes < this.#bound / 2) {
      this.#full = false;
      for (const listener of this.#drainListeners) listener();
    }
  }
}

/**
 * Two linked in-memory ends. `bound` is each direction's queue bound in bytes (default 1 MiB);
 * `stall(direction, on)` stops delivery in one direction, for tests of backpressure and silence.
 */
export class MemoryMirrorLink {
  readonly #toSecondary: MemoryDirection<MirrorInput>;
  readonly #toPrimary: MemoryDirection<MirrorOutput>;
  readonly primary: PrimaryMirrorEnd;
  readonly secondary: SecondaryMirrorEnd;

  constructor(bound = 1 << 20) {
    const p2s = new MemoryDirection<MirrorInput>(bound);
    const s2p = new MemoryDirection<MirrorOutput>(bound);
    this.#toSecondary = p2s;
    this.#toPrimary = s2p;
    this.primary = {
      send: (m) => p2s.send(m),
      onMessage: (l) => s2p.onMessage(l),
      onDrain: (l) => p2s.onDrain(l),
    };
    this.secondary = {
      send: (m) => s2p.send(m),
      onMessage: (l) => p2s.onMessage(l),
      onDrain: (l) => s2p.onDrain(l),
    };
  }

  /** Stop (true) or restart (false) delivery toward one side. */
  stall(toward: "secondary" | "primary", on: boolean): void {
    (toward === "secondary" ? this.#toSecondary : this.#toPrimary).stall(on);
  }

  /** Bytes (by messageWeight) queued toward one side. */
  queuedBytes(toward: "secondary" | "primary"): number {
    return (toward === "secondary" ? this.#toSecondary : this.#toPrimary).queuedBytes;
  }
}
