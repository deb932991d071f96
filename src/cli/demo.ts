/**
 * `colo demo [--json]`: the whole system in one command, on this machine.
 *
 * Starts a secondary and a primary as two child processes on loopback (a fresh pre-shared key in
 * a temporary directory, the sample KV guest guests/kv.wasm, --verify on), drives a bounded
 * workload through the primary's service address with its own RESP client (SET/GET/INCR over a
 * few connections), forces divergences meanwhile (TIME and RANDOMKEY answer differently on the
 * two replicas), then prints what happened: checkpoints, divergences, pages of A, B and A ∪ B per
 * checkpoint, bytes, pause times, and whether every checkpoint verified. `--json` prints the same
 * as one JSON object. Both processes are stopped and the directory removed at the end, also on
 * failure. Exit status 0 when every checkpoint verified and every reply was right.
 */
import { fileURLToPath } from "node:url";
import { type CheckpointRecord, percentile, type SecondaryCheckpointRecord } from "../replication/stats.ts";
import { parseCommandArgs } from "./args.ts";
import { type Pair, startPair } from "./child.ts";

export const USAGE = `usage: colo demo [--json]

Start a primary and a secondary locally with the sample KV guest (--verify on), drive a workload
of SET/GET/INCR over a few connections, force divergences with TIME and RANDOMKEY, and print a
summary: checkpoints, divergences, pages of A, B and A ∪ B per checkpoint, bytes, pause times,
whether every checkpoint verified. Takes about ten seconds.

options:
  --json   print the summary as one JSON object
`;

const KV = fileURLToPath(new URL("../../guests/kv.wasm", import.meta.url));

/** Workload size: CLIENTS connections, REQUESTS requests in all; a forced divergence every FORCE_MS. */
const CLIENTS = 4;
const REQUESTS = 3000;
const FORCE_MS = 100;

export interface DemoSummary {
  readonly ok: boolean;
  readonly requests: number;
  readonly wrongReplies: number;
  readonly forcedDivergences: number;
  readonly seconds: number;
  readonly checkpoints: number;
  readonly divergences: number;
  readonly allVerified: boolean;
  readonly bytes: number;
  readonly backChannelBytes: number;
  readonly pause: { readonly p50Ms: number; readonly p99Ms: number; readonly maxMs: number };
  readonly svmPause: { readonly p50Ms: number; readonly maxMs: number };
  readonly perCheckpoint: readonly (CheckpointRecord & { readonly svmPauseMs: number | undefined })[];
}

async function drive(port: number): Promise<{ requests: number; wrong: number; forced: number }> {
  const { RespClient } = await import("../replication/resp-client.ts");
  let wrong = 0;
  let requests = 0;
  let forced = 0;
  let done = false;
  const forcer = (async () => {
    const c = await RespClient.connect(port);
    try {
      while (!done) {
        await c.command(forced % 2 === 0 ? "TIME" : "RANDOMKEY");
        forced++;
        await new Promise((r) => setTimeout(r, FORCE_MS));
      }
    } finally {
      c.close();
    }
  })();
  const per = Math.ceil(REQUESTS / CLIENTS);
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      const cl = await RespClient.connect(port);
      const mine = new Map<string, string>();
      let counter = 0;
      try {
        for (let i = 0; i < per; i++) {
          const key = `demo:${c}:${i % 50}`;
          if (i % 3 === 0) {
            const v = `value-${c}-${i}`;
            mine.set(key, v);
            if ((await cl.command("SET", key, v)) !== "OK") wrong++;
          } else if (i % 3 === 1) {
            if ((await cl.command("GET", key)) !== (mine.get(key) ?? null)) wrong++;
          } else {
            counter++;
            if ((await cl.command("INCR", `demo:counter:${c}`)) !== counter) wrong++;
          }
          requests++;
        }
      } finally {
        cl.close();
      }
    }),
  );
  done = true;
  await forcer;
  return { requests, wrong, forced };
}

