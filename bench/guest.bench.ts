/**
 * Runtime benchmarks (issue 3, item 7; KV throughput is elsewhere):
 *  1. slowdown of each transform alone and all together vs the plain module run by the same host
 *     (guests/compute.wasm sieve: a store-heavy C kernel; goal: all on ≥ 60 % of plain speed);
 *  2. p50/p99 stop latency of a compute-bound guest with no host calls (goal p99 ≤ 10 ms);
 *  3. harvest of a 1 GiB guest's dirty map with 1,000 dirty pages (goal ≤ 1 ms), beside a plain
 *     byte-by-byte scan and a memcpy of the 1,000 pages.
 * `node bench/guest.bench.ts` (quick); COLO_BENCH_LONG=1 for more rounds.
 */
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import binaryen from "binaryen";
import { PAGE_SIZE } from "../src/guest/domain.ts";
import { CTL_MEMORY_PAGES, CTL_STOP } from "../src/guest/wasm/layout.ts";
import { harvestMap } from "../src/guest/wasm/state-tools.ts";
import type { TransformOptions } from "../src/guest/wasm/transform.ts";
import { WasmDomain } from "../src/guest/wasm/wasm-domain.ts";

const LONG = process.env.COLO_BENCH_LONG === "1";
const cacheDir = mkdtempSync(join(tmpdir(), "colo-bench-"));
const realHost = existsSync(new URL("../src/guest/wasi/host.ts", import.meta.url));
const hostModule = realHost ? undefined : new URL("../test/guest/stub-host.ts", import.meta.url);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}
const median = (xs: number[]) => pct(xs, 50);

// --- 1. slowdown ------------------------------------------------------------------------------
const compute = new Uint8Array(readFileSync(new URL("../guests/compute.wasm", import.meta.url)));
const rounds = LONG ? 40 : 12;
const args = ["compute", "--rounds", String(rounds), "--mem-mib", "8", "--ws-mib", "8"];
async function timeRun(transform: TransformOptions): Promise<number> {
  const d = await WasmDomain.create(compute, {
    host: { args, env: [], preopens: [], fsLimitBytes: 1 << 20 },
    transform,
    cacheDir,
    ...(hostModule ? { hostModule } : {}),
  });
  const t0 = performance.now();
  await d.start();
  await d.whenStopped();
  const ms = performance.now() - t0;
  if (d.end?.kind !== "exit" || d.end.code !== 0) throw new Error(`guest ended ${JSON.stringify(d.end)}`);
  await d.destroy();
  return ms;
}
const variants: [string, TransformOptions][] = [
  ["plain", { dirty: false, asyncify: false, preempt: false }],
  ["dirty", { dirty: true, asyncify: false, preempt: false }],
  ["asyncify", { dirty: false, asyncify: true, preempt: false }],
  ["preempt", { dirty: false, asyncify: false, preempt: true }],
  ["preempt+asyncify", { dirty: false, asyncify: true, preempt: true }],
  ["all", { dirty: true, asyncify: true, preempt: true }],
];
for (const [, o] of variants) await timeRun(o); // warm the cache
const reps = LONG ? 9 : 5;
const times = new Map<string, number[]>(variants.map(([n]) => [n, []]));
for (let r = 0; r < reps; r++) for (const [n, o] of variants) times.get(n)!.push(await timeRun(o));
// Best of the rounds (interleaved): other load on the machine only ever adds time.
const best = (xs: number[]) => Math.min(...xs);
const plainMs = best(times.get("plain")!);
console.log(
  `\nstore-heavy kernel: compute.wasm sieve, ${rounds} rounds over 8 MiB (${realHost ? "real" : "stub"} WASI host), best of ${reps} interleaved`,
);
console.log("transform           ms   speed vs plain");
for (const [n] of variants) {
  const ms = best(times.get(n)!);
  console.log(
    `${n.padEnd(18)} ${ms.toFixed(1).padStart(6)}   ${((plainMs / ms) * 100).toFixed(0).padStart(4)} %${n === "all" ? "   (goal ≥ 60 %)" : ""}`,
  );
}

