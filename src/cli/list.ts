/** `colo list`: the guests running on this host under this user, by name. */
import { controlRequest, listGuestNames } from "../save/control.ts";

export const USAGE = `usage: colo list [--json]

List the named guests of this user on this host (colo run --name, colo restore, colo receive):
name, process id, state, memory size, service address.
`;

export async function run(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const unknown = argv.find((a) => a !== "--json");
  if (unknown !== undefined) {
    process.stderr.write(`colo list: unknown argument '${unknown}'\n${USAGE}`);
    return 2;
  }
  const rows: Record<string, unknown>[] = [];
  for (const name of await listGuestNames()) {
    const info = (await controlRequest(name, "info").catch(() => undefined)) as
      | Record<string, unknown>
      | undefined;
    if (info !== undefined) rows.push(info);
  }
  if (argv.includes("--json")) {
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
