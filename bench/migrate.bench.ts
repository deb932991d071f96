/**
 * Live migration and save-to-file of a guest that keeps dirtying memory, against baselines
 * measured in the same run:
 *
 *   - guest: guests/compute.wasm --mem-mib 256 --ws-mib 64 --pages-per-sec 2000 (a 256 MiB guest
 *     dirtying 2,000 random pages a second within a 64 MiB working set);
 *   - the receiving end (target of the migration, reader of the raw baseline) runs in a child
 *     process, so the two ends do not share one main thread: what is measured is what two hosts
 *     would see, minus the wire;
 *   - raw loopback bandwidth: the same number of bytes as the migration stream through a transport
 *     connection with no engine (4 MiB writes through the same ByteSink; the child counts and
 *     discards), plain TCP and TLS (TLS_AES_128_GCM_SHA256, the cipher every colo connection
 *     uses), timed until the child has received the last byte; measured after the migration in
 *     even runs and before it in odd ones;
 *   - migration over each: total time (connect excluded, until the target said RESUMED), the
 *     target's start-up within it (until MIGRATION_TARGET_READY: instrument, compile, instantiate,
 *     size and map its memory; the source's guest runs on meanwhile), downtime (source suspend →
 *     target resumed) and its parts, bytes, rounds, stream throughput (bytes / (total − target
 *     start-up)) as a ratio of the raw bandwidth, and the end-to-end rate (bytes / total);
 *   - save to a file (temp file, fsync, rename) against a raw file write of the same size (4 MiB
 *     writes, fsync), the raw write first in odd runs.
 *
 * Goals (issue 4): downtime ≤ 20 ms; stream throughput ≥ 70 % of the raw TLS socket.
 * `node bench/migrate.bench.ts [--mem-mib N] [--runs N]` (default 256 MiB, 3 runs;
 * COLO_BENCH_LONG=1 runs 7 times). Each row is one run; the summary gives the median.
 */
