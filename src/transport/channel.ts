/**
 * The byte channel: a full-duplex (or one-way, for files) ordered byte pipe between two ends.
 *
 * Backpressure contract (write side):
 * - `write(chunks)` queues the chunks, in order, as one gather write, and never drops bytes. It
 *   returns `true` while the channel's queue is below its high-water mark, and `false` once it is
 *   at or above it. After `false`, the writer MUST wait for the "drain" event before writing again;
 *   "drain" is guaranteed to follow every `false` unless the channel closes first.
 * - The queue is bounded: a write that would push queued bytes above `maxBuffered` (the hard cap,
 *   by default 16 x the high-water mark) throws TransportError "backpressure" and destroys the
 *   channel. A writer that honours `false` never reaches the cap.
 * - Ownership of written chunks passes to the channel: do not modify them afterwards.
 *
 * Read side:
 * - One consumer, set with `onData(listener)`. Until it is set, or while `pause()` is in force,
 *   bytes wait in a bounded inbox and the source is paused (TCP flow control pushes back on the
 *   peer). Chunks handed to the listener belong to it.
 * - "end" is emitted once when the peer has finished sending (EOF), after the last chunk.
 *
 * Lifecycle: open -> (end() : our side finished sending) -> closed. "close" is emitted exactly
 * once, with `undefined` for an orderly close (both sides ended, or destroy() without error) and a
 * TransportError otherwise. There is no "error" event: errors arrive with "close".
 */
import { EventEmitter } from "node:events";
import { TransportError } from "./errors.ts";

export type ChannelEvents = {
  drain: [];
  end: [];
  close: [error: TransportError | undefined];
};

export type ChannelType = "tcp" | "unix" | "tls" | "file" | "pipe" | "memory";

export interface ByteChannel {
  readonly type: ChannelType;
  /** Short human description of the far end (address, path, "memory"). */
  readonly remote: string;
  readonly readable: boolean;
  readonly writable: boolean;
  /** True once "close" has been emitted. */
  readonly closed: boolean;
  /** Bytes queued for writing and not yet handed to the operating system / peer. */
  readonly writableLength: number;
  readonly writableHighWaterMark: number;

  write(chunks: readonly Uint8Array[]): boolean;
  /**
   * Set (or replace) the one data consumer; the inbox is flushed to it. `undefined` detaches it:
   * bytes then wait in the (bounded) inbox.
   */
  onData(listener: ((chunk: Uint8Array) => void) | undefined): void;
  pause(): void;
  resume(): void;
  /** Finish our sending side after the queued bytes (TCP half-close, file flush). Idempotent. */
  end(): void;
  /** Tear down both directions now; queued bytes are discarded. Idempotent. */
  destroy(error?: TransportError): void;

  on<K extends keyof ChannelEvents>(event: K, listener: (...args: ChannelEvents[K]) => void): this;
  once<K extends keyof ChannelEvents>(event: K, listener: (...args: ChannelEvents[K]) => void): this;
  off<K extends keyof ChannelEvents>(event: K, listener: (...args: ChannelEvents[K]) => void): this;
}

/** Default high-water mark of a channel's write queue (bytes). */
export const DEFAULT_HIGH_WATER_MARK = 256 * 1024;
/** Default inbox bound before the source is paused (bytes). */
export const DEFAULT_INBOX_LIMIT = 256 * 1024;

export interface ChannelOptions {
  highWaterMark?: number;
  /** Hard cap on queued write bytes; default 16 x highWaterMark. */
  maxBuffered?: number;
  /** Inbox bytes above which the source is paused; default DEFAULT_INBOX_LIMIT. */
  inboxLimit?: number;
}

/**
 * Common read-side machinery (inbox, pause, end, close-once). Subclasses feed `push()` /
 * `pushEnd()` from their source and implement the source and write hooks.
 */
export abstract class BaseChannel extends EventEmitter<ChannelEvents> implements ByteChannel {
  abstract readonly type: ChannelType;
  abstract readonly remote: string;
  abstract readonly readable: boolean;
  abstract readonly writable: boolean;
  abstract readonly writableLength: number;
  readonly writableHighWaterMark: number;
  protected readonly maxBuffered: number;
  protected readonly inboxLimit: number;

  #consumer: ((chunk: Uint8Array) => void) | undefined;
  #inbox: Uint8Array[] = [];
  #inboxBytes = 0;
  #userPaused = false;
  #sourcePaused = false;
  #eofPending = false;
  #eofDelivered = false;
  #closed = false;
  #closeError: TransportError | undefined;
  #delivering = false;
  protected ended = false;

