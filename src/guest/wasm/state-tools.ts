/**
 * What both the main thread (WasmDomain) and the guest's worker (a snapshot) do to a guest's
 * state: harvest the dirty map, and digest the whole state.
 */
import { createHash } from "node:crypto";

/**
 * Harvest-and-clear the dirty map for pages [0, pages): scan 8 bytes at a time (a Float64 view:
 * marks are 0 or 1 bytes, so a marked word is never ±0), then read-and-clear each marked 4-byte
 * word with Atomics.exchange, so a mark landing during the harvest is either returned now or
 * kept for the next harvest. Returns ascending pfns.
 */
export function harvestMap(map64: Float64Array, ctl32: Int32Array, pages: number): Uint32Array {
  let out = new Uint32Array(256);
  let n = 0;
  const words = Math.ceil(pages / 8);
  for (let i = 0; i < words; i++) {
    if (map64[i] === 0) continue;
    for (let half = 0; half < 2; half++) {
      const w = i * 2 + half;
      if (ctl32[w] === 0) continue;
      const old = Atomics.exchange(ctl32, w, 0);
      for (let b = 0; b < 4; b++) {
        if (((old >>> (b * 8)) & 0xff) === 0) continue;
        if (n === out.length) {
          const bigger = new Uint32Array(out.length * 2);
          bigger.set(out);
          out = bigger;
        }
        out[n++] = w * 4 + b;
      }
    }
  }
  return out.slice(0, n);
}

/** How many pages of [0, pages) the dirty map marks (nothing is cleared). */
export function countMap(map64: Float64Array, bytes: Uint8Array, pages: number): number {
  let n = 0;
  const words = Math.ceil(pages / 8);
  for (let i = 0; i < words; i++) {
    if (map64[i] === 0) continue;
    for (let b = i * 8; b < i * 8 + 8; b++) if (bytes[b] !== 0) n++;
  }
  return n;
}

/**
 * Domain.digest(): SHA-256 over a header (magic "CDIG", version 1, memory size, context and host
 * state lengths), the whole memory, the context, the host state with every file block.
 */
export function stateDigest(mem: Uint8Array, ctx: Uint8Array, hostState: Uint8Array): Uint8Array {
  const h = createHash("sha256");
  const head = new DataView(new ArrayBuffer(24));
  head.setUint32(0, 0x47494443, true); // "CDIG"
  head.setUint32(4, 1, true);
  head.setBigUint64(8, BigInt(mem.byteLength), true);
  head.setUint32(16, ctx.length, true);
  head.setUint32(20, hostState.length, true);
  h.update(new Uint8Array(head.buffer));
  // Hashed through a copy of each MiB: the memory is shared (a SharedArrayBuffer).
  const chunk = new Uint8Array(1 << 20);
  for (let off = 0; off < mem.byteLength; off += chunk.length) {
    const n = Math.min(chunk.length, mem.byteLength - off);
    chunk.set(mem.subarray(off, off + n));
    h.update(chunk.subarray(0, n));
  }
  h.update(ctx);
  h.update(hostState);
  return new Uint8Array(h.digest());
}
