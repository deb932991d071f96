/**
 * The hello and the verdict: codecs and checks, no I/O.
 *
 * Every connection, once TLS is up, opens with: the dialler's hello; the listener's hello and
 * verdict; the dialler's verdict. Each end checks the other's hello against what it expects and
 * answers with a verdict; only when both verdicts are OK does a byte reach the layer above.
 * Layout (little-endian) in docs/transport.md.
 */
import { TransportError, type TransportErrorCode } from "./errors.ts";
import {
  ChannelKind,
  type ChannelKindName,
  HELLO,
  HELLO_MAGIC,
  HELLO_MAX_SIZE,
  HELLO_SIZE,
  NONCE_SIZE,
  PROTOCOL_VERSION,
  Role,
  type RoleName,
  SESSION_ID_SIZE,
  VERDICT_MAGIC,
  VERDICT_SIZE,
  Verdict,
  type VerdictCode,
} from "./format.ts";

export interface Hello {
  readonly version: number;
  readonly role: RoleName;
  readonly kind: ChannelKindName;
  /** 16 bytes; the same for every connection of one replication pair (or one migration). */
  readonly session: Uint8Array;
  readonly capabilities: bigint;
  /** 16 random bytes, fresh per connection: a repeat within a session and kind is a replay. */
  readonly nonce: Uint8Array;
  /** The sender's count of connections of this kind in this session, from 0 (informative). */
  readonly sequence: number;
}

const ROLE_NAMES = new Map<number, RoleName>(Object.entries(Role).map(([k, v]) => [v, k as RoleName]));
const KIND_NAMES = new Map<number, ChannelKindName>(
  Object.entries(ChannelKind).map(([k, v]) => [v, k as ChannelKindName]),
);

/** The role a peer must have to pair with `role`. */
export function counterpart(role: RoleName): RoleName {
  switch (role) {
    case "primary":
      return "secondary";
    case "secondary":
      return "primary";
    case "source":
      return "target";
    case "target":
      return "source";
  }
}

export function newSessionId(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(SESSION_ID_SIZE));
}

export function newNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_SIZE));
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function encodeHello(h: Hello): Uint8Array {
  if (h.session.byteLength !== SESSION_ID_SIZE || h.nonce.byteLength !== NONCE_SIZE) {
    throw new TransportError("invalid-argument", "session id and nonce must be 16 bytes each");
  }
  if (h.capabilities < 0n || h.capabilities >= 1n << 64n) {
    throw new TransportError("invalid-argument", "capabilities must fit in 64 bits");
  }
  const out = new Uint8Array(HELLO_SIZE);
  const v = new DataView(out.buffer);
  out.set(HELLO_MAGIC, HELLO.magic);
  v.setUint16(HELLO.version, h.version, true);
  v.setUint16(HELLO.length, HELLO_SIZE, true);
  v.setUint8(HELLO.role, Role[h.role]);
  v.setUint8(HELLO.kind, ChannelKind[h.kind]);
  out.set(h.session, HELLO.session);
  v.setBigUint64(HELLO.capabilities, h.capabilities, true);
  out.set(h.nonce, HELLO.nonce);
  v.setUint32(HELLO.sequence, h.sequence >>> 0, true);
  return out;
}

/**
 * From the first 12 bytes (magic, version, length), how many bytes the whole hello has.
 * Throws "hello-magic" or "hello-malformed"; the length is bounded before anything is read.
 */
export function helloLength(prefix: Uint8Array): number {
  for (let i = 0; i < HELLO_MAGIC.length; i++) {
    if (prefix[i] !== HELLO_MAGIC[i]) {
      throw new TransportError("hello-magic", "not a colo hello (bad magic)", {
        offset: i,
        details: { got: hex(prefix.subarray(0, HELLO_MAGIC.length)) },
      });
    }
  }
  const v = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  const length = v.getUint16(HELLO.length, true);
  if (length < HELLO_SIZE || length > HELLO_MAX_SIZE) {
    throw new TransportError(
      "hello-malformed",
      `hello length ${length} outside ${HELLO_SIZE}..${HELLO_MAX_SIZE}`,
      {
        offset: HELLO.length,
        details: { length },
      },
    );
  }
  return length;
}

