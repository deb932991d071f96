/**
 * Test helpers for the proxy: a tiny deterministic "guest" behind a GuestPort (uppercase echo),
 * with injectable differences, and loopback TCP clients.
 */
import net from "node:net";
import type { ConnId, GuestPort, OutputStream, PortInput, PortOutput } from "../../src/guest/port.ts";
import { rng } from "../stream/fuzz.ts";

interface FakeConn {
  inOff: number;
  outOff: number;
  eof: boolean;
  shut: boolean;
  closed: boolean;
}

export interface FakeGuestOptions {
  /** Output for one input chunk; default: ASCII uppercase. */
  readonly transform?: (bytes: Uint8Array, conn: ConnId) => Uint8Array;
  /** Seed for splitting each output into random chunks (1..maxChunk bytes); 0 = one chunk. */
  readonly seed?: number;
  readonly maxChunk?: number;
  /** After echoing a chunk containing this byte, shut the connection down at once. */
  readonly shutdownOn?: number;
}

/** ASCII uppercase. */
export function upper(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength);
  for (let i = 0; i < bytes.byteLength; i++) {
    const b = bytes[i]!;
    out[i] = b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
  }
  return out;
}

/** Uppercase, but '!' becomes '?': a replica with a deterministic difference. */
export function upperBang(bytes: Uint8Array): Uint8Array {
  const out = upper(bytes);
  for (let i = 0; i < out.byteLength; i++) if (out[i] === 0x21) out[i] = 0x3f;
  return out;
}

/**
 * An uppercase-echo guest. Input is processed asynchronously (setImmediate), in order; on eof it
 * shuts down and closes the connection. `hold()` stops processing (a stopped replica).
 * It checks the input offsets as the WASI host does, and records every event in and out.
 */
export class FakeGuest implements GuestPort {
  readonly name: string;
  readonly conns = new Map<ConnId, FakeConn>();
  readonly inputs: PortInput[] = [];
  readonly outputs: PortOutput[] = [];
  stdoutOff = 0;
  errors: Error[] = [];
  transform: (bytes: Uint8Array, conn: ConnId) => Uint8Array;
  readonly #listeners = new Set<(e: PortOutput) => void>();
  #pending: PortInput[] = [];
  #held = false;
  #scheduled = false;
  readonly #rand: (() => number) | undefined;
  readonly #maxChunk: number;
  readonly #shutdownOn: number | undefined;

  constructor(name: string, options: FakeGuestOptions = {}) {
    this.name = name;
    this.transform = options.transform ?? upper;
    this.#rand = options.seed ? rng(options.seed) : undefined;
    this.#maxChunk = options.maxChunk ?? 7;
    this.#shutdownOn = options.shutdownOn;
  }

