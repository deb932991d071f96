/**
 * `colo run GUEST.wasm [--name NAME] [--service HOST:PORT] [--dir GUEST=HOST]... [--env K=V]...
 *  [-- ARGS…]`: run one guest in the foreground, unreplicated.
 *
 * The guest's stdin, stdout and stderr are this process's (stdin fed through the port: the host
 * is created with stdin "port", and a guest that never reads it only leaves it buffered up to the
 * plug's bound; a terminal is passed through too, so in the background give </dev/null, as a
 * read would stop the process with SIGTTIN); its fd 3 (the service socket, systemd
 * socket activation) is a real listening socket on --service, plugged into the guest's port by
 * ServicePlug. The exit status is the guest's; a trap is status 1 with a message on stderr.
 * SIGINT/SIGTERM stop the guest and exit with 130/143.
 *
 * Messages of colo itself go to stderr prefixed "colo run:"; one of them, printed once the
 * service listens, is "colo run: service on HOST:PORT" (tests read the port from it when they
 * pass port 0).
 */
import { readFile, stat } from "node:fs/promises";
import { basename } from "node:path";
import type { Readable } from "node:stream";
import { parseArgs } from "node:util";
import type { GuestEnd } from "../guest/domain.ts";
import type { Preopen } from "../guest/wasi/contract.ts";
import type { TransformOptions } from "../guest/wasm/transform.ts";
import type { WasmDomain } from "../guest/wasm/wasm-domain.ts";
import { formatServiceAddress, parseServiceAddress, type ServiceAddress, ServicePlug } from "./service.ts";

/** Default service address: loopback, Redis's port (the kv sample guest speaks RESP). */
export const DEFAULT_SERVICE = "127.0.0.1:6379";

export const USAGE = `usage: colo run GUEST.wasm [--name NAME] [--service HOST:PORT] [--dir GUEST=HOST]...
                [--env KEY=VALUE]... [-- ARGS…]

Run a wasm32-wasi guest in the foreground, unreplicated. Its stdin, stdout and stderr are
passed through; its fd 3 (the listening socket, LISTEN_FDS=1) is served on the service address.
Exit status: the guest's; 1 if it traps or cannot be loaded; 2 for bad flags.

options:
  --service HOST:PORT  client-facing address of fd 3 (default ${DEFAULT_SERVICE}; port 0 picks a
                       free port). When the default is busy the guest runs without clients.
  --dir GUEST=HOST     preopen directory GUEST (absolute, e.g. /data), seeded from host
                       directory HOST at start and written back to it when the guest exits
  --env KEY=VALUE      guest environment variable (the host environment is not passed)
  --name NAME          control the guest by name (colo list / save / migrate)
  -- ARGS…             the guest's arguments (argv[0] is GUEST.wasm's file name)
  -h, --help           this help
`;

/** A parsed `colo run` command line. */
export interface RunOptions {
  readonly module: string;
  readonly name: string | undefined;
  readonly service: ServiceAddress;
  /** The service address was given explicitly (failing to bind it is then fatal). */
  readonly serviceExplicit: boolean;
  readonly preopens: readonly Preopen[];
  readonly env: readonly string[];
  readonly args: readonly string[];
}

