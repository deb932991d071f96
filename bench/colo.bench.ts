/**
 * COLO against unprotected and Remus, in one run and one table (like the COLO paper's): KV
 * throughput, p50/p99 latency and CPU seconds per 10,000 requests, for
 *   unprotected (colo primary whose secondary is unreachable: the same proxy, no replica),
 *   COLO with each strategy (back-channel, cache, full; back-channel also with the PVM resumed
 *   only at SVM_READY, Xen's order: "@READY"),
 *   Remus with 25, 50 and 100 ms epochs,
 * at 1 and at 50 concurrent clients, with no forced divergence and with a forced divergence every
 * 100 ms (a TIME request on its own connection); and, for the COLO rows, an idle pair (0 clients:
 * the forced divergences only, for 3 s) whose pause is the floor the loaded rows compare with. Load: redis-benchmark tests SET and GET
 * (`-t set,get`, figures averaged over the two), keyspace 10,000 keys (`-r 10000`), 3-byte values.
 * Both replicas are real processes on loopback with TLS-PSK; --verify off. Per configuration it
 * also reports checkpoints, divergences (those that happen anyway included), the PVM's pause
 * (NEW sent → resumed) and the SVM's, bytes per checkpoint against dirty pages, and pages of A, B
 * and A ∪ B; raw loopback bandwidth (TCP and TLS) is measured in the same run, and each pause is
 * checked against "1 ms + its bytes at 70 % of raw TLS bandwidth".
 *
 *   node bench/colo.bench.ts            (about three minutes)
 *   COLO_BENCH_LONG=1 node bench/colo.bench.ts   (5× the requests)
 *   COLO_BENCH_ONLY=unprotected,back-channel COLO_BENCH_CLIENTS=50 COLO_BENCH_FORCED=no \
 *   COLO_BENCH_N=20000 node bench/colo.bench.ts  (a subset: configs whose name contains one of
 *   the words, or is "=NAME", the given client counts, forcing no/yes, n requests per
 *   redis-benchmark test)
 *   COLO_BENCH_DUMP=file   appends each configuration's raw checkpoint records of both ends (one
 *   JSON line each; `startedAt` puts both on the host's clock, e.g. beside `perf sched`)
 */
import { execFile } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";
import { promisify } from "node:util";
import { type ColoChild, startPair } from "../src/cli/child.ts";
import { RespClient } from "../src/replication/resp-client.ts";
import {
  type CheckpointRecord,
  PRIMARY_STEPS,
  percentile,
  SECONDARY_STEPS,
  type SecondaryCheckpointRecord,
} from "../src/replication/stats.ts";
import { controlRequest } from "../src/save/control.ts";
import { measureRawTcp, measureTls } from "../src/transport/bandwidth.ts";

const run = promisify(execFile);
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
  // The other resume points, same strategy: once the main thread has copied A ∪ B out of the
  // PVM's memory (the rows above take a snapshot in the PVM's own thread: --pvm-resume snapshot,
  // the default; full always copies), and Xen's and QEMU's order, stopped until SVM_READY.
  { name: "COLO back-channel @copied", args: ["--strategy", "back-channel", "--pvm-resume", "copied"] },
  { name: "COLO back-channel @READY", args: ["--strategy", "back-channel", "--pvm-resume", "ready"] },
  { name: "Remus 25 ms", args: ["--mode", "remus", "--epoch-ms", "25"], remusEpoch: 25 },
  { name: "Remus 50 ms", args: ["--mode", "remus", "--epoch-ms", "50"], remusEpoch: 50 },
  { name: "Remus 100 ms", args: ["--mode", "remus", "--epoch-ms", "100"], remusEpoch: 100 },
];
const ONLY = process.env.COLO_BENCH_ONLY?.split(",").filter((w) => w !== "");
/** A word names the configs that contain it; "=NAME" only the config named exactly NAME. */
const CONFIGS = ALL_CONFIGS.filter(
  (c) =>
    ONLY === undefined || ONLY.some((w) => (w.startsWith("=") ? c.name === w.slice(1) : c.name.includes(w))),
);
/** 0: no load at all, only the forced divergences (COLO rows): the pause of an idle pair. */
const CLIENTS = (process.env.COLO_BENCH_CLIENTS ?? "0,1,50").split(",").map(Number);
/** How long the idle pair (0 clients) is watched, ms. */
const IDLE_MS = 3000;
const FORCED = (process.env.COLO_BENCH_FORCED ?? "no,yes").split(",").map((v) => v === "yes");
/** Extra node flags for both ends, e.g. COLO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof". */
const NODE_ARGS = (process.env.COLO_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "");
/** A file to append each configuration's raw checkpoint records to (one JSON line each). */
const DUMP = process.env.COLO_BENCH_DUMP;
const FIXED_N = process.env.COLO_BENCH_N === undefined ? undefined : Number(process.env.COLO_BENCH_N);

