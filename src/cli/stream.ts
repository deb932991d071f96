/**
 * `colo stream inspect FILE|- [--json|--json-doc] [verify flags]` and
 * `colo stream verify FILE|- [--checkpointed|--plain] [--back-channel] [--mode colo|plain|remus|cache|full]`.
 *
 * Reads the input in chunks (files of any size, or stdin) and feeds the stream layer's verifier.
 * Exit: 0 valid; 1 first error (offset, type in hex and name, reason); 2 usage error.
 */
import { createReadStream } from "node:fs";
import { StreamError } from "../stream/errors.ts";
import { formatLine, toJson } from "../stream/inspect.ts";
import { MODES, type Mode, StreamVerifier, type VerifyOptions } from "../stream/verify.ts";

const USAGE = `usage:
  colo stream inspect FILE|- [--json | --json-doc] [--checkpointed | --plain] [--back-channel] [--mode M]
  colo stream verify  FILE|- [--checkpointed | --plain] [--back-channel] [--mode M]

inspect prints one line per header and record: stream offset, layer, type (hex), name, body
length, summary (pfn ranges, page counts, checkpoint states, sequence numbers). --json prints one
JSON object per line; --json-doc one JSON document.
verify checks framing, every record body, the ordering rules of plain and checkpointed streams
(inferred, or forced with --checkpointed / --plain), checkpoint sequence numbers, and with
--back-channel the secondary-to-primary protocol of --mode (default colo). The format (xl file,
libxl stream, bare libxc stream) is recognised from the leading bytes.
Exit status: 0 valid, 1 invalid (first error printed), 2 usage error.
`;

interface Args {
  readonly command: "inspect" | "verify";
  readonly file: string;
  readonly json: "none" | "lines" | "doc";
  readonly options: VerifyOptions;
}

function parse(argv: string[]): Args | string {
  const [command, ...rest] = argv;
  if (command !== "inspect" && command !== "verify")
    return `unknown or missing subcommand '${command ?? ""}'`;
  let file: string | undefined;
  let json: Args["json"] = "none";
  let checkpointed: boolean | undefined;
  let backChannel = false;
  let mode: Mode | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === "--json" && command === "inspect") json = "lines";
    else if (a === "--json-doc" && command === "inspect") json = "doc";
    else if (a === "--checkpointed") checkpointed = true;
    else if (a === "--plain") checkpointed = false;
    else if (a === "--back-channel") backChannel = true;
    else if (a === "--mode" || a.startsWith("--mode=")) {
      const m = a === "--mode" ? rest[++i] : a.slice("--mode=".length);
      if (!MODES.includes(m as Mode)) return `--mode must be one of ${MODES.join(", ")}`;
      mode = m as Mode;
    } else if (a === "-" || !a.startsWith("-")) {
      if (file !== undefined) return "only one FILE";
      file = a;
    } else return `unknown option '${a}'`;
  }
  if (file === undefined) return "missing FILE (or - for standard input)";
  return {
    command,
    file,
    json,
    options: {
      ...(checkpointed !== undefined ? { checkpointed } : {}),
      backChannel,
      ...(mode !== undefined ? { mode } : {}),
    },
  };
}

function describe(e: StreamError): string {
  const type = e.typeHex !== undefined ? ` ${e.layer} ${e.typeHex} ${e.typeName}` : "";
  return `invalid stream: offset ${e.offset ?? "?"}${type}: ${e.reason} [${e.code}]`;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const args = parse(argv);
  if (typeof args === "string") {
    process.stderr.write(`colo stream: ${args}\n\n${USAGE}`);
    return 2;
  }
  const verifier = new StreamVerifier(args.options);
  const input = args.file === "-" ? process.stdin : createReadStream(args.file, { highWaterMark: 1 << 20 });
  const doc: unknown[] = [];
  const out: string[] = [];
  const flush = () => {
    if (out.length > 0) process.stdout.write(`${out.join("\n")}\n`);
    out.length = 0;
  };
  try {
    if (args.command === "inspect" && args.json === "none") {
      out.push(
        `${"offset".padStart(10)}  layer   type        name                           length  summary`,
      );
    }
    for await (const chunk of input as AsyncIterable<Buffer>) {
      const items = verifier.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
      if (args.command !== "inspect") continue;
      for (const item of items) {
        if (args.json === "none") out.push(formatLine(item));
        else if (args.json === "lines") out.push(JSON.stringify(toJson(item)));
        else doc.push(toJson(item));
      }
      flush();
    }
    const summary = verifier.end();
    if (args.command === "inspect") {
      if (args.json === "doc")
        process.stdout.write(`${JSON.stringify({ valid: true, items: doc }, null, 2)}\n`);
    } else {
      process.stdout.write(`valid: ${summary.items} items, ${summary.bytes} bytes\n`);
    }
    return 0;
  } catch (e) {
    flush();
    if (e instanceof StreamError) {
      if (args.json === "doc") {
        process.stdout.write(
          `${JSON.stringify({ valid: false, items: doc, error: { code: e.code, offset: e.offset, type: e.typeHex, name: e.typeName, reason: e.reason } }, null, 2)}\n`,
        );
      }
      process.stderr.write(`${describe(e)}\n`);
      return 1;
    }
    if (e instanceof Error && "code" in e && typeof e.code === "string" && e.code.startsWith("E")) {
      process.stderr.write(`colo stream: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
