/**
 * `colo secondary --listen HOST:PORT --service HOST:PORT [--psk-file F] [--name NAME]
 *  [--metrics HOST:PORT]`
 *
 * Waits for a primary (`colo primary … --secondary HOST:PORT`), receives its seed and every
 * checkpoint, and keeps the secondary replica (src/replication/secondary.ts). If the session
 * ends by a protocol error or the primary's goodbye, it stands down and waits for a new primary;
 * if the primary's heartbeat is lost, it takes over: the replica resumes from its own last state
 * and serves --service, unprotected. Messages go to stderr prefixed "colo secondary:"; for
 * scripts: "colo secondary: listening on HOST:PORT", "colo secondary: took over; service on
 * HOST:PORT".
 *
 * A planned switchover (`colo switchover` on the primary's host) makes this side the primary:
 * it takes over as above, then protects itself by seeding the old primary, which now waits as a
 * secondary on its --listen address ("colo secondary: protected again by HOST:PORT").
 *
 * After any takeover (a failover or a switchover) this side is a primary in full: `colo status`
 * shows the primary's fields, the control socket offers `protect` and `switchover` (back: this
 * side then runs `colo secondary` on its own --listen in place of itself), and it exits as a
 * primary does on a --verify mismatch (3) or a lost fence (4).
 *
 * Exit status: after a takeover, the guest's (3 / 4 as above); 1 listen failure; 2 usage;
 * 130/143 on signals.
 */
import { describeError } from "../replication/errors.ts";
import { FAILOVER_OPS } from "../replication/failover.ts";
import type { PrimaryController } from "../replication/primary.ts";
import type { SecondaryController } from "../replication/secondary.ts";
import {
  LISTENER_OPTIONS,
  listenerFlags,
  optionalAddressFlag,
  parseCommandArgs,
  stringFlag,
} from "./args.ts";
import { failure, usageError, wasmRestoreTarget } from "./control.ts";
import {
  becomeSecondary,
  EXIT_SWITCHED,
  primaryControlOps,
  protectInBackground,
  watchPrimaryEnds,
} from "./primary-ops.ts";
import { levelLog, runEnd, startMetrics, startNamedControl } from "./replica-run.ts";
import { formatServiceAddress, parseServiceAddress } from "./service.ts";

export const USAGE = `usage: colo secondary --listen HOST:PORT --service HOST:PORT [--psk-file F] [--name NAME]
                  [--metrics HOST:PORT]

Be the secondary of a replicated pair: wait on --listen for \`colo primary\`, keep an exact copy
of its guest, and take over on --service if the primary's heartbeat is lost. The mode, strategy
and --verify come from the primary.

options:
  --listen HOST:PORT      replication address (loopback unless --listen-any; port 0 picks one)
  --service HOST:PORT     client-facing address after a takeover (default 127.0.0.1:6380)
  --psk-file FILE         pre-shared key (or $COLO_PSK / $COLO_PSK_FILE)
  --name NAME             control name for \`colo status NAME\`
  --metrics HOST:PORT     serve Prometheus metrics at http://HOST:PORT/metrics
  --heartbeat-timeout-ms N  declare the primary lost after N ms of silence (default 500)
  --heartbeat-ms N          heartbeat interval (default 100)
  --fence-cmd "CMD"         fencing hook: take over only if CMD exits 0 (docs/failover.md)
  --fence-module PATH.js    fencing hook: a module exporting fence(ctx): Promise<boolean>
  --fence-timeout-ms N      a hook silent this long has lost (default 5000)
  --listen-any            allow a non-loopback --listen address
  --insecure-no-tls       plain TCP, no authentication (tests only)
`;