/** Decode a whole hello (of the length helloLength() gave). Version is checked by checkHello. */
export function decodeHello(bytes: Uint8Array): Hello {
  const length = helloLength(bytes);
  if (bytes.byteLength !== length) {
    throw new TransportError("hello-malformed", "hello shorter than its length field", {
      details: { length, got: bytes.byteLength },
    });
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = v.getUint16(HELLO.version, true);
  if (version !== PROTOCOL_VERSION) {
    // Fields past the version may mean something else in another version: stop here.
    return {
      version,
      role: "primary",
      kind: "control",
      session: new Uint8Array(SESSION_ID_SIZE),
      capabilities: 0n,
      nonce: new Uint8Array(NONCE_SIZE),
      sequence: 0,
    };
  }
  const role = ROLE_NAMES.get(v.getUint8(HELLO.role));
  const kind = KIND_NAMES.get(v.getUint8(HELLO.kind));
  if (role === undefined) {
    throw new TransportError("hello-malformed", `unknown role ${v.getUint8(HELLO.role)}`, {
      offset: HELLO.role,
    });
  }
  if (kind === undefined) {
    throw new TransportError("hello-malformed", `unknown channel kind ${v.getUint8(HELLO.kind)}`, {
      offset: HELLO.kind,
    });
  }
  if (v.getUint16(HELLO.reserved0, true) !== 0 || v.getUint32(HELLO.reserved1, true) !== 0) {
    throw new TransportError("hello-malformed", "reserved hello fields must be zero", {
      offset: HELLO.reserved0,
    });
  }
  return {
    version,
    role,
    kind,
    session: bytes.slice(HELLO.session, HELLO.session + SESSION_ID_SIZE),
    capabilities: v.getBigUint64(HELLO.capabilities, true),
    nonce: bytes.slice(HELLO.nonce, HELLO.nonce + NONCE_SIZE),
    sequence: v.getUint32(HELLO.sequence, true),
  };
}

export function encodeVerdict(code: VerdictCode): Uint8Array {
  const out = new Uint8Array(VERDICT_SIZE);
  out.set(VERDICT_MAGIC, 0);
  new DataView(out.buffer).setUint16(4, code, true);
  return out;
}

export function decodeVerdict(bytes: Uint8Array): VerdictCode {
  for (let i = 0; i < VERDICT_MAGIC.length; i++) {
    if (bytes[i] !== VERDICT_MAGIC[i])
      throw new TransportError("hello-magic", "bad verdict magic", { offset: i });
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = v.getUint16(4, true);
  if (v.getUint16(6, true) !== 0 || !(Object.values(Verdict) as number[]).includes(code)) {
    throw new TransportError("hello-malformed", `bad verdict ${code}`, { offset: 4 });
  }
  return code as VerdictCode;
}

/** What one end accepts from the other. */
export interface HelloExpectation {
  /** Roles the peer may have. */
  readonly roles: readonly RoleName[];
  /** Channel kinds the peer may open. */
  readonly kinds: readonly ChannelKindName[];
  /** The current session; undefined accepts any (the caller then decides, e.g. adopts it). */
  readonly session?: Uint8Array | undefined;
  /** Capability bits the peer must have. */
  readonly requiredCapabilities?: bigint;
}

/** The failure of a check: the error for this end and the verdict to send to the peer. */
export interface HelloRejection {
  readonly verdict: VerdictCode;
  readonly error: TransportError;
}

const VERDICT_ERROR: Record<VerdictCode, TransportErrorCode> = {
  [Verdict.ok]: "refused",
  [Verdict.version]: "hello-version",
  [Verdict.role]: "hello-role",
  [Verdict.kind]: "hello-kind",
  [Verdict.session]: "hello-session",
  [Verdict.replay]: "hello-replay",
  [Verdict.capabilities]: "hello-capabilities",
  [Verdict.malformed]: "hello-malformed",
  [Verdict.busy]: "refused",
};

/** The error code on this end when the peer answers with `verdict`. */
export function errorForVerdict(verdict: VerdictCode): TransportErrorCode {
  return VERDICT_ERROR[verdict];
}

function reject(verdict: VerdictCode, reason: string, details: Record<string, unknown>): HelloRejection {
  return { verdict, error: new TransportError(VERDICT_ERROR[verdict], reason, { details }) };
}

/** Check a peer's hello; undefined means acceptable. Replay is checked by the caller (stateful). */
export function checkHello(peer: Hello, expect: HelloExpectation): HelloRejection | undefined {
  if (peer.version !== PROTOCOL_VERSION) {
    return reject(
      Verdict.version,
      `peer speaks protocol version ${peer.version}, this end ${PROTOCOL_VERSION}`,
      {
        peer: peer.version,
        local: PROTOCOL_VERSION,
      },
    );
  }
  if (!expect.roles.includes(peer.role)) {
    return reject(Verdict.role, `peer role ${peer.role} not accepted (expected ${expect.roles.join("/")})`, {
      peer: peer.role,
      expected: expect.roles,
    });
  }
  if (!expect.kinds.includes(peer.kind)) {
    return reject(
      Verdict.kind,
      `channel kind ${peer.kind} not accepted (expected ${expect.kinds.join("/")})`,
      {
        peer: peer.kind,
        expected: expect.kinds,
      },
    );
  }
  if (expect.session !== undefined && hex(expect.session) !== hex(peer.session)) {
    return reject(
      Verdict.session,
      `session ${hex(peer.session)} is not the current session ${hex(expect.session)}`,
      {
        peer: hex(peer.session),
        current: hex(expect.session),
      },
    );
  }
  const required = expect.requiredCapabilities ?? 0n;
  if ((peer.capabilities & required) !== required) {
    return reject(
      Verdict.capabilities,
      `peer lacks capabilities 0x${(required & ~peer.capabilities).toString(16)}`,
      {
        peer: peer.capabilities,
        required,
      },
    );
  }
  return undefined;
}

/**
 * Remembers the nonces seen per (session, kind) so that a replayed connection is refused.
 * Bounded: the oldest entries are forgotten past `limit` (a replay then still needs a valid TLS
 * handshake, which a recorded connection cannot complete).
 */
export class ReplayGuard {
  readonly #seen = new Set<string>();
  readonly #limit: number;

  constructor(limit = 65536) {
    this.#limit = limit;
  }

  /** True if new (and now remembered); false if this session+kind+nonce was seen before. */
  admit(h: Hello): boolean {
    const key = `${hex(h.session)}/${h.kind}/${hex(h.nonce)}`;
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    if (this.#seen.size > this.#limit) {
      const oldest = this.#seen.values().next().value;
      if (oldest !== undefined) this.#seen.delete(oldest);
    }
    return true;
  }
}