/** User plus system CPU seconds of a child so far (0 once it is gone or when there is none). */
function cpuSeconds(c: ColoChild | undefined): number {
  if (c === undefined) return 0;
  try {
    const f = readFileSync(`/proc/${c.child.pid}/stat`, "utf8");
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
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
  /** Checkpoints taken again at a second stop (pvmResume snapshot). */
  retaken: number;
  /**
   * p50 of when each step ended, ms after the checkpoint started on the primary (the PVM's stop
   * asked, NEW written in the same turn); the secondary's steps on the same clock (its
   * `startedAt` against the primary's), the first being NEW received.
   */
  pSteps: number[];
  sSteps: number[];
}

/** The secondary's steps as the step table shows them: NEW received, then SECONDARY_STEPS. */
const S_STEPS = ["newReceived", ...SECONDARY_STEPS] as const;

/**
 * When the secondary's step `k` ended in each checkpoint, ms after the same checkpoint started on
 * the primary: both ends stamp their start on the host's one clock (`startedAt`).
 */
function onPrimaryClock(
  cps: readonly CheckpointRecord[],
  sCps: readonly SecondaryCheckpointRecord[],
  k: (typeof S_STEPS)[number],
): number[] {
  const start = new Map(cps.map((x) => [x.seq, x.startedAt]));
  return sCps.flatMap((x) => {
    const p = start.get(x.seq);
    const at = k === "newReceived" ? 0 : x.steps?.[k];
    if (p === undefined || x.startedAt === undefined || at === undefined) return [];
    return [x.startedAt - p + at];
  });
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
  const rows: Row[] = [];
  for (const cfg of CONFIGS) {
    const tag = `bench-${process.pid}-${rows.length}`;
    const pair = await startPair({
      guest: "guests/kv.wasm",
      secondaryName: `${tag}-s`,
      primaryName: `${tag}-p`,
      primaryArgs: ["--connect-timeout-ms", "0", ...(cfg.args ?? [])],
      protect: cfg.args !== undefined,
      nodeArgs: NODE_ARGS,
    });
    const { pri, sec } = pair;
    const port = String(pair.port);
    try {
      for (const clients of CLIENTS) {
        for (const forced of FORCED) {
          // The idle pair: COLO only, and only with forced divergences (else nothing happens).
          if (clients === 0 && (!forced || cfg.remusEpoch !== undefined || cfg.args === undefined)) continue;
          const n =
            FIXED_N ??
            SCALE *
              (cfg.remusEpoch !== undefined
                ? clients === 1
                  ? Math.round(1500 / cfg.remusEpoch)
                  : 1000
                : clients === 1
                  ? 4000
                  : 20000);
          const before =
            cfg.args === undefined
              ? []
              : ((await controlRequest(`${tag}-p`, "checkpoints")) as CheckpointRecord[]);
          const sBefore =
            sec === undefined
              ? []
              : ((await controlRequest(`${tag}-s`, "checkpoints")) as SecondaryCheckpointRecord[]);
          const div0 = ((await controlRequest(`${tag}-p`, "status")) as { divergences: number }).divergences;
          const cpu0 = cpuSeconds(pri) + cpuSeconds(sec);
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
          const r =
            clients === 0
              ? await new Promise<{ rps: number; p50: number; p99: number }>((resolve) =>
                  setTimeout(
                    () => resolve({ rps: Number.NaN, p50: Number.NaN, p99: Number.NaN }),
                    SCALE * IDLE_MS,
                  ),
                )
              : await benchmark(port, clients, n);
          stopForcing = true;
          await forcer;
          const cpu = cpuSeconds(pri) + cpuSeconds(sec) - cpu0;
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
          if (DUMP !== undefined)
            appendFileSync(DUMP, `${JSON.stringify({ config: cfg.name, clients, forced, cps, sCps })}\n`);
          const requests = clients === 0 ? Number.NaN : 2 * n;
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
            pauseP50: percentile(
              cps.map((x) => x.pauseMs),
              50,
            ),
            pauseP99: percentile(
              cps.map((x) => x.pauseMs),
              99,
            ),
            svmPauseP50: percentile(
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
            retaken: cps.filter((x) => x.retaken === true).length,
            withinBound:
              cps.length === 0
                ? Number.NaN
                : cps.filter((x) => x.pauseMs <= 1 + x.bytes / (0.7 * bwBytesPerMs)).length / cps.length,
            pSteps: PRIMARY_STEPS.map((k) =>
              percentile(
                cps.flatMap((x) => (x.steps?.[k] === undefined ? [] : [x.steps[k]])),
                50,
              ),
            ),
            sSteps: S_STEPS.map((k) => percentile(onPrimaryClock(cps, sCps, k), 50)),
          });
          process.stderr.write(`.`);
        }
      }
    } finally {
      await pair.close();
    }
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
      "again",
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
      r.config === "unprotected" ? "-" : String(r.retaken),
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  console.log(
    `raw loopback: TCP ${tcp.mbPerSecond.toFixed(0)} MB/s, TLS-PSK ${tlsBw.mbPerSecond.toFixed(0)} MB/s; redis-benchmark -t set,get -r 10000 (figures averaged over SET and GET)`,
  );
  for (const row of table)
    console.log(row.map((c, i) => (i < 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
  console.log(
    "×unprot: throughput against unprotected at the same clients/forcing; ≤bound: share of checkpoints whose PVM pause ≤ 1 ms + bytes at 70 % of raw TLS bandwidth. A, B, A∪B: mean pages per checkpoint. again: checkpoints taken again at a second stop (S's list named pages the PVM's snapshot lacked).",
  );
  // The pause step by step (COLO rows with checkpoints): p50 of when each step ended.
  const steps = [
    ["config", "clients", "forced", ...PRIMARY_STEPS.map((k) => `P.${k}`), ...S_STEPS.map((k) => `S.${k}`)],
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
      "\npause step by step: p50 ms after the checkpoint started on the primary (stop asked, NEW written), both ends on the host's one clock; steps in the order of docs/replication.md",
    );
    const w = steps[0]!.map((_, i) => Math.max(...steps.map((row) => row[i]!.length)));
    for (const row of steps)
      console.log(row.map((c, i) => (i < 1 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  "));
  }
}

await main();