/** A usage error: exit status 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly code = "usage";
}

/** Parse argv (after "run"); "help" when --help is asked for. Throws UsageError. */
export function parseRunArgs(argv: readonly string[]): RunOptions | "help" {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const guestArgs = dash < 0 ? [] : argv.slice(dash + 1);
  let parsed: ReturnType<typeof parseOwn>;
  try {
    parsed = parseOwn(own);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return "help";
  if (positionals.length === 0) throw new UsageError("missing GUEST.wasm");
  if (positionals.length > 1) {
    throw new UsageError(`unexpected argument '${positionals[1]}' (guest arguments go after '--')`);
  }
  const module = positionals[0]!;
  const serviceText = values.service ?? DEFAULT_SERVICE;
  const service = parseServiceAddress(serviceText);
  if (service === undefined) throw new UsageError(`--service '${serviceText}' is not HOST:PORT`);
  const preopens: Preopen[] = [];
  for (const d of values.dir ?? []) {
    const eq = d.indexOf("=");
    const guestPath = eq < 0 ? "" : d.slice(0, eq);
    const hostPath = eq < 0 ? "" : d.slice(eq + 1);
    if (!guestPath.startsWith("/") || hostPath === "") {
      throw new UsageError(`--dir '${d}' is not GUEST=HOST with an absolute GUEST path`);
    }
    if (preopens.some((p) => p.guestPath === guestPath))
      throw new UsageError(`--dir ${guestPath} given twice`);
    preopens.push({ guestPath, hostPath });
  }
  const env: string[] = [];
  for (const e of values.env ?? []) {
    if (!/^[^=\0]+=[^\0]*$/.test(e)) throw new UsageError(`--env '${e}' is not KEY=VALUE`);
    env.push(e);
  }
  if (values.name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(values.name)) {
    throw new UsageError(`--name '${values.name}': use 1-64 letters, digits, '.', '_', '-'`);
  }
  return {
    module,
    name: values.name,
    service,
    serviceExplicit: values.service !== undefined,
    preopens,
    env,
    args: [basename(module), ...guestArgs],
  };
}

function parseOwn(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      name: { type: "string" },
      service: { type: "string" },
      dir: { type: "string", multiple: true },
      env: { type: "string", multiple: true },
      help: { type: "boolean", short: "h" },
    },
  });
}

function say(message: string): void {
  process.stderr.write(`colo run: ${message}\n`);
}

/** Exit status for how a guest ended: its code (0-255), or 1 for a trap. */
export function exitStatus(end: GuestEnd): number {
  return end.kind === "exit" ? end.code & 0xff : 1;
}

export async function run(argv: string[]): Promise<number> {
  let options: RunOptions;
  try {
    const parsed = parseRunArgs(argv);
    if (parsed === "help") {
      process.stdout.write(USAGE);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(
        `colo run: ${err.message}\n${USAGE.split("\n\n")[0]}\n(colo run --help for more)\n`,
      );
      return 2;
    }
    throw err;
  }
  return runGuest(options);
}

/** File data a guest may keep in its virtual file system: well below the stream's 128 MiB record cap. */
export const DEFAULT_FS_LIMIT_BYTES = 64 << 20;

/** How long to wait, once the guest has ended, for its last output to reach slow clients. */
const FLUSH_GRACE_MS = 2000;

/** A guest loaded, plugged and started by startGuest(). */
export interface RunningGuest {
  readonly domain: WasmDomain;
  readonly plug: ServicePlug;
  /** The bound service address, or undefined if the default one was busy. */
  readonly service: ServiceAddress | undefined;
}

/** Extra knobs for programmatic callers (benchmarks); not command-line flags. */
export interface StartOptions {
  /** Which transforms to apply (default: all, as colo always runs guests). */
  readonly transform?: TransformOptions;
  /** Guest stdout/stderr sinks (default: this process's). */
  readonly stdout?: (bytes: Uint8Array) => void;
  readonly stderr?: (bytes: Uint8Array) => void;
  /** colo's own messages (default: stderr, prefixed "colo run: "). */
  readonly log?: (message: string) => void;
  /** Feed this stream to the guest's stdin (default: none, the guest's fd 0 reads EOF at once). */
  readonly stdin?: Readable;
}

