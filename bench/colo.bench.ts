/**
 * COLO against unprotected and Remus, in one run and one table (like the COLO paper's): KV
 * throughput, p50/p99 latency and CPU seconds per 10,000 requests, for
 *   unprotected (colo primary whose secondary is unreachable: the same proxy, no replica),
 *   COLO with each strategy (back-channel, cache, full),
 *   Remus with 25, 50 and 100 ms epochs,
 * at 1 and at 50 concurrent clients, with no forced divergence and with a forced divergence every
 * 100 ms (a TIME request on its own connection). Load: redis-benchmark tests SET and GET
 * (`-t set,get`, figures averaged over the two), keyspace 10,000 keys (`-r 10000`), 3-byte values.
 * Both replicas are real processes on loopback with TLS-PSK; --verify off. Per configuration it
 * also reports checkpoints, divergences (those that happen anyway included), the PVM's pause
 * (NEW sent → resumed) and the SVM's, bytes per checkpoint against dirty pages, and pages of A, B
 * and A ∪ B; raw loopback bandwidth (TCP and TLS) is measured in the same run, and each pause is
 * checked against "1 ms + its bytes at 70 % of raw TLS bandwidth".
 *
 *   node bench/colo.bench.ts            (about two minutes)
 *   COLO_BENCH_LONG=1 node bench/colo.bench.ts   (5× the requests)
 *   COLO_BENCH_ONLY=unprotected,back-channel COLO_BENCH_CLIENTS=50 COLO_BENCH_FORCED=no \
 *   COLO_BENCH_N=20000 node bench/colo.bench.ts  (a subset: configs whose name contains one of
 *   the words, the given client counts, forcing no/yes, n requests per redis-benchmark test)
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RespClient } from "../src/replication/resp-client.ts";
import {
  type CheckpointRecord,
  PRIMARY_STEPS,
  SECONDARY_STEPS,
  type SecondaryCheckpointRecord,
} from "../src/replication/stats.ts";
import { controlRequest } from "../src/save/control.ts";
import { measureRawTcp, measureTls } from "../src/transport/bandwidth.ts";

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, "..");
const COLO = join(ROOT, "bin/colo.js");
const SCALE = process.env.COLO_BENCH_LONG === "1" ? 5 : 1;
const TICKS = 100; // clock ticks per second of /proc/PID/stat (Linux USER_HZ)

interface Config {
  readonly name: string;
  readonly args: readonly string[] | undefined; // undefined: unprotected
  readonly remusEpoch?: number;
}

const ALL_CONFIGS: Config[] = [
  { name: "unprotected", args: undefined },
  { name: "COLO back-channel", args: ["--strategy", "back-channel"] },
  { name: "COLO cache", args: ["--strategy", "cache"] },
  { name: "COLO full", args: ["--strategy", "full"] },
  { name: "Remus 25 ms", args: ["--mode", "remus", "--epoch-ms", "25"], remusEpoch: 25 },
  { name: "Remus 50 ms", args: ["--mode", "remus", "--epoch-ms", "50"], remusEpoch: 50 },
  { name: "Remus 100 ms", args: ["--mode", "remus", "--epoch-ms", "100"], remusEpoch: 100 },
];
const ONLY = process.env.COLO_BENCH_ONLY?.split(",").filter((w) => w !== "");
const CONFIGS = ALL_CONFIGS.filter((c) => ONLY === undefined || ONLY.some((w) => c.name.includes(w)));
const CLIENTS = (process.env.COLO_BENCH_CLIENTS ?? "1,50").split(",").map(Number);
const FORCED = (process.env.COLO_BENCH_FORCED ?? "no,yes").split(",").map((v) => v === "yes");
/** Extra node flags for both ends, e.g. COLO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env.COLO_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
const FIXED_N = process.env.COLO_BENCH_N === undefined ? undefined : Number(process.env.COLO_BENCH_N);

class Proc {
  readonly child: ChildProcess;
  log = "";
  constructor(args: string[]) {
    this.child = spawn(process.execPath, [...NODE_ARGS, COLO, ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout!.on("data", (d: Buffer) => (this.log += d));
    this.child.stderr!.on("data", (d: Buffer) => (this.log += d));
  }
  async line(re: RegExp, ms = 30_000): Promise<string> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.log);
      if (m !== null) return m[1] ?? m[0];
      if (this.child.exitCode !== null || Date.now() > end) throw new Error(`no ${re} in:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  cpuSeconds(): number {
    try {
      const f = readFileSync(`/proc/${this.child.pid}/stat`, "utf8");
      const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
      return (Number(fields[11]) + Number(fields[12])) / TICKS;
    } catch {
      return 0;
    }
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const done = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await done;
    clearTimeout(t);
  }
}

interface Row {
  config: string;
  clients: number;
  forced: boolean;
  requests: number;
  rps: number;
  p50: number;
  p99: number;
  cpuPer10k: number;
  checkpoints: number;
  divergences: number;
  pauseP50: number;
  pauseP99: number;
  svmPauseP50: number;
  a: number;
  b: number;
  d: number;
  kibPerCheckpoint: number;
  withinBound: number;
  /** p50 of when each step ended, ms after NEW (P: sent, S: received). */
  pSteps: number[];
  sSteps: number[];
}