// --- 1b. KV guest, in process ------------------------------------------------------------------
// kv.wasm fed pipelined SET/GET chunks straight through the port (no sockets, no client): the
// guest's own cost per request, which redis-benchmark's figures (bench/kv.bench.ts) blur with
// the loopback and the client's CPU on a small machine.
const kv = new Uint8Array(readFileSync(new URL("../guests/kv.wasm", import.meta.url)));
const KV_REQUESTS = LONG ? 400_000 : 100_000;
const resp = (...parts: string[]) =>
  `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join("")}`;
const kvChunks: Uint8Array[] = [];
for (let i = 0; i < KV_REQUESTS; i += 16) {
  let chunk = "";
  for (let j = i; j < i + 16; j++) {
    const key = `key:${String(j % 1000).padStart(6, "0")}`;
    chunk += j < KV_REQUESTS / 2 ? resp("SET", key, "xxxxxxxxxxxxxxxx") : resp("GET", key);
  }
  kvChunks.push(Buffer.from(chunk));
}
/** Reply bytes: +OK\r\n per SET, $16\r\n<16 bytes>\r\n per GET. */
const kvReplyBytes = (KV_REQUESTS / 2) * 5 + (KV_REQUESTS / 2) * (5 + 16 + 2);
async function timeKv(transform: TransformOptions): Promise<number> {
  const d = await WasmDomain.create(kv, {
    host: { args: ["kv.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 },
    transform,
    cacheDir,
    ...(hostModule ? { hostModule } : {}),
  });
  let got = 0;
  let wake: () => void = () => {};
  d.onOutput((e) => {
    if (e.kind === "data" && e.stream.kind === "conn") got += e.bytes.length;
    wake();
  });
  const until = async (cond: () => boolean) => {
    while (!cond()) await new Promise<void>((r) => (wake = r));
  };
  await d.start();
  const t0 = performance.now();
  d.input({ kind: "open", conn: 1 });
  // Keep up to 64 chunks (1,024 requests) unanswered: the guest never waits for input.
  let offset = 0;
  let sent = 0;
  for (const [i, bytes] of kvChunks.entries()) {
    await until(() => sent - got < 64 * 16 * 23);
    d.input({ kind: "data", conn: 1, offset, bytes });
    offset += bytes.length;
    sent += 16 * (i * 16 < KV_REQUESTS / 2 ? 5 : 23);
  }
  await until(() => got >= kvReplyBytes);
  const ms = performance.now() - t0;
  if (got !== kvReplyBytes) throw new Error(`kv: ${got} reply bytes, expected ${kvReplyBytes}`);
  await d.destroy();
  return ms;
}
for (const [, o] of variants) await timeKv(o);
const kvTimes = new Map<string, number[]>(variants.map(([n]) => [n, []]));
for (let r = 0; r < reps; r++) for (const [n, o] of variants) kvTimes.get(n)!.push(await timeKv(o));
const kvPlain = best(kvTimes.get("plain")!);
console.log(
  `\nKV guest in process: kv.wasm, ${KV_REQUESTS} requests (SET then GET) in pipelined chunks of 16, best of ${reps} interleaved`,
);
console.log("transform           ms   requests/s   speed vs plain");
for (const [n] of variants) {
  const ms = best(kvTimes.get(n)!);
  console.log(
    `${n.padEnd(18)} ${ms.toFixed(1).padStart(6)}   ${Math.round(KV_REQUESTS / (ms / 1000))
      .toString()
      .padStart(
        10,
      )}   ${((kvPlain / ms) * 100).toFixed(0).padStart(4)} %${n === "all" ? "   (goal ≥ 90 %)" : ""}`,
  );
}

// --- 2. stop latency --------------------------------------------------------------------------
const spinMod = binaryen.parseText(`(module
 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
 (memory (export "memory") 2)
 (func (export "_start") (local $i i32)
  (loop $l
   (i32.store offset=65536 (i32.and (i32.mul (local.get $i) (i32.const 4)) (i32.const 32767)) (local.get $i))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $l))))`);
spinMod.setFeatures(binaryen.Features.MutableGlobals);
const spin = spinMod.emitBinary();
spinMod.dispose();
const stopper = await WasmDomain.create(spin, {
  host: { args: ["spin"], env: [], preopens: [], fsLimitBytes: 1 << 20 },
  cacheDir,
  hostModule: new URL("../test/guest/stub-host.ts", import.meta.url),
});
await stopper.start();
const lat: number[] = [];
for (let i = 0; i < (LONG ? 1000 : 200); i++) {
  await new Promise((r) => setTimeout(r, 1));
  const t0 = performance.now();
  await stopper.suspend();
  lat.push(performance.now() - t0);
  await stopper.resume();
}
await stopper.destroy();
console.log(`\nstop latency (compute-bound loop, no host calls), ${lat.length} stops`);
console.log(
  `p50 ${pct(lat, 50).toFixed(3)} ms   p99 ${pct(lat, 99).toFixed(3)} ms   max ${Math.max(...lat).toFixed(3)} ms   (goal p99 ≤ 10 ms)`,
);

// --- 3. harvest -------------------------------------------------------------------------------
const pages = (1 << 30) / PAGE_SIZE;
const control = new WebAssembly.Memory({
  initial: CTL_MEMORY_PAGES,
  maximum: CTL_MEMORY_PAGES,
  shared: true,
});
const map = new Uint8Array(control.buffer, 0, CTL_STOP);
const map64 = new Float64Array(control.buffer, 0, CTL_STOP / 8);
const ctl32 = new Int32Array(control.buffer);
const guest = new WebAssembly.Memory({ initial: 16384, maximum: 16384, shared: true });
const gview = new Uint8Array(guest.buffer);
const dst = new Uint8Array(1000 * PAGE_SIZE);
let seed = 1;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
};
const mark = () => {
  for (let i = 0; i < 1000; i++) map[rnd() % pages] = 1;
};
const iters = LONG ? 500 : 100;
const harvestT: number[] = [];
const scanT: number[] = [];
const copyT: number[] = [];
let found = 0;
for (let i = -20; i < iters; i++) {
  if (i === 0) {
    harvestT.length = 0;
    scanT.length = 0;
    copyT.length = 0;
    found = 0;
  }
  mark();
  let t0 = performance.now();
  const got = harvestMap(map64, ctl32, pages);
  harvestT.push(performance.now() - t0);
  found += got.length;
  mark();
  t0 = performance.now();
  const list: number[] = [];
  for (let p = 0; p < pages; p++)
    if (map[p] !== 0) {
      map[p] = 0;
      list.push(p);
    }
  scanT.push(performance.now() - t0);
  t0 = performance.now();
  for (let k = 0; k < got.length; k++) {
    const p = got[k]!;
    dst.set(gview.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), k * PAGE_SIZE);
  }
  copyT.push(performance.now() - t0);
}
console.log(
  `\nharvest of a 1 GiB guest (${pages} pages) with ~1,000 dirty pages, ${iters} rounds (${(found / iters).toFixed(0)} pages each)`,
);
console.log("operation                        p50 ms    p99 ms");
const row = (n: string, xs: number[], note = "") =>
  console.log(
    `${n.padEnd(30)} ${median(xs).toFixed(3).padStart(8)}  ${pct(xs, 99).toFixed(3).padStart(8)}${note}`,
  );
row("harvestDirty (8-byte scan)", harvestT, "   (goal ≤ 1 ms)");
row("baseline: byte-by-byte scan", scanT);
row("baseline: memcpy 1,000 pages", copyT);
