/**
 * The service plug of `colo run`: a real listening TCP socket plugged into a guest's port
 * (src/guest/port.ts), so that clients on the service address talk to the guest's fd 3.
 *
 * Design:
 * - Connection ids are assigned here, from 1 upwards, never reused for the plug's life.
 * - Every `data` event from a client socket is one input chunk, fed in arrival order with its
 *   input offset; a client's FIN is `eof`. A client's reset or error counts as eof too (the
 *   guest then sees its recv return 0 and closes).
 * - Guest output on a connection is written to its socket; the guest's `shutdown` ends the
 *   socket's sending side; its `close` ends the socket once written and destroys it.
 * - Backpressure (port contract): when the host's queue for a connection exceeds
 *   `highWaterBytes`, the socket is paused; the host's `drained` event resumes it. That event is
 *   only promised to a plug whose bound is at least the host's DRAIN_MIN_PEAK (16 KiB), and only
 *   because the port's figure never counts bytes the guest read before the last `drained` (the
 *   3 MiB stdin hang was a WasmDomain estimate that did, see test/run/stdin.test.ts). Guest output
 *   toward a slow client is buffered by the socket without bound: the port has no way to block
 *   the guest's sends (a known gap, see the report of issue 3).
 * - Output on stdout/stderr goes to the `stdout`/`stderr` sinks given.
 * - Given a `stdin` stream (the guest's host must then be created with stdin "port"), each of
 *   its chunks is a "stdin" input with its offset and its end (or error) is "stdin-eof"; it is
 *   paused above `highWaterBytes` queued and resumed on "stdin-drained", like a client socket.
 */
import net from "node:net";
import type { Readable } from "node:stream";
import type { ConnId, GuestPort, PortOutput } from "../guest/port.ts";

/** A service address: host (IPv4, IPv6 without brackets, or a name) and TCP port. */
export interface ServiceAddress {
  readonly host: string;
  readonly port: number;
}

/** Parse "HOST:PORT" or "[V6]:PORT"; undefined if malformed. Port 0 picks a free port. */
export function parseServiceAddress(text: string): ServiceAddress | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (host === undefined || host === "" || port > 65535) return undefined;
  return { host, port };
}

