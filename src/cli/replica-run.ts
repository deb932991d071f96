/**
 * The run plumbing that `colo primary` and `colo secondary` share: the end of the run (the first
 * status wins; SIGINT 130, SIGTERM 143), the controllers' log sink, the control socket of --name
 * and the metrics endpoint of --metrics. The last two are extras: when one cannot start, that is
 * said and the run goes on without it.
 */
import type { PrimaryProxy } from "../proxy/primary.ts";
import { describeError } from "../replication/errors.ts";
import type { StatusSource } from "../replication/metrics.ts";
import type { ControlHandler } from "../save/control.ts";
import { formatServiceAddress } from "./service.ts";

export interface RunEnd {
  /** End the run with this status (the first call wins). */
  readonly end: (status: number) => void;
  /** Settles once `end` has been called. */
  readonly finished: Promise<void>;
  /** The status of the first `end` call; undefined while the run goes on. */
  status(): number | undefined;
}

/** The end of a run; SIGINT ends it with 130 and SIGTERM with 143 (each heard once). */
export function runEnd(): RunEnd {
  let status: number | undefined;
  let wake: () => void = () => {};
  const finished = new Promise<void>((r) => {
    wake = r;
  });
  const end = (s: number): void => {
    status ??= s;
    wake();
  };
  process.once("SIGINT", () => end(130));
  process.once("SIGTERM", () => end(143));
  return { end, finished, status: () => status };
}

/** A controller's log sink: "info" lines as they are, any other level as a prefix in capitals. */
export function levelLog(say: (m: string) => void): (level: string, m: string) => void {
  return (level, m) => say(level === "info" ? m : `${level.toUpperCase()}: ${m}`);
}

/** The control socket of --name: undefined without a name, or when it cannot start (said). */
export async function startNamedControl(
  name: string | undefined,
  handlers: Readonly<Record<string, ControlHandler>>,
  say: (m: string) => void,
): Promise<{ close(): Promise<void> } | undefined> {
  if (name === undefined) return undefined;
  const { startControlServer } = await import("../save/control.ts");
  try {
    return await startControlServer(name, handlers);
  } catch (e) {
    say(`no control socket for '${name}': ${describeError(e)}`);
    return undefined;
  }
}

/**
 * The Prometheus endpoint of --metrics over `status` (and the proxy's counters, when given):
 * undefined without an address, or when it cannot listen (said).
 */
export async function startMetrics(
  at: { host: string; port: number } | undefined,
  status: StatusSource,
  proxy: (() => PrimaryProxy | undefined) | undefined,
  say: (m: string) => void,
): Promise<{ close(): void } | undefined> {
  if (at === undefined) return undefined;
  const { replicationRegistry, serveMetrics } = await import("../replication/metrics.ts");
  try {
    const server = await serveMetrics(replicationRegistry(status, proxy), at.host, at.port);
    const port = (server.address() as { port: number }).port;
    say(`metrics on http://${formatServiceAddress({ host: at.host, port })}/metrics`);
    return server;
  } catch (e) {
    say(`cannot serve metrics: ${describeError(e)}`);
    return undefined;
  }
}
