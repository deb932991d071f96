/**
 * `colo primary GUEST.wasm --service HOST:PORT --secondary HOST:PORT [--mode colo|remus]
 *  [--strategy back-channel|cache|full] [--min-interval-ms N] [--max-interval-ms N] [--epoch-ms N]
 *  [--verify] [--psk-file F] [--name NAME] [--metrics HOST:PORT] [--heartbeat-ms N]
 *  [--heartbeat-timeout-ms N] [--fence-cmd CMD | --fence-module PATH.js] [--fence-timeout-ms N]
 *  [-- ARGS…]`
 *
 * Runs the guest as the primary replica (PVM) behind the proxy on --service, seeds the secondary
 * at --secondary and protects the guest from then on (src/replication/primary.ts). Messages go to
 * stderr prefixed "colo primary:"; two of them are for scripts: "colo primary: service on
 * HOST:PORT" once clients can connect, and "colo primary: protected" once the seed is done.
 *
 * Losing the secondary: without a fencing hook, run on unprotected at once (and say at start that
 * a cut link can leave both sides serving); with one, hold every output until the hook answers:
 * won = run on unprotected, lost = stop serving (service address closed, clients reset, exit 4).
 * The control socket (--name) serves status, checkpoints, `colo protect` (op "protect") and
 * `colo switchover` (op "switchover", needs --listen): after it, this process becomes the new
 * primary's secondary by running `colo secondary --listen <--listen> --service <--service>` with
 * the same name, key, heartbeat and fencing flags, and exits with its status.
 *
 * Exit status: the guest's; 1 load/connect failure; 2 usage; 3 a --verify mismatch (a bug in
 * colo: the secondary was not a faithful copy); 4 the fencing hook lost (the secondary serves);
 * 130/143 on SIGINT/SIGTERM.
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type { WasmDomain as WasmDomainType } from "../guest/wasm/wasm-domain.ts";
import type { PrimaryProxy } from "../proxy/primary.ts";
import {
  MAX_TIMER_MS,
  PVM_RESUMES,
  type PvmResume,
  type ReplicationSettings,
  STRATEGIES,
  settings,
} from "../replication/config.ts";
import {
  FAILOVER_FLAGS,
  FAILOVER_USAGE,
  type FailoverConfig,
  failoverConfig,
  failoverStatus,
  fencingNotice,
  protectionOf,
} from "../replication/failover.ts";
import type { PrimaryController } from "../replication/primary.ts";
import { type Flags, optionalAddressFlag, parseCommandArgs, serviceFlag, stringFlag } from "./args.ts";
import { failure, usageError } from "./control.ts";
import {
  becomeSecondary,
  EXIT_SWITCHED,
  primaryControlOps,
  protectInBackground,
  watchPrimaryEnds,
} from "./primary-ops.ts";
import { levelLog, runEnd, startMetrics, startNamedControl } from "./replica-run.ts";
import { formatServiceAddress, parseServiceAddress } from "./service.ts";

export const USAGE = `usage: colo primary GUEST.wasm --service HOST:PORT --secondary HOST:PORT [--mode colo|remus]
                [--strategy back-channel|cache|full] [--pvm-resume snapshot|copied|ready]
                [--min-interval-ms N] [--max-interval-ms N] [--epoch-ms N] [--verify] [--psk-file F] [--name NAME] [--metrics HOST:PORT]
                [--heartbeat-ms N] [--heartbeat-timeout-ms N] [--fence-cmd CMD | --fence-module F]
                [--fence-timeout-ms N] [-- ARGS…]

Run GUEST.wasm as the primary of a replicated pair: clients connect to --service (the proxy);
the secondary (\`colo secondary\`) at --secondary is seeded by live migration and kept an exact
copy by checkpoints. If the secondary is lost the guest runs on unprotected (with a fencing
hook: only once the hook wins; if it loses, this side stops serving and exits with status 4).

options:
  --service HOST:PORT     client-facing address (default 127.0.0.1:6379; port 0 picks one)
  --secondary HOST:PORT   the secondary's --listen address (required)
  --mode colo|remus       colo: both replicas run, outputs compared (default); remus: only the
                          primary runs, outputs held until the checkpoint covering them is acked
  --strategy S            colo: back-channel (default: S sends its dirty pages B, P sends A ∪ B),
                          cache (S keeps the last checkpoint's memory, P sends A), full (all pages)
  --pvm-resume WHEN       colo: when the PVM runs again at a checkpoint: snapshot (default: at once,
                          its own thread copies A as it stops; stopped again if S's list names
                          pages A lacks), copied (once A ∪ B is copied out of its memory), or ready
                          (at SVM_READY, when the secondary has applied it, as Xen does); with
                          snapshot and copied its output waits for SVM_READY
  --min-interval-ms N     never checkpoint sooner than N ms after the last one (default 2)
  --max-interval-ms N     checkpoint at least every N ms (colo; default 2000)
  --epoch-ms N            remus: one checkpoint every N ms (default 100)
  --verify                compare whole-state digests after every checkpoint; exit 3 on mismatch
  --psk-file FILE         pre-shared key (or $COLO_PSK / $COLO_PSK_FILE)
  --name NAME             control name for \`colo status NAME\` (default: none)
  --metrics HOST:PORT     serve Prometheus metrics at http://HOST:PORT/metrics
  --listen HOST:PORT      where this side waits as the secondary after \`colo switchover\`
  --connect-timeout-ms N  keep trying to reach the secondary this long (default 10000)
  --insecure-no-tls       plain TCP, no authentication (tests only)
${FAILOVER_USAGE}  -- ARGS…                the guest's arguments
`;

/** Exit status of a primary that lost its fencing hook (the secondary serves). */
export { EXIT_FENCED_OUT } from "./primary-ops.ts";
/** Exit status of a primary whose PVM ended alone (trap or exit): the secondary serves. */
export const EXIT_HANDED_OVER = 5;

