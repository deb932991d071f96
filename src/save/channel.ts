/**
 * The byte channels the engine reads and writes: the smallest surface the engine needs, so the
 * same algorithms run over a file, a TLS connection from src/transport, or an in-memory pipe.
 *
 * Backpressure contract: `ByteSink.write()` resolves once the chunks are accepted into a bounded
 * buffer (it waits while the buffer is above its bound); the engine awaits every write, so at most
 * one batch (≤ 4 MiB of pages) is in flight per stream. The chunks are borrowed until the promise
 * resolves: the engine reuses its page buffers only after that.
 *
 * `ByteSource.read()` resolves with the next chunk (owned by the caller), or null at a clean end
 * of stream; it rejects if the channel was reset or failed.
 */

export interface ByteSink {
  /**
   * True when the sink keeps references to written chunks after write() resolves (a socket's
   * queue, an in-memory pipe): the engine then gives it fresh page buffers for every batch
   * instead of reusing one pool.
   */
  readonly retains?: boolean;
  write(chunks: readonly Uint8Array[]): Promise<void>;
  /** Flush everything written and close the sending side. */
  end(): Promise<void>;
}

export interface ByteSource {
  read(): Promise<Uint8Array | null>;
}

/** A sink that counts what passes through it (bytes written). */
export class CountingSink implements ByteSink {
  readonly inner: ByteSink;
  readonly retains: boolean;
  bytes = 0;
  constructor(inner: ByteSink) {
    this.inner = inner;
    this.retains = inner.retains ?? false;
  }
  write(chunks: readonly Uint8Array[]): Promise<void> {
    for (const c of chunks) this.bytes += c.byteLength;
    return this.inner.write(chunks);
  }
  end(): Promise<void> {
    return this.inner.end();
  }
}

/** Adapters over the transport's ByteChannel (src/transport/channel.ts). */
export interface ChannelLike {
  write(chunks: readonly Uint8Array[]): boolean;
  onData(listener: (chunk: Uint8Array) => void): void;
  pause(): void;
  resume(): void;
  end(): void;
  readonly closed: boolean;
  on(event: "drain" | "end", listener: () => void): unknown;
  on(event: "close", listener: (error: Error | undefined) => void): unknown;
  off(event: "drain" | "end", listener: () => void): unknown;
  off(event: "close", listener: (error: Error | undefined) => void): unknown;
}

/** Largest group of chunks handed to a channel in one write() (bytes). */
const GROUP = 64 * 1024;

/** The write side of a channel as a ByteSink: waits for "drain" after write() returns false. */
export function channelSink(ch: ChannelLike): ByteSink {
  let closedError: Error | undefined;
  let closed = false;
  ch.on("close", (e) => {
    closed = true;
    closedError = e;
  });
  const drained = (): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onDrain = (): void => {
        ch.off("drain", onDrain);
        ch.off("close", onClose);
        resolve();
      };
      const onClose = (e: Error | undefined): void => {
        ch.off("drain", onDrain);
        ch.off("close", onClose);
        reject(e ?? new Error("channel closed while writing"));
      };
      ch.on("drain", onDrain);
      ch.on("close", onClose);
    });
  return {
    retains: true,
    async write(chunks) {
      // Hand the chunks over in groups of at most `GROUP` bytes, waiting for "drain" whenever the
      // channel says its queue is full, so a 4 MiB batch never trips the channel's hard cap.
      let group: Uint8Array[] = [];
      let bytes = 0;
      const pieces: Uint8Array[] = [];
      for (const c of chunks) {
        // a chunk larger than a group (a module, a host state) goes in slices
        for (let o = 0; o < c.byteLength; o += GROUP)
          pieces.push(c.subarray(o, Math.min(c.byteLength, o + GROUP)));
      }
      for (let i = 0; i <= pieces.length; i++) {
        const c = pieces[i];
        if (c !== undefined) {
          group.push(c);
          bytes += c.byteLength;
        }
        if (group.length > 0 && (c === undefined || bytes >= GROUP)) {
          if (closed) throw closedError ?? new Error("channel closed");
          const ok = ch.write(group);
          group = [];
          bytes = 0;
          if (!ok) await drained();
        }
      }
    },
    async end() {
      ch.end();
    },
  };
}

/**
 * The read side of a channel as a ByteSource. Chunks wait in a queue bounded by pausing the
 * channel while more than `limit` bytes are unread (default 4 MiB + one record).
 */
export function channelSource(ch: ChannelLike, limit = 5 << 20): ByteSource {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let waiter: (() => void) | undefined;
  const wake = (): void => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  ch.onData((chunk) => {
    queue.push(chunk);
    queued += chunk.byteLength;
    if (queued > limit) ch.pause();
    wake();
  });
  ch.on("end", () => {
    ended = true;
    wake();
  });
  ch.on("close", (e) => {
    if (e !== undefined) failure = e;
    ended = true;
    wake();
  });
  return {
    async read() {
      for (;;) {
        const chunk = queue.shift();
        if (chunk !== undefined) {
          queued -= chunk.byteLength;
          if (queued <= limit) ch.resume();
          return chunk;
        }
        if (failure !== undefined) throw failure;
        if (ended) return null;
        await new Promise<void>((resolve) => {
          waiter = resolve;
        });
      }
    },
  };
}
