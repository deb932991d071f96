/** `colo switchover NAME`: planned handover; the secondary becomes primary, the primary its secondary. */
import { parseArgs } from "node:util";
import { FAILOVER_OPS, type SwitchoverReport } from "../replication/failover.ts";
import { controlRequest } from "../save/control.ts";
import { failure, usageError } from "./control.ts";

export const USAGE = `usage: colo switchover NAME [--json]

Planned handover of the protected primary NAME (a \`colo primary --name NAME\` on this host): client
input is paused, a final checkpoint makes the secondary identical and every output it covers is
released (no acknowledged write is lost), then the secondary becomes the primary, serving on its
own --service address, and this host's replica becomes its secondary. Clients reconnect to the
new primary's address; the gap they see (input paused to the new primary serving) is reported.

options:
  --json      print the report as one JSON object
  -h, --help  this help
`;

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    return usageError("colo switchover", (e as Error).message, USAGE);
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [name, extra] = positionals;
  if (name === undefined || extra !== undefined) return usageError("colo switchover", "expected NAME", USAGE);
  try {
    const r = (await controlRequest(name, FAILOVER_OPS.switchover)) as SwitchoverReport;
    if (values.json === true) process.stdout.write(`${JSON.stringify(r)}\n`);
    else {
      process.stdout.write(
        `${name}: switched over after checkpoint ${r.finalSeq}; new primary serves on ${r.newPrimaryService ?? "its --service address"}; client gap ${r.gapMs.toFixed(1)} ms\n`,
      );
    }
    return 0;
  } catch (e) {
    return failure("colo switchover", e);
  }
}
