/**
 * Live migration and save-to-file of a guest that keeps dirtying memory, against baselines
 * measured in the same run:
 *
 *   - guest: guests/compute.wasm --mem-mib 256 --ws-mib 64 --pages-per-sec 2000 (a 256 MiB guest
 *     dirtying 2,000 random pages a second within a 64 MiB working set);
 *   - raw loopback bandwidth: the same number of bytes through a transport connection with no
 *     engine, plain TCP and TLS (TLS_AES_128_GCM_SHA256, the cipher every colo connection uses);
 *   - migration over each: total time, downtime (suspend → target resumed), bytes, rounds, and
 *     stream throughput (bytes / total time) as a ratio of the raw bandwidth;
 *   - save to a file against a raw file write of the same size.
 *
 * Goals (issue 4): downtime ≤ 20 ms; stream throughput ≥ 70 % of the raw TLS socket.
 * `node bench/migrate.bench.ts [--mem-mib N]` (default 256; COLO_BENCH_LONG=1 runs 3 times).
 */
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmDomain } from "../src/guest/wasm/wasm-domain.ts";
import { channelSink, channelSource } from "../src/save/channel.ts";
import { writeFileAtomically } from "../src/save/files.ts";
import { migrate, receiveMigration } from "../src/save/migrate.ts";
import { saveDomain } from "../src/save/save.ts";
import { type Connection, dial, listen } from "../src/transport/connect.ts";
import { newSessionId } from "../src/transport/hello.ts";
import type { Security } from "../src/transport/security.ts";

const argMem = process.argv.indexOf("--mem-mib");
const MEM_MIB = argMem > 0 ? Number(process.argv[argMem + 1]) : 256;
const WS_MIB = Math.min(64, MEM_MIB);
const RUNS = process.env.COLO_BENCH_LONG === "1" ? 3 : 1;
const module = readFileSync(new URL("../guests/compute.wasm", import.meta.url));
const hostOpts = (args: string[]) => ({ args, env: [], preopens: [], fsLimitBytes: 1 << 20 });
const quiet = (l: string, m: string) =>
  void (l === "warn" && !m.includes("insecure") && process.stderr.write(`${m}\n`));

async function guest(): Promise<WasmDomain> {
  const d = await WasmDomain.create(module, {
    host: hostOpts([
      "compute",
      "--mem-mib",
      String(MEM_MIB),
      "--ws-mib",
      String(WS_MIB),
      "--pages-per-sec",
      "2000",
    ]),
  });
  const ready = new Promise<void>((resolve) => {
    const off = d.onOutput((e) => {
      if (
        e.kind === "data" &&
        e.stream.kind === "stdout" &&
        new TextDecoder().decode(e.bytes).includes("dirty mode")
      ) {
        off();
        resolve();
      }
    });
  });
  await d.start();
  await ready;
  await new Promise((r) => setTimeout(r, 300));
  return d;
}

/** A connected source/target pair through the transport (TLS with a PSK, or plain TCP). */
async function connectionPair(security: Security): Promise<[Connection, Connection, () => Promise<void>]> {
  let accept: (c: Connection) => void = () => {};
  const got = new Promise<Connection>((r) => {
    accept = r;
  });
  const l = await listen(
    { port: 0, security, role: "target", expect: { roles: ["source"], kinds: ["migration"] }, log: quiet },
    (c) => accept(c),
  );
  const a = await dial({
    port: l.port,
    security,
    hello: { role: "source", kind: "migration", session: newSessionId() },
    log: quiet,
  });
  return [a, await got, () => l.close()];
}

/** Raw bandwidth: `bytes` through the connection pair in 4 MiB writes, no engine. MB/s. */
async function rawBandwidth(security: Security, bytes: number): Promise<number> {
  const [a, b, close] = await connectionPair(security);
  const chunk = randomBytes(4 << 20);
  const sink = channelSink(a.channel);
  const source = channelSource(b.channel);
  const t0 = performance.now();
  const reader = (async () => {
    let n = 0;
    while (n < bytes) {
      const c = await source.read();
      if (c === null) break;
      n += c.length;
    }
  })();
  for (let sent = 0; sent < bytes; sent += chunk.length) await sink.write([chunk.slice()]);
  await reader;
  const mbs = bytes / 1e6 / ((performance.now() - t0) / 1000);
  a.channel.destroy();
  b.channel.destroy();
  await close();
  return mbs;
}

async function migration(security: Security) {
  const src = await guest();
  const [a, b, close] = await connectionPair(security);
  const [report, dst] = await Promise.all([
    migrate(
      src,
      { sink: channelSink(a.channel), back: channelSource(a.channel) },
      { live: { downtimeTargetMs: 20 } },
    ),
    receiveMigration(
      { source: channelSource(b.channel), back: channelSink(b.channel) },
      { createTarget: (m) => WasmDomain.createRestoreTarget(m, { host: hostOpts([]) }) },
    ),
  ]);
  await dst.destroy();
  a.channel.destroy();
  b.channel.destroy();
  await close();
  return report;
}

async function saveBench(): Promise<{ save: number; raw: number; bytes: number }> {
  const src = await guest();
  const path = join(tmpdir(), `colo-bench-${process.pid}.save`);
  const t0 = performance.now();
  const report = await writeFileAtomically(path, true, (sink) => saveDomain(src, sink));
  const save = report.bytes / 1e6 / ((performance.now() - t0) / 1000);
  await src.destroy();
  rmSync(path, { force: true });
  const data = randomBytes(4 << 20);
  const fh = await open(path, "w");
  const t1 = performance.now();
  for (let n = 0; n < report.bytes; n += data.length) await fh.write(data);
  await fh.sync();
  await fh.close();
  const raw = report.bytes / 1e6 / ((performance.now() - t1) / 1000);
  rmSync(path, { force: true });
  return { save, raw, bytes: report.bytes };
}

const psk: Security = { mode: "psk", key: randomBytes(32) };
const plain: Security = { mode: "insecure" };
const bytes = MEM_MIB << 20;
const rows: string[][] = [
  ["case", "total ms", "downtime ms", "MB sent", "rounds", "MB/s", "raw MB/s", "ratio", "goal"],
];
for (let run = 0; run < RUNS; run++) {
  for (const [name, sec] of [
    ["TCP", plain],
    ["TLS", psk],
  ] as const) {
    const raw = await rawBandwidth(sec, bytes);
    const r = await migration(sec);
    const mbs = r.bytes / 1e6 / (r.totalMs / 1000);
    rows.push([
      `migrate ${name}`,
      r.totalMs.toFixed(0),
      r.downtimeMs.toFixed(1),
      (r.bytes / 1e6).toFixed(1),
      String(r.rounds),
      mbs.toFixed(0),
      raw.toFixed(0),
      `${((mbs / raw) * 100).toFixed(0)} %`,
      name === "TLS"
        ? `downtime ≤ 20 ms: ${r.downtimeMs <= 20 ? "met" : "MISSED"}; ≥ 70 %: ${mbs / raw >= 0.7 ? "met" : "MISSED"}`
        : "",
    ]);
  }
  const s = await saveBench();
  rows.push([
    "save to file",
    "",
    "",
    (s.bytes / 1e6).toFixed(1),
    "1",
    s.save.toFixed(0),
    s.raw.toFixed(0),
    `${((s.save / s.raw) * 100).toFixed(0)} %`,
    "vs raw file write",
  ]);
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
process.stdout.write(`guest: ${MEM_MIB} MiB, ${WS_MIB} MiB working set, 2,000 dirty pages/s\n`);
for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
