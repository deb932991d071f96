/**
 * Heartbeats on their own connection, both ways.
 *
 * Semantics:
 * - Each end sends a beat every `intervalMs` (default 100 ms) from start().
 * - The peer is "lost" when no message has arrived for `timeoutMs` (default 500 ms) since start()
 *   or since its last beat, or (with `lostOnDisconnect`, the default) when the connection closes
 *   without the peer's goodbye. "lost" is emitted at most once; afterwards the heartbeat is dead.
 * - A clean shutdown is different from loss: stop() sends a goodbye and ends the connection; the
 *   peer then emits "closed" with `by: "peer"` and never "lost". stop() itself emits "closed"
 *   with `by: "local"`.
 * - Timers are unref'd: a heartbeat never keeps the process alive on its own.
 * The heartbeat does not decide anything: the controller does, on "lost".
 */
import { EventEmitter } from "node:events";
import type { TransportError } from "./errors.ts";
import { MessageType } from "./format.ts";
import type { MessageChannel } from "./message-channel.ts";

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 100;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 500;

export interface HeartbeatOptions {
  intervalMs?: number;
  timeoutMs?: number;
  /** Declare loss as soon as the connection closes without a goodbye (default true). */
  lostOnDisconnect?: boolean;
  /** Clock in ms (tests may inject one); default performance.now. */
  now?: () => number;
}

export interface HeartbeatLoss {
  readonly reason: "timeout" | "disconnected";
  /** Milliseconds since the last message from the peer (or since start()). */
  readonly silentMs: number;
  readonly error: TransportError | undefined;
}

export type HeartbeatEvents = {
  lost: [loss: HeartbeatLoss];
  closed: [info: { readonly by: "peer" | "local" }];
  beat: [sequence: number];
};

export type HeartbeatState = "idle" | "running" | "lost" | "closed";

export class Heartbeat extends EventEmitter<HeartbeatEvents> {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly #channel: MessageChannel;
  readonly #lostOnDisconnect: boolean;
  readonly #now: () => number;
  #state: HeartbeatState = "idle";
  #sendTimer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #lastHeard = 0;
  #sent = 0;
  #received = 0;

  constructor(channel: MessageChannel, options: HeartbeatOptions = {}) {
    super();
    this.#channel = channel;
    this.intervalMs = options.intervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
    this.#lostOnDisconnect = options.lostOnDisconnect ?? true;
    this.#now = options.now ?? (() => performance.now());
    if (!(this.intervalMs > 0 && this.timeoutMs > this.intervalMs)) {
      throw new RangeError("heartbeat needs 0 < intervalMs < timeoutMs");
    }
  }

  get state(): HeartbeatState {
    return this.#state;
  }

  /** Beats received so far. */
  get received(): number {
    return this.#received;
  }

  get sent(): number {
    return this.#sent;
  }

  start(): void {
    if (this.#state !== "idle") return;
    this.#state = "running";
    this.#lastHeard = this.#now();
    this.#channel.onMessage((m) => {
      if (this.#state !== "running") return;
      this.#lastHeard = this.#now();
      this.#watchdog?.refresh();
      if (m.type === MessageType.heartbeatBeat) {
        this.#received++;
        this.emit("beat", this.#received);
      } else if (m.type === MessageType.heartbeatBye) {
        this.#finish("closed");
        this.#channel.end();
        this.emit("closed", { by: "peer" });
      }
    });
    this.#channel.on("close", (err) => {
      if (this.#state !== "running") return;
      if (this.#lostOnDisconnect) this.#lose("disconnected", err);
    });
    this.#channel.on("end", () => {
      // EOF without a goodbye: the peer's side is gone; treat like a close.
      if (this.#state === "running" && this.#lostOnDisconnect) this.#lose("disconnected", undefined);
    });
    this.#watchdog = setTimeout(() => this.#expired(), this.timeoutMs);
    this.#watchdog.unref();
    this.#sendTimer = setInterval(() => this.#beat(), this.intervalMs);
    this.#sendTimer.unref();
    this.#beat();
  }

  /** Clean shutdown: goodbye to the peer, end the connection, emit "closed" (by: "local"). */
  stop(): void {
    if (this.#state === "lost" || this.#state === "closed") return;
    this.#finish("closed");
    if (!this.#channel.closed) {
      try {
        this.#channel.send(MessageType.heartbeatBye);
        this.#channel.end();
      } catch {
        // already ended or closed: nothing to say goodbye on
      }
    }
    this.emit("closed", { by: "local" });
  }

  #beat(): void {
    if (this.#state !== "running" || this.#channel.closed) return;
    // Beats are tiny; if even they back up, the link is stalled and the peer's watchdog decides.
    if (this.#channel.channel.writableLength > this.#channel.channel.writableHighWaterMark) return;
    const body = new Uint8Array(8);
    new DataView(body.buffer).setBigUint64(0, BigInt(++this.#sent), true);
    try {
      this.#channel.send(MessageType.heartbeatBeat, body);
    } catch {
      // closed underneath us; the close handler decides
    }
  }

  /**
   * The watchdog fired. Timers run before the event loop polls sockets, so after a stall of this
   * process the peer's beats may be waiting unread: look again after the poll phase (setImmediate)
   * before calling the peer lost. The immediate stays ref'd: with only unref'd immediates pending,
   * libuv's poll phase blocks until the next timer or socket event (here up to a whole beat
   * interval), which made the loss be seen up to intervalMs late.
   */
  #expired(): void {
    setImmediate(() => {
      if (this.#state !== "running") return;
      const silent = this.#now() - this.#lastHeard;
      if (silent >= this.timeoutMs) this.#lose("timeout", undefined);
      else {
        clearTimeout(this.#watchdog);
        this.#watchdog = setTimeout(() => this.#expired(), Math.max(1, this.timeoutMs - silent));
        this.#watchdog.unref();
      }
    });
  }

  #lose(reason: HeartbeatLoss["reason"], error: TransportError | undefined): void {
    if (this.#state !== "running") return;
    const silentMs = this.#now() - this.#lastHeard;
    this.#finish("lost");
    this.#channel.destroy();
    this.emit("lost", { reason, silentMs, error });
  }

  #finish(state: "lost" | "closed"): void {
    this.#state = state;
    clearInterval(this.#sendTimer);
    clearTimeout(this.#watchdog);
  }
}
