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
import { type DecoderOptions, encodeFrame, FrameDecoder, type Message } from "./frame.ts";

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

  /** Send one message; body may be a gather list. Returns false: wait for "drain". */
  send(type: number, body: Uint8Array | readonly Uint8Array[] = new Uint8Array(0)): boolean {
    return this.channel.write(encodeFrame(type, body));
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
    this.channel.end();
  }

  destroy(error?: TransportError): void {
    this.channel.destroy(error);
  }

  #deliver(m: Message): void {
    // Messages decoded from one chunk after a pause() wait here; bounded by one chunk's worth.
    if (this.#paused || this.#consumer === undefined) this.#backlog.push(m);
    else this.#consumer(m);
  }
}
