/**
 * Failover time: primary killed (kill -9) → the secondary answers PING on its own service
 * address, under the fault tests' write workload, with the default heartbeat (100 ms / 500 ms).
 * Baseline measured in the same run: the heartbeat timeout itself (the detection floor of a dead
 * host; a killed process on one machine is seen sooner, when its sockets close). Goal: p99 <=
 * timeout + 100 ms. 5 runs by default; COLO_BENCH_RUNS=N for more (the long campaign,
 * `npm run fault:long`, does >= 100).
 */
import { percentile } from "../test/fault/cluster.ts";
import { killPrimaryRun } from "../test/fault/scenarios.ts";

const runs = Number(process.env.COLO_BENCH_RUNS ?? 5);
const timeouts = [500];
const rows: string[][] = [];
for (const timeout of timeouts) {
  const times: number[] = [];
  let lost = 0;
  for (let i = 0; i < runs; i++) {
    const r = await killPrimaryRun(9000 + i, timeout === 500 ? {} : { heartbeatTimeoutMs: timeout });
    lost += r.verdict.violations.length;
    if (r.failoverMs !== undefined) times.push(r.failoverMs);
  }
  const p50 = percentile(times, 50);
  const p99 = percentile(times, 99);
  rows.push([
    String(timeout),
    String(times.length),
    p50.toFixed(1),
    p99.toFixed(1),
    (p99 / timeout).toFixed(2),
    String(timeout + 100),
    p99 <= timeout + 100 ? "met" : "NOT met",
    String(lost),
  ]);
}
const head = ["timeout ms", "runs", "p50 ms", "p99 ms", "p99/timeout", "goal ms", "goal", "lost writes"];
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join("  ");
process.stdout.write(
  `failover: primary kill -9 -> secondary answers PING (kv guest, loopback)\n${line(head)}\n`,
);
for (const r of rows) process.stdout.write(`${line(r)}\n`);
