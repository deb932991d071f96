/**
 * `colo` entry point: a table of subcommands, each in its own module under src/cli/, loaded on
 * demand so that `colo stream inspect` never pays for binaryen. A subcommand module exports
 * `run(argv: string[]): Promise<number>` returning the process exit status, and prints its own
 * `--help`.
 *
 * Exit statuses: 0 success; 1 the operation failed (invalid stream, guest error, …);
 * 2 usage error (bad flags, missing arguments).
 */

export interface Subcommand {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly load: () => Promise<{ run(argv: string[]): Promise<number> }>;
}

export const SUBCOMMANDS: readonly Subcommand[] = [
  {
    name: "stream",
    usage: "colo stream inspect|verify FILE|-",
    summary: "print or verify a Xen-format migration stream",
    load: () => import("./stream.ts"),
  },
  {
    name: "run",
    usage: "colo run GUEST.wasm [--service HOST:PORT] [--dir G=H]… [-- ARGS…]",
    summary: "run a wasm32-wasi guest in the foreground, fd 3 served on the service address",
    load: () => import("./run.ts"),
  },
  {
    name: "list",
    usage: "colo list [--json]",
    summary: "list this user's named guests on this host",
    load: () => import("./list.ts"),
  },
  {
    name: "save",
    usage: "colo save NAME FILE [--force]",
    summary: "stop guest NAME and write its whole state to FILE",
    load: () => import("./save.ts"),
  },
  {
    name: "restore",
    usage: "colo restore FILE [--name NAME] [--service HOST:PORT]",
    summary: "continue a saved guest where it stopped",
    load: () => import("./restore.ts"),
  },
  {
    name: "migrate",
    usage: "colo migrate NAME HOST:PORT [--psk-file F]",
    summary: "live-migrate guest NAME to a colo receive",
    load: () => import("./migrate.ts"),
  },
  {
    name: "receive",
    usage: "colo receive --listen HOST:PORT [--service HOST:PORT] [--psk-file F]",
    summary: "accept one live migration and run the guest here",
    load: () => import("./receive.ts"),
  },
  {
    name: "primary",
    usage: "colo primary GUEST.wasm --service H:P --secondary H:P [--mode colo|remus] [--verify]",
    summary: "run a guest protected by a secondary (COLO or Remus)",
    load: () => import("./primary.ts"),
  },
  {
    name: "secondary",
    usage: "colo secondary --listen HOST:PORT --service HOST:PORT [--psk-file F]",
    summary: "keep a replica of a primary's guest; take over if the primary is lost",
    load: () => import("./secondary.ts"),
  },
  {
    name: "status",
    usage: "colo status [NAME] [--json]",
    summary: "replication state of a named primary or secondary",
    load: () => import("./status.ts"),
  },
  {
    name: "demo",
    usage: "colo demo [--json]",
    summary: "start a local primary and secondary with the KV guest, drive load, print a summary",
    load: () => import("./demo.ts"),
  },
  {
    name: "failover",
    usage: "colo failover NAME",
    summary: "tell secondary NAME to take over now",
    load: () => import("./failover.ts"),
  },
  {
    name: "switchover",
    usage: "colo switchover NAME",
    summary: "planned handover: the secondary becomes primary, the primary its secondary",
    load: () => import("./switchover.ts"),
  },
  {
    name: "protect",
    usage: "colo protect NAME --secondary HOST:PORT",
    summary: "join a new secondary to the running unprotected primary NAME",
    load: () => import("./protect.ts"),
  },
];

export function usage(): string {
  const width = Math.max(...SUBCOMMANDS.map((c) => c.usage.length));
  const lines = SUBCOMMANDS.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`);
  return [
    "usage: colo COMMAND [ARGS…]",
    "",
    "COLO fault tolerance for WebAssembly guests.",
    "",
    "commands:",
    ...lines,
    "",
    "`colo COMMAND --help` describes one command.",
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    process.stdout.write("colo 0.1.0\n");
    return 0;
  }
  const cmd = SUBCOMMANDS.find((c) => c.name === name);
  if (cmd === undefined) {
    process.stderr.write(`colo: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  const mod = await cmd.load();
  return mod.run(rest);
}
