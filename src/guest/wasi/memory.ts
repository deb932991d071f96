/**
 * Bounds-checked access to guest linear memory for one host call. Pointers and lengths arrive as
 * wasm i32 values (JS numbers, possibly negative) and are read as u32. Any access outside the
 * memory throws Errno(FAULT). Every write marks the bytes dirty through the runtime.
 *
 * A GuestMemory is built per host call: the memory may grow (and its buffer change) between calls.
 */
import { E } from "./abi.ts";
import { Errno } from "./errors.ts";

export class GuestMemory {
  readonly u8: Uint8Array;
  private readonly dv: DataView;
  private readonly markDirty: (ptr: number, len: number) => void;

  constructor(u8: Uint8Array, markDirty: (ptr: number, len: number) => void) {
    this.u8 = u8;
    this.dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
    this.markDirty = markDirty;
  }

  /** Throw FAULT unless [ptr, ptr+len) lies inside memory. Returns ptr as u32. */
  check(ptr: number, len: number): number {
    const p = ptr >>> 0;
    const n = len >>> 0;
    if (p + n > this.u8.length) throw new Errno(E.FAULT);
    return p;
  }

  u8At(ptr: number): number {
    return this.u8[this.check(ptr, 1)]!;
  }
  u16(ptr: number): number {
    return this.dv.getUint16(this.check(ptr, 2), true);
  }
  u32(ptr: number): number {
    return this.dv.getUint32(this.check(ptr, 4), true);
  }
  u64(ptr: number): bigint {
    return this.dv.getBigUint64(this.check(ptr, 8), true);
  }

  setU32(ptr: number, v: number): void {
    const p = this.check(ptr, 4);
    this.dv.setUint32(p, v >>> 0, true);
    this.markDirty(p, 4);
  }
  setU64(ptr: number, v: bigint): void {
    const p = this.check(ptr, 8);
    this.dv.setBigUint64(p, BigInt.asUintN(64, v), true);
    this.markDirty(p, 8);
  }

  /** A copy of guest bytes [ptr, ptr+len). */
  copyOut(ptr: number, len: number): Uint8Array {
    const p = this.check(ptr, len);
    return this.u8.slice(p, p + (len >>> 0));
  }

  /** Write `bytes` at ptr (checked) and mark them dirty. */
  write(ptr: number, bytes: Uint8Array): void {
    const p = this.check(ptr, bytes.length);
    if (bytes.length === 0) return;
    this.u8.set(bytes, p);
    this.markDirty(p, bytes.length);
  }

  /** Fill a whole region built by the caller: check first, write, mark once. */
  writeStruct(ptr: number, len: number, fill: (dv: DataView, at: number) => void): void {
    const p = this.check(ptr, len);
    fill(this.dv, p);
    this.markDirty(p, len >>> 0);
  }

  /** A UTF-8 path/string argument, as bytes then decoded; invalid UTF-8 is ILSEQ. */
  string(ptr: number, len: number): string {
    const bytes = this.copyOut(ptr, len);
    try {
      return utf8Decoder.decode(bytes);
    } catch {
      throw new Errno(E.ILSEQ);
    }
  }

  /** Read an iovec array (ptr, len pairs) after checking the array and every buffer. */
  iovecs(ptr: number, count: number): Array<{ ptr: number; len: number }> {
    const n = count >>> 0;
    this.check(ptr, n * 8);
    if (n * 8 > this.u8.length) throw new Errno(E.FAULT);
    const out: Array<{ ptr: number; len: number }> = [];
    for (let i = 0; i < n; i++) {
      const bp = this.u32((ptr >>> 0) + i * 8);
      const bl = this.u32((ptr >>> 0) + i * 8 + 4);
      this.check(bp, bl);
      out.push({ ptr: bp, len: bl });
    }
    return out;
  }

  /** Gather an iovec array into one copy. */
  gather(iovs: ReadonlyArray<{ ptr: number; len: number }>): Uint8Array {
    let total = 0;
    for (const v of iovs) total += v.len;
    const out = new Uint8Array(total);
    let at = 0;
    for (const v of iovs) {
      out.set(this.u8.subarray(v.ptr, v.ptr + v.len), at);
      at += v.len;
    }
    return out;
  }

  /** Scatter `bytes` over iovecs (already checked); returns bytes written. */
  scatter(iovs: ReadonlyArray<{ ptr: number; len: number }>, bytes: Uint8Array): number {
    let at = 0;
    for (const v of iovs) {
      if (at >= bytes.length) break;
      const n = Math.min(v.len, bytes.length - at);
      if (n === 0) continue;
      this.u8.set(bytes.subarray(at, at + n), v.ptr);
      this.markDirty(v.ptr, n);
      at += n;
    }
    return at;
  }
}

export function iovTotal(iovs: ReadonlyArray<{ ptr: number; len: number }>): number {
  let t = 0;
  for (const v of iovs) t += v.len;
  return t;
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