import { type ChildProcess, fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { WasmDomain } from "../src/guest/wasm/wasm-domain.ts";
import { channelSink, channelSource } from "../src/save/channel.ts";
import { writeFileAtomically } from "../src/save/files.ts";
import { migrate, receiveMigration } from "../src/save/migrate.ts";
import { type SaveReport, saveDomain } from "../src/save/save.ts";
import { type Connection, dial, listen } from "../src/transport/connect.ts";
import { newSessionId } from "../src/transport/hello.ts";
import type { Security } from "../src/transport/security.ts";

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const MEM_MIB = Number(arg("--mem-mib") ?? 256);
const WS_MIB = Math.min(64, MEM_MIB);
/** --spin: the guest spins between its page writes (one core busy) instead of sleeping. */
const SPIN = process.argv.includes("--spin");
const RUNS = Number(arg("--runs") ?? (process.env.COLO_BENCH_LONG === "1" ? 7 : 3));
const module = readFileSync(new URL("../guests/compute.wasm", import.meta.url));
const hostOpts = (args: string[]) => ({ args, env: [], preopens: [], fsLimitBytes: 1 << 20 });
const quiet = (l: string, m: string) =>
  void (l === "warn" && !m.includes("insecure") && process.stderr.write(`${m}\n`));

type Job = { kind: "raw"; bytes: number } | { kind: "migrate" };
type ToChild = { security: "psk" | "insecure"; key?: string; job: Job };
type FromChild = { port: number } | { done: true; ms?: number } | { error: string };

const securityOf = (m: ToChild): Security =>
  m.security === "psk" ? { mode: "psk", key: Buffer.from(m.key ?? "", "hex") } : { mode: "insecure" };

// ---------------------------------------------------------------------------------------------
// The receiving end (child process)

async function child(): Promise<void> {
  const send = (m: FromChild): void => void process.send?.(m);
  process.on("disconnect", () => process.exit(0));
  process.on("message", (m: ToChild) => {
    let l: Awaited<ReturnType<typeof listen>> | undefined;
    const serve = async (c: Connection): Promise<void> => {
      if (m.job.kind === "raw") {
        const source = channelSource(c.channel);
        let n = 0;
        while (n < m.job.bytes) {
          const chunk = await source.read();
          if (chunk === null) throw new Error("raw: early end");
          n += chunk.byteLength;
        }
        await channelSink(c.channel).write([new Uint8Array([1])]);
      } else {
        const dst = await receiveMigration(
          { source: channelSource(c.channel), back: channelSink(c.channel) },
          { createTarget: (bytes) => WasmDomain.createRestoreTarget(bytes, { host: hostOpts([]) }) },
        );
        await dst.destroy();
      }
    };
    void listen(
      {
        port: 0,
        security: securityOf(m),
        role: "target",
        expect: { roles: ["source"], kinds: ["migration"] },
        log: quiet,
      },
      (c) =>
        void serve(c).then(
          () => {
            c.channel.end();
            void l?.close();
            send({ done: true });
          },
          (e: unknown) => send({ error: String((e as Error)?.stack ?? e) }),
        ),
    ).then((listener) => {
      l = listener;
      send({ port: listener.port });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The sending end (this process)

class Target {
  readonly proc: ChildProcess;
  #waiters: ((m: FromChild) => void)[] = [];
  constructor() {
    this.proc = fork(new URL(import.meta.url), ["--child"], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.proc.on("message", (m: FromChild) => this.#waiters.shift()?.(m));
  }
  next(): Promise<FromChild> {
    return new Promise((r) => this.#waiters.push(r));
  }
  async start(security: Security, job: Job): Promise<{ conn: Connection; done: Promise<FromChild> }> {
    const m: ToChild =
      security.mode === "psk"
        ? { security: "psk", key: Buffer.from(security.key).toString("hex"), job }
        : { security: "insecure", job };
    const listening = this.next();
    this.proc.send(m);
    const l = await listening;
    if (!("port" in l)) throw new Error(`target: ${JSON.stringify(l)}`);
    const done = this.next();
    const conn = await dial({
      port: l.port,
      security,
      hello: { role: "source", kind: "migration", session: newSessionId() },
      log: quiet,
    });
    return { conn, done };
  }
  stop(): void {
    this.proc.disconnect();
  }
}

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
      ...(SPIN ? [] : ["--sleep"]),
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

/** Raw bandwidth: `bytes` to the child in 4 MiB writes, no engine, until it acknowledged. MB/s. */
async function rawBandwidth(target: Target, security: Security, bytes: number): Promise<number> {
  const { conn, done } = await target.start(security, { kind: "raw", bytes });
  const chunk = randomBytes(4 << 20);
  const sink = channelSink(conn.channel);
  const ack = channelSource(conn.channel);
  const t0 = performance.now();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    await sink.write([chunk.subarray(0, Math.min(chunk.length, bytes - sent))]);
  }
  if ((await ack.read()) === null) throw new Error("raw: no acknowledgement");
  const mbs = bytes / 1e6 / ((performance.now() - t0) / 1000);
  const r = await done;
  if ("error" in r) throw new Error(r.error);
  conn.channel.destroy();
  return mbs;
}

async function migration(target: Target, security: Security): Promise<SaveReport> {
  const src = await guest();
  const { conn, done } = await target.start(security, { kind: "migrate" });
  const report = await migrate(
    src,
    { sink: channelSink(conn.channel), back: channelSource(conn.channel) },
    { live: { downtimeTargetMs: 20 } },
  );
  const r = await done;
  if ("error" in r) throw new Error(r.error);
  conn.channel.destroy();
  return report;
}

/** `rawFirstBytes`: measure the raw write first, of that many bytes (the previous save's size). */
async function saveBench(
  rawFirstBytes: number | undefined,
): Promise<{ save: number; raw: number; bytes: number; ms: number }> {
  let raw = rawFirstBytes === undefined ? 0 : await rawFileWrite(rawFirstBytes);
  const src = await guest();
  const path = join(tmpdir(), `colo-bench-${process.pid}.save`);
  const t0 = performance.now();
  const report = await writeFileAtomically(path, true, (sink) => saveDomain(src, sink));
  const ms = performance.now() - t0;
  const save = report.bytes / 1e6 / (ms / 1000);
  await src.destroy();
  rmSync(path, { force: true });
  if (rawFirstBytes === undefined) raw = await rawFileWrite(report.bytes);
  return { save, raw, bytes: report.bytes, ms };
}

/** A raw file write of `bytes` (4 MiB writes, fsync) to a temp file, MB/s. */
async function rawFileWrite(bytes: number): Promise<number> {
  const path = join(tmpdir(), `colo-bench-${process.pid}.raw`);
  const data = randomBytes(4 << 20);
  const fh = await open(path, "w");
  const t1 = performance.now();
  for (let n = 0; n < bytes; n += data.length) {
    await fh.write(data, 0, Math.min(data.length, bytes - n));
  }
  await fh.sync();
  await fh.close();
  const raw = bytes / 1e6 / ((performance.now() - t1) / 1000);
  rmSync(path, { force: true });
  return raw;
}

function partsOf(r: SaveReport): string {
  const p = r.downtimeParts;
  if (p === undefined) return "";
  return [p.suspend, p.pages, p.context, p.hostState, p.apply, p.resume].map((x) => x.toFixed(1)).join("/");
}

async function main(): Promise<void> {
  const psk: Security = { mode: "psk", key: randomBytes(32) };
  const plain: Security = { mode: "insecure" };
  const target = new Target();
  const rows: string[][] = [
    [
      "case",
      "total ms",
      "target ready ms",
      "downtime ms",
      "parts susp/pages/ctx/host/apply/resume ms",
      "MB sent",
      "rounds",
      "MB/s",
      "raw MB/s",
      "ratio",
      "e2e MB/s",
    ],
  ];
  const ratios: Record<string, number[]> = { TCP: [], TLS: [], save: [] };
  const totals: Record<string, number[]> = { TCP: [], TLS: [] };
  const downtimes: Record<string, number[]> = { TCP: [], TLS: [] };
  const lastBytes: Record<string, number | undefined> = {};
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const [name, sec] of [
        ["TCP", plain],
        ["TLS", psk],
      ] as const) {
        // The two alternate which goes first (odd runs measure the raw socket first, with the
        // byte count of the previous run's stream): neither always follows the other's garbage.
        let raw = 0;
        const rawFirst = run % 2 === 1 && lastBytes[name] !== undefined;
        if (rawFirst) raw = await rawBandwidth(target, sec, lastBytes[name]!);
        const r = await migration(target, sec);
        if (!rawFirst) raw = await rawBandwidth(target, sec, r.bytes);
        lastBytes[name] = r.bytes;
        // stream throughput: from the target's READY (its domain exists) to RESUMED
        const mbs = r.bytes / 1e6 / ((r.totalMs - (r.targetReadyMs ?? 0)) / 1000);
        ratios[name]!.push(mbs / raw);
        downtimes[name]!.push(r.downtimeMs);
        totals[name]!.push(r.totalMs);
        rows.push([
          `migrate ${name}`,
          r.totalMs.toFixed(0),
          (r.targetReadyMs ?? 0).toFixed(0),
          r.downtimeMs.toFixed(1),
          partsOf(r),
          (r.bytes / 1e6).toFixed(1),
          String(r.rounds),
          mbs.toFixed(0),
          raw.toFixed(0),
          `${((mbs / raw) * 100).toFixed(0)} %`,
          (r.bytes / 1e3 / r.totalMs).toFixed(0),
        ]);
      }
      const s = await saveBench(run % 2 === 1 ? lastBytes.save : undefined);
      lastBytes.save = s.bytes;
      ratios.save!.push(s.save / s.raw);
      rows.push([
        "save to file",
        s.ms.toFixed(0),
        "",
        "",
        "",
        (s.bytes / 1e6).toFixed(1),
        "1",
        s.save.toFixed(0),
        s.raw.toFixed(0),
        `${((s.save / s.raw) * 100).toFixed(0)} %`,
      ]);
    }
  } finally {
    target.stop();
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  process.stdout.write(
    `guest: ${MEM_MIB} MiB, ${WS_MIB} MiB working set, 2,000 dirty pages/s; target in a child process; ${RUNS} run(s)\n`,
  );
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
  const median = (xs: number[]): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] ?? Number.NaN;
  };
  const pct = (x: number): string => `${(x * 100).toFixed(0)} %`;
  const dTls = median(downtimes.TLS!);
  const rTls = median(ratios.TLS!);
  process.stdout.write(
    `median: TCP ${pct(median(ratios.TCP!))} of raw, downtime ${median(downtimes.TCP!).toFixed(1)} ms; ` +
      `TLS ${pct(rTls)} of raw, downtime ${dTls.toFixed(1)} ms, total ${median(totals.TLS!).toFixed(0)} ms; ` +
      `save ${pct(median(ratios.save!))} of a raw file write\n` +
      `goals (TLS): downtime ≤ 20 ms ${dTls <= 20 ? "met" : "MISSED"}; throughput ≥ 70 % ${rTls >= 0.7 ? "met" : "MISSED"}; ` +
      `save ≥ 70 % ${median(ratios.save!) >= 0.7 ? "met" : "MISSED"}\n`,
  );
}

if (process.argv.includes("--child")) await child();
else await main();
