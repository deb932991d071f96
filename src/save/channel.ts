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
  /** Bytes accepted by write() so far (sinks that report `flushed()`). */
  readonly written?: number;
  /**
   * Of the bytes accepted so far, how many the sink no longer references (handed to the
   * operating system, or encrypted by TLS): a retaining sink's chunks up to that offset may be
   * reused. Absent when the sink cannot tell (an in-memory pipe hands the chunks to its peer).
   */
  flushed?(): number;
  write(chunks: readonly Uint8Array[]): Promise<void>;
  /** Flush everything written and close the sending side. */
  end(): Promise<void>;
}

export interface ByteSource {
  read(): Promise<Uint8Array | null>;
  /**
   * Optional: while a consumer is set, every chunk (first those already queued, then each as it
   * arrives, synchronously) goes to `consumer.chunk` instead of to read(), the end of stream to
   * `consumer.end`, a failure to `consumer.fail`. Unset it (undefined) to go back to read(); a
   * consumer may unset itself from inside its callbacks.
   */
  offer?(consumer: ChunkConsumer | undefined): void;
}

/** The synchronous side of a ByteSource (`offer`). */
export interface ChunkConsumer {
  chunk(chunk: Uint8Array): void;
  end(): void;
  fail(error: Error): void;
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
  /** "tcp", "tls", "unix", "file", "pipe", "memory" (src/transport's ChannelType). */
  readonly type?: string;
  /** Bytes queued and not yet handed to the operating system. */
  readonly writableLength?: number;
  readonly writableHighWaterMark?: number;
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

/** Smallest group of chunks handed to a channel in one write() (bytes). */
const MIN_GROUP = 64 * 1024;

/** Channels whose queue is handed to the operating system: writableLength says what is still held. */
const OS_CHANNELS = new Set(["tcp", "tls", "unix", "file", "pipe"]);

/**
 * Merge adjacent views of one buffer into one chunk (pages of one slab, runs of guest memory):
 * fewer chunks per writev and per TLS write. Views are not copied.
 */
export function coalesce(chunks: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cur: Uint8Array | undefined;
  let len = 0;
  for (const c of chunks) {
    if (c.byteLength === 0) continue;
    if (cur !== undefined && c.buffer === cur.buffer && cur.byteOffset + len === c.byteOffset) {
      len += c.byteLength;
      continue;
    }
    if (cur !== undefined)
      out.push(len === cur.byteLength ? cur : new Uint8Array(cur.buffer, cur.byteOffset, len));
    cur = c;
    len = c.byteLength;
  }
  if (cur !== undefined)
    out.push(len === cur.byteLength ? cur : new Uint8Array(cur.buffer, cur.byteOffset, len));
  return out;
}

/**
 * The write side of a channel as a ByteSink: waits for "drain" after write() returns false.
 * Chunks go to the channel in groups of 4 × its high-water mark (≥ 64 KiB), which keeps the
 * queue far below the channel's hard cap (16 × the mark) while giving each gather write (writev,
 * one TLS write) enough bytes to be worth its fixed cost.
 */
export function channelSink(ch: ChannelLike): ByteSink & { readonly written: number } {
  let closedError: Error | undefined;
  let closed = false;
  let written = 0;
  const group = Math.max(MIN_GROUP, 4 * (ch.writableHighWaterMark ?? 0));
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
  const tracksFlush = ch.type !== undefined && OS_CHANNELS.has(ch.type) && ch.writableLength !== undefined;
  const sink = {
    retains: true,
    get written() {
      return written;
    },
    async write(chunks: readonly Uint8Array[]) {
      let batch: Uint8Array[] = [];
      let bytes = 0;
      const send = async (): Promise<void> => {
        if (closed) throw closedError ?? new Error("channel closed");
        const ok = ch.write(batch);
        written += bytes;
        batch = [];
        bytes = 0;
        if (!ok) await drained();
      };
      for (const whole of coalesce(chunks)) {
        // a chunk larger than a group (a run of pages, a module, a host state) goes in slices
        for (let o = 0; o < whole.byteLength; ) {
          const c = whole.subarray(o, Math.min(whole.byteLength, o + group - bytes));
          o += c.byteLength;
          batch.push(c);
          bytes += c.byteLength;
          if (bytes >= group) await send();
        }
      }
      if (batch.length > 0) await send();
    },
    async end() {
      ch.end();
    },
  };
  if (!tracksFlush) return sink;
  return Object.assign(sink, { flushed: () => written - (ch.writableLength ?? 0) });
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
  let consumer: ChunkConsumer | undefined;
  const wake = (): void => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  /** Hand the consumer what is queued, then the end or the failure if they came. */
  const feed = (): void => {
    while (consumer !== undefined && queue.length > 0) {
      const chunk = queue.shift()!;
      queued -= chunk.byteLength;
      if (queued <= limit) ch.resume();
      consumer.chunk(chunk);
    }
    if (consumer !== undefined && queue.length === 0 && ended) {
      if (failure !== undefined) consumer.fail(failure);
      else consumer.end();
    }
  };
  ch.onData((chunk) => {
    if (consumer !== undefined && queue.length === 0) {
      consumer.chunk(chunk);
      return;
    }
    queue.push(chunk);
    queued += chunk.byteLength;
    if (queued > limit) ch.pause();
    if (consumer !== undefined) feed();
    else wake();
  });
  ch.on("end", () => {
    ended = true;
    if (consumer !== undefined) feed();
    else wake();
  });
  ch.on("close", (e) => {
    if (e !== undefined) failure = e;
    ended = true;
    if (consumer !== undefined) feed();
    else wake();
  });
  return {
    offer(c) {
      consumer = c;
      feed();
    },
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
