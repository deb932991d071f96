/** Byte sinks and sources over memory, for engine tests. */
import type { ByteSink, ByteSource } from "../../../src/save/channel.ts";

export class CollectSink implements ByteSink {
  readonly chunks: Uint8Array[] = [];
  ended = false;
  async write(chunks: readonly Uint8Array[]): Promise<void> {
    for (const c of chunks) this.chunks.push(c.slice()); // copies: the engine reuses page buffers
  }
  async end(): Promise<void> {
    this.ended = true;
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.chunks);
  }
}

/** Serve `bytes` in chunks of `size` (or seeded random sizes when size is 0). */
export function bytesSource(bytes: Uint8Array, size = 4096, seed = 7): ByteSource {
  let pos = 0;
  let x = seed;
  return {
    async read() {
      if (pos >= bytes.length) return null;
      let n = size;
      if (n === 0) {
        x = (x * 1103515245 + 12345) >>> 0;
        n = 1 + (x % 70000);
      }
      const out = bytes.subarray(pos, Math.min(bytes.length, pos + n));
      pos += out.length;
      return out;
    },
  };
}
