/** `colo list`: the guests running on this host under this user, by name. */
import { controlRequest, listGuestNames } from "../save/control.ts";
import { parseCommandArgs } from "./args.ts";

export const USAGE = `usage: colo list [--json]

List the named guests of this user on this host (colo run --name, colo restore, colo receive):
name, process id, state, memory size, service address.
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs("colo list", USAGE, argv, { json: { type: "boolean" } });
  if (typeof args === "number") return args;
  const rows: Record<string, unknown>[] = [];
  for (const name of await listGuestNames()) {
    const info = (await controlRequest(name, "info").catch(() => undefined)) as
      | Record<string, unknown>
      | undefined;
    if (info !== undefined) rows.push(info);
  }
  if (args.values.json === true) {
    process.stdout.write(`${JSON.stringify(rows)}\n`);
    return 0;
  }
  const table = [["NAME", "PID", "STATE", "MEMORY", "SERVICE"]];
  for (const r of rows) {
    table.push([
      String(r.name),
      String(r.pid),
      String(r.state),
      `${((Number(r.pages) * 4096) / (1 << 20)).toFixed(1)} MiB`,
      String(r.service ?? "-"),
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table)
    process.stdout.write(
      `${row
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd()}\n`,
    );
  return 0;
}
