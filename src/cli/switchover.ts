/** `colo switchover NAME`: planned handover; the secondary becomes primary, the primary its secondary. */
import { FAILOVER_OPS, type SwitchoverReport } from "../replication/failover.ts";
import { controlRequest } from "../save/control.ts";
import { failure } from "./control.ts";
import { parseNameArgs } from "./failover.ts";

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
  const args = parseNameArgs(argv, "colo switchover", USAGE);
  if (typeof args === "number") return args;
  const { name } = args;
  try {
    const r = (await controlRequest(name, FAILOVER_OPS.switchover)) as SwitchoverReport;
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
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
