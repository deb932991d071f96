/**
 * Typed messages over a byte channel (mirror, heartbeat and control connections).
 *
 * Backpressure: `send()` has the byte channel's contract (channel.ts): false means wait for
 * "drain". Receive side: one consumer set with `onMessage()`; `pause()` stops delivery and, once
 * the byte channel's inbox fills, the peer's sends. A frame longer than `maxMessage` or otherwise
 * malformed destroys the channel: "close" carries the typed error with the frame's offset; so
 * does EOF in the middle of a frame ("frame-truncated").
 */
import { EventEmitter } from "node:events";
import type { ByteChannel } from "./channel.ts";
import type { TransportError } from "./errors.ts";
import { FRAME_HEADER_SIZE } from "./format.ts";
import { type DecoderOptions, encodeFrame, FrameDecoder, type Message, writeFrameHeader } from "./frame.ts";

/** Body parts up to this size are copied into the batch's arena; larger ones travel uncopied. */
const BATCH_COPY_MAX = 2048;
/** Arena size; a batch holding this many bytes is written at once instead of at the turn's end. */
const BATCH_ARENA = 64 * 1024;

export type MessageChannelEvents = {
  drain: [];
  /** The peer finished sending (after its last whole message). */
  end: [];
  close: [error: TransportError | undefined];
};

export class MessageChannel extends EventEmitter<MessageChannelEvents> {
  readonly channel: ByteChannel;
  readonly #decoder: FrameDecoder;
  #consumer: ((message: Message) => void) | undefined;
  #backlog: Message[] = [];
  #paused = false;
  #batching = false;
  /** Batch: parts not yet written (arena slices and large bodies), their bytes, the arena. */
  #parts: Uint8Array[] = [];
  #partBytes = 0;
  #arena = new Uint8Array(0);
  /** Start of the arena's part not yet pushed to #parts; end of what is filled. */
  #arenaStart = 0;
  #arenaEnd = 0;
  #flushScheduled = false;
  /** A batched send() returned false while the byte channel itself was below its mark. */
  #owesDrain = false;
  readonly #flushNow = (): void => {
    this.#flushScheduled = false;
    this.flush();
  };

  constructor(channel: ByteChannel, options: DecoderOptions = {}) {
    super();
    this.channel = channel;
    this.#decoder = new FrameDecoder(options);
    channel.on("drain", () => this.emit("drain"));
    channel.on("close", (err) => this.emit("close", err));
    channel.on("end", () => {
      try {
        this.#decoder.end();
        this.emit("end");
      } catch (err) {
        channel.destroy(err as TransportError);
      }
    });
    channel.pause();
    channel.onData((chunk) => {
      let messages: Message[];
      try {
        messages = this.#decoder.push(chunk);
      } catch (err) {
        channel.destroy(err as TransportError);
        return;
      }
      for (const m of messages) this.#deliver(m);
    });
  }

  get closed(): boolean {
    return this.channel.closed;
  }

  /**
   * Gather the messages sent in one event-loop turn into one write of the byte channel (at
   * setImmediate, or at once when a batch reaches 64 KiB, or on end()): one syscall and one TLS
   * record for many small messages. Order and the backpressure contract are unchanged (false
   * counts batched bytes too, and "drain" follows it). destroy() discards an unwritten batch.
   */
  batch(): void {
    this.#batching = true;
  }

  /** Send one message; body may be a gather list. Returns false: wait for "drain". */
  send(type: number, body: Uint8Array | readonly Uint8Array[] = new Uint8Array(0)): boolean {
    if (!this.#batching) return this.channel.write(encodeFrame(type, body));
    if (this.channel.closed) return this.channel.write(encodeFrame(type, body)); // throws "closed"
    let length = 0;
    if (body instanceof Uint8Array) length = body.byteLength;
    else for (const p of body) length += p.byteLength;
    writeFrameHeader(this.#reserve(FRAME_HEADER_SIZE), this.#arenaEnd - FRAME_HEADER_SIZE, type, length);
    if (body instanceof Uint8Array) this.#append(body);
    else for (const p of body) this.#append(p);
    this.#partBytes += FRAME_HEADER_SIZE + length;
    if (this.#partBytes >= BATCH_ARENA) this.flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushNow);
    }
    const ok = this.channel.writableLength + this.#partBytes < this.channel.writableHighWaterMark;
    if (!ok) this.#owesDrain = true;
    return ok;
  }

  /** Write the batched messages now (a no-op without a batch). */
  flush(): void {
    if (this.#arenaEnd > this.#arenaStart) {
      this.#parts.push(this.#arena.subarray(this.#arenaStart, this.#arenaEnd));
      this.#arenaStart = this.#arenaEnd;
    }
    if (this.#parts.length === 0) return;
    const parts = this.#parts;
    this.#parts = [];
    this.#partBytes = 0;
    if (this.#writeEnded()) return; // our side ended or closed: nothing more goes out
    const ok = this.channel.write(parts);
    if (ok && this.#owesDrain) {
      this.#owesDrain = false;
      queueMicrotask(() => this.emit("drain"));
    } else if (!ok) this.#owesDrain = false; // the byte channel's own "drain" follows
  }

  #writeEnded(): boolean {
    return this.channel.closed || (this.channel as { readonly writeEnded?: boolean }).writeEnded === true;
  }

  /** Arena space for `n` bytes at #arenaEnd - n (after the call). */
  #reserve(n: number): Uint8Array {
    if (this.#arenaEnd + n > this.#arena.byteLength) {
      if (this.#arenaEnd > this.#arenaStart) {
        this.#parts.push(this.#arena.subarray(this.#arenaStart, this.#arenaEnd));
      }
      // The written part belongs to the byte channel now; a fresh arena for what follows.
      this.#arena = new Uint8Array(Math.max(BATCH_ARENA, n));
      this.#arenaStart = 0;
      this.#arenaEnd = 0;
    }
    this.#arenaEnd += n;
    return this.#arena;
  }

  #append(part: Uint8Array): void {
    if (part.byteLength === 0) return;
    if (part.byteLength <= BATCH_COPY_MAX) {
      this.#reserve(part.byteLength).set(part, this.#arenaEnd - part.byteLength);
      return;
    }
    if (this.#arenaEnd > this.#arenaStart) {
      this.#parts.push(this.#arena.subarray(this.#arenaStart, this.#arenaEnd));
      this.#arenaStart = this.#arenaEnd;
    }
    this.#parts.push(part);
  }

  /** Set the one consumer and start delivery. */
  onMessage(listener: (message: Message) => void): void {
    this.#consumer = listener;
    this.resume();
  }

  pause(): void {
    this.#paused = true;
    this.channel.pause();
  }

  resume(): void {
    this.#paused = false;
    while (this.#backlog.length > 0 && !this.#paused && this.#consumer !== undefined) {
      this.#consumer(this.#backlog.shift()!);
    }
    if (!this.#paused && this.#consumer !== undefined) this.channel.resume();
  }

  end(): void {
    if (!this.#writeEnded()) this.flush();
    this.channel.end();
  }

  destroy(error?: TransportError): void {
    this.#parts = [];
    this.#partBytes = 0;
    this.#arenaStart = this.#arenaEnd;
    this.channel.destroy(error);
  }

  #deliver(m: Message): void {
    // Messages decoded from one chunk after a pause() wait here; bounded by one chunk's worth.
    if (this.#paused || this.#consumer === undefined) this.#backlog.push(m);
    else this.#consumer(m);
  }
}
