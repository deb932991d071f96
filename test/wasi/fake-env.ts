/**
 * A fake HostEnv over a plain ArrayBuffer standing in for linear memory, for driving the WASI host without wasm.
 * Clocks are manual; wait() delivers queued inputs, or advances the clock to the deadline, or
 * throws StopRequested when `stopOnWait` is set (or when there is nothing it could ever return).
 */
import type { PortInput, PortOutput, StdinInput } from "../../src/guest/port.ts";
import {
  type HostEnv,
  StopRequested,
  type WasiHost,
  type WasiHostOptions,
} from "../../src/guest/wasi/contract.ts";
import { createWasiHost } from "../../src/guest/wasi/host.ts";

export class FakeEnv implements HostEnv {
  readonly buffer: ArrayBuffer;
  host!: WasiHost;
  dirty: Array<[number, number]> = [];
  out: PortOutput[] = [];
  /** Inputs waiting to be delivered by pump()/wait(). */
  inbox: Array<PortInput | StdinInput> = [];
  mono = 1_000_000_000n;
  real = 1_700_000_000_000_000_000n;
  stopOnWait = false;
  waits = 0;
  private rnd = 1;

  constructor(pages = 1) {
    this.buffer = new ArrayBuffer(pages * 65536);
  }
  memory(): Uint8Array {
    return new Uint8Array(this.buffer);
  }
  markDirty(ptr: number, len: number): void {
    this.dirty.push([ptr, len]);
  }
  pump(): void {
    while (this.inbox.length > 0) this.host.deliver(this.inbox.shift()!);
  }
  wait(deadlineNs: bigint | undefined): "event" | "timeout" {
    this.waits++;
    if (this.stopOnWait) throw new StopRequested("stop");
    if (this.inbox.length > 0) {
      this.pump();
      return "event";
    }
    if (deadlineNs === undefined) throw new StopRequested("would block forever");
    if (deadlineNs > this.mono) this.mono = deadlineNs;
    return "timeout";
  }
  emit(event: PortOutput): void {
    this.out.push(event);
  }
  monotonicNs(): bigint {
    return this.mono;
  }
  realtimeNs(): bigint {
    return this.real;
  }
  randomFill(buf: Uint8Array): void {
    for (let i = 0; i < buf.length; i++) {
      this.rnd = (this.rnd * 1103515245 + 12345) >>> 0;
      buf[i] = this.rnd >>> 24;
    }
  }

  // ---- test conveniences ----

  u8(): Uint8Array {
    return new Uint8Array(this.buffer);
  }
  dv(): DataView {
    return new DataView(this.buffer);
  }
  put(ptr: number, bytes: Uint8Array | string): number {
    const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    this.u8().set(b, ptr);
    return b.length;
  }
  get(ptr: number, len: number): Uint8Array {
    return this.u8().slice(ptr, ptr + len);
  }
  str(ptr: number, len: number): string {
    return new TextDecoder().decode(this.get(ptr, len));
  }
  u32(ptr: number): number {
    return this.dv().getUint32(ptr, true);
  }
  u64(ptr: number): bigint {
    return this.dv().getBigUint64(ptr, true);
  }
  setU32(ptr: number, v: number): void {
    this.dv().setUint32(ptr, v, true);
  }
  /** Write an iovec array at `at` for the given (ptr, len) pairs. */
  iovs(at: number, list: Array<[number, number]>): void {
    list.forEach(([p, l], i) => {
      this.setU32(at + i * 8, p);
      this.setU32(at + i * 8 + 4, l);
    });
  }
  /** Write a poll_oneoff subscription (48 bytes) at ptr: tag 0 clock (a = clock id), 1/2 fd read/write (a = fd). */
  sub(ptr: number, userdata: bigint, tag: number, a: number, timeout = 0n, flags = 0): void {
    this.u8().fill(0, ptr, ptr + 48);
    const dv = this.dv();
    dv.setBigUint64(ptr, userdata, true);
    dv.setUint8(ptr + 8, tag);
    dv.setUint32(ptr + 16, a, true);
    dv.setBigUint64(ptr + 24, timeout, true);
    dv.setUint16(ptr + 40, flags, true);
  }
  /** The first `n` poll_oneoff events at ptr as [userdata, errno, type, nbytes, flags]. */
  events(ptr: number, n: number): Array<[bigint, number, number, bigint, number]> {
    const dv = this.dv();
    return Array.from({ length: n }, (_, i) => {
      const p = ptr + i * 32;
      return [
        dv.getBigUint64(p, true),
        dv.getUint16(p + 8, true),
        dv.getUint8(p + 10),
        dv.getBigUint64(p + 16, true),
        dv.getUint16(p + 24, true),
      ];
    });
  }
  /** True if every byte of [ptr, ptr+len) is covered by some dirty mark. */
  covered(ptr: number, len: number): boolean {
    for (let b = ptr; b < ptr + len; b++) {
      if (!this.dirty.some(([p, l]) => b >= p && b < p + l)) return false;
    }
    return true;
  }
}

export const defaultOptions: WasiHostOptions = {
  args: ["prog", "a1"],
  env: ["HOME=/", "LISTEN_FDS=7"],
  preopens: [{ guestPath: "/data", hostPath: undefined }],
  fsLimitBytes: 1 << 20,
};

export type Imports = Record<string, (...args: never[]) => number | bigint | undefined>;

/** A host over a fresh fake env; `call(name, ...args)` invokes an import. */
export function makeHost(options: Partial<WasiHostOptions> = {}, pages = 1) {
  const env = new FakeEnv(pages);
  const host = createWasiHost({ ...defaultOptions, ...options }, env);
  env.host = host;
  const imports = host.imports() as Imports;
  const call = (name: string, ...args: Array<number | bigint>): number => {
    const fn = imports[name];
    if (fn === undefined) throw new Error(`no import ${name}`);
    return (fn as (...a: Array<number | bigint>) => number)(...args);
  };
  return { env, host, imports, call };
}