function say(m: string): void {
  process.stderr.write(`colo secondary: ${m}\n`);
}

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs("colo secondary", USAGE, argv, {
    ...LISTENER_OPTIONS,
    name: { type: "string" },
    metrics: { type: "string" },
    "heartbeat-timeout-ms": { type: "string" },
    "heartbeat-ms": { type: "string" },
    "fence-cmd": { type: "string" },
    "fence-module": { type: "string" },
    "fence-timeout-ms": { type: "string" },
  });
  if (typeof args === "number") return args;
  const { values } = args;
  const flags = listenerFlags("colo secondary", USAGE, values, "127.0.0.1:6380");
  if (typeof flags === "number") return flags;
  const { listenAt, service } = flags;
  const metricsAt = optionalAddressFlag("colo secondary", USAGE, values, "metrics");
  if (typeof metricsAt === "number") return metricsAt;
  const hbTimeout =
    values["heartbeat-timeout-ms"] === undefined ? 500 : Number(values["heartbeat-timeout-ms"]);
  if (!(hbTimeout > 100)) return usageError("colo secondary", "--heartbeat-timeout-ms must be > 100", USAGE);
  const name = stringFlag(values, "name");
  const { failoverConfig, failoverStatus, fencingNotice, protectionOf } = await import(
    "../replication/failover.ts"
  );
  let failover: Awaited<ReturnType<typeof failoverConfig>>;
  try {
    failover = await failoverConfig({ ...values, "heartbeat-timeout-ms": String(hbTimeout) });
  } catch (e) {
    return usageError("colo secondary", (e as Error).message, USAGE);
  }
  say(fencingNotice(failover));

  const { securityFromOptions } = await import("../transport/security.ts");
  const { listenForPrimary } = await import("../replication/links.ts");
  const { SecondaryController } = await import("../replication/secondary.ts");
  let security: ReturnType<typeof securityFromOptions>;
  try {
    security = securityFromOptions({ pskFile: flags.pskFile, insecure: flags.insecure });
  } catch (e) {
    return failure("colo secondary", e);
  }

  const log = levelLog(say);
  const newController = (): SecondaryController =>
    new SecondaryController({
      createTarget: wasmRestoreTarget,
      takeover: { host: service.host, listenPort: service.port },
      log,
      fence: failover.fence,
      name,
    });
  let controller = newController();
  const run = runEnd();
  const { end } = run;

  let takenOver: { close(): Promise<void> } | undefined;
  /** After a takeover: this side's controller as the primary, and its control operations. */
  let primary: PrimaryController | undefined;
  let primaryOps: ReturnType<typeof primaryControlOps> | undefined;
  const heartbeat = { intervalMs: failover.heartbeatMs, timeoutMs: hbTimeout };
  const asPrimary =
    (op: string) =>
    (args: unknown): Promise<unknown> => {
      const handler = primaryOps?.[op];
      if (handler === undefined)
        throw new Error(`${op}: this side is a secondary (${controller.state}), not a primary`);
      return handler(args);
    };
  let listener: Awaited<ReturnType<typeof listenForPrimary>>;
  try {
    listener = await listenForPrimary(
      {
        host: listenAt.host,
        port: listenAt.port,
        security,
        allowNonLoopback: flags.allowNonLoopback,
        heartbeat: { timeoutMs: hbTimeout, intervalMs: failover.heartbeatMs },
      },
      (links) => {
        const c = controller;
        say(`primary ${links.peer} connected`);
        void c.serve(links).then(async (outcome) => {
          if (outcome.kind === "stood-down") {
            say(`stood down (${describeError(outcome.reason)}); waiting for a primary`);
            controller = newController();
            listener.setSession(undefined);
            return;
          }
          takenOver = outcome.proxy;
          const a = await outcome.proxy.listen();
          say(`took over; service on ${formatServiceAddress({ host: a.address, port: a.port })}`);
          await listener.close();
          const domain = outcome.domain as typeof outcome.domain & { whenStopped(): Promise<void> };
          // From here on this side is a primary in full: status, `colo protect`, `colo switchover`
          // (back: this side then waits on its --listen as the new secondary), and the exits of
          // a primary (a lost fence: 4).
          const { PrimaryController } = await import("../replication/primary.ts");
          const { settings, settingsFromCapabilities } = await import("../replication/config.ts");
          const s = settings(settingsFromCapabilities(links.capabilities));
          const p = new PrimaryController({
            domain,
            proxy: outcome.proxy,
            settings: s,
            log,
            fence: failover.fence,
            name,
          });
          primary = p;
          watchPrimaryEnds({ controller: p, say, end });
          primaryOps = primaryControlOps({
            controller: p,
            settings: s,
            security,
            heartbeat,
            listenBack: listenAt,
            command: "colo secondary",
            say,
            end,
          });
          if (outcome.switchover !== undefined) {
            const back = parseServiceAddress(outcome.switchover.listen);
            if (back !== undefined)
              protectInBackground({
                controller: p,
                settings: s,
                security,
                heartbeat,
                at: back,
                timeoutMs: 10_000,
                retryMs: 100,
                protectedMessage: `protected again by ${formatServiceAddress(back)} (the old primary)`,
                why: `cannot protect through ${formatServiceAddress(back)}: `,
                say,
              });
          }
          // A checkpoint of the new primary suspends the domain for a moment: not an end.
          while (run.status() === undefined && (domain.state === "running" || domain.state === "suspended")) {
            await domain.whenStopped();
            if (domain.state === "suspended") await new Promise((r) => setTimeout(r, 5));
          }
          const e = domain.end;
          end(e === undefined ? 0 : e.kind === "exit" ? e.code & 0xff : 1);
        });
      },
      () => controller.state !== "waiting",
    );
  } catch (e) {
    return failure("colo secondary", e);
  }
  listener.onRefused((info) => say(`refused ${info.remote}: ${info.error.message}`));
  say(`listening on ${formatServiceAddress({ host: listener.host, port: listener.port })}`);

  const control = await startNamedControl(
    name,
    {
      info: async () => ({
        name,
        pid: process.pid,
        state: `secondary ${controller.state}`,
        pages: controller.domain?.pageCount() ?? 0,
        service: formatServiceAddress(service),
      }),
      status: async () =>
        primary !== undefined
          ? {
              name,
              service: formatServiceAddress(service),
              ...primary.status(),
              ...failoverStatus(failover, protectionOf(primary.state)),
            }
          : {
              name,
              service: formatServiceAddress(service),
              ...controller.status(),
              ...failoverStatus(
                failover,
                controller.state === "took-over"
                  ? "unprotected"
                  : controller.state === "stood-down"
                    ? "standing-down"
                    : "protected",
              ),
            },
      failover: async () => controller.failover(),
      [FAILOVER_OPS.protect]: asPrimary(FAILOVER_OPS.protect),
      [FAILOVER_OPS.switchover]: asPrimary(FAILOVER_OPS.switchover),
      checkpoints: async () => controller.records(),
    },
    say,
  );
  const metricsServer = await startMetrics(metricsAt, () => controller.status(), undefined, say);

  await run.finished;
  await listener.close().catch(() => {});
  await control?.close();
  metricsServer?.close();
  await primary?.stop().catch(() => {});
  await takenOver?.close();
  await controller.domain?.destroy().catch(() => {});
  const exitStatus = run.status();
  if (exitStatus === EXIT_SWITCHED)
    return becomeSecondary(listenAt, formatServiceAddress(service), values, name, say);
  return exitStatus ?? 0;
}
