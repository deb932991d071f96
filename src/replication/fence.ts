/**
 * The fencing hook: what decides, when the link between the two hosts is lost, which side may
 * go on acknowledging writes (architecture: "Errors, failover, switchover").
 *
 * A lost heartbeat cannot tell a dead peer from a cut link. Without a hook, a secondary takes
 * over on heartbeat loss and a primary runs on unprotected: if only the link was cut, both serve
 * (split brain), and writes acknowledged by each are lost to the other when they meet again.
 * With a hook, both sides ask it before they act; it must let at most one of them win (a lock
 * on shared storage, a STONITH call to the other host's power switch, a cloud API, …):
 * - the secondary takes over only if it wins; if it loses it stands down and never serves;
 * - the primary holds every output (acknowledges nothing) until it wins; if it loses it stops
 *   serving.
 *
 * The operator supplies the hook:
 * - `--fence-cmd "CMD"`: run with /bin/sh -c; exit status 0 = won, anything else = lost. It
 *   gets the context in the environment: COLO_FENCE_ROLE (primary|secondary), COLO_FENCE_REASON,
 *   COLO_FENCE_NAME, COLO_FENCE_PEER, COLO_FENCE_SESSION (hex), COLO_FENCE_SEQ (last checkpoint).
 * - `--fence-module PATH.js`: an ES module exporting `fence(ctx: FenceContext): Promise<boolean>`.
 * Either is bounded by `--fence-timeout-ms` (default 5000): a hook that does not answer in time,
 * fails to start or throws has lost (the safe answer: do not serve). Every attempt is logged.
 *
 * scripts/fence-dir.sh is a sample for two hosts (or two network namespaces) sharing a
 * directory: the first side to create SESSION.lock wins for that session.
 */
import { spawn } from "node:child_process";
import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";

export const DEFAULT_FENCE_TIMEOUT_MS = 5000;

/** Printed at start, logged and shown in status when no fencing hook is configured. */
export const SPLIT_BRAIN_WARNING =
  "no fencing hook (--fence-cmd / --fence-module): on heartbeat loss the secondary takes over and the primary runs on unprotected; a cut link can leave both serving (split brain)";

export type FenceReason = "peer-lost" | "manual" | "switchover";

export interface FenceContext {
  readonly role: "primary" | "secondary";
  readonly reason: FenceReason;
  /** The guest's name, if it has one. */
  readonly name: string | undefined;
  /** The peer's replication address as configured. */
  readonly peer: string | undefined;
  /** The replication session id (hex), the same on both sides: the natural lock name. */
  readonly session: string | undefined;
  /** The last checkpoint this side completed. */
  readonly seq: number;
  /** Aborted when the timeout passes. */
  readonly signal: AbortSignal;
}

export interface FenceOutcome {
  readonly won: boolean;
  /** Why, in words (exit status, timeout, error). */
  readonly detail: string;
  readonly elapsedMs: number;
}

export interface Fence {
  /** "command: …" or "module: …", for logs and status. */
  readonly description: string;
  readonly timeoutMs: number;
  /** Ask the hook. Never throws: a failing hook is a lost fence. */
  attempt(ctx: Omit<FenceContext, "signal">): Promise<FenceOutcome>;
}

export type FenceErrorCode = "fence-config";

export class FenceError extends Error {
  override readonly name = "FenceError";
  readonly code: FenceErrorCode;
  constructor(code: FenceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export interface FenceOptions {
  readonly command?: string | undefined;
  readonly module?: string | undefined;
  readonly timeoutMs?: number | undefined;
}

/** The configured fence, or undefined when neither flag is given. Throws FenceError on bad flags. */
export async function fenceFromOptions(opts: FenceOptions): Promise<Fence | undefined> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_FENCE_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new FenceError("fence-config", `fence timeout must be a positive number of ms (got ${timeoutMs})`);
  }
  if (opts.command !== undefined && opts.module !== undefined) {
    throw new FenceError("fence-config", "give --fence-cmd or --fence-module, not both");
  }
  if (opts.command !== undefined) {
    if (opts.command.trim() === "") throw new FenceError("fence-config", "--fence-cmd is empty");
    return commandFence(opts.command, timeoutMs);
  }
  if (opts.module !== undefined) return moduleFence(opts.module, timeoutMs);
  return undefined;
}

