// Helpers for `colo run` tests: spawn it as a real child process with the pinned node, find the
// service port it prints, talk to it with Debian's redis-cli.
import { type ChildProcessWithoutNullStreams, execFile, execFileSync, spawn } from "node:child_process";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "../..");
export const GUESTS = join(ROOT, "guests");
export const COLO = join(ROOT, "bin/colo.js");

/** Whether a Debian tool is on PATH. */
export function hasTool(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface Finished {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running `colo run`. */
export class ColoRun {
  readonly child: ChildProcessWithoutNullStreams;
  stdout = "";
  stderr = "";
  readonly finished: Promise<Finished>;
  #wakeups: (() => void)[] = [];

  constructor(args: readonly string[]) {
    // process.execPath is the pinned Node 24 running this test.
    this.child = spawn(process.execPath, [COLO, "run", ...args], { cwd: ROOT, stdio: "pipe" });
    // A run that ends (or is killed) before taking all its stdin is reported by the test's own
    // assertions; the writer's EPIPE must not crash the test process.
    this.child.stdin.on("error", () => {});
    this.child.stdout.setEncoding("utf8");
    this.child.stderr.setEncoding("utf8");
    this.child.stdout.on("data", (s: string) => {
      this.stdout += s;
      this.#wake();
    });
    this.child.stderr.on("data", (s: string) => {
      this.stderr += s;
      this.#wake();
    });
    this.finished = new Promise((resolve) => {
      this.child.on("close", (status, signal) => {
        this.#wake();
        resolve({ status, signal, stdout: this.stdout, stderr: this.stderr });
      });
    });
  }

  #wake(): void {
    for (const w of this.#wakeups.splice(0)) w();
  }

  /** Wait until `pred` holds, the process ends (throws), or `ms` pass (throws). */
  async until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    let ended = false;
    void this.finished.then(() => {
      ended = true;
    });
    while (!pred()) {
      if (ended) throw new Error(`colo run ended while waiting for ${what}; stderr:\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; stderr:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.#wakeups.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * The run's end, or, if it has not ended after `ms`, a failure saying so (what was awaited, how
   * much output came, stderr), so a hang fails the test instead of holding the suite. The caller's
   * stop() then kills it.
   */
  async ended(what: string, ms = 120_000): Promise<Finished> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new Error(
            `colo run did not end within ${ms} ms (${what}); ${this.stdout.length} chars on stdout so far; stderr:\n${this.stderr}`,
          ),
        );
      }, ms);
    });
    try {
      return await Promise.race([this.finished, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The service port from "colo run: service on HOST:PORT". */
  async servicePort(): Promise<number> {
    const re = /colo run: service on (?:\[[^\]]+\]|[^:\s]+):(\d+)/;
    await this.until(() => re.test(this.stderr), "the service line");
    return Number(re.exec(this.stderr)![1]);
  }

  /** Kill it if still running, and wait for it to end. */
  async stop(): Promise<Finished> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    return this.finished;
  }
}

/** Run redis-cli against 127.0.0.1:port; resolves with its stdout (raw mode, one reply per line group). */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(port), ...args],
      { timeout: 20_000 },
      (err, out, errOut) => {
        if (err) reject(new Error(`redis-cli ${args.join(" ")}: ${err.message}\n${errOut}`));
        else resolve(out);
      },
    );
  });
}

/** Run a command to completion with a bound on time; resolves with status and output. */
export function runTool(cmd: string, args: readonly string[], timeoutMs: number): Promise<Finished> {
  return new Promise((resolve) => {
    execFile(cmd, [...args], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        status: e === null ? 0 : typeof e.code === "number" ? e.code : null,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}
