/**
 * The secondary's proxy: the mirror receiver. It feeds the SVM the client input the primary
 * mirrors, exactly as the PVM got it, and sends every SVM output back with its offset.
 *
 * Design. Messages carry the checkpoint number they follow (link.ts). With `applied` the last
 * checkpoint applied here:
 * - seq == applied: fed to the SVM; input offsets must continue exactly per connection (a gap or
 *   an overlap is a protocol error), an open must name a new id, data and eof a known one;
 * - seq <  applied: sent before the primary paused for checkpoint `applied`, so that checkpoint
 *   already contains it: dropped, and checked by offset against the applied host state's
 *   per-connection input offsets (input past them would be input the checkpoint lost: a
 *   protocol error);
 * - seq >  applied: the primary cannot send it before this side applied the checkpoint: a
 *   protocol error.
 * Between pauseForCheckpoint() and checkpointApplied() messages are buffered (bounded by
 * `bufferCap` bytes; the primary has stopped sending new input, so only messages in flight
 * arrive) and judged by the rules above once the checkpoint is applied.
 *
 * On a protocol error the proxy stops feeding and emits "protocol-error"; standing down is the
 * controller's decision. On takeover, `takeover()` re-plugs the same port into a PrimaryProxy in
 * unprotected mode; the old primary's clients are gone (each open connection gets an eof).
 *
 * Bounds: the buffer during a checkpoint (`bufferCap`); one small entry per open connection.
 * The SVM's own input queue is bounded by the primary (it pauses clients on the PVM's queue, and
 * the SVM gets the same input); an SVM slower than the PVM shows up on the primary as held
 * output, which forces a checkpoint. TODO: the S → P direction relies on the link's own bound;
 * the SVM cannot be paused, so a persistently full link is only counted (`linkFull`).
 */
import { EventEmitter } from "node:events";
import type net from "node:net";
import type { GuestEnd } from "../guest/domain.ts";
import type { ConnId, GuestPort, PortInput, PortOutput } from "../guest/port.ts";
import { ProxyError } from "./errors.ts";
import { type MirrorInput, messageWeight, type SecondaryMirrorEnd } from "./link.ts";
import type { SecondaryProxyMetrics } from "./metrics.ts";
import { PrimaryProxy, type PrimaryProxyOptions } from "./primary.ts";

export interface SecondaryProxyEvents {
  "protocol-error": [ProxyError];
}

export interface SecondaryProxyOptions {
  /** The SVM's port. */
  readonly port: GuestPort;
  readonly link: SecondaryMirrorEnd;
  /** Checkpoint applied when the proxy starts (the seed's); default 0. */
  readonly seq?: number;
  /** Per-connection input offsets in the applied host state (connections the seed holds). */
  readonly inputOffsets?: ReadonlyMap<ConnId, number>;
  /** Bytes of mirrored messages buffered during a checkpoint; default 4 MiB. */
  readonly bufferCap?: number;
}

/** What a takeover keeps from the primary's options; the rest the secondary knows. */
export type TakeoverOptions = Omit<
  PrimaryProxyOptions,
  "port" | "link" | "mode" | "seq" | "firstConnId" | "stdioOffsets"
> & { readonly server?: net.Server };

interface InConn {
  /** Next input offset expected. */
  offset: number;
  eof: boolean;
}

export class SecondaryProxy extends EventEmitter<SecondaryProxyEvents> {
  readonly #port: GuestPort;
  readonly #link: SecondaryMirrorEnd;
  readonly #bufferCap: number;
  #applied: number;
  #state: "running" | "paused" | "stopped" = "running";
  #conns = new Map<ConnId, InConn>();
  /** Highest connection id ever opened here (-1: none). Ids arrive in increasing order. */
  #maxOpened = -1;
  #buffer: MirrorInput[] = [];
  #bufferBytes = 0;
  readonly #stdioEnd = { stdout: 0, stderr: 0 };
  /** The SVM's output offset per connection, as last seen (informational; see link.ts). */
  readonly #outEnd = new Map<ConnId, number>();
  readonly #unsubscribe: (() => void)[];
  #bytesFed = 0;
  #bytesDropped = 0;
  #bytesSent = 0;
  #linkFull = 0;

