/**
 * WASI host state capture and apply (the EMULATOR_CONTEXT body of every checkpoint), against a
 * plain copy of the same number of bytes into a buffer allocated beforehand, in the same run.
 *
 * The state: 100 connections with 4 queued chunks each, 64 files of 64 KiB in a preopen (4 MiB of
 * file data). `COLO_BENCH_LONG=1` for more rounds.
 *
 *   node bench/wasi-state.bench.ts
 */
import type { PortOutput } from "../src/guest/port.ts";
import { E, OFLAGS, RIGHTS_FILE } from "../src/guest/wasi/abi.ts";
import type { HostEnv, WasiHost } from "../src/guest/wasi/contract.ts";
import { createWasiHost } from "../src/guest/wasi/host.ts";

const ROUNDS = process.env.COLO_BENCH_LONG === "1" ? 200 : 30;

function makeHost(): {
  host: WasiHost;
  mem: Uint8Array;
  call: (name: string, ...a: Array<number | bigint>) => number;
} {
  const mem = new Uint8Array(1 << 20);
  let mono = 1n;
  const env: HostEnv = {
    memory: () => mem,
    markDirty: () => {},
    pump: () => {},
    wait: () => "timeout",
    emit: (_e: PortOutput) => {},
    monotonicNs: () => mono++,
    realtimeNs: () => 1_700_000_000_000_000_000n,
    randomFill: (b) => b.fill(7),
  };
  const host = createWasiHost(
    {
      args: ["bench"],
      env: [],
      preopens: [{ guestPath: "/data", hostPath: undefined }],
      fsLimitBytes: 64 << 20,
    },
    env,
  );
  const imports = host.imports() as Record<string, (...a: Array<number | bigint>) => number>;
  return { host, mem, call: (name, ...a) => imports[name]!(...a) };
}

function build(): WasiHost {
  const { host, mem, call } = makeHost();
  const dv = new DataView(mem.buffer);
  for (let c = 1; c <= 100; c++) {
    host.deliver({ kind: "open", conn: c });
    for (let k = 0; k < 4; k++)
      host.deliver({ kind: "data", conn: c, offset: k * 512, bytes: new Uint8Array(512).fill(c + k) });
  }
  const data = 100_000;
  for (let i = 0; i < 64; i++) {
    const name = new TextEncoder().encode(`file-${i}`);
    mem.set(name, 0);
    if (call("path_open", 4, 0, 0, name.length, OFLAGS.CREAT, RIGHTS_FILE, RIGHTS_FILE, 0, 64) !== E.SUCCESS)
      throw new Error("path_open");
    const fd = dv.getUint32(64, true);
    mem.fill(i + 1, data, data + 65536);
    dv.setUint32(128, data, true);
    dv.setUint32(132, 65536, true);
    if (call("fd_write", fd, 128, 1, 136) !== E.SUCCESS) throw new Error("fd_write");
    call("fd_close", fd);
  }
  host.onSuspend();
  return host;
}

function best(f: () => void): number {
  let min = Number.POSITIVE_INFINITY;
  for (let i = 0; i < ROUNDS; i++) {
    const t = process.hrtime.bigint();
    f();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e6);
  }
  return min;
}

const a = build();
const all = { kind: "all" } as const;
const body = a.captureState(all);
const b = makeHost().host;
const out = new Uint8Array(body.length);
const copyMs = best(() => out.set(body));
const captureMs = best(() => a.captureState(all));
const applyMs = best(() => b.applyState(body));
const rows: Array<[string, number]> = [
  ["memcpy (baseline)", copyMs],
  ["captureState", captureMs],
  ["applyState", applyMs],
];
console.log(`state body ${(body.length / 1048576).toFixed(2)} MiB, best of ${ROUNDS}`);
console.log("operation          ms      MiB/s   × baseline time");
for (const [name, ms] of rows)
  console.log(
    `${name.padEnd(16)} ${ms.toFixed(3).padStart(7)} ${(body.length / 1048576 / (ms / 1000)).toFixed(0).padStart(9)} ${(ms / copyMs).toFixed(1).padStart(9)}`,
  );
