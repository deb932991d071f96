/**
 * Glue between a guest process (`colo run --name`, `colo restore`, `colo receive`) and its control
 * socket (src/save/guest-control.ts), plus the terminal progress bar and report of save/migrate.
 */
import type { Domain } from "../guest/domain.ts";
import type { GuestPort, PortInput, PortOutput, StdinInput } from "../guest/port.ts";
import type { HostState } from "../guest/wasi/state.ts";
import { type GuestControl, startGuestControl } from "../save/guest-control.ts";

export type { GuestControl };

/** Something with a close(): the service plug. */
interface Closable {
  close(): Promise<void>;
}

/**
 * Start NAME's control socket for a running guest. When the guest leaves the process (saved or
 * migrated), the service plug is closed first. Prints a line to stderr on failure to start.
 */
export async function attachControl(
  name: string,
  domain: Domain,
  plug: Closable,
  info: { service?: string | undefined; module?: string | undefined },
  prefix = "colo run",
): Promise<GuestControl | undefined> {
  try {
    return await startGuestControl({
      name,
      domain,
      service: info.service,
      module: info.module,
      beforeHandOff: () => plug.close(),
    });
  } catch (e) {
    process.stderr.write(`${prefix}: no control socket for '${name}': ${(e as Error).message}\n`);
    return undefined;
  }
}

/** Run loop of a guest process: resume after stray suspensions, but not while a save/migrate holds it. */
export async function superviseDomain(
  domain: Domain & { whenStopped(): Promise<void> },
  control: GuestControl | undefined,
): Promise<void> {
  while (domain.state === "running" || domain.state === "suspended") {
    await domain.whenStopped();
    if (control?.held === true) await control.idle();
    else if (domain.state === "suspended") await domain.resume();
  }
}

// ---------------------------------------------------------------------------------------------
// Progress and reports

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

/** A one-line progress bar on a TTY (nothing otherwise). */
export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): {
  update(p: Record<string, unknown>): void;
  done(): void;
} {
  const tty = stream.isTTY === true;
  let shown = false;
  return {
    update(p) {
      if (!tty) return;
      const sent = Number(p.pagesSent ?? 0);
      const total = Math.max(1, Number(p.pagesInRound ?? 1));
      const width = 24;
      const fill = Math.min(width, Math.round((sent / total) * width));
      const bar = `${"#".repeat(fill)}${"-".repeat(width - fill)}`;
      const rate = Number(p.rate ?? 0);
      const line = `${String(p.phase).padEnd(9)} round ${p.round} [${bar}] ${sent}/${total} pages  ${mib(Number(p.bytes ?? 0))}  ${mib(rate)}/s  est. downtime ${Number(p.estimatedDowntimeMs ?? 0).toFixed(1)} ms`;
      stream.write(`\r\x1b[K${line}`);
      shown = true;
    },
    done() {
      if (shown) stream.write("\r\x1b[K");
    },
  };
}

