/**
 * `colo status [NAME] [--json]`: the replication state of a named `colo primary` or `colo
 * secondary` on this host, through its control socket (src/save/control.ts, op "status"): mode,
 * peer, state, checkpoints, divergences, last pause, pages of A, B and D of the last checkpoint.
 * Without NAME, every named guest that answers "status".
 */
import { ControlError, controlRequest, listGuestNames } from "../save/control.ts";

export const USAGE = `usage: colo status [NAME] [--json]

Show the replication state of a named colo primary / colo secondary (their --name): role, mode
and strategy, peer, state, checkpoints, divergences, last pause, pages of A, B and A ∪ B of the
last checkpoint. Without NAME, all of this user's replicated guests on this host.
`;

function ms(v: unknown): string {
  return typeof v === "number" && Number.isFinite(v) ? `${v.toFixed(2)} ms` : "-";
}

/** The human form of one status object. */
export function formatStatus(s: Record<string, unknown>): string {
  const last = (s.last ?? undefined) as Record<string, unknown> | undefined;
  const lines = [
    `${s.name} (${s.role})`,
    `  mode        ${s.mode ?? "-"}${s.strategy !== undefined && s.mode === "colo" ? ` / ${s.strategy}` : ""}${s.pvmResume !== undefined && s.mode === "colo" ? ` / PVM resume: ${s.pvmResume}` : ""}${s.verify === true ? " / verify" : ""}`,
    `  state       ${s.state}`,
    `  peer        ${s.peer ?? "-"}`,
    `  service     ${s.service ?? "-"}`,
    `  checkpoints ${s.checkpoints} (last seq ${s.role === "primary" ? s.seq : s.applied})`,
  ];
  if (s.role === "primary") {
    lines.push(`  divergences ${s.divergences}`);
    // pvmResume snapshot: checkpoints taken again at a second stop of the PVM.
    const again = (s.totals as { retaken?: unknown } | undefined)?.retaken;
    if (typeof again === "number" && again > 0) lines.push(`  taken again ${again}`);
  }
  if (s.protection !== undefined) {
    const why = s.protection !== "protected" && typeof s.reason === "string" ? ` (${s.reason})` : "";
    lines.push(`  protection  ${s.protection}${why}`);
    lines.push(`  fencing     ${s.fence ?? "none"}`);
  }
  if (typeof s.warning === "string") lines.push(`  WARNING     ${s.warning}`);
  lines.push(`  last pause  ${ms(s.lastPauseMs)}`);
  if (last !== undefined) {
    lines.push(
      s.role === "primary"
        ? `  last pages  A ${last.a}  B ${last.b}  A∪B ${last.d}  sent ${last.pagesSent}  (${last.bytes} bytes, verified: ${last.verified ?? "-"})`
        : `  last pages  carried ${last.pages}  B ${last.b}  from cache ${last.fromCache}`,
    );
  }
  if (s.reason !== undefined && s.reason !== null) lines.push(`  reason      ${s.reason}`);
  return `${lines.join("\n")}\n`;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const json = argv.includes("--json");
  const rest = argv.filter((a) => a !== "--json");
  if (rest.length > 1 || rest.some((a) => a.startsWith("-"))) {
    process.stderr.write(`colo status: unexpected arguments\n${USAGE}`);
    return 2;
  }
  const names = rest.length === 1 ? rest : await listGuestNames();
  const out: Record<string, unknown>[] = [];
  for (const name of names) {
    try {
      out.push((await controlRequest(name, "status")) as Record<string, unknown>);
    } catch (e) {
      if (rest.length === 1) {
        process.stderr.write(`colo status: ${(e as Error).message}\n`);
        return 1;
      }
      if (!(e instanceof ControlError)) throw e;
    }
  }
  if (json) process.stdout.write(`${JSON.stringify(rest.length === 1 ? out[0] : out)}\n`);
  else if (out.length === 0) process.stdout.write("no replicated guests\n");
  else process.stdout.write(out.map(formatStatus).join("\n"));
  return 0;
}
