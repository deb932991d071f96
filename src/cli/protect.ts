/** `colo protect NAME --secondary HOST:PORT`: join a new secondary to a running unprotected primary. */
import { resolve } from "node:path";
import { FAILOVER_OPS } from "../replication/failover.ts";
import { controlRequest } from "../save/control.ts";
import { parseCommandArgs } from "./args.ts";
import { failure, progressPrinter, usageError } from "./control.ts";

export const USAGE = `usage: colo protect NAME --secondary HOST:PORT [--psk-file FILE] [--json]

Protect the running, unprotected primary NAME again (after a failover, a lost secondary or a
switchover): seed the \`colo secondary --listen HOST:PORT\` waiting there with the checkpointed
stream (live pre-copy, then the first checkpoint), then run COLO again. The guest keeps serving
its clients throughout. \`colo status\` then shows it protected.

options:
  --secondary HOST:PORT  the new secondary's replication address
  --psk-file FILE        pre-shared key (default: the primary's own)
  --insecure-no-tls      plain TCP, no authentication (tests only)
  --json                 print the result as one JSON object
  -h, --help             this help
`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    "colo protect",
    USAGE,
    argv,
    {
      secondary: { type: "string" },
      "psk-file": { type: "string" },
      "insecure-no-tls": { type: "boolean" },
      json: { type: "boolean" },
    },
    true,
  );
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [name, extra] = positionals;
  const secondary = values.secondary;
  if (name === undefined || extra !== undefined) return usageError("colo protect", "expected NAME", USAGE);
  if (typeof secondary !== "string" || !/:\d{1,5}$/.test(secondary)) {
    return usageError("colo protect", "--secondary HOST:PORT is required", USAGE);
  }
  const bar = progressPrinter();
  try {
    const r = (await controlRequest(
      name,
      FAILOVER_OPS.protect,
      {
        secondary,
        pskFile: typeof values["psk-file"] === "string" ? resolve(values["psk-file"]) : undefined,
        insecure: values["insecure-no-tls"] === true,
      },
      bar.update,
    )) as Record<string, unknown> | null;
    bar.done();
    if (values.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
    else process.stdout.write(`${name}: protected by ${secondary}\n`);
    return 0;
  } catch (e) {
    bar.done();
    return failure("colo protect", e);
  }
}
