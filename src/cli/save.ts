/** `colo save NAME FILE [--force]`: stop guest NAME and write its whole state to FILE. */
import { resolve } from "node:path";
import { controlRequest } from "../save/control.ts";
import { parseCommandArgs } from "./args.ts";
import { failure, formatReport, progressPrinter, usageError } from "./control.ts";

export const USAGE = `usage: colo save NAME FILE [--force]

Stop the running guest NAME (started with colo run --name NAME) and write its whole state
(memory, guest context, WASI host state, files) to FILE, a Xen-format stream that
\`colo restore FILE\` continues from and \`colo stream verify FILE\` checks. The guest process
exits once the file is safely in place; if writing fails, the guest runs on.

options:
  --force     overwrite FILE if it exists (it is replaced atomically)
  -h, --help  this help
`;

export async function run(argv: string[]): Promise<number> {
  const args = parseCommandArgs("colo save", USAGE, argv, { force: { type: "boolean" } }, true);
  if (typeof args === "number") return args;
  const [name, file, extra] = args.positionals;
  if (name === undefined || file === undefined || extra !== undefined) {
    return usageError("colo save", "expected NAME FILE", USAGE);
  }
  const bar = progressPrinter();
  try {
    const report = (await controlRequest(
      name,
      "save",
      { path: resolve(file), force: args.values.force === true },
      bar.update,
    )) as Record<string, unknown>;
    bar.done();
    process.stdout.write(`saved ${name} to ${file}\n${formatReport(report)}`);
    return 0;
  } catch (e) {
    bar.done();
    return failure("colo save", e);
  }
}
