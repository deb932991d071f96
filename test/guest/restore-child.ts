/**
 * Child process for the fresh-process restore test: argv = module path, snapshot path, guest
 * args…; restores the snapshot into a new domain, resumes it, writes the guest's stdout to our
 * stdout and exits with the guest's exit code (or 99 on a trap).
 */
import { readFileSync } from "node:fs";
import { decodeSnapshot, restore, Stdout, stubOptions } from "./helpers.ts";

const [modulePath, snapPath, ...args] = process.argv.slice(2);
const bytes = new Uint8Array(readFileSync(modulePath!));
const d = await restore(bytes, stubOptions(args), decodeSnapshot(new Uint8Array(readFileSync(snapPath!))));
const out = new Stdout(null);
out.attach(d);
await d.resume();
await d.whenStopped();
process.stdout.write(out.text);
const end = d.end;
await d.destroy();
process.exitCode = end?.kind === "exit" ? end.code : 99;
