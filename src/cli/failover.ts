/** `colo failover NAME`: tell the secondary NAME to take over now (manual failover). */
import { FAILOVER_OPS } from "../replication/failover.ts";
import { controlRequest } from "../save/control.ts";
import { parseCommandArgs } from "./args.ts";
import { failure, usageError } from "./control.ts";

export const USAGE = `usage: colo failover NAME [--json]

Tell the secondary NAME (a \`colo secondary --name NAME\` on this host) to take over now, as if
its primary's heartbeat had been lost: its replica continues from the last checkpoint it applied
(a checkpoint in flight is discarded whole) and it serves clients on its own --service address.
A fencing hook, if the secondary has one, is still asked first: if it loses, the secondary
stands down instead. Use it when the primary's host is known dead, or for drills; for a planned
handover with the primary alive use \`colo switchover\`.

options:
  --json      print the result as one JSON object
  -h, --help  this help
`;

/**
 * Parse `NAME [--json]` (the argument shape of failover and switchover). Returns the exit status
 * when done already (help printed or a usage error), else the name and the --json flag.
 */
export function parseNameArgs(
  argv: string[],
  prefix: string,
  usage: string,
): number | { name: string; json: boolean } {
  const parsed = parseCommandArgs(prefix, usage, argv, { json: { type: "boolean" } }, true);
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [name, extra] = positionals;
  if (name === undefined || extra !== undefined) return usageError(prefix, "expected NAME", usage);
  return { name, json: values.json === true };
}

export async function run(argv: string[]): Promise<number> {
  const args = parseNameArgs(argv, "colo failover", USAGE);
  if (typeof args === "number") return args;
  const { name } = args;
  try {
    const r = (await controlRequest(name, FAILOVER_OPS.failover)) as Record<string, unknown> | null;
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else
      process.stdout.write(
        `${name}: ${String(r?.action ?? "done")}${r?.detail ? ` (${String(r.detail)})` : ""}\n`,
      );
    return r?.action === "stand-down" ? 1 : 0;
  } catch (e) {
    return failure("colo failover", e);
  }
}
