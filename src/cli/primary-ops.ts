/**
 * What every process that runs a PrimaryController offers, whether it started as `colo primary`
 * or became the primary by a takeover under `colo secondary`: the control-socket operations
 * `protect` and `switchover`, the exits of a primary (3 on a --verify mismatch, 4 when the
 * fencing hook lost), and, after a switchover, handing the process over to the secondary role.
 */
import type { ReplicationSettings } from "../replication/config.ts";
import { FAILOVER_OPS } from "../replication/failover.ts";
import type { PrimaryController } from "../replication/primary.ts";
import type { Security } from "../transport/security.ts";
import { formatServiceAddress, parseServiceAddress } from "./service.ts";

/** Internal: the run ended by a switchover (never an exit status: the secondary's is). */
export const EXIT_SWITCHED = -1;

/** Exit status of a primary that lost its fencing hook (the secondary serves). */
export const EXIT_FENCED_OUT = 4;

/** Exit status of a --verify mismatch (a bug in colo: the secondary was not a faithful copy). */
export const EXIT_VERIFY_FAILED = 3;

/**
 * Seed the secondary at `at` and protect the guest with it, in the background. The secondary may
 * still be starting: a failed try is retried every `retryMs` until `timeoutMs` from now; then, or
 * as soon as the controller is no longer unprotected, it gives up with "WARNING: running
 * UNPROTECTED: <why><error>". Once `stopped()` is true a failure ends it silently.
 */
export function protectInBackground(o: {
  readonly controller: PrimaryController;
  readonly settings: ReplicationSettings;
  readonly security: Security;
  readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number };
  readonly at: { readonly host: string; readonly port: number };
  readonly timeoutMs: number;
  readonly retryMs: number;
  readonly stopped?: () => boolean;
  /** Said once protected. */
  readonly protectedMessage: string;
  /** Put before the error when giving up. */
  readonly why: string;
  readonly say: (m: string) => void;
}): void {
  void (async () => {
    const { capabilitiesOf } = await import("../replication/config.ts");
    const { dialSecondary } = await import("../replication/links.ts");
    const { describeError } = await import("../replication/errors.ts");
    const deadline = Date.now() + o.timeoutMs;
    for (;;) {
      try {
        const links = await dialSecondary({
          host: o.at.host,
          port: o.at.port,
          security: o.security,
          capabilities: capabilitiesOf(o.settings),
          heartbeat: o.heartbeat,
        });
        await o.controller.protect(links);
        o.say(o.protectedMessage);
        return;
      } catch (e) {
        if (o.stopped?.() === true) return;
        if (Date.now() > deadline || o.controller.state !== "unprotected") {
          o.say(`WARNING: running UNPROTECTED: ${o.why}${describeError(e)}`);
          return;
        }
        await new Promise((r) => setTimeout(r, o.retryMs));
      }
    }
  })();
}

export interface PrimaryOpsContext {
  readonly controller: PrimaryController;
  readonly settings: ReplicationSettings;
  readonly security: Security;
  readonly heartbeat: { readonly intervalMs: number; readonly timeoutMs: number };
  /** Where this process waits as the new secondary after a switchover (undefined: no switchover). */
  readonly listenBack: { readonly host: string; readonly port: number } | undefined;
  /** What the command was started as, for the error of a switchover without --listen. */
  readonly command: string;
  readonly say: (m: string) => void;
  /** End the run with this status (the first call wins). */
  readonly end: (status: number) => void;
}

/** End the run on a --verify mismatch (3) or a lost fence (4). */
export function watchPrimaryEnds(c: Pick<PrimaryOpsContext, "controller" | "say" | "end">): void {
  c.controller.on("verify-failed", (e) => {
    c.say(`VERIFY FAILED: ${e.message}`);
    c.end(EXIT_VERIFY_FAILED);
  });
  c.controller.on("fenced-out", (e) => {
    c.say(`FENCED OUT: stopped serving (${e.message})`);
    c.end(EXIT_FENCED_OUT);
  });
}

/** The control-socket handlers of ops "switchover" and "protect" for a primary. */
export function primaryControlOps(c: PrimaryOpsContext): Record<string, (args: unknown) => Promise<unknown>> {
  return {
    [FAILOVER_OPS.switchover]: async () => {
      if (c.listenBack === undefined)
        throw new Error(`switchover: ${c.command} was started without --listen`);
      const report = await c.controller.switchover(formatServiceAddress(c.listenBack));
      c.say(
        `switched over after checkpoint ${report.finalSeq}: new primary on ${report.newPrimaryService}; input paused → new primary serving ${report.gapMs.toFixed(1)} ms`,
      );
      // Reply first, then hand this process over to the secondary role.
      setTimeout(() => c.end(EXIT_SWITCHED), 100);
      return report;
    },
    [FAILOVER_OPS.protect]: async (args) => {
      const a = args as { secondary?: unknown; pskFile?: unknown; insecure?: unknown };
      const at = typeof a.secondary === "string" ? parseServiceAddress(a.secondary) : undefined;
      if (at === undefined) throw new Error("protect: secondary HOST:PORT expected");
      const { securityFromOptions } = await import("../transport/security.ts");
      const { capabilitiesOf } = await import("../replication/config.ts");
      const { dialSecondary } = await import("../replication/links.ts");
      const sec =
        a.pskFile === undefined && a.insecure !== true
          ? c.security
          : securityFromOptions({
              pskFile: typeof a.pskFile === "string" ? a.pskFile : undefined,
              insecure: a.insecure === true,
            });
      const links = await dialSecondary({
        host: at.host,
        port: at.port,
        security: sec,
        capabilities: capabilitiesOf(c.settings),
        heartbeat: c.heartbeat,
      });
      await c.controller.protect(links);
      c.say(`protected again by ${formatServiceAddress(at)} from checkpoint ${c.controller.seq}`);
      return { protected: true, secondary: formatServiceAddress(at), seq: Number(c.controller.seq) };
    },
  };
}

/**
 * After a switchover: be the new primary's secondary, as `colo secondary` in a child process
 * (same name, key, heartbeat and fencing flags); its exit status is ours.
 */
export async function becomeSecondary(
  listen: { host: string; port: number },
  service: string,
  values: Record<string, string | boolean | undefined>,
  name: string | undefined,
  say: (m: string) => void,
): Promise<number> {
  const { spawn } = await import("node:child_process");
  const args = ["secondary", "--listen", formatServiceAddress(listen), "--service", service];
  if (listen.host !== "127.0.0.1" && listen.host !== "::1" && listen.host !== "localhost")
    args.push("--listen-any");
  for (const k of [
    "psk-file",
    "heartbeat-ms",
    "heartbeat-timeout-ms",
    "fence-cmd",
    "fence-module",
    "fence-timeout-ms",
  ] as const) {
    const v = values[k];
    if (typeof v === "string") args.push(`--${k}`, v);
  }
  if (values["insecure-no-tls"] === true) args.push("--insecure-no-tls");
  if (name !== undefined) args.push("--name", name);
  say(`now the secondary: colo ${args.join(" ")}`);
  const child = spawn(process.execPath, [process.argv[1]!, ...args], { stdio: "inherit" });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  process.on("SIGINT", forward("SIGINT"));
  process.on("SIGTERM", forward("SIGTERM"));
  return new Promise<number>((resolve) =>
    child.on("close", (status, signal) => resolve(status ?? (signal === "SIGKILL" ? 137 : 143))),
  );
}
