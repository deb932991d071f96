/**
 * Security of colo connections. Every connection between hosts is TLS 1.3 (TLS_CIPHER), which
 * authenticates the peer at the handshake and then protects every record (AEAD: integrity and
 * confidentiality). Two ways to authenticate:
 *
 * - a pre-shared key (TLS-PSK, Node's pskCallback): both ends hold the same secret of at least
 *   PSK_MIN_BYTES bytes; a peer without it fails the handshake ("binder does not verify");
 * - certificates (mutual TLS): each end presents a certificate signed by the CA the other trusts.
 *
 * Without a key or certificates the transport refuses to start, unless the caller passes an
 * explicit insecure flag (tests only), which gives plain TCP and a loud warning.
 */
import fs from "node:fs";
import type tls from "node:tls";
import { TransportError } from "./errors.ts";
import { PSK_IDENTITY, PSK_MAX_BYTES, PSK_MIN_BYTES, TLS_CIPHER, TLS_VERSION } from "./format.ts";

export type Security =
  | { readonly mode: "psk"; readonly key: Uint8Array; readonly identity?: string }
  | {
      readonly mode: "cert";
      readonly cert: Uint8Array;
      readonly key: Uint8Array;
      readonly ca: Uint8Array;
      /** If set, the server's certificate must name this host (dialler side). */
      readonly servername?: string;
    }
  /** Plain TCP: no authentication, no integrity. Tests only. */
  | { readonly mode: "insecure" };

/** Environment variables read by securityFromOptions. */
export const ENV_PSK = "COLO_PSK";
export const ENV_PSK_FILE = "COLO_PSK_FILE";

/**
 * Decode a key file's contents: hex text (optionally with whitespace or a trailing newline) is
 * decoded; anything else is taken as raw bytes. The key must be PSK_MIN_BYTES..PSK_MAX_BYTES.
 */
export function parsePsk(contents: Uint8Array, source: string): Uint8Array {
  const text = Buffer.from(contents).toString("latin1").trim();
  let key: Uint8Array;
  if (/^(?:[0-9a-fA-F]{2})+$/.test(text.replace(/\s+/g, ""))) {
    key = new Uint8Array(Buffer.from(text.replace(/\s+/g, ""), "hex"));
  } else {
    key = contents;
  }
  if (key.byteLength < PSK_MIN_BYTES) {
    throw new TransportError(
      "config",
      `pre-shared key from ${source} is ${key.byteLength} bytes; at least ${PSK_MIN_BYTES} (${PSK_MIN_BYTES * 8} bits) required`,
      { details: { source, length: key.byteLength, min: PSK_MIN_BYTES } },
    );
  }
  if (key.byteLength > PSK_MAX_BYTES) {
    throw new TransportError(
      "config",
      `pre-shared key from ${source} is longer than ${PSK_MAX_BYTES} bytes`,
      {
        details: { source, length: key.byteLength, max: PSK_MAX_BYTES },
      },
    );
  }
  return key;
}

export function loadPskFile(path: string): Uint8Array {
  let contents: Uint8Array;
  try {
    contents = fs.readFileSync(path);
  } catch (err) {
    throw new TransportError("config", `cannot read pre-shared key file ${path}`, { cause: err });
  }
  return parsePsk(contents, path);
}

/** Load certificate, key and CA files (PEM) for mutual TLS. */
export function loadCertFiles(files: {
  cert: string;
  key: string;
  ca: string;
  servername?: string;
}): Security {
  const read = (what: string, path: string): Uint8Array => {
    try {
      return fs.readFileSync(path);
    } catch (err) {
      throw new TransportError("config", `cannot read ${what} file ${path}`, { cause: err });
    }
  };
  return {
    mode: "cert",
    cert: read("certificate", files.cert),
    key: read("private key", files.key),
    ca: read("CA", files.ca),
    ...(files.servername === undefined ? {} : { servername: files.servername }),
  };
}

/** What the CLI flags say; every field optional. */
export interface SecurityFlags {
  /** --psk-file PATH */
  pskFile?: string;
  /** --cert / --key / --ca PATH (all three or none) */
  certFile?: string;
  keyFile?: string;
  caFile?: string;
  /** --insecure-no-tls: plain TCP, tests only. */
  insecure?: boolean;
}

/**
 * Decide the Security from flags, then the environment (COLO_PSK hex, COLO_PSK_FILE path).
 * Throws TransportError "config" when there is no key and `insecure` is not set.
 * `warn` receives the loud insecure-mode warning (default: stderr).
 */
