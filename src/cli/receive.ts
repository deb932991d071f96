/** `colo receive --listen HOST:PORT [--service HOST:PORT] [--name NAME]`: accept one migration. */
import type { Domain } from "../guest/domain.ts";
import type { GuestPort } from "../guest/port.ts";
import { channelSink, channelSource } from "../save/channel.ts";
import { receiveMigration } from "../save/migrate.ts";
import { LISTENER_OPTIONS, listenerFlags, parseCommandArgs, stringFlag } from "./args.ts";
import { failure, highestConnId, serveRestored, shiftedPort, wasmRestoreTarget } from "./control.ts";
import { formatServiceAddress, ServicePlug } from "./service.ts";

export const USAGE = `usage: colo receive --listen HOST:PORT [--service HOST:PORT] [--name NAME] [--psk-file FILE]

Wait for one \`colo migrate\` on HOST:PORT (loopback unless --listen-any), receive the guest, and
run it here in the foreground like colo run. The guest starts only once the whole stream has
arrived and the source has said GO; a connection that fails earlier leaves nothing running.
Connections are TLS with a pre-shared key (--psk-file, or $COLO_PSK / $COLO_PSK_FILE); any other
peer is refused. Prints "colo receive: listening on HOST:PORT" once listening.

options:
  --listen HOST:PORT   migration address (port 0 picks one)
  --service HOST:PORT  client-facing address of the guest's fd 3 (default 127.0.0.1:6379)
  --name NAME          control the received guest by name (colo list / save / migrate)
  --psk-file FILE      pre-shared key file
  --listen-any         allow a non-loopback --listen address
  --insecure-no-tls    plain TCP, no authentication (tests only)
  -h, --help           this help
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs("colo receive", USAGE, argv, {
    ...LISTENER_OPTIONS,
    name: { type: "string" },
  });
  if (typeof args === "number") return args;
  const flags = listenerFlags("colo receive", USAGE, args.values, "127.0.0.1:6379");
  if (typeof flags === "number") return flags;
  const { listenAt, service } = flags;
  const name = stringFlag(args.values, "name");

  const { listen } = await import("../transport/connect.ts");
  const { securityFromOptions } = await import("../transport/security.ts");
  let plug: ServicePlug | undefined;
  let bound = "";
  let done: (v: { domain: Domain } | { error: unknown }) => void = () => {};
  const outcome = new Promise<{ domain: Domain } | { error: unknown }>((r) => {
    done = r;
  });
  let busy = false;
  let listener: Awaited<ReturnType<typeof listen>>;
  try {
    listener = await listen(
      {
        host: listenAt.host,
        port: listenAt.port,
        allowNonLoopback: flags.allowNonLoopback,
        security: securityFromOptions({ pskFile: flags.pskFile, insecure: flags.insecure }),
        role: "target",
        expect: { roles: ["source"], kinds: ["migration"] },
      },
      (conn) => {
        if (busy) {
          conn.channel.destroy();
          return;
        }
        busy = true;
        const ch = conn.channel;
        receiveMigration(
          { source: channelSource(ch), back: channelSink(ch) },
          {
            createTarget: wasmRestoreTarget,
            // Bind the service before saying RECEIVED: if it cannot be bound, the source keeps the guest.
            onReceived: async (domain, seed) => {
              // number new connections above those the migrated guest still holds
              const base = await highestConnId(seed.hostState);
              plug = new ServicePlug(shiftedPort(domain as unknown as GuestPort, base));
              bound = formatServiceAddress(await plug.listen(service));
            },
          },
        ).then(
          (domain) => done({ domain }),
          (error: unknown) => {
            ch.destroy();
            void plug?.close();
            plug = undefined;
            busy = false;
            process.stderr.write(
              `colo receive: migration failed: ${(error as Error).message}; still listening\n`,
            );
          },
        );
      },
    );
  } catch (e) {
    return failure("colo receive", e);
  }
  listener.onRefused((info) =>
    process.stderr.write(`colo receive: refused ${info.remote}: ${info.error.message}\n`),
  );
  process.stderr.write(
    `colo receive: listening on ${formatServiceAddress({ host: listener.host, port: listener.port })}\n`,
  );
  const onInt = (): void => done({ error: new Error("interrupted") });
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onInt);
  const got = await outcome;
  process.off("SIGINT", onInt);
  process.off("SIGTERM", onInt);
  await listener.close();
  if ("error" in got) return failure("colo receive", got.error);
  process.stderr.write(`colo receive: guest received; service on ${bound}\n`);
  const domain = got.domain as Domain & { whenStopped(): Promise<void> };
  return serveRestored(domain, { name, plug: plug!, service: bound, prefix: "colo receive" });
}