export async function runDemo(log: (line: string) => void = () => {}): Promise<DemoSummary> {
  const { controlRequest } = await import("../save/control.ts");
  const tag = `demo-${process.pid}`;
  let pair: Pair | undefined;
  try {
    pair = await startPair({
      guest: KV,
      secondaryName: `${tag}-secondary`,
      primaryName: `${tag}-primary`,
      primaryArgs: ["--verify", "--max-interval-ms", "500"],
    });
    log(`secondary listening on ${pair.listen}`);
    log(`primary serving on ${pair.service}, protected`);
    const t0 = performance.now();
    const w = await drive(pair.port);
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 200)); // let the last checkpoint finish
    const records = (await controlRequest(`${tag}-primary`, "checkpoints")) as CheckpointRecord[];
    const svmRecords = (await controlRequest(
      `${tag}-secondary`,
      "checkpoints",
    )) as SecondaryCheckpointRecord[];
    const status = (await controlRequest(`${tag}-primary`, "status")) as {
      divergences: number;
      state: string;
    };
    const svm = new Map(svmRecords.map((r) => [r.seq, r.pauseMs]));
    const later = records.filter((r) => r.trigger !== "seed");
    const pauses = later.map((r) => r.pauseMs);
    const svmPauses = svmRecords.map((r) => r.pauseMs);
    const allVerified = records.length > 0 && records.every((r) => r.verified === true);
    return {
      ok: allVerified && w.wrong === 0 && status.state !== "verify-failed",
      requests: w.requests,
      wrongReplies: w.wrong,
      forcedDivergences: w.forced,
      seconds,
      checkpoints: records.length,
      divergences: status.divergences,
      allVerified,
      bytes: records.reduce((s, r) => s + r.bytes, 0),
      backChannelBytes: records.reduce((s, r) => s + r.backBytes, 0),
      pause: { p50Ms: percentile(pauses, 50), p99Ms: percentile(pauses, 99), maxMs: Math.max(0, ...pauses) },
      svmPause: { p50Ms: percentile(svmPauses, 50), maxMs: Math.max(0, ...svmPauses) },
      perCheckpoint: records.map((r) => ({ ...r, svmPauseMs: svm.get(r.seq) })),
    };
  } finally {
    await pair?.close();
  }
}

function kib(b: number): string {
  return `${(b / 1024).toFixed(1)} KiB`;
}

export function formatSummary(s: DemoSummary): string {
  const rows = [["seq", "trigger", "A", "B", "A∪B", "sent", "bytes", "P pause", "S pause", "verified"]];
  const shown =
    s.perCheckpoint.length > 30
      ? [...s.perCheckpoint.slice(0, 25), undefined, ...s.perCheckpoint.slice(-4)]
      : s.perCheckpoint;
  for (const r of shown) {
    if (r === undefined) {
      rows.push(["…", "", "", "", "", "", "", "", "", ""]);
      continue;
    }
    rows.push([
      String(r.seq),
      r.trigger,
      String(r.a),
      String(r.b),
      String(r.d),
      String(r.pagesSent),
      String(r.bytes),
      `${r.pauseMs.toFixed(2)} ms`,
      r.svmPauseMs === undefined ? "-" : `${r.svmPauseMs.toFixed(2)} ms`,
      r.verified === true ? "yes" : r.verified === false ? "NO" : "-",
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const table = rows
    .map((r) => r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "))
    .join("\n");
  return [
    `colo demo: ${s.ok ? "OK" : "FAILED"}`,
    "",
    `workload     ${s.requests} requests (SET/GET/INCR over ${CLIENTS} connections) in ${s.seconds.toFixed(2)} s, ${s.wrongReplies} wrong replies`,
    `forced       ${s.forcedDivergences} TIME/RANDOMKEY requests (one every ${FORCE_MS} ms)`,
    `divergences  ${s.divergences} reported by the proxy`,
    `checkpoints  ${s.checkpoints} (the seed included), every one verified: ${s.allVerified ? "yes" : "NO"}`,
    `bytes        ${kib(s.bytes)} forward stream, ${kib(s.backChannelBytes)} back channel`,
    `PVM pause    p50 ${s.pause.p50Ms.toFixed(2)} ms, p99 ${s.pause.p99Ms.toFixed(2)} ms, max ${s.pause.maxMs.toFixed(2)} ms (NEW sent → resumed, the --verify digest included)`,
    `SVM pause    p50 ${s.svmPause.p50Ms.toFixed(2)} ms, max ${s.svmPause.maxMs.toFixed(2)} ms`,
    "",
    table,
    "",
    "A: pages the primary dirtied; B: pages the secondary dirtied (sent back on the back channel);",
    "A∪B: what the primary sent so the secondary is an exact copy. Pages are 4 KiB.",
    "",
  ].join("\n");
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs("colo demo", USAGE, argv, { json: { type: "boolean" } });
  if (typeof args === "number") return args;
  const json = args.values.json === true;
  let s: DemoSummary;
  try {
    s = await runDemo(json ? undefined : (l) => process.stderr.write(`colo demo: ${l}\n`));
  } catch (e) {
    process.stderr.write(`colo demo: failed: ${(e as Error).message}\n`);
    return 1;
  }
  process.stdout.write(json ? `${JSON.stringify(s)}\n` : formatSummary(s));
  return s.ok ? 0 : 1;
}