function contextEnv(ctx: Omit<FenceContext, "signal">): Record<string, string> {
  return {
    COLO_FENCE_ROLE: ctx.role,
    COLO_FENCE_REASON: ctx.reason,
    COLO_FENCE_NAME: ctx.name ?? "",
    COLO_FENCE_PEER: ctx.peer ?? "",
    COLO_FENCE_SESSION: ctx.session ?? "",
    COLO_FENCE_SEQ: String(ctx.seq),
  };
}

/** A shell command: exit 0 = won. Killed (its whole process group) at the timeout. */
export function commandFence(command: string, timeoutMs: number): Fence {
  return {
    description: `command: ${command}`,
    timeoutMs,
    attempt(ctx) {
      const t0 = performance.now();
      return new Promise<FenceOutcome>((done) => {
        const child = spawn("/bin/sh", ["-c", command], {
          env: { ...process.env, ...contextEnv(ctx) },
          stdio: ["ignore", "ignore", "pipe"],
          detached: true,
        });
        let stderr = "";
        child.stderr.setEncoding("utf8").on("data", (s: string) => {
          if (stderr.length < 4096) stderr += s;
        });
        let settled = false;
        const finish = (won: boolean, detail: string): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          done({ won, detail, elapsedMs: performance.now() - t0 });
        };
        const timer = setTimeout(() => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
          } catch {
            // already gone
          }
          finish(false, `no answer within ${timeoutMs} ms (killed)`);
        }, timeoutMs);
        child.once("error", (e) => finish(false, `could not run: ${e.message}`));
        child.once("close", (status, signal) => {
          const tail = stderr.trim() === "" ? "" : `: ${stderr.trim().split("\n").slice(-1)[0]}`;
          if (status === 0) finish(true, "exit status 0");
          else finish(false, `${signal !== null ? `signal ${signal}` : `exit status ${status}`}${tail}`);
        });
      });
    },
  };
}

/** An ES module exporting `fence(ctx): Promise<boolean>`, loaded on first use. */
export function moduleFence(path: string, timeoutMs: number): Fence {
  const url = pathToFileURL(isAbsolute(path) ? path : resolve(path)).href;
  let loaded: Promise<(ctx: FenceContext) => Promise<boolean>> | undefined;
  const load = () => {
    loaded ??= import(url).then((m: { fence?: unknown }) => {
      if (typeof m.fence !== "function") {
        throw new FenceError("fence-config", `${path} does not export a function fence(ctx)`);
      }
      return m.fence as (ctx: FenceContext) => Promise<boolean>;
    });
    return loaded;
  };
  return {
    description: `module: ${path}`,
    timeoutMs,
    async attempt(ctx) {
      const t0 = performance.now();
      const ac = new AbortController();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<FenceOutcome>((done) => {
        timer = setTimeout(() => {
          ac.abort();
          done({ won: false, detail: `no answer within ${timeoutMs} ms`, elapsedMs: performance.now() - t0 });
        }, timeoutMs);
      });
      const asked = (async (): Promise<FenceOutcome> => {
        try {
          const fn = await load();
          const won = (await fn({ ...ctx, signal: ac.signal })) === true;
          return { won, detail: won ? "returned true" : "returned false", elapsedMs: performance.now() - t0 };
        } catch (e) {
          return {
            won: false,
            detail: `threw: ${(e as Error)?.message ?? String(e)}`,
            elapsedMs: performance.now() - t0,
          };
        }
      })();
      try {
        return await Promise.race([asked, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