  constructor(options: ChannelOptions = {}) {
    super();
    this.writableHighWaterMark = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    this.maxBuffered = options.maxBuffered ?? this.writableHighWaterMark * 16;
    this.inboxLimit = options.inboxLimit ?? DEFAULT_INBOX_LIMIT;
    if (!(this.writableHighWaterMark > 0 && this.maxBuffered >= this.writableHighWaterMark)) {
      throw new TransportError("invalid-argument", "need 0 < highWaterMark <= maxBuffered");
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** True once end() has been called (our sending side is finished). */
  get writeEnded(): boolean {
    return this.ended;
  }

  /** Subclass: queue chunks for the peer; return the queue's "below high-water" state. */
  protected abstract writeChunks(chunks: readonly Uint8Array[], bytes: number): boolean;
  protected abstract endWrites(): void;
  protected abstract destroySource(error: TransportError | undefined): void;
  protected abstract pauseSource(): void;
  protected abstract resumeSource(): void;

  write(chunks: readonly Uint8Array[]): boolean {
    if (this.#closed || this.ended) {
      throw new TransportError(
        "closed",
        `write on a ${this.#closed ? "closed" : "ended"} ${this.type} channel`,
      );
    }
    if (!this.writable) throw new TransportError("invalid-argument", `${this.type} channel is read-only`);
    let bytes = 0;
    for (const c of chunks) bytes += c.byteLength;
    if (this.writableLength + bytes > this.maxBuffered) {
      const err = new TransportError(
        "backpressure",
        "write past the hard buffer cap (write() returned false)",
        {
          details: { queued: this.writableLength, adding: bytes, maxBuffered: this.maxBuffered },
        },
      );
      this.destroy(err);
      throw err;
    }
    if (bytes === 0) return this.writableLength < this.writableHighWaterMark;
    return this.writeChunks(chunks, bytes);
  }

  onData(listener: ((chunk: Uint8Array) => void) | undefined): void {
    this.#consumer = listener;
    this.#flush();
  }

  pause(): void {
    this.#userPaused = true;
    this.#setSourcePaused(true);
  }

  resume(): void {
    this.#userPaused = false;
    this.#flush();
  }

  end(): void {
    if (this.ended || this.#closed) return;
    this.ended = true;
    if (this.writable) this.endWrites();
  }

  destroy(error?: TransportError): void {
    if (this.#closed) return;
    this.#inbox = [];
    this.#inboxBytes = 0;
    this.destroySource(error);
    this.finishClose(error);
  }

  /** Subclass: bytes arrived from the source. */
  protected push(chunk: Uint8Array): void {
    if (this.#closed || this.#eofPending || chunk.byteLength === 0) return;
    this.#inbox.push(chunk);
    this.#inboxBytes += chunk.byteLength;
    this.#flush();
    if (this.#inboxBytes >= this.inboxLimit) this.#setSourcePaused(true);
  }

  /** Subclass: the source reached EOF. */
  protected pushEnd(): void {
    if (this.#closed || this.#eofPending) return;
    this.#eofPending = true;
    this.#flush();
  }

  /** Put bytes back in front of the inbox (used by the hello reader for bytes past the hello). */
  unshift(chunk: Uint8Array): void {
    if (this.#closed) return;
    if (chunk.byteLength === 0) return;
    this.#inbox.unshift(chunk);
    this.#inboxBytes += chunk.byteLength;
  }

  /** Subclass: the underlying resource is gone. Emits "close" once (after a pending "end"). */
  protected finishClose(error: TransportError | undefined): void {
    if (this.#closed) return;
    if (error === undefined && !this.#eofDelivered && this.#inboxBytes > 0) {
      // Orderly close with unread bytes: keep them readable; close after the consumer drains them.
      this.#eofPending = true;
      this.#closeWhenDrained = true;
      return;
    }
    this.#closed = true;
    this.#closeError = error;
    this.emit("close", error);
  }

  #closeWhenDrained = false;

  get closeError(): TransportError | undefined {
    return this.#closeError;
  }

  #setSourcePaused(paused: boolean): void {
    if (paused === this.#sourcePaused || this.#closed) return;
    this.#sourcePaused = paused;
    if (paused) this.pauseSource();
    else this.resumeSource();
  }

  #flush(): void {
    if (this.#delivering) return;
    this.#delivering = true;
    try {
      while (this.#inbox.length > 0 && this.#consumer !== undefined && !this.#userPaused && !this.#closed) {
        const chunk = this.#inbox.shift()!;
        this.#inboxBytes -= chunk.byteLength;
        this.#consumer(chunk);
      }
    } finally {
      this.#delivering = false;
    }
    if (this.#inbox.length === 0 && this.#eofPending && !this.#eofDelivered && !this.#closed) {
      if (this.#consumer !== undefined && !this.#userPaused) {
        this.#eofDelivered = true;
        this.emit("end");
        if (this.#closeWhenDrained) {
          this.#closeWhenDrained = false;
          this.#closed = true;
          this.emit("close", undefined);
        }
      }
    }
    if (!this.#userPaused && this.#inboxBytes < this.inboxLimit) this.#setSourcePaused(false);
  }
}