/** Why a guest could not be started: exit status 1, message already phrased for the user. */
export class RunError extends Error {
  override readonly name = "RunError";
  readonly code: "unreadable-module" | "bad-dir" | "load-failed" | "listen-failed";
  constructor(code: RunError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Load the module, plug the service socket into its port, and start it. The caller waits for
 * the end (domain.whenStopped()) and must call stopGuest(). Throws RunError.
 */
export async function startGuest(options: RunOptions, extra: StartOptions = {}): Promise<RunningGuest> {
  const log = extra.log ?? say;
  let bytes: Uint8Array;
  try {
    bytes = await readFile(options.module);
  } catch (err) {
    throw new RunError("unreadable-module", `cannot read ${options.module}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  for (const p of options.preopens) {
    const st = await stat(p.hostPath!).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) {
      throw new RunError("bad-dir", `--dir ${p.guestPath}=${p.hostPath}: not a directory`);
    }
  }
  let domain: WasmDomain;
  try {
    // Loaded here, not at the top: flag errors and --help need not pay for binaryen.
    const { WasmDomain } = await import("../guest/wasm/wasm-domain.ts");
    domain = await WasmDomain.create(bytes, {
      host: {
        args: options.args,
        env: options.env,
        preopens: options.preopens,
        fsLimitBytes: DEFAULT_FS_LIMIT_BYTES,
        stdin: extra.stdin === undefined ? "empty" : "port",
      },
      transform: extra.transform,
      writeBackOnExit: true,
    });
  } catch (err) {
    const what = err instanceof Error ? err.message : String(err);
    throw new RunError("load-failed", `cannot load ${options.module}: ${what}`, { cause: err });
  }
  // Subscribe before the guest starts, so no early output is missed.
  const plug = new ServicePlug(domain, { stdout: extra.stdout, stderr: extra.stderr, stdin: extra.stdin });
  let service: ServiceAddress | undefined;
  try {
    service = await plug.listen(options.service);
  } catch (err) {
    const where = formatServiceAddress(options.service);
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    if (options.serviceExplicit) {
      await plug.close();
      await domain.destroy();
      throw new RunError("listen-failed", `cannot listen on ${where}: ${why}`, { cause: err });
    }
    log(
      `cannot listen on the default service address ${where} (${why}); fd 3 gets no clients (use --service)`,
    );
  }
  if (service !== undefined) log(`service on ${formatServiceAddress(service)}`);
  await domain.start();
  return { domain, plug, service };
}

/** Let the last output reach clients (bounded), then close the service and free the guest. */
export async function stopGuest(g: RunningGuest): Promise<void> {
  if (g.domain.state !== "running") {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([g.plug.flush(), new Promise((r) => (timer = setTimeout(r, FLUSH_GRACE_MS)))]);
    clearTimeout(timer);
  }
  await g.plug.close();
  await g.domain.destroy();
}

/** Run a parsed command line to the guest's end; returns the exit status. */
export async function runGuest(options: RunOptions): Promise<number> {
  let guest: RunningGuest;
  try {
    // stdin passed through, a terminal too (run colo in the background with </dev/null).
    guest = await startGuest(options, { stdin: process.stdin });
  } catch (err) {
    if (err instanceof RunError) {
      say(err.message);
      return 1;
    }
    throw err;
  }
  let signalled: number | undefined;
  const onSignal = (status: number) => () => {
    signalled ??= status;
    // Unplug first, so no client event reaches a destroyed domain; destroying ends the wait below.
    void guest.plug.close().then(() => guest.domain.destroy());
  };
  const onInt = onSignal(130);
  const onTerm = onSignal(143);
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  // With --name, `colo save | migrate | list` reach this guest through its control socket.
  const { attachControl, superviseDomain } = await import("./control.ts");
  const control =
    options.name === undefined
      ? undefined
      : await attachControl(options.name, guest.domain, guest.plug, {
          service: guest.service && formatServiceAddress(guest.service),
          module: options.module,
        });
  try {
    // Resume after stray suspensions, except while a save or migration holds the guest.
    await superviseDomain(guest.domain, control);
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    await control?.close();
    await stopGuest(guest);
  }
  if (signalled !== undefined) return signalled;
  if (control?.handedOff !== undefined) {
    say(`guest ${control.handedOff}`);
    return 0;
  }
  const end = guest.domain.end;
  if (end === undefined) {
    say("the guest ended without a status");
    return 1;
  }
  if (end.kind === "trap") say(`guest trapped: ${end.message}`);
  return exitStatus(end);
}
