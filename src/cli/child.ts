/**
 * `colo …` as a child process, for `colo demo`, the benchmarks and the process tests: one class
 * that spawns bin/colo.js (cwd: the package root), keeps what it writes (stdout, stderr, and both
 * interleaved as they arrived), waits boundedly for a line, and stops it; and `startPair`, which
 * starts a `colo secondary` and a `colo primary` on loopback and waits until the pair is
 * protected. Waits are woken by the child's output, not by polling.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const COLO_BIN = join(PACKAGE_ROOT, "bin/colo.js");

export interface ColoChildOptions {
  /** Names the child in error messages. */
  readonly label?: string;
  /** Added to this process's environment. */
  readonly env?: NodeJS.ProcessEnv;
  /** Runs node under another command (e.g. ["ip", "netns", "exec", "ns1"]). */
  readonly prefix?: readonly string[];
  /** Node flags before the script (e.g. --cpu-prof). */
  readonly nodeArgs?: readonly string[];
  /** The script instead of bin/colo.js. */
  readonly entry?: string;
  /** Called with each chunk of stderr as it arrives (e.g. to echo it). */
  readonly onStderr?: (text: string) => void;
}

export class ColoChild {
  readonly child: ChildProcessWithoutNullStreams;
  readonly label: string;
  out = "";
  err = "";
  /** stdout and stderr interleaved in arrival order. */
  log = "";
  /** Settles once the child has exited and its output streams have closed. */
  readonly finished: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
  #exited = false;
  #wake: (() => void)[] = [];

  constructor(args: readonly string[], o: ColoChildOptions = {}) {
    this.label = o.label ?? args[0] ?? "colo";
    const argv = [...(o.prefix ?? []), process.execPath, ...(o.nodeArgs ?? []), o.entry ?? COLO_BIN, ...args];
    this.child = spawn(argv[0]!, argv.slice(1), {
      cwd: PACKAGE_ROOT,
      stdio: "pipe",
      env: { ...process.env, ...o.env },
    });
    this.child.stdin.end();
    this.child.stdout.setEncoding("utf8").on("data", (s: string) => {
      this.out += s;
      this.log += s;
      this.#notify();
    });
    this.child.stderr.setEncoding("utf8").on("data", (s: string) => {
      this.err += s;
      this.log += s;
      o.onStderr?.(s);
      this.#notify();
    });
    this.finished = new Promise((resolve) =>
      this.child.on("close", (status, signal) => {
        this.#exited = true;
        this.#notify();
        resolve({ status, signal });
      }),
    );
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Wait (at most `ms`) for `re` in stderr, searching from offset `from`; returns the match. */
  waitFor(re: RegExp, ms = 30_000, from = 0): Promise<RegExpExecArray> {
    return this.#until(
      () => re.exec(this.err.slice(from)) ?? undefined,
      re,
      ms,
      () => this.err,
    );
  }

  /** Wait (at most `ms`) for `re` in stdout or stderr; returns its first group (or the match). */
  async line(re: RegExp, ms = 30_000): Promise<string> {
    const m = await this.#until(
      () => re.exec(this.log) ?? undefined,
      re,
      ms,
      () => this.log,
    );
    return m[1] ?? m[0];
  }

  /** kill -9 (SIGKILL); resolves when it is gone. */
  async kill9(): Promise<void> {
    if (!this.#exited) this.child.kill("SIGKILL");
    await this.finished;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit status. */
  async stop(graceMs = 3000): Promise<number | null> {
    if (!this.#exited) {
      this.child.kill("SIGTERM");
      const t = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
      await this.finished;
      clearTimeout(t);
    }
    return this.child.exitCode;
  }

  #notify(): void {
    for (const w of this.#wake.splice(0)) w();
  }

  async #until<T>(probe: () => T | undefined, re: RegExp, ms: number, seen: () => string): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (this.#exited) throw new Error(`${this.label} exited while waiting for ${re}; output:\n${seen()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no ${re} within ${ms} ms; output:\n${seen()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** A scratch directory holding a fresh pre-shared key file (mode 0600), removed by `cleanup()`. */
export function pskScratch(prefix = "colo-"): { dir: string; psk: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const psk = join(dir, "psk");
  writeFileSync(psk, `${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}\n`, {
    mode: 0o600,
  });
  return { dir, psk, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface PairOptions {
  /** The guest module the primary runs. */
  readonly guest: string;
  /** Control-socket names. */
  readonly secondaryName: string;
  readonly primaryName: string;
  /** More `colo primary` flags (e.g. --verify, --strategy full). */
  readonly primaryArgs?: readonly string[];
  /** false: no secondary; the primary is pointed at a closed port and runs unprotected. */
  readonly protect?: boolean;
  readonly nodeArgs?: readonly string[];
  /** Bound on each wait for start-up, in ms. */
  readonly waitMs?: number;
}

export interface Pair {
  readonly sec: ColoChild | undefined;
  readonly pri: ColoChild;
  /** The secondary's replication address (host:port). */
  readonly listen: string;
  /** The primary's service address (host:port) and its port. */
  readonly service: string;
  readonly port: number;
  /** Stop the primary, then the secondary (SIGTERM, SIGKILL after 5 s), remove the key's
   * directory; resolves with the primary's exit status. */
  close(): Promise<number | null>;
}

/**
 * Start `colo secondary` (replication and service on ephemeral loopback ports), then `colo
 * primary` against it, both with a fresh pre-shared key, and wait until the primary is protected
 * (or, with `protect: false`, running unprotected). On failure both are killed and the key
 * removed before the error is thrown.
 */
export async function startPair(o: PairOptions): Promise<Pair> {
  const ms = o.waitMs ?? 30_000;
  const protect = o.protect ?? true;
  const scratch = pskScratch();
  let sec: ColoChild | undefined;
  let pri: ColoChild | undefined;
  try {
    let listen = "127.0.0.1:1";
    if (protect) {
      sec = new ColoChild(
        [
          "secondary",
          "--listen",
          "127.0.0.1:0",
          "--service",
          "127.0.0.1:0",
          "--psk-file",
          scratch.psk,
          "--name",
          o.secondaryName,
        ],
        { nodeArgs: o.nodeArgs },
      );
      listen = await sec.line(/listening on (\S+)/, ms);
    }
    pri = new ColoChild(
      [
        "primary",
        o.guest,
        "--service",
        "127.0.0.1:0",
        "--secondary",
        listen,
        "--psk-file",
        scratch.psk,
        "--name",
        o.primaryName,
        ...(o.primaryArgs ?? []),
      ],
      { nodeArgs: o.nodeArgs },
    );
    const service = await pri.line(/service on (\S+)/, ms);
    await pri.line(protect ? /colo primary: (protected) \(/ : /(UNPROTECTED)/, ms);
    const p = pri;
    const s = sec;
    return {
      sec,
      pri,
      listen,
      service,
      port: Number(service.slice(service.lastIndexOf(":") + 1)),
      async close() {
        const status = await p.stop(5000);
        await s?.stop(5000);
        scratch.cleanup();
        return status;
      },
    };
  } catch (e) {
    await Promise.all([pri?.kill9(), sec?.kill9()]);
    scratch.cleanup();
    throw e;
  }
}
