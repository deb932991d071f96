/**
 * Flag parsing shared by the colo subcommands.
 *
 * `parseCommandArgs` is node:util's parseArgs with the conventions every subcommand follows: a
 * parse error is a usage error (exit status 2), `-h`/`--help` prints the usage to stdout (exit
 * status 0); otherwise the flags and positionals come back. `serviceFlag` and `listenerFlags`
 * read the flags of the commands that run a received guest and wait for a peer (`colo receive`,
 * `colo secondary`).
 */
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { usageError } from "./control.ts";
import { parseServiceAddress, type ServiceAddress } from "./service.ts";

export type Flags = Record<string, string | boolean | undefined>;

export interface ParsedArgs {
  readonly values: Flags;
  readonly positionals: string[];
}

/**
 * Parses `argv` against `options` (plus `-h`/`--help`). Returns the flags, or the exit status
 * when the command is done already: 2 after printing a usage error, 0 after printing `usage`.
 */
export function parseCommandArgs(
  prefix: string,
  usage: string,
  argv: string[],
  options: ParseArgsOptionsConfig,
  allowPositionals = false,
): ParsedArgs | number {
  let parsed: { values: Flags; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals,
      options: { ...options, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    return usageError(prefix, (e as Error).message, usage);
  }
  if (parsed.values.help === true) {
    process.stdout.write(usage);
    return 0;
  }
  return parsed;
}

/** A string flag's value, undefined when it is absent. */
export function stringFlag(values: Flags, key: string): string | undefined {
  const v = values[key];
  return typeof v === "string" ? v : undefined;
}

/** `--service HOST:PORT` (or `fallback`), parsed; a usage error (exit status 2) when it is not HOST:PORT. */
export function serviceFlag(
  prefix: string,
  usage: string,
  values: Flags,
  fallback: string,
): ServiceAddress | number {
  const text = stringFlag(values, "service") ?? fallback;
  const service = parseServiceAddress(text);
  return service ?? usageError(prefix, `--service '${text}' is not HOST:PORT`, usage);
}

/** An optional `--KEY HOST:PORT`: undefined when absent; a usage error (exit status 2) when it is not HOST:PORT. */
export function optionalAddressFlag(
  prefix: string,
  usage: string,
  values: Flags,
  key: string,
): ServiceAddress | undefined | number {
  const text = stringFlag(values, key);
  if (text === undefined) return undefined;
  return parseServiceAddress(text) ?? usageError(prefix, `--${key} '${text}' is not HOST:PORT`, usage);
}

/** The flags of a command that listens for a peer and serves the guest it receives. */
export const LISTENER_OPTIONS = {
  listen: { type: "string" },
  service: { type: "string" },
  "psk-file": { type: "string" },
  "listen-any": { type: "boolean" },
  "insecure-no-tls": { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

export interface ListenerFlags {
  /** `--listen HOST:PORT`: where to wait for the peer (required). */
  readonly listenAt: ServiceAddress;
  /** `--service HOST:PORT`: the client-facing address of the guest's fd 3. */
  readonly service: ServiceAddress;
  /** `--psk-file`: for securityFromOptions. */
  readonly pskFile: string | undefined;
  /** `--insecure-no-tls`. */
  readonly insecure: boolean;
  /** `--listen-any`: allow a non-loopback --listen address. */
  readonly allowNonLoopback: boolean;
}

/** Reads LISTENER_OPTIONS; a usage error (exit status 2) when --listen is missing or an address is not HOST:PORT. */
export function listenerFlags(
  prefix: string,
  usage: string,
  values: Flags,
  defaultService: string,
): ListenerFlags | number {
  const listen = stringFlag(values, "listen");
  const listenAt = listen === undefined ? undefined : parseServiceAddress(listen);
  if (listenAt === undefined) return usageError(prefix, "--listen HOST:PORT is required", usage);
  const service = serviceFlag(prefix, usage, values, defaultService);
  if (typeof service === "number") return service;
  return {
    listenAt,
    service,
    pskFile: stringFlag(values, "psk-file"),
    insecure: values["insecure-no-tls"] === true,
    allowNonLoopback: values["listen-any"] === true,
  };
}