function pct(v: number[], p: number): number {
  if (v.length === 0) return Number.NaN;
  const s = [...v].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
const mean = (v: number[]): number => (v.length === 0 ? Number.NaN : v.reduce((x, y) => x + y, 0) / v.length);

async function benchmark(
  port: string,
  clients: number,
  n: number,
): Promise<{ rps: number; p50: number; p99: number }> {
  const { stdout } = await run(
    "redis-benchmark",
    ["-p", port, "-c", String(clients), "-n", String(n), "-r", "10000", "-t", "set,get", "--csv"],
    { timeout: 300_000 },
  );
  const lines = stdout.trim().split("\n");
  const head = JSON.parse(`[${lines[0]}]`) as string[];
  const rows = lines.slice(1).map((l) => JSON.parse(`[${l}]`) as string[]);
  const col = (name: string): number[] => rows.map((r) => Number(r[head.indexOf(name)]));
  return { rps: mean(col("rps")), p50: mean(col("p50_latency_ms")), p99: Math.max(...col("p99_latency_ms")) };
}

async function main(): Promise<void> {
  const hasBench = await run("sh", ["-c", "command -v redis-benchmark"]).then(
    () => true,
    () => false,
  );
  if (!hasBench) {
    console.log("colo.bench: needs redis-benchmark (Debian package redis-tools); skipped");
    return;
  }
  const tcp = await measureRawTcp({ bytes: 128 << 20 });
  const tlsBw = await measureTls({ bytes: 128 << 20 });
  const bwBytesPerMs = (tlsBw.mbPerSecond * 1e6) / 1000;
  const dir = mkdtempSync(join(tmpdir(), "colo-bench-"));
  const psk = join(dir, "psk");
  writeFileSync(psk, `${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}\n`, {
    mode: 0o600,
  });
  const rows: Row[] = [];
  try {
    for (const cfg of CONFIGS) {
      const tag = `bench-${process.pid}-${rows.length}`;
      let sec: Proc | undefined;
      let listen = "127.0.0.1:1";
      if (cfg.args !== undefined) {
        sec = new Proc([
          "secondary",
          "--listen",
          "127.0.0.1:0",
          "--service",
          "127.0.0.1:0",
          "--psk-file",
          psk,
          "--name",
          `${tag}-s`,
        ]);
        listen = await sec.line(/listening on (\S+)/);
      }
      const pri = new Proc([
        "primary",
        "guests/kv.wasm",
        "--service",
        "127.0.0.1:0",
        "--secondary",
        listen,
        "--psk-file",
        psk,
        "--name",
        `${tag}-p`,
        "--connect-timeout-ms",
        "0",
        ...(cfg.args ?? []),
      ]);
      const service = await pri.line(/service on (\S+)/);
      if (cfg.args !== undefined) await pri.line(/colo primary: (protected) \(/);
      else await pri.line(/(UNPROTECTED)/);
      const port = service.slice(service.lastIndexOf(":") + 1);
      for (const clients of CLIENTS) {
        for (const forced of FORCED) {
          const n =
            FIXED_N ??
            SCALE *
              (cfg.remusEpoch !== undefined
                ? clients === 1
                  ? Math.round(1500 / cfg.remusEpoch)
                  : 1000
                : clients === 1
                  ? 1000
                  : 5000);
          const before =
            cfg.args === undefined
              ? []
              : ((await controlRequest(`${tag}-p`, "checkpoints")) as CheckpointRecord[]);
          const sBefore =
            sec === undefined
              ? []
              : ((await controlRequest(`${tag}-s`, "checkpoints")) as SecondaryCheckpointRecord[]);
          const div0 = ((await controlRequest(`${tag}-p`, "status")) as { divergences: number }).divergences;
          const cpu0 = pri.cpuSeconds() + (sec?.cpuSeconds() ?? 0);
          let stopForcing = false;
          const forcer = forced
            ? (async () => {
                const c = await RespClient.connect(Number(port));
                while (!stopForcing) {
                  await c.command("TIME");
                  await new Promise((r) => setTimeout(r, 100));
                }
                c.close();
              })()
            : Promise.resolve();
          const r = await benchmark(port, clients, n);
          stopForcing = true;
          await forcer;
          const cpu = pri.cpuSeconds() + (sec?.cpuSeconds() ?? 0) - cpu0;
          const after =
            cfg.args === undefined
              ? []
              : ((await controlRequest(`${tag}-p`, "checkpoints")) as CheckpointRecord[]);
          const sAfter =
            sec === undefined
              ? []
              : ((await controlRequest(`${tag}-s`, "checkpoints")) as SecondaryCheckpointRecord[]);
          const div1 = ((await controlRequest(`${tag}-p`, "status")) as { divergences: number }).divergences;
          const seen = new Set(before.map((x) => x.seq));
          const cps = after.filter((x) => !seen.has(x.seq) && x.trigger !== "seed");
          const sSeen = new Set(sBefore.map((x) => x.seq));
          const sCps = sAfter.filter((x) => !sSeen.has(x.seq));
          const requests = 2 * n;
          rows.push({
            config: cfg.name,
            clients,
            forced,
            requests,
            rps: r.rps,
            p50: r.p50,
            p99: r.p99,
            cpuPer10k: (cpu * 10_000) / requests,
            checkpoints: cps.length,
            divergences: div1 - div0,
            pauseP50: pct(
              cps.map((x) => x.pauseMs),
              50,
            ),
            pauseP99: pct(
              cps.map((x) => x.pauseMs),
              99,
            ),
            svmPauseP50: pct(
              sCps.map((x) => x.pauseMs),
              50,
            ),
            a: mean(cps.map((x) => x.a)),
            // B travels only with the back-channel strategy; otherwise the secondary's own count.
            b:
              cfg.args?.includes("back-channel") === true
                ? mean(cps.map((x) => x.b))
                : mean(sCps.map((x) => x.b)),
            d: mean(cps.map((x) => x.d)),
            kibPerCheckpoint: mean(cps.map((x) => x.bytes)) / 1024,
            withinBound:
              cps.length === 0
                ? Number.NaN
                : cps.filter((x) => x.pauseMs <= 1 + x.bytes / (0.7 * bwBytesPerMs)).length / cps.length,
            pSteps: PRIMARY_STEPS.map((k) =>
              pct(
                cps.flatMap((x) => (x.steps?.[k] === undefined ? [] : [x.steps[k]])),
                50,
              ),
            ),
            sSteps: SECONDARY_STEPS.map((k) =>
              pct(
                sCps.flatMap((x) => (x.steps?.[k] === undefined ? [] : [x.steps[k]])),
                50,
              ),
            ),
          });
          process.stderr.write(`.`);
        }
      }
      await pri.stop();
      await sec?.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stderr.write("\n");
  const base = new Map(
    rows.filter((r) => r.config === "unprotected").map((r) => [`${r.clients}/${r.forced}`, r]),
  );
  const remus25 = new Map(
    rows.filter((r) => r.config === "Remus 25 ms").map((r) => [`${r.clients}/${r.forced}`, r]),
  );
  const f = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : "-");
  const table = [
    [
      "config",
      "clients",
      "forced",
      "req/s",
      "×unprot",
      "×Remus25",
      "p50 ms",
      "p99 ms",
      "CPU s/10k",
      "ckpts",
      "diverg",
      "P pause p50/p99 ms",
      "S pause p50",
      "A",
      "B",
      "A∪B",
      "KiB/ckpt",
      "≤bound",
    ],
  ];
  for (const r of rows) {
    const k = `${r.clients}/${r.forced}`;
    table.push([
      r.config,
      String(r.clients),
      r.forced ? "100ms" : "no",
      f(r.rps, 0),
      f(r.rps / (base.get(k)?.rps ?? Number.NaN)),
      f(r.rps / (remus25.get(k)?.rps ?? Number.NaN)),
      f(r.p50, 3),
      f(r.p99, 3),
      f(r.cpuPer10k),
      String(r.checkpoints),
      String(r.divergences),
      `${f(r.pauseP50)}/${f(r.pauseP99)}`,
      f(r.svmPauseP50),
      f(r.a, 1),
      f(r.b, 1),
      f(r.d, 1),
      f(r.kibPerCheckpoint, 1),
      Number.isFinite(r.withinBound) ? `${(r.withinBound * 100).toFixed(0)}%` : "-",
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  console.log(
    `raw loopback: TCP ${tcp.mbPerSecond.toFixed(0)} MB/s, TLS-PSK ${tlsBw.mbPerSecond.toFixed(0)} MB/s; redis-benchmark -t set,get -r 10000 (figures averaged over SET and GET)`,
  );
  for (const row of table)
    console.log(row.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  console.log(
    "×unprot: throughput against unprotected at the same clients/forcing; ≤bound: share of checkpoints whose PVM pause ≤ 1 ms + bytes at 70 % of raw TLS bandwidth. A, B, A∪B: mean pages per checkpoint.",
  );
  // The pause step by step (COLO rows with checkpoints): p50 of when each step ended.
  const steps = [
    [
      "config",
      "clients",
      "forced",
      ...PRIMARY_STEPS.map((k) => `P.${k}`),
      ...SECONDARY_STEPS.map((k) => `S.${k}`),
    ],
  ];
  for (const r of rows) {
    if (!r.config.startsWith("COLO") || r.checkpoints === 0) continue;
    steps.push([
      r.config,
      String(r.clients),
      r.forced ? "100ms" : "no",
      ...r.pSteps.map((v) => f(v)),
      ...r.sSteps.map((v) => f(v)),
    ]);
  }
  if (steps.length > 1) {
    console.log(
      "\npause step by step: p50 ms after NEW (P: sent; S: received); steps in the order of docs/replication.md",
    );
    const w = steps[0]!.map((_, i) => Math.max(...steps.map((row) => row[i]!.length)));
    for (const row of steps)
      console.log(row.map((c, i) => (i < 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  }
}

await main();
