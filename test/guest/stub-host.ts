/**
 * A minimal WASI host for the runtime's tests (the real one is src/guest/wasi/host.ts): args,
 * fd_write to stdout/stderr (as port outputs), fd_read on fd 0 fed by port input on conn 0 (a
 * blocking call), clock_time_get, random_get (seeded, so runs are reproducible), proc_exit,
 * sched_yield. Its state is a canonical little JSON document.
 *
 * Test hook: env "STUB_STOP_AT=3,17" makes the host request a stop (throw StopRequested) on
 * entry to host calls number 3 and 17 (counting from 0), once each: capture at chosen calls.
 */
import type { FsBlockRef } from "../../src/guest/domain.ts";
import type { PortInput } from "../../src/guest/port.ts";
import {
  type HostEnv,
  ProcExit,
  StopRequested,
  type WasiHost,
  type WasiHostOptions,
} from "../../src/guest/wasi/contract.ts";

const EBADF = 8;
const EINVAL = 28;
const ESPIPE = 70;
const EFAULT = 21;

interface State {
  out: number[]; // offsets of stdout, stderr
  input: string[]; // unread chunks on fd 0, base64
  eof: boolean;
  clock: string; // virtual monotonic ns, advanced 1 ms per clock_time_get (deterministic)
  rng: number; // xorshift32 state
  calls: number;
  stopped: number; // the call number at which the last hook stop happened
}

export function createWasiHost(options: WasiHostOptions, env: HostEnv): WasiHost {
  let s: State = { out: [0, 0], input: [], eof: false, clock: "0", rng: 0x9e3779b9, calls: 0, stopped: -1 };
  const stopAt = new Set(
    (options.env.find((e) => e.startsWith("STUB_STOP_AT="))?.slice(13) ?? "")
      .split(",")
      .filter((x) => x !== "")
      .map(Number),
  );
  const enc = new TextEncoder();
  const args = options.args.map((a) => enc.encode(`${a}\0`));

  const view = () => new DataView(env.memory().buffer);
  const check = (ptr: number, len: number) => ptr >= 0 && len >= 0 && ptr + len <= env.memory().length;
  const write = (ptr: number, bytes: Uint8Array) => {
    env.memory().set(bytes, ptr);
    env.markDirty(ptr, bytes.length);
  };
  const setU32 = (ptr: number, v: number) => {
    view().setUint32(ptr, v, true);
    env.markDirty(ptr, 4);
  };

  const imports = {
    args_sizes_get(argc: number, size: number): number {
      if (!check(argc, 4) || !check(size, 4)) return EFAULT;
      setU32(argc, args.length);
      setU32(
        size,
        args.reduce((n, a) => n + a.length, 0),
      );
      return 0;
    },
    args_get(argv: number, buf: number): number {
      let p = buf;
      args.forEach((a, i) => {
        setU32(argv + 4 * i, p);
        write(p, a);
        p += a.length;
      });
      return 0;
    },
    environ_sizes_get(count: number, size: number): number {
      setU32(count, 0);
      setU32(size, 0);
      return 0;
    },
    environ_get(): number {
      return 0;
    },
    fd_write(fd: number, iovs: number, n: number, nwritten: number): number {
      if (fd !== 1 && fd !== 2) return EBADF;
      if (!check(iovs, n * 8)) return EFAULT;
      const mem = env.memory();
      const v = view();
      const parts: Uint8Array[] = [];
      let total = 0;
      for (let i = 0; i < n; i++) {
        const p = v.getUint32(iovs + 8 * i, true);
        const l = v.getUint32(iovs + 8 * i + 4, true);
        if (!check(p, l)) return EFAULT;
        parts.push(mem.slice(p, p + l));
        total += l;
      }
      const bytes = new Uint8Array(total);
      let o = 0;
      for (const part of parts) {
        bytes.set(part, o);
        o += part.length;
      }
      const k = fd - 1;
      env.emit({ kind: "data", stream: { kind: fd === 1 ? "stdout" : "stderr" }, offset: s.out[k]!, bytes });
      s.out[k]! += total;
      setU32(nwritten, total);
      return 0;
    },
    fd_read(fd: number, iovs: number, n: number, nread: number): number {
      if (fd !== 0) return EBADF;
      env.pump();
      while (s.input.length === 0 && !s.eof) env.wait(undefined); // may throw StopRequested: no state changed yet
      if (s.input.length === 0) {
        setU32(nread, 0);
        return 0;
      }
      const chunk = Buffer.from(s.input[0]!, "base64");
      const v = view();
      let used = 0;
      for (let i = 0; i < n && used < chunk.length; i++) {
        const p = v.getUint32(iovs + 8 * i, true);
        const l = v.getUint32(iovs + 8 * i + 4, true);
        const take = Math.min(l, chunk.length - used);
        write(p, chunk.subarray(used, used + take));
        used += take;
      }
      if (used === chunk.length) s.input.shift();
      else s.input[0] = chunk.subarray(used).toString("base64");
      setU32(nread, used);
      return 0;
    },
    fd_fdstat_get(fd: number, buf: number): number {
      if (fd > 2) return EBADF;
      write(buf, new Uint8Array(24));
      env.memory()[buf] = 2; // character device
      return 0;
    },
    fd_prestat_get(): number {
      return EBADF;
    },
    fd_close(): number {
      return 0;
    },
    fd_seek(): number {
      return ESPIPE;
    },
    clock_time_get(_id: number, _precision: bigint, out: number): number {
      const t = BigInt(s.clock) + 1_000_000n;
      s.clock = String(t);
      view().setBigUint64(out, t, true);
      env.markDirty(out, 8);
      return 0;
    },
    random_get(buf: number, len: number): number {
      if (!check(buf, len)) return EFAULT;
      const bytes = new Uint8Array(len);
      for (let i = 0; i < len; i++) {
        let x = s.rng;
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        s.rng = x >>> 0;
        bytes[i] = s.rng & 0xff;
      }
      write(buf, bytes);
      return 0;
    },
    sched_yield(): number {
      return 0;
    },
    proc_exit(code: number): never {
      throw new ProcExit(code);
    },
    poll_oneoff(): number {
      return EINVAL;
    },
  };

  const wrapped: Record<string, (...args: never[]) => unknown> = {};
  for (const [name, f] of Object.entries(imports) as [string, (...args: never[]) => unknown][]) {
    wrapped[name] = (...args: never[]) => {
      if (stopAt.has(s.calls) && s.stopped !== s.calls) {
        s.stopped = s.calls;
        throw new StopRequested(`stub stop at call ${s.calls}`);
      }
      const r = f(...args);
      s.calls++;
      return r;
    };
  }

  return {
    imports: () => wrapped as unknown as ReturnType<WasiHost["imports"]>,
    deliver(event: PortInput): number {
      if (!("conn" in event) || event.conn !== 0) return 0;
      if (event.kind === "data") s.input.push(Buffer.from(event.bytes).toString("base64"));
      if (event.kind === "eof") s.eof = true;
      return s.input.reduce((n, c) => n + Buffer.from(c, "base64").length, 0);
    },
    captureState: () => new TextEncoder().encode(JSON.stringify(s)),
    applyState(body: Uint8Array): void {
      const next = JSON.parse(new TextDecoder().decode(body)) as State;
      if (!Array.isArray(next.out) || !Array.isArray(next.input)) throw new Error("bad stub host state");
      s = next;
    },
    harvestFsDirty: (): FsBlockRef[] => [],
    onSuspend(): void {},
    onResume(): void {},
    writeBack: async () => {},
  };
}