export function formatServiceAddress(a: ServiceAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export interface ServicePlugOptions {
  /**
   * Pause a client socket (or stdin) while the host holds more than this many of its bytes unread
   * (default 1 MiB). Against a real host it must be at least DRAIN_MIN_PEAK (16 KiB), or a paused
   * input may never hear "drained"; smaller values are for tests against a scripted port.
   */
  readonly highWaterBytes?: number;
  /** Where guest stdout/stderr bytes go (default: this process's stdout/stderr). */
  readonly stdout?: (bytes: Uint8Array) => void;
  readonly stderr?: (bytes: Uint8Array) => void;
  /** Feed this stream to the guest's stdin (default: none; the guest's fd 0 is then at EOF). */
  readonly stdin?: Readable;
}

/** Per-connection state of the plug. */
interface Conn {
  readonly id: ConnId;
  readonly socket: net.Socket;
  /** Input offset of the next byte to feed (bytes fed so far). */
  inOffset: number;
  /** eof has been fed to the guest: feed nothing more. */
  eofSent: boolean;
  /** The guest closed its fd: the socket is on its way out. */
  closed: boolean;
  paused: boolean;
}

export const DEFAULT_HIGH_WATER_BYTES = 1 << 20;

export class ServicePlug {
  readonly #port: GuestPort;
  readonly #server: net.Server;
  readonly #conns = new Map<ConnId, Conn>();
  readonly #highWater: number;
  readonly #stdout: (bytes: Uint8Array) => void;
  readonly #stderr: (bytes: Uint8Array) => void;
  readonly #unsubscribe: () => void;
  #nextId: ConnId = 1;
  /** close() was called: feed the port nothing more (the guest may be gone). */
  #closed = false;
  /** The stdin feed, until it ends or the plug closes. */
  #stdin: { readonly stream: Readable; offset: number; paused: boolean; stop(): void } | undefined;

  constructor(port: GuestPort, options: ServicePlugOptions = {}) {
    this.#port = port;
    this.#highWater = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.#stdout = options.stdout ?? ((b) => process.stdout.write(b));
    this.#stderr = options.stderr ?? ((b) => process.stderr.write(b));
    // allowHalfOpen: a client's FIN is only an eof for the guest; the guest decides when to close.
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#accept(s));
    this.#unsubscribe = port.onOutput((ev) => this.#output(ev));
    if (options.stdin !== undefined) this.#feedStdin(options.stdin);
  }

  #feedStdin(stream: Readable): void {
    const onData = (chunk: Buffer | string) => {
      const feed = this.#stdin;
      if (feed === undefined) return;
      const b = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const bytes = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
      const queued = this.#port.input({ kind: "stdin", offset: feed.offset, bytes });
      feed.offset += bytes.byteLength;
      if (queued > this.#highWater && !feed.paused) {
        feed.paused = true;
        stream.pause();
      }
    };
    const onEnd = () => {
      if (this.#stdin === undefined) return;
      this.#stdin.stop();
      this.#port.input({ kind: "stdin-eof" });
    };
    this.#stdin = {
      stream,
      offset: 0,
      paused: false,
      stop: () => {
        this.#stdin = undefined;
        stream.off("data", onData);
        stream.off("end", onEnd); // "error" stays handled (onEnd is then a no-op): never unhandled
        stream.pause();
      },
    };
    stream.on("data", onData);
    stream.on("end", onEnd);
    stream.on("error", onEnd);
  }

  /** Start listening; resolves with the bound address (useful with port 0). */
  listen(address: ServiceAddress): Promise<ServiceAddress> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once("error", onError);
      this.#server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
        this.#server.off("error", onError);
        const a = this.#server.address();
        if (a === null || typeof a === "string") resolve(address);
        else resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** Number of open client connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Stop listening, drop every client, stop forwarding output. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stdin?.stop();
    this.#unsubscribe();
    for (const c of this.#conns.values()) c.socket.destroy();
    this.#conns.clear();
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Flush guest output: resolves once every client socket has handed its buffered bytes to the OS. */
  async flush(): Promise<void> {
    const waits = [...this.#conns.values()]
      .filter((c) => c.socket.writableLength > 0 && !c.socket.destroyed)
      .map((c) => new Promise<void>((resolve) => c.socket.write(new Uint8Array(0), () => resolve())));
    await Promise.all(waits);
  }

  #accept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const id = this.#nextId++;
    const conn: Conn = { id, socket, inOffset: 0, eofSent: false, closed: false, paused: false };
    this.#conns.set(id, conn);
    this.#port.input({ kind: "open", conn: id });
    socket.on("data", (chunk: Buffer) => this.#data(conn, chunk));
    socket.on("end", () => this.#eof(conn));
    socket.on("error", () => this.#eof(conn));
    socket.on("close", () => {
      this.#eof(conn);
      if (conn.closed) this.#conns.delete(id);
    });
  }

  #data(conn: Conn, chunk: Buffer): void {
    if (conn.eofSent || conn.closed || this.#closed) return;
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const queued = this.#port.input({ kind: "data", conn: conn.id, offset: conn.inOffset, bytes });
    conn.inOffset += chunk.byteLength;
    if (queued > this.#highWater && !conn.paused) {
      conn.paused = true;
      conn.socket.pause();
    }
  }

  #eof(conn: Conn): void {
    if (conn.eofSent || conn.closed || this.#closed) return;
    conn.eofSent = true;
    this.#port.input({ kind: "eof", conn: conn.id });
  }

  #output(ev: PortOutput): void {
    switch (ev.kind) {
      case "data": {
        const s = ev.stream;
        if (s.kind === "stdout") this.#stdout(ev.bytes);
        else if (s.kind === "stderr") this.#stderr(ev.bytes);
        else {
          const conn = this.#conns.get(s.id);
          if (conn !== undefined && !conn.socket.destroyed && conn.socket.writable)
            conn.socket.write(ev.bytes);
        }
        return;
      }
      case "shutdown": {
        const conn = this.#conns.get(ev.conn);
        if (conn !== undefined && !conn.socket.destroyed) conn.socket.end();
        return;
      }
      case "close": {
        const conn = this.#conns.get(ev.conn);
        if (conn === undefined) return;
        conn.closed = true;
        if (conn.socket.destroyed) this.#conns.delete(ev.conn);
        // Send what is buffered, then FIN, then let go of the socket whatever the client does.
        else conn.socket.destroySoon();
        return;
      }
      case "drained": {
        const conn = this.#conns.get(ev.conn);
        if (conn?.paused === true) {
          conn.paused = false;
          conn.socket.resume();
        }
        return;
      }
      case "stdin-drained": {
        const feed = this.#stdin;
        if (feed?.paused === true) {
          feed.paused = false;
          feed.stream.resume();
        }
        return;
      }
    }
  }
}
