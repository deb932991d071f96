/** `colo restore FILE [--name NAME] [--service HOST:PORT]`: continue a saved guest. */
import type { GuestPort } from "../guest/port.ts";
import { fileSource } from "../save/files.ts";
import { restoreFromSource } from "../save/restore.ts";
import { parseCommandArgs, serviceFlag, stringFlag } from "./args.ts";
import {
  failure,
  highestConnId,
  serveRestored,
  shiftedPort,
  usageError,
  wasmRestoreTarget,
} from "./control.ts";
import { formatServiceAddress, ServicePlug } from "./service.ts";

export const USAGE = `usage: colo restore FILE [--name NAME] [--service HOST:PORT]

Restore a guest saved by \`colo save\` and continue it exactly where it stopped (memory, guest
context, WASI host state, files; its clocks do not go back). Clients reconnect: connections open
at save time are gone. The stream is read whole and checked (module identity included) before
the guest runs; a truncated or corrupted file is refused. Runs in the foreground like colo run.

options:
  --name NAME          control the guest by name (colo list / save / migrate)
  --service HOST:PORT  client-facing address of the guest's fd 3 (default 127.0.0.1:6379)
  -h, --help           this help
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    "colo restore",
    USAGE,
    argv,
    { name: { type: "string" }, service: { type: "string" } },
    true,
  );
  if (typeof args === "number") return args;
  const [file, extra] = args.positionals;
  if (file === undefined || extra !== undefined) return usageError("colo restore", "expected FILE", USAGE);
  const service = serviceFlag("colo restore", USAGE, args.values, "127.0.0.1:6379");
  if (typeof service === "number") return service;
  let source: ReturnType<typeof fileSource>;
  try {
    source = fileSource(file);
  } catch (e) {
    return failure("colo restore", e);
  }
  let seed: Awaited<ReturnType<typeof restoreFromSource>>;
  try {
    seed = await restoreFromSource(source, { createTarget: wasmRestoreTarget });
  } catch (e) {
    return failure("colo restore", e);
  } finally {
    source.close();
  }
  const domain = seed.domain as Awaited<ReturnType<typeof wasmRestoreTarget>> & {
    whenStopped(): Promise<void>;
  };
  let plug: ServicePlug;
  try {
    // number new connections above those the saved guest still holds
    const base = await highestConnId(seed.hostState);
    plug = new ServicePlug(shiftedPort(domain as unknown as GuestPort, base));
  } catch (e) {
    await domain.destroy();
    return failure("colo restore", e);
  }
  let bound: string;
  try {
    bound = formatServiceAddress(await plug.listen(service));
  } catch (e) {
    await plug.close();
    await domain.destroy();
    return failure(
      "colo restore",
      new Error(`cannot listen on ${formatServiceAddress(service)}: ${(e as Error).message}`),
    );
  }
  process.stderr.write(`colo restore: service on ${bound}\n`);
  return serveRestored(domain, {
    name: stringFlag(args.values, "name"),
    plug,
    service: bound,
    prefix: "colo restore",
  });
}
