/** `colo migrate NAME HOST:PORT`: live-migrate guest NAME to a `colo receive` on HOST:PORT. */
import { resolve } from "node:path";
import { controlRequest } from "../save/control.ts";
import { parseCommandArgs, stringFlag } from "./args.ts";
import { failure, formatReport, progressPrinter, usageError } from "./control.ts";

export const USAGE = `usage: colo migrate NAME HOST:PORT [--psk-file FILE] [--downtime-ms N] [--max-rounds N]

Live-migrate the running guest NAME to \`colo receive --listen HOST:PORT\`: pre-copy rounds while
the guest runs, then a short stop-and-copy; the guest continues on the target, and this host's
copy is destroyed only after the target has received everything. If the migration fails before
the switch-over, the guest keeps running here. The connection is TLS with a pre-shared key
(--psk-file, or $COLO_PSK / $COLO_PSK_FILE), the same key as the receiver's.

options:
  --psk-file FILE    pre-shared key file (hex or raw, at least 128 bits)
  --downtime-ms N    stop pre-copy once the rest fits in N ms at the measured rate (default 20)
  --max-rounds N     most pre-copy rounds (default 30)
  --insecure-no-tls  plain TCP, no authentication (tests only)
  -h, --help         this help
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs(
    "colo migrate",
    USAGE,
    argv,
    {
      "psk-file": { type: "string" },
      "downtime-ms": { type: "string" },
      "max-rounds": { type: "string" },
      "insecure-no-tls": { type: "boolean" },
    },
    true,
  );
  if (typeof args === "number") return args;
  const { values } = args;
  const [name, to, extra] = args.positionals;
  if (name === undefined || to === undefined || extra !== undefined || !/:\d+$/.test(to)) {
    return usageError("colo migrate", "expected NAME HOST:PORT", USAGE);
  }
  const num = (k: string): number | undefined => {
    const v = values[k];
    return typeof v === "string" && /^\d+(\.\d+)?$/.test(v) ? Number(v) : undefined;
  };
  const pskFile = stringFlag(values, "psk-file");
  const bar = progressPrinter();
  try {
    const report = (await controlRequest(
      name,
      "migrate",
      {
        to,
        pskFile: pskFile === undefined ? undefined : resolve(pskFile),
        insecure: values["insecure-no-tls"] === true,
        downtimeMs: num("downtime-ms"),
        maxRounds: num("max-rounds"),
      },
      bar.update,
    )) as Record<string, unknown>;
    bar.done();
    process.stdout.write(`migrated ${name} to ${to}\n${formatReport(report)}`);
    return 0;
  } catch (e) {
    bar.done();
    return failure("colo migrate", e);
  }
}