/** The final report of a save or migration. */
export function formatReport(r: Record<string, unknown>): string {
  const rounds = Array.isArray(r.pagesPerRound) ? (r.pagesPerRound as number[]) : [];
  const downtime = Number(r.downtimeMs);
  return [
    `total time  ${Number(r.totalMs).toFixed(1)} ms`,
    `downtime    ${Number.isFinite(downtime) ? `${downtime.toFixed(1)} ms` : "unknown (no RESUMED from the target)"}`,
    `bytes       ${Number(r.bytes)} (${mib(Number(r.bytes))})`,
    `rounds      ${r.rounds} (pages per round: ${rounds.join(", ")})`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// A restored or received guest, served as `colo run` serves one

/** Restore-target factory for the real runtime (loaded lazily: binaryen is heavy). */
export async function wasmRestoreTarget(moduleBytes: Uint8Array): Promise<Domain> {
  const { WasmDomain } = await import("../guest/wasm/wasm-domain.ts");
  const { DEFAULT_FS_LIMIT_BYTES } = await import("./run.ts");
  // args, env and the file system come back with the host state
  return WasmDomain.createRestoreTarget(moduleBytes, {
    host: { args: [], env: [], preopens: [], fsLimitBytes: DEFAULT_FS_LIMIT_BYTES },
  });
}

export interface ServeOptions {
  readonly name: string | undefined;
  /** The service plug, already listening (or not, if undefined service). */
  readonly plug: Closable;
  readonly service: string | undefined;
  readonly prefix: string;
}

/**
 * Resume a restored domain and serve it until it ends (or leaves again by save/migrate).
 * Returns the exit status, as `colo run` does.
 */
export async function serveRestored(
  domain: Domain & { whenStopped(): Promise<void> },
  opts: ServeOptions,
): Promise<number> {
  const control =
    opts.name === undefined
      ? undefined
      : await attachControl(opts.name, domain, opts.plug, { service: opts.service }, opts.prefix);
  let signalled: number | undefined;
  const onSignal = (status: number) => () => {
    signalled ??= status;
    void opts.plug.close().then(() => domain.destroy());
  };
  const onInt = onSignal(130);
  const onTerm = onSignal(143);
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  try {
    if (domain.state !== "running") await domain.resume();
    await superviseDomain(domain, control);
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    await control?.close();
    await opts.plug.close();
    await domain.destroy();
  }
  if (signalled !== undefined) return signalled;
  if (control?.handedOff !== undefined) {
    process.stderr.write(`${opts.prefix}: guest ${control.handedOff}\n`);
    return 0;
  }
  const end = domain.end;
  if (end === undefined) return 1;
  if (end.kind === "trap") process.stderr.write(`${opts.prefix}: guest trapped: ${end.message}\n`);
  return end.kind === "exit" ? end.code & 0xff : 1;
}

// ---------------------------------------------------------------------------------------------
// Connection ids of a restored or received guest

/**
 * The highest connection id a restored host state holds (open, or opened and not yet accepted),
 * 0 if none. A new service plug must number its connections above it: the guest still has those
 * connections (their clients are gone; the restore reset them) and an id must never be reused.
 */
export async function highestConnId(hostState: Uint8Array): Promise<number> {
  const { decodeState } = await import("../guest/wasi/state-codec.ts");
  // A seed's host state carries every file-system block, so `current` is never consulted.
  const none = { inodes: new Map(), fds: new Map(), conns: new Map() } as unknown as HostState;
  const { state } = decodeState(hostState, none, Number.MAX_SAFE_INTEGER);
  let max = 0;
  for (const id of state.conns.keys()) max = Math.max(max, id);
  for (const id of state.pendingAccepts) max = Math.max(max, id);
  return max;
}

/**
 * The guest's port with connection ids shifted by `base`: a plug that numbers its connections
 * from 1 reaches the guest as base + 1, base + 2, … Outputs for ids ≤ base (connections of the
 * previous host, whose clients are gone) are dropped, as a plug drops outputs for ids it does
 * not know.
 */
export function shiftedPort(port: GuestPort, base: number): GuestPort {
  if (base === 0) return port;
  return {
    input(e: PortInput | StdinInput): number {
      return port.input("conn" in e ? { ...e, conn: e.conn + base } : e);
    },
    onOutput(listener: (event: PortOutput) => void): () => void {
      return port.onOutput((ev) => {
        if (ev.kind === "data") {
          if (ev.stream.kind !== "conn") listener(ev);
          else if (ev.stream.id > base)
            listener({ ...ev, stream: { kind: "conn", id: ev.stream.id - base } });
        } else if ("conn" in ev) {
          if (ev.conn > base) listener({ ...ev, conn: ev.conn - base });
        } else listener(ev);
      });
    },
  };
}

/** Print a usage error and return 2. */
export function usageError(prefix: string, message: string, usage: string): number {
  process.stderr.write(`${prefix}: ${message}\n${usage.split("\n\n")[0]}\n(${prefix} --help for more)\n`);
  return 2;
}

/** Exit status 1 with the error's message (and code). */
export function failure(prefix: string, e: unknown): number {
  const code = (e as { code?: unknown })?.code;
  process.stderr.write(
    `${prefix}: ${(e as Error)?.message ?? String(e)}${typeof code === "string" ? ` [${code}]` : ""}\n`,
  );
  return 1;
}