  constructor(options: SecondaryProxyOptions) {
    super();
    this.#port = options.port;
    this.#link = options.link;
    this.#applied = options.seq ?? 0;
    this.#bufferCap = options.bufferCap ?? 4 << 20;
    this.#reset(options.inputOffsets ?? new Map());
    this.#unsubscribe = [
      this.#link.onMessage((m) => this.#onMessage(m)),
      this.#port.onOutput((e) => this.#onSvm(e)),
    ];
  }

  get seq(): number {
    return this.#applied;
  }
  get state(): "running" | "paused" | "stopped" {
    return this.#state;
  }

  /** A checkpoint begins (on CHECKPOINT_STATE NEW): stop feeding; buffer what arrives. */
  pauseForCheckpoint(): void {
    if (this.#state === "running") this.#state = "paused";
  }

  /**
   * Checkpoint `seq` is applied to the SVM (call before sending SVM_READY). `inputOffsets`: per
   * connection, the input offset of the applied host state (every input byte it already holds,
   * read by the guest or queued). Buffered messages are judged now, and feeding resumes.
   */
  checkpointApplied(seq: number, inputOffsets: ReadonlyMap<ConnId, number>): void {
    if (this.#state === "stopped") throw new ProxyError("bad-state", "the secondary proxy is stopped");
    if (!Number.isInteger(seq) || seq <= this.#applied) {
      throw new ProxyError("invalid-argument", `checkpoint ${seq} does not follow ${this.#applied}`, {
        details: { seq, applied: this.#applied },
      });
    }
    this.#applied = seq;
    this.#reset(inputOffsets);
    this.#state = "running";
    const buffered = this.#buffer;
    this.#buffer = [];
    this.#bufferBytes = 0;
    for (const m of buffered) {
      if (this.#state !== "running") break;
      this.#handle(m);
    }
  }

  /**
   * Failover: stop receiving mirrored input, tell the guest that every open client is gone
   * (eof), and serve the same port on this host's service address, unprotected.
   */
  takeover(options: TakeoverOptions = {}): PrimaryProxy {
    this.#stop();
    for (const [id, c] of this.#conns) {
      if (!c.eof) this.#port.input({ kind: "eof", conn: id });
    }
    this.#conns.clear();
    return new PrimaryProxy({
      ...options,
      port: this.#port,
      mode: "unprotected",
      seq: this.#applied,
      firstConnId: this.#maxOpened + 1,
      stdioOffsets: { ...this.#stdioEnd },
    });
  }

  /**
   * The SVM exited or trapped: tell the primary (mirror "end"), whose proxy judges it against
   * the PVM (an end in one replica only is a divergence; the next checkpoint restores the SVM).
   */
  replicaEnded(end: GuestEnd): void {
    if (this.#state === "stopped") return;
    if (!this.#link.send({ kind: "end", seq: this.#applied, end })) this.#linkFull++;
  }

  /** Stop feeding and detach from the link and the port (standing down). Idempotent. */
  close(): void {
    this.#stop();
  }

  metrics(): SecondaryProxyMetrics {
    return {
      seq: this.#applied,
      bytesFed: this.#bytesFed,
      bytesDropped: this.#bytesDropped,
      bytesSent: this.#bytesSent,
      bufferedMessages: this.#buffer.length,
      linkFull: this.#linkFull,
    };
  }

  #stop(): void {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    for (const u of this.#unsubscribe) u();
    this.#buffer = [];
    this.#bufferBytes = 0;
  }

  #reset(inputOffsets: ReadonlyMap<ConnId, number>): void {
    this.#conns = new Map();
    for (const id of this.#outEnd.keys()) if (!inputOffsets.has(id)) this.#outEnd.delete(id);
    for (const [id, offset] of inputOffsets) {
      this.#conns.set(id, { offset, eof: false });
      if (id > this.#maxOpened) this.#maxOpened = id;
    }
  }

  #onMessage(m: MirrorInput): void {
    if (this.#state === "stopped") return;
    if (this.#state === "paused") {
      const w = messageWeight(m);
      if (this.#bufferBytes + w > this.#bufferCap) {
        this.#fail("overflow", `more than ${this.#bufferCap} bytes of mirrored input during checkpoint`, {
          seq: m.seq,
        });
        return;
      }
      this.#buffer.push(m);
      this.#bufferBytes += w;
      return;
    }
    this.#handle(m);
  }

  #handle(m: MirrorInput): void {
    if (!Number.isInteger(m.seq) || m.seq > this.#applied) {
      this.#fail("protocol", `mirrored ${m.kind} for checkpoint ${m.seq}, but ${this.#applied} is applied`, {
        seq: m.seq,
        applied: this.#applied,
        conn: m.conn,
      });
      return;
    }
    const conn = this.#conns.get(m.conn);
    if (m.seq < this.#applied) {
      // The applied checkpoint contains it: drop, but never input past what it holds.
      if (m.kind === "data") {
        const end = m.offset + m.bytes.byteLength;
        if (conn !== undefined && end > conn.offset) {
          this.#fail(
            "protocol",
            `input ${m.offset}..${end} on connection ${m.conn} from checkpoint ${m.seq} is past the applied state's offset ${conn.offset}`,
            {
              seq: m.seq,
              conn: m.conn,
              offset: m.offset,
              expected: conn.offset,
            },
          );
          return;
        }
        this.#bytesDropped += m.bytes.byteLength;
      }
      // Its id is used even if the guest closed it before the checkpoint (the host state no
      // longer lists it): the primary may still mirror the client's late input for it.
      if (m.kind === "open" && m.conn > this.#maxOpened) this.#maxOpened = m.conn;
      return;
    }
    switch (m.kind) {
      case "open":
        if (m.conn <= this.#maxOpened) {
          this.#fail("protocol", `open of connection ${m.conn}, an id already used`, { conn: m.conn });
          return;
        }
        this.#maxOpened = m.conn;
        this.#conns.set(m.conn, { offset: 0, eof: false });
        this.#feed({ kind: "open", conn: m.conn });
        return;
      case "data": {
        if (conn === undefined) {
          if (m.conn > this.#maxOpened) {
            this.#fail("protocol", `input on connection ${m.conn}, never opened`, { conn: m.conn });
          }
          return; // retired here (the SVM closed it); the client's late bytes
        }
        if (conn.eof || m.offset !== conn.offset) {
          this.#fail(
            "protocol",
            conn.eof
              ? `input on connection ${m.conn} after eof`
              : `input offset ${m.offset} on connection ${m.conn}, expected ${conn.offset} (${m.offset > conn.offset ? "gap" : "overlap"})`,
            { conn: m.conn, offset: m.offset, expected: conn.offset },
          );
          return;
        }
        conn.offset += m.bytes.byteLength;
        this.#bytesFed += m.bytes.byteLength;
        this.#feed({ kind: "data", conn: m.conn, offset: m.offset, bytes: m.bytes });
        return;
      }
      case "eof":
        if (conn === undefined) {
          if (m.conn > this.#maxOpened)
            this.#fail("protocol", `eof on connection ${m.conn}, never opened`, { conn: m.conn });
          return;
        }
        if (conn.eof || m.offset !== conn.offset) {
          this.#fail(
            "protocol",
            conn.eof
              ? `second eof on connection ${m.conn}`
              : `eof after ${m.offset} input bytes on connection ${m.conn}, expected ${conn.offset}`,
            { conn: m.conn, offset: m.offset, expected: conn.offset },
          );
          return;
        }
        conn.eof = true;
        this.#feed({ kind: "eof", conn: m.conn });
        return;
      default:
        this.#fail("protocol", `unknown mirror message kind`, { kind: (m as { kind: unknown }).kind });
    }
  }

  #feed(event: PortInput): void {
    this.#port.input(event);
  }

  #onSvm(e: PortOutput): void {
    if (this.#state === "stopped") return;
    const seq = this.#applied;
    let ok = true;
    switch (e.kind) {
      case "data":
        if (e.stream.kind !== "conn") this.#stdioEnd[e.stream.kind] = e.offset + e.bytes.byteLength;
        else this.#outEnd.set(e.stream.id, e.offset + e.bytes.byteLength);
        this.#bytesSent += e.bytes.byteLength;
        ok = this.#link.send({ kind: "data", seq, stream: e.stream, offset: e.offset, bytes: e.bytes });
        break;
      case "shutdown":
        ok = this.#link.send({ kind: "shutdown", seq, conn: e.conn, offset: this.#outEnd.get(e.conn) ?? 0 });
        break;
      case "close":
        ok = this.#link.send({ kind: "close", seq, conn: e.conn, offset: this.#outEnd.get(e.conn) ?? 0 });
        this.#conns.delete(e.conn);
        this.#outEnd.delete(e.conn);
        break;
      case "drained":
        return;
    }
    if (!ok) this.#linkFull++;
  }

  #fail(code: "protocol" | "overflow", message: string, details: Record<string, unknown>): void {
    this.#stop();
    this.emit("protocol-error", new ProxyError(code, message, { details }));
  }
}