export function securityFromOptions(
  flags: SecurityFlags,
  env: NodeJS.ProcessEnv = process.env,
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Security {
  const certFlags = [flags.certFile, flags.keyFile, flags.caFile].filter((f) => f !== undefined).length;
  if (certFlags !== 0 && certFlags !== 3) {
    throw new TransportError("config", "--cert, --key and --ca must be given together");
  }
  if (certFlags === 3 && flags.pskFile !== undefined) {
    throw new TransportError("config", "give either a pre-shared key or certificates, not both");
  }
  if (certFlags === 3)
    return loadCertFiles({ cert: flags.certFile!, key: flags.keyFile!, ca: flags.caFile! });
  if (flags.pskFile !== undefined) return { mode: "psk", key: loadPskFile(flags.pskFile) };
  const envKey = env[ENV_PSK];
  if (envKey !== undefined && envKey !== "") {
    return { mode: "psk", key: parsePsk(new TextEncoder().encode(envKey), `$${ENV_PSK}`) };
  }
  const envFile = env[ENV_PSK_FILE];
  if (envFile !== undefined && envFile !== "") return { mode: "psk", key: loadPskFile(envFile) };
  if (flags.insecure === true) {
    warn(
      "colo: WARNING: --insecure-no-tls: connections are plain TCP, NOT authenticated and NOT integrity-protected. " +
        "Anyone who can reach the port can feed this host code and state. Use only in tests.",
    );
    return { mode: "insecure" };
  }
  throw new TransportError(
    "config",
    `no key: give --psk-file PATH (or $${ENV_PSK} / $${ENV_PSK_FILE}), or --cert/--key/--ca; ` +
      "refusing to open unauthenticated connections",
  );
}

/** A fresh random key for tests and for `colo` to suggest (hex of 32 random bytes). */
export function generatePsk(bytes = 32): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(bytes));
}

function identityOf(sec: Security & { mode: "psk" }): string {
  return sec.identity ?? PSK_IDENTITY;
}

/** TLS settings shared by both ends: the one version and cipher, half-close allowed. */
const COMMON_TLS = {
  minVersion: TLS_VERSION,
  maxVersion: TLS_VERSION,
  ciphers: TLS_CIPHER,
  allowHalfOpen: true,
} as const;

function certParts(sec: Security & { mode: "cert" }): { cert: Buffer; key: Buffer; ca: Buffer } {
  return { cert: Buffer.from(sec.cert), key: Buffer.from(sec.key), ca: Buffer.from(sec.ca) };
}

function tlsSecurity(sec: Security): Exclude<Security, { mode: "insecure" }> {
  if (sec.mode === "insecure")
    throw new TransportError("invalid-argument", "insecure mode has no TLS options");
  return sec;
}

/** Options for tls.createServer. */
export function serverTlsOptions(security: Security): tls.TlsOptions {
  const sec = tlsSecurity(security);
  if (sec.mode === "psk") {
    const key = Buffer.from(sec.key);
    const identity = identityOf(sec);
    return {
      ...COMMON_TLS,
      // The identity is not secret; refusing unknown identities only makes errors clearer.
      pskCallback: (_socket: tls.TLSSocket, id: string) => (id === identity ? key : null),
    } as tls.TlsOptions;
  }
  return {
    ...COMMON_TLS,
    ...certParts(sec),
    requestCert: true,
    // Checked by the listener itself (socket.authorized) so that the refusal is logged with
    // the verification error; a client without a valid certificate never gets past it.
    rejectUnauthorized: false,
  };
}

/** Options for tls.connect (host/port/path added by the caller). */
export function clientTlsOptions(security: Security): tls.ConnectionOptions {
  const sec = tlsSecurity(security);
  if (sec.mode === "psk") {
    const key = Buffer.from(sec.key);
    const identity = identityOf(sec);
    return {
      ...COMMON_TLS,
      pskCallback: () => ({ psk: key, identity }),
      // No certificates are involved with a PSK; the PSK itself authenticates the server.
      checkServerIdentity: () => undefined,
    };
  }
  return {
    ...COMMON_TLS,
    ...certParts(sec),
    rejectUnauthorized: true,
    // Without a servername the chain is still verified against the CA; only the name is not.
    ...(sec.servername === undefined
      ? { checkServerIdentity: () => undefined }
      : { servername: sec.servername }),
  };
}
