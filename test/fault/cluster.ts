/**
 * Process harness of the fault tests: a `colo secondary` and a `colo primary` as real child
 * processes on loopback (or inside network namespaces the test made), their service ports read
 * from their stderr, kill -9 at chosen moments, and bounded waits. Test-only code.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "../..");
export const COLO = join(ROOT, "bin/colo.js");
export const KV = join(ROOT, "guests/kv.wasm");

export class ColoProc {
  readonly child: ChildProcessWithoutNullStreams;
  readonly label: string;
  err = "";
  out = "";
  readonly finished: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  #exited = false;

  /** `prefix` runs colo under another command (e.g. ["ip", "netns", "exec", "ns1"]). */
  constructor(
    label: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv = {},
    prefix: readonly string[] = [],
  ) {
    this.label = label;
    // COLO_FAULT_CLI: run another entry point instead of bin/colo.js (debugging).
    const argv = [...prefix, process.execPath, process.env.COLO_FAULT_CLI ?? COLO, ...args];
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd: ROOT,
      stdio: "pipe",
      env: { ...process.env, ...env },
    });
    this.child.stdout.setEncoding("utf8").on("data", (s: string) => {
      this.out += s;
    });
    this.child.stderr.setEncoding("utf8").on("data", (s: string) => {
      this.err += s;
      if (process.env.COLO_FAULT_DEBUG) process.stderr.write(`[${label}] ${s}`);
    });
    this.finished = new Promise((resolve) =>
      this.child.on("close", (status, signal) => {
        this.#exited = true;
        resolve({ status, signal });
      }),
    );
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Wait (bounded) for `re` in stderr, searching from `from`; returns the match. */
  async waitFor(re: RegExp, ms = 30_000, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.err.slice(from));
      if (m !== null) return m;
      if (this.#exited) throw new Error(`${this.label} exited while waiting for ${re}; stderr:\n${this.err}`);
      if (Date.now() > deadline)
        throw new Error(`${this.label}: no ${re} within ${ms} ms; stderr:\n${this.err}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** kill -9 (SIGKILL); resolves when it is gone. */
  async kill9(): Promise<void> {
    if (!this.#exited) this.child.kill("SIGKILL");
    await this.finished;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.#exited) return;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.finished;
    clearTimeout(t);
  }
}

/** A scratch directory with a PSK file, removed by `cleanup()`. */
export function scratch(): { dir: string; psk: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "colo-fault-"));
  const psk = join(dir, "psk");
  writeFileSync(psk, `${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}\n`, {
    mode: 0o600,
  });
  return { dir, psk, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A seeded PRNG (mulberry32), for reproducible kill moments. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** p-th percentile (0..100) of `xs` (nearest rank). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

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