  input(event: PortInput): number {
    this.inputs.push(event);
    if (event.kind === "open") {
      if (this.conns.has(event.conn)) this.errors.push(new Error(`${this.name}: reopen ${event.conn}`));
      this.conns.set(event.conn, { inOff: 0, outOff: 0, eof: false, shut: false, closed: false });
    } else {
      const c = this.conns.get(event.conn);
      if (c === undefined)
        this.errors.push(new Error(`${this.name}: ${event.kind} on unknown ${event.conn}`));
      else if (event.kind === "data") {
        if (event.offset !== c.inOff)
          this.errors.push(new Error(`${this.name}: offset ${event.offset} != ${c.inOff}`));
        c.inOff += event.bytes.byteLength;
      }
    }
    this.#pending.push(event);
    this.#schedule();
    let queued = 0;
    for (const p of this.#pending)
      if (p.kind === "data" && p.conn === event.conn) queued += p.bytes.byteLength;
    return queued;
  }

  onOutput(listener: (event: PortOutput) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stop processing input (a suspended replica); resume with release(). */
  hold(): void {
    this.#held = true;
  }
  release(): void {
    this.#held = false;
    this.#schedule();
  }

  /** True when every input has been processed. */
  get idle(): boolean {
    return this.#pending.length === 0;
  }

  /** Write to stdout. */
  writeStdout(text: string): void {
    const bytes = new TextEncoder().encode(text);
    this.#emitData({ kind: "stdout" }, this.stdoutOff, bytes);
    this.stdoutOff += bytes.byteLength;
  }

  /** Per-connection input offsets, as the host state would hold them. */
  inputOffsets(): Map<ConnId, number> {
    const m = new Map<ConnId, number>();
    for (const [id, c] of this.conns) if (!c.closed) m.set(id, c.inOff);
    return m;
  }

  /** Become an exact copy of `other` (a checkpoint applied): its connections and offsets. */
  applyStateOf(other: FakeGuest): void {
    this.#pending = [];
    this.conns.clear();
    for (const [id, c] of other.conns) this.conns.set(id, { ...c });
    this.stdoutOff = other.stdoutOff;
  }

  /** Everything this guest wrote on a connection, concatenated. */
  producedOn(conn: ConnId): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const o of this.outputs)
      if (o.kind === "data" && o.stream.kind === "conn" && o.stream.id === conn) parts.push(o.bytes);
    return new Uint8Array(Buffer.concat(parts));
  }

  #schedule(): void {
    if (this.#scheduled || this.#held) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#process();
    });
  }

  #process(): void {
    while (!this.#held && this.#pending.length > 0) {
      const e = this.#pending.shift()!;
      const c = this.conns.get(e.conn);
      if (c === undefined || c.closed) continue;
      if (e.kind === "data") {
        if (c.shut) continue;
        const out = this.transform(e.bytes, e.conn);
        this.#emitData({ kind: "conn", id: e.conn }, c.outOff, out);
        c.outOff += out.byteLength;
        if (this.#shutdownOn !== undefined && e.bytes.includes(this.#shutdownOn)) {
          c.shut = true;
          this.#emit({ kind: "shutdown", conn: e.conn });
        }
        if (!this.#pending.some((p) => p.kind === "data" && p.conn === e.conn)) {
          this.#emit({ kind: "drained", conn: e.conn });
        }
      } else if (e.kind === "eof") {
        c.eof = true;
        if (!c.shut) this.#emit({ kind: "shutdown", conn: e.conn });
        c.shut = true;
        c.closed = true;
        this.#emit({ kind: "close", conn: e.conn });
      }
    }
  }

  #emitData(stream: OutputStream, offset: number, bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.byteLength) {
      const n = this.#rand === undefined ? bytes.byteLength : 1 + Math.floor(this.#rand() * this.#maxChunk);
      const part = bytes.subarray(at, Math.min(bytes.byteLength, at + n));
      this.#emit({ kind: "data", stream, offset: offset + at, bytes: part });
      at += part.byteLength;
    }
  }

  #emit(e: PortOutput): void {
    this.outputs.push(e);
    for (const l of this.#listeners) l(e);
  }
}

/** A loopback TCP client that collects what it receives. */
export class Client {
  readonly socket: net.Socket;
  received: Buffer = Buffer.alloc(0);
  ended = false;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
    });
    socket.on("end", () => {
      this.ended = true;
    });
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {});
  }

  static connect(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => resolve(new Client(s)));
      s.once("error", reject);
    });
  }

  get text(): string {
    return this.received.toString("latin1");
  }

  write(text: string | Uint8Array): void {
    this.socket.write(text);
  }

  /** Resolves once `pred()` holds; rejects after `ms` (a hang guard, not a timing assertion). */
  until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
    return until(pred, what, ms);
  }
}

/** Poll `pred` about every millisecond until true; reject after `ms` (a hang guard). */
export function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const check = (): void => {
      if (pred()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 1);
    };
    check();
  });
}

/** Let pending immediates and I/O run: `n` turns of the event loop. */
export async function settle(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 1));
}