function say(m: string): void {
  process.stderr.write(`colo primary: ${m}\n`);
}

function num(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > MAX_TIMER_MS)
    throw new Error(`${name} must be a number of ms from 0 to ${MAX_TIMER_MS}`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const guestArgs = dash < 0 ? [] : argv.slice(dash + 1);
  let values: Flags;
  let positionals: string[];
  let s: ReplicationSettings;
  let connectTimeout: number;
  let failover: FailoverConfig;
  try {
    const args = parseCommandArgs(
      "colo primary",
      USAGE,
      own,
      {
        service: { type: "string" },
        secondary: { type: "string" },
        mode: { type: "string" },
        strategy: { type: "string" },
        "pvm-resume": { type: "string" },
        "min-interval-ms": { type: "string" },
        "max-interval-ms": { type: "string" },
        "epoch-ms": { type: "string" },
        verify: { type: "boolean" },
        "psk-file": { type: "string" },
        name: { type: "string" },
        metrics: { type: "string" },
        "connect-timeout-ms": { type: "string" },
        "insecure-no-tls": { type: "boolean" },
        listen: { type: "string" },
        ...FAILOVER_FLAGS,
      },
      true,
    );
    if (typeof args === "number") return args;
    ({ values, positionals } = args);
    if (positionals.length !== 1)
      throw new Error(positionals.length === 0 ? "missing GUEST.wasm" : "one GUEST.wasm only");
    const mode = (values.mode ?? "colo") as string;
    if (mode !== "colo" && mode !== "remus") throw new Error(`--mode ${mode}: colo or remus`);
    const strategy = (values.strategy ?? "back-channel") as string;
    if (!STRATEGIES.includes(strategy as ReplicationSettings["strategy"]))
      throw new Error(`--strategy ${strategy}: ${STRATEGIES.join(", ")}`);
    const pvmResume = (values["pvm-resume"] ?? "snapshot") as string;
    if (!PVM_RESUMES.includes(pvmResume as PvmResume))
      throw new Error(`--pvm-resume ${pvmResume}: ${PVM_RESUMES.join(" or ")}`);
    s = settings({
      mode,
      strategy: strategy as ReplicationSettings["strategy"],
      pvmResume: pvmResume as PvmResume,
      verify: values.verify === true,
      ...(values["min-interval-ms"] === undefined
        ? {}
        : { minIntervalMs: num(values["min-interval-ms"], "--min-interval-ms")! }),
      ...(values["max-interval-ms"] === undefined
        ? {}
        : { maxIntervalMs: num(values["max-interval-ms"], "--max-interval-ms")! }),
      ...(values["epoch-ms"] === undefined ? {} : { epochMs: num(values["epoch-ms"], "--epoch-ms")! }),
    });
    connectTimeout = num(values["connect-timeout-ms"], "--connect-timeout-ms") ?? 10_000;
    failover = await failoverConfig(values);
  } catch (e) {
    return usageError("colo primary", (e as Error).message, USAGE);
  }
  const service = serviceFlag("colo primary", USAGE, values, "127.0.0.1:6379");
  if (typeof service === "number") return service;
  const secondary = parseServiceAddress(stringFlag(values, "secondary") ?? "");
  if (secondary === undefined) return usageError("colo primary", "--secondary HOST:PORT is required", USAGE);
  const metricsAt = optionalAddressFlag("colo primary", USAGE, values, "metrics");
  if (typeof metricsAt === "number") return metricsAt;
  const listenBack = optionalAddressFlag("colo primary", USAGE, values, "listen");
  if (typeof listenBack === "number") return listenBack;
  const modulePath = positionals[0]!;
  const name = stringFlag(values, "name");

  const { securityFromOptions } = await import("../transport/security.ts");
  let security: ReturnType<typeof securityFromOptions>;
  try {
    security = securityFromOptions({
      pskFile: stringFlag(values, "psk-file"),
      insecure: values["insecure-no-tls"] === true,
    });
  } catch (e) {
    return failure("colo primary", e);
  }

  // Load and start the guest behind the proxy, unprotected.
  let bytes: Uint8Array;
  try {
    bytes = await readFile(modulePath);
  } catch (e) {
    return failure("colo primary", e);
  }
  const { WasmDomain } = await import("../guest/wasm/wasm-domain.ts");
  const { DEFAULT_FS_LIMIT_BYTES } = await import("./run.ts");
  const { PrimaryProxy } = await import("../proxy/primary.ts");
  const { PrimaryController } = await import("../replication/primary.ts");
  let domain: WasmDomainType;
  try {
    domain = await WasmDomain.create(bytes, {
      host: {
        args: [basename(modulePath), ...guestArgs],
        env: [],
        preopens: [],
        fsLimitBytes: DEFAULT_FS_LIMIT_BYTES,
      },
    });
  } catch (e) {
    say(`cannot load ${modulePath}: ${(e as Error).message}`);
    return 1;
  }
  const proxy: PrimaryProxy = new PrimaryProxy({
    port: domain,
    mode: "unprotected",
    host: service.host,
    listenPort: service.port,
  });
  let bound: string;
  try {
    const a = await proxy.listen();
    bound = formatServiceAddress({ host: a.address, port: a.port });
  } catch (e) {
    await domain.destroy();
    say(`cannot listen on ${formatServiceAddress(service)}: ${(e as Error).message}`);
    return 1;
  }
  await domain.start();
  say(`service on ${bound}`);

  say(fencingNotice(failover));
  const controller: PrimaryController = new PrimaryController({
    domain,
    proxy,
    settings: s,
    log: levelLog(say),
    fence: failover.fence,
    name,
  });
  const run = runEnd();
  const { end } = run;
  watchPrimaryEnds({ controller, say, end });
  const heartbeat = { intervalMs: failover.heartbeatMs, timeoutMs: failover.heartbeatTimeoutMs };

  // Control socket and metrics.
  const control = await startNamedControl(
    name,
    {
      info: async () => ({
        name,
        pid: process.pid,
        state: `${domain.state}, ${controller.state}`,
        pages: domain.pageCount(),
        service: bound,
      }),
      status: async () => ({
        name,
        service: bound,
        ...controller.status(),
        ...failoverStatus(failover, protectionOf(controller.state)),
        proxy: proxy.metrics(),
      }),
      checkpoints: async () => controller.records(),
      ...primaryControlOps({
        controller,
        settings: s,
        security,
        heartbeat,
        listenBack,
        command: "colo primary",
        say,
        end,
      }),
    },
    say,
  );
  const metricsServer = await startMetrics(
    metricsAt,
    () => controller.status(),
    () => proxy,
    say,
  );

  // Reach the secondary (it may still be starting) and seed it.
  protectInBackground({
    controller,
    settings: s,
    security,
    heartbeat,
    at: secondary,
    timeoutMs: connectTimeout,
    retryMs: 200,
    stopped: () => run.status() !== undefined,
    protectedMessage: `protected (${s.mode}${s.mode === "colo" ? `, ${s.strategy}, PVM resume: ${s.pvmResume}` : ""}${s.verify ? ", verify" : ""}) by ${formatServiceAddress(secondary)}`,
    why: "",
    say,
  });

  // Run until the guest ends or a signal / verify failure says stop.
  void (async () => {
    while (run.status() === undefined) {
      await domain.whenStopped();
      if (domain.state === "exited" || domain.state === "trapped" || domain.state === "destroyed") {
        const e = domain.end;
        if (e?.kind === "trap") say(`guest trapped: ${e.message}`);
        // COLO: an end in the PVM only hands the guest over to the secondary (docs/replication.md).
        if (e !== undefined && (await controller.pvmEnded(e)).action === "hand-over") {
          say("the PVM ended alone: the secondary takes over (its clients reconnect there)");
          end(EXIT_HANDED_OVER);
          return;
        }
        end(e === undefined ? 1 : e.kind === "exit" ? e.code & 0xff : 1);
        return;
      }
      await new Promise((r) => setTimeout(r, 5)); // suspended by a checkpoint: it resumes by itself
    }
  })();

  await run.finished;
  await controller.stop().catch(() => {});
  await control?.close();
  metricsServer?.close();
  await proxy.close();
  await domain.destroy();
  const exitStatus = run.status();
  if (exitStatus === EXIT_SWITCHED && listenBack !== undefined) {
    return becomeSecondary(listenBack, bound, values, name, say);
  }
  return exitStatus ?? 0;
}
