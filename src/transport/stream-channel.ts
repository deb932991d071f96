/**
 * Byte channels over Node streams: TCP and Unix sockets (plain or TLS), pipes and stdio, and
 * files (write-only for save, read-only for restore). The backpressure and lifecycle contract is
 * the one written in channel.ts; the high-water mark is the underlying stream's own, so "drain"
 * is the stream's "drain".
 */
import fs from "node:fs";
import net from "node:net";
import type { Readable, Writable } from "node:stream";
import { BaseChannel, type ChannelOptions, type ChannelType, DEFAULT_HIGH_WATER_MARK } from "./channel.ts";
import { fromNodeError, TransportError } from "./errors.ts";

export class StreamChannel extends BaseChannel {
  readonly type: ChannelType;
  readonly remote: string;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly #in: Readable | undefined;
  readonly #out: Writable | undefined;
  #error: TransportError | undefined;
  #inClosed: boolean;
  #outClosed: boolean;

  /**
   * `input` and `output` may be the same duplex (a socket) or separate streams (a pipe pair), or
   * either may be absent (a file). The channel takes ownership of both.
   */
  constructor(
    type: ChannelType,
    remote: string,
    input: Readable | undefined,
    output: Writable | undefined,
    options: ChannelOptions = {},
  ) {
    super({ highWaterMark: output?.writableHighWaterMark ?? DEFAULT_HIGH_WATER_MARK, ...options });
    this.type = type;
    this.remote = remote;
    this.#in = input;
    this.#out = output;
    this.readable = input !== undefined;
    this.writable = output !== undefined;
    this.#inClosed = input === undefined;
    this.#outClosed = output === undefined;
    const duplex = input !== undefined && (input as unknown) === (output as unknown);
    const onError = (err: unknown): void => {
      this.#error ??= fromNodeError(err, `${type} ${remote}`);
    };
    if (input !== undefined) {
      input.on("data", (chunk: Buffer) => this.push(chunk));
      input.on("end", () => this.pushEnd());
      input.on("error", onError);
      input.on("close", () => {
        this.#inClosed = true;
        if (!duplex && this.#error !== undefined) output?.destroy();
        this.#maybeClosed();
      });
    }
    if (output !== undefined && !duplex) {
      output.on("error", onError);
      output.on("close", () => {
        this.#outClosed = true;
        if (this.#error !== undefined) input?.destroy();
        this.#maybeClosed();
      });
    }
    if (duplex) {
      // A socket's "close" covers both directions.
      (input as Readable).on("close", () => {
        this.#outClosed = true;
        this.#maybeClosed();
      });
    }
    output?.on("drain", () => this.emit("drain"));
  }

  get writableLength(): number {
    return this.#out?.writableLength ?? 0;
  }

  protected writeChunks(chunks: readonly Uint8Array[], _bytes: number): boolean {
    const out = this.#out!;
    let ok = true;
    if (chunks.length === 1) return out.write(chunks[0]!);
    out.cork();
    for (const c of chunks) ok = out.write(c);
    out.uncork();
    return ok;
  }

  protected endWrites(): void {
    this.#out?.end();
  }

  protected destroySource(error: TransportError | undefined): void {
    this.#error ??= error;
    this.#in?.destroy();
    if ((this.#out as unknown) !== (this.#in as unknown)) this.#out?.destroy();
  }

  protected pauseSource(): void {
    this.#in?.pause();
  }

  protected resumeSource(): void {
    this.#in?.resume();
  }

  #maybeClosed(): void {
    if (this.#inClosed && this.#outClosed) this.finishClose(this.#error);
  }
}

/** Wrap a connected net.Socket or tls.TLSSocket. */
export function socketChannel(
  socket: net.Socket,
  type: ChannelType,
  options: ChannelOptions = {},
): StreamChannel {
  const remote =
    socket.remoteAddress !== undefined
      ? `${socket.remoteAddress}:${socket.remotePort}`
      : String((socket as { _pendingData?: unknown; path?: string }).path ?? "unix");
  socket.setNoDelay?.(true);
  return new StreamChannel(type, remote, socket, socket, options);
}

/** A channel over separate read and write streams (a pipe pair, a child's stdio). */
export function pipeChannel(
  input: Readable | undefined,
  output: Writable | undefined,
  remote = "pipe",
): StreamChannel {
  return new StreamChannel("pipe", remote, input, output);
}

/** This process's stdin and stdout as one channel. */
export function stdioChannel(): StreamChannel {
  return pipeChannel(process.stdin, process.stdout, "stdio");
}

export interface FileWriteOptions {
  /** Overwrite an existing file; without it an existing file is an error ("config", EEXIST). */
  force?: boolean;
  highWaterMark?: number;
}

/** A write-only channel into a new file (for `colo save`). Resolves once the file is open. */
export async function openFileForWrite(path: string, options: FileWriteOptions = {}): Promise<StreamChannel> {
  const handle = await fs.promises.open(path, options.force === true ? "w" : "wx").catch((err: unknown) => {
    throw fromNodeError(err, `open ${path} for writing`);
  });
  const out = fs.createWriteStream(path, {
    fd: handle,
    autoClose: true,
    highWaterMark: options.highWaterMark ?? 1 << 20,
  });
  return new StreamChannel("file", path, undefined, out);
}

/** A read-only channel from a file (for `colo restore`). Resolves once the file is open. */
export async function openFileForRead(
  path: string,
  options: { highWaterMark?: number } = {},
): Promise<StreamChannel> {
  const handle = await fs.promises.open(path, "r").catch((err: unknown) => {
    throw fromNodeError(err, `open ${path} for reading`);
  });
  const input = fs.createReadStream(path, {
    fd: handle,
    autoClose: true,
    highWaterMark: options.highWaterMark ?? 1 << 20,
  });
  return new StreamChannel("file", path, input, undefined, { inboxLimit: options.highWaterMark ?? 1 << 20 });
}

export interface RawConnectOptions {
  host?: string;
  port?: number;
  path?: string;
  timeoutMs?: number;
}

/** A plain (unauthenticated) TCP or Unix connection. Use dial() for anything between hosts. */
export function connectRaw(options: RawConnectOptions): Promise<StreamChannel> {
  return new Promise((resolve, reject) => {
    const socket =
      options.path !== undefined
        ? net.connect({ path: options.path, allowHalfOpen: true })
        : net.connect({ host: options.host ?? "127.0.0.1", port: options.port ?? 0, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TransportError("timeout", "connect timed out"));
    }, options.timeoutMs ?? 10_000);
    timer.unref();
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(fromNodeError(err, "connect"));
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socketChannel(socket, options.path !== undefined ? "unix" : "tcp"));
    });
  });
}
