/**
 * Process harness of the fault tests: a `colo secondary` and a `colo primary` as real child
 * processes on loopback (or inside network namespaces the test made), their service ports read
 * from their stderr, kill -9 at chosen moments, and bounded waits. Test-only code.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ColoChild, pskScratch } from "../../src/cli/child.ts";

export const ROOT = join(import.meta.dirname, "../..");
export const COLO = join(ROOT, "bin/colo.js");
export const KV = join(ROOT, "guests/kv.wasm");

/** `ColoChild` with the fault tests' knobs: COLO_FAULT_CLI runs another entry point instead of
 * bin/colo.js, COLO_FAULT_DEBUG echoes each child's stderr under its label (debugging). */
export class ColoProc extends ColoChild {
  /** `prefix` runs colo under another command (e.g. ["ip", "netns", "exec", "ns1"]). */
  constructor(
    label: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv = {},
    prefix: readonly string[] = [],
  ) {
    super(args, {
      label,
      env,
      prefix,
      entry: process.env.COLO_FAULT_CLI,
      onStderr: process.env.COLO_FAULT_DEBUG ? (s) => process.stderr.write(`[${label}] ${s}`) : undefined,
    });
  }
}

/** A scratch directory with a PSK file, removed by `cleanup()`. */
export function scratch(): { dir: string; psk: string; cleanup(): void } {
  return pskScratch("colo-fault-");
}

export { percentile } from "../../src/replication/stats.ts";
/** A seeded PRNG, for reproducible kill moments: the stream tests' mulberry32. */
export { rng as prng } from "../stream/fuzz.ts";

/**
 * Run one `colo …` command without blocking this process's event loop (spawnSync would freeze
 * the in-process workload for the command's whole life, its start-up included, and the clients'
 * measured gap with it). Bounded by `timeoutMs` (the child is killed).
 */
export function coloRun(
  env: NodeJS.ProcessEnv,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [COLO, ...args], { env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => {
      stdout += s;
    });
    child.stderr.setEncoding("utf8").on("data", (s: string) => {
      stderr += s;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** Longest pause between consecutive acknowledged writes completed within [from, to] (ms). */
export function longestAckGap(
  writes: readonly { outcome: string; completedAt: number }[],
  from = Number.NEGATIVE_INFINITY,
  to = Number.POSITIVE_INFINITY,
): number {
  const acked = writes
    .filter((w) => w.outcome === "ok")
    .map((w) => w.completedAt)
    .sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < acked.length; i++) {
    if (acked[i]! < from || acked[i - 1]! > to) continue;
    gap = Math.max(gap, acked[i]! - acked[i - 1]!);
  }
  return gap;
}
