/**
 * dial / listen: authenticated connections between hosts.
 *
 * Order on every connection: TCP (or Unix) connect -> TLS handshake (PSK or certificates; a
 * stranger fails here) -> the dialler's hello -> the listener's hello and verdict -> the
 * dialler's verdict. Only then does the listener's `onConnection` run and `dial()` resolve; no
 * byte of a refused connection ever reaches the layer above. Every length read before that is
 * bounded (hello <= HELLO_MAX_SIZE) and every step has a deadline (timeoutMs).
 *
 * A listener holds at most `maxHandshakes` connections that have not finished the hello (TCP
 * accepted, TLS or hello under way); one more is closed as soon as it is accepted, before any
 * TLS work, so a stranger opening idle connections costs a bounded number of sockets and timers,
 * each gone within its deadlines. Connections handed to `onConnection` do not count.
 */
import net from "node:net";
import tls from "node:tls";
import type { BaseChannel, ByteChannel } from "./channel.ts";
import { fromNodeError, TransportError } from "./errors.ts";
import {
  type ChannelKindName,
  PROTOCOL_VERSION,
  type RoleName,
  VERDICT_SIZE,
  Verdict,
  type VerdictCode,
} from "./format.ts";
import {
  checkHello,
  counterpart,
  decodeHello,
  decodeVerdict,
  encodeHello,
  encodeVerdict,
  errorForVerdict,
  type Hello,
  type HelloExpectation,
  type HelloRejection,
  helloLength,
  hex,
  newNonce,
  ReplayGuard,
} from "./hello.ts";
import { openPair, type PairOptions } from "./memory.ts";
import { clientTlsOptions, type Security, serverTlsOptions } from "./security.ts";
import { socketChannel } from "./stream-channel.ts";

export type LogLevel = "info" | "warn";
export type TransportLog = (level: LogLevel, message: string, details?: Record<string, unknown>) => void;

/** Default log: warnings to stderr, info dropped. */
export const defaultLog: TransportLog = (level, message) => {
  if (level === "warn") process.stderr.write(`colo transport: ${message}\n`);
};

/** An authenticated, hello-checked connection. */
export interface Connection {
  readonly channel: ByteChannel;
  readonly local: Hello;
  readonly peer: Hello;
  readonly remote: string;
  /** TLS protocol and cipher, or undefined in insecure / in-memory mode. */
  readonly tls: { readonly protocol: string; readonly cipher: string } | undefined;
}

/** What the dialler says about itself. */
export interface HelloParams {
  readonly role: RoleName;
  readonly kind: ChannelKindName;
  readonly session: Uint8Array;
  readonly capabilities?: bigint;
  readonly sequence?: number;
}

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Longest handshake deadline accepted: Node's timer limit (a longer one would fire at once). */
export const MAX_HANDSHAKE_TIMEOUT_MS = 2 ** 31 - 1;
/** Default cap on a listener's connections that have not finished the hello (ListenOptions.maxHandshakes). */
export const DEFAULT_MAX_HANDSHAKES = 16;

/** A deadline option in ms: a positive finite number no larger than Node's timer limit. */
function checkTimeout(timeoutMs: number): number {
  if (!(timeoutMs > 0 && timeoutMs <= MAX_HANDSHAKE_TIMEOUT_MS)) {
    throw new TransportError(
      "config",
      `handshake timeout ${timeoutMs} ms is not in (0, ${MAX_HANDSHAKE_TIMEOUT_MS}]`,
      { details: { timeoutMs } },
    );
  }
  return timeoutMs;
}

// ---------------------------------------------------------------------------------------------
// Reading exact byte counts off a channel (handshake only).

function readExact(channel: BaseChannel, n: number, deadline: AbortSignal): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let have = 0;
    const cleanup = (): void => {
      channel.onData(undefined);
      channel.off("end", onEnd);
      channel.off("close", onClose);
      deadline.removeEventListener("abort", onAbort);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new TransportError("reset", "connection ended during the hello", { offset: have }));
    };
    const onClose = (err: TransportError | undefined): void => {
      cleanup();
      reject(err ?? new TransportError("reset", "connection closed during the hello", { offset: have }));
    };
    const onAbort = (): void => {
      cleanup();
      reject(new TransportError("timeout", "hello not completed in time"));
    };
    if (deadline.aborted) return onAbort();
    channel.on("end", onEnd);
    channel.on("close", onClose);
    deadline.addEventListener("abort", onAbort);
    channel.onData((chunk) => {
      parts.push(chunk);
      have += chunk.byteLength;
      if (have < n) return;
      cleanup();
      const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      if (have > n) channel.unshift(all.subarray(n));
      resolve(all.subarray(0, n));
    });
  });
}

async function readHello(channel: BaseChannel, deadline: AbortSignal): Promise<Hello> {
  const prefix = await readExact(channel, 12, deadline);
  const length = helloLength(prefix); // bounded before reading the rest
  const rest = await readExact(channel, length - 12, deadline);
  const whole = new Uint8Array(length);
  whole.set(prefix, 0);
  whole.set(rest, 12);
  return decodeHello(whole);
}

/** Grace period for a refusal verdict to reach the peer before the connection is destroyed. */
const VERDICT_GRACE_MS = 2000;

/**
 * After a failed handshake: if we ended our side (a verdict is on its way), let it flush and
 * destroy after a grace period; otherwise destroy now. Returns the typed error.
 */
function teardown(channel: BaseChannel, err: unknown): TransportError {
  const e = err instanceof TransportError ? err : fromNodeError(err, "hello");
  if (channel.closed) return e;
  if (channel.writeEnded) {
    const timer = setTimeout(() => channel.destroy(e), VERDICT_GRACE_MS);
    timer.unref();
    channel.once("close", () => clearTimeout(timer));
    channel.onData(() => {}); // discard whatever the peer still sends
  } else {
    channel.destroy(e);
  }
  return e;
}

function rejectionOf(err: unknown): HelloRejection {
  const error = err instanceof TransportError ? err : new TransportError("hello-malformed", String(err));
  return { verdict: Verdict.malformed, error };
}

// ---------------------------------------------------------------------------------------------
// The two sides of the hello exchange, over any BaseChannel (socket, TLS, memory).

export interface DiallerHandshake {
  readonly hello: HelloParams;
  readonly requiredCapabilities?: bigint;
  readonly timeoutMs?: number;
}

/** Dialler side; resolves with the peer's hello or rejects with a typed error (channel destroyed). */
export async function handshakeAsDialler(
  channel: BaseChannel,
  params: DiallerHandshake,
): Promise<{ local: Hello; peer: Hello }> {
  const local: Hello = {
    version: PROTOCOL_VERSION,
    role: params.hello.role,
    kind: params.hello.kind,
    session: params.hello.session,
    capabilities: params.hello.capabilities ?? 0n,
    nonce: newNonce(),
    sequence: params.hello.sequence ?? 0,
  };
  const deadline = AbortSignal.timeout(params.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  try {
    channel.write([encodeHello(local)]);
    let peer: Hello;
    try {
      peer = await readHello(channel, deadline);
    } catch (err) {
      if (err instanceof TransportError && (err.code === "hello-magic" || err.code === "hello-malformed")) {
        channel.write([encodeVerdict(Verdict.malformed)]);
        channel.end();
      }
      throw err;
    }
    const verdict = decodeVerdict(await readExact(channel, VERDICT_SIZE, deadline));
    if (verdict !== Verdict.ok) {
      throw new TransportError(errorForVerdict(verdict), `peer refused our hello (verdict ${verdict})`, {
        details: { verdict, peerRole: peer.role, peerVersion: peer.version },
      });
    }
    const rejection = checkHello(peer, {
      roles: [counterpart(local.role)],
      kinds: [local.kind],
      session: local.session,
      requiredCapabilities: params.requiredCapabilities ?? 0n,
    });
    if (rejection !== undefined) {
      channel.write([encodeVerdict(rejection.verdict)]);
      channel.end();
      throw rejection.error;
    }
    channel.write([encodeVerdict(Verdict.ok)]);
    return { local, peer };
  } catch (err) {
    throw teardown(channel, err);
  }
}

export interface ListenerHandshake {
  readonly role: RoleName;
  readonly expect: Omit<HelloExpectation, "session">;
  /** Current session (undefined: accept any). Read at check time. */
  readonly session: () => Uint8Array | undefined;
  /** Called with an accepted hello before the verdict is sent; may throw to refuse. */
  readonly onAccept?: (peer: Hello) => void;
  readonly replay: ReplayGuard;
  readonly capabilities?: bigint;
  readonly timeoutMs?: number;
}

/** Listener side; resolves with both hellos or rejects with a typed error (channel destroyed). */
export async function handshakeAsListener(
  channel: BaseChannel,
  params: ListenerHandshake,
): Promise<{ local: Hello; peer: Hello }> {
  const deadline = AbortSignal.timeout(params.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  try {
    let peer: Hello | undefined;
    let rejection: HelloRejection | undefined;
    try {
      peer = await readHello(channel, deadline);
    } catch (err) {
      if (
        !(err instanceof TransportError) ||
        (err.code !== "hello-magic" && err.code !== "hello-malformed")
      ) {
        throw err;
      }
      rejection = rejectionOf(err);
    }
    const session = params.session();
    if (peer !== undefined) {
      rejection = checkHello(peer, { ...params.expect, session });
      if (rejection === undefined && !params.replay.admit(peer)) {
        rejection = {
          verdict: Verdict.replay,
          error: new TransportError(
            "hello-replay",
            "replayed connection (session, kind and nonce already seen)",
            {
              details: { session: hex(peer.session), kind: peer.kind, nonce: hex(peer.nonce) },
            },
          ),
        };
      }
      if (rejection === undefined && params.onAccept !== undefined) {
        try {
          params.onAccept(peer);
        } catch (err) {
          rejection = rejectionOf(err);
          rejection = { verdict: Verdict.busy, error: rejection.error };
        }
      }
    }
    const local: Hello = {
      version: PROTOCOL_VERSION,
      role: params.role,
      kind: peer?.kind ?? params.expect.kinds[0] ?? "control",
      session: session ?? peer?.session ?? new Uint8Array(16),
      capabilities: params.capabilities ?? 0n,
      nonce: newNonce(),
      sequence: 0,
    };
    const verdict: VerdictCode = rejection?.verdict ?? Verdict.ok;
    channel.write([encodeHello(local), encodeVerdict(verdict)]);
    if (rejection !== undefined) {
      channel.end();
      throw rejection.error;
    }
    const theirs = decodeVerdict(await readExact(channel, VERDICT_SIZE, deadline));
    if (theirs !== Verdict.ok) {
      throw new TransportError(errorForVerdict(theirs), `peer refused our hello (verdict ${theirs})`, {
        details: { verdict: theirs },
      });
    }
    return { local, peer: peer! };
  } catch (err) {
    throw teardown(channel, err);
  }
}

// ---------------------------------------------------------------------------------------------
// Sockets.

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

export interface DialOptions extends DiallerHandshake {
  readonly host?: string;
  readonly port?: number;
  /** A Unix socket path instead of host/port. */
  readonly path?: string;
  readonly security: Security;
  readonly log?: TransportLog;
}

/** Connect, authenticate (TLS), exchange hellos. Rejects with a TransportError. */
export async function dial(options: DialOptions): Promise<Connection> {
  const timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  const where = options.path ?? `${options.host ?? "127.0.0.1"}:${options.port}`;
  const sec = options.security;
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const target =
      options.path !== undefined
        ? { path: options.path }
        : { host: options.host ?? "127.0.0.1", port: options.port ?? 0 };
    const s =
      sec.mode === "insecure"
        ? net.connect({ ...target, allowHalfOpen: true })
        : tls.connect({ ...clientTlsOptions(sec), ...target });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new TransportError("timeout", `connect to ${where} timed out`));
    }, timeoutMs);
    timer.unref();
    s.once("error", (err) => {
      clearTimeout(timer);
      s.destroy();
      reject(fromNodeError(err, `connect to ${where}`));
    });
    // A peer that closes during the TLS handshake (it refused us) may give "close" without "error".
    s.once("close", () => {
      clearTimeout(timer);
      reject(new TransportError("auth", `connection to ${where} closed during the TLS handshake`));
    });
    s.once(sec.mode === "insecure" ? "connect" : "secureConnect", () => {
      clearTimeout(timer);
      s.removeAllListeners("error");
      s.removeAllListeners("close");
      resolve(s);
    });
  });
  const channel = socketChannel(socket, sec.mode === "insecure" ? (options.path ? "unix" : "tcp") : "tls");
  const { local, peer } = await handshakeAsDialler(channel, { ...options, timeoutMs });
  (options.log ?? defaultLog)("info", `connected to ${where}`, { kind: local.kind, peerRole: peer.role });
  return { channel, local, peer, remote: where, tls: tlsInfo(socket) };
}

function tlsInfo(socket: net.Socket): Connection["tls"] {
  if (!(socket instanceof tls.TLSSocket)) return undefined;
  return { protocol: socket.getProtocol() ?? "?", cipher: socket.getCipher()?.name ?? "?" };
}

export interface ListenOptions {
  /** Address to bind; default 127.0.0.1. Anything but loopback needs allowNonLoopback. */
  readonly host?: string;
  /** Port; 0 (default) picks one: read Listener.port. */
  readonly port?: number;
  /** A Unix socket path instead of host/port. */
  readonly path?: string;
  /** Explicit consent to bind a non-loopback address (the --listen-any style flag). */
  readonly allowNonLoopback?: boolean;
  readonly security: Security;
  /** This end's role. */
  readonly role: RoleName;
  readonly expect: Omit<HelloExpectation, "session">;
  /**
   * The current session: a fixed id (only it is accepted), or "adopt" (default): the first
   * accepted connection fixes it until setSession() changes it.
   */
  readonly session?: Uint8Array | "adopt";
  readonly capabilities?: bigint;
  /**
   * Deadline of each handshake step in ms (default DEFAULT_HANDSHAKE_TIMEOUT_MS): the TLS
   * handshake, then the hello exchange; a refusal's verdict gets VERDICT_GRACE_MS more to flush.
   */
  readonly timeoutMs?: number;
  /**
   * Most connections at once that have not finished the hello (default DEFAULT_MAX_HANDSHAKES);
   * one more is closed as soon as it is accepted, and logged at warn once per burst.
   */
  readonly maxHandshakes?: number;
  readonly log?: TransportLog;
}

export interface RefusedInfo {
  readonly remote: string;
  readonly error: TransportError;
}

export interface Listener {
  readonly host: string;
  readonly port: number;
  readonly path: string | undefined;
  /** The current session, if fixed or adopted. */
  readonly session: Uint8Array | undefined;
  /** Change the current session (undefined: adopt the next one). Connections already up stay. */
  setSession(session: Uint8Array | undefined): void;
  /**
   * Called for every refused connection (stranger, mismatch, replay), after it is logged. Not
   * for connections closed at once over `maxHandshakes` (a flood of them is logged once a burst).
   */
  onRefused(listener: (info: RefusedInfo) => void): void;
  /** Stop accepting; connections already handed out are not touched; handshakes in progress are cut. */
  close(): Promise<void>;
}

/** Bind, and hand each authenticated, hello-checked connection to `onConnection`. */
export async function listen(
  options: ListenOptions,
  onConnection: (conn: Connection) => void,
): Promise<Listener> {
  const host = options.host ?? "127.0.0.1";
  if (options.path === undefined && !isLoopback(host) && options.allowNonLoopback !== true) {
    throw new TransportError(
      "config",
      `refusing to listen on ${host}: not a loopback address (pass the explicit flag to listen beyond this host)`,
      { details: { host } },
    );
  }
  const log = options.log ?? defaultLog;
  const sec = options.security;
  if (sec.mode === "insecure") {
    log("warn", "WARNING: listening WITHOUT TLS (insecure test mode): no authentication, no integrity");
  }
  let session: Uint8Array | undefined = options.session instanceof Uint8Array ? options.session : undefined;
  const adopt = options.session === undefined || options.session === "adopt";
  const replay = new ReplayGuard();
  const refusedListeners: ((info: RefusedInfo) => void)[] = [];
  /** Sockets not yet handed out (in the TLS handshake or the hello), by remote address:port. */
  const pending = new Map<string, net.Socket>();
  const keyOf = (s: net.Socket): string => `${s.remoteAddress}:${s.remotePort}:${s.localPort}`;
  const timeoutMs = checkTimeout(options.timeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  const maxHandshakes = options.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES;
  if (!Number.isSafeInteger(maxHandshakes) || maxHandshakes < 1) {
    throw new TransportError("config", `maxHandshakes ${maxHandshakes} is not a positive integer`, {
      details: { maxHandshakes },
    });
  }
  // Connections in the handshake = accepted and open − handed out and open. Counted by socket
  // events, not by pairing a TLS socket with the TCP socket under it (Node offers no public link):
  // both close in the same tick, so the difference is exact between events.
  let open = 0;
  let handedOut = 0;
  /** Connections closed over the cap since one was last admitted (0: not in a burst). */
  let overCap = 0;

  const refused = (remote: string, error: TransportError): void => {
    log("warn", `refused connection from ${remote}: [${error.code}] ${error.message}`, {
      remote,
      code: error.code,
    });
    for (const l of refusedListeners) l({ remote, error });
  };

  const onSocket = (socket: net.Socket): void => {
    // Half-open from here on (a dialler may end its side and still read ours); not during the TLS
    // handshake, where a peer's end must close the socket at once rather than at the deadline.
    socket.allowHalfOpen = true;
    pending.set(keyOf(socket), socket);
    const remote =
      socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : "unix";
    if (sec.mode === "cert" && !(socket instanceof tls.TLSSocket && socket.authorized)) {
      const why = socket instanceof tls.TLSSocket ? String(socket.authorizationError) : "no TLS";
      socket.destroy();
      pending.delete(keyOf(socket));
      refused(remote, new TransportError("auth", `client certificate refused: ${why}`, { details: { why } }));
      return;
    }
    const channel = socketChannel(socket, sec.mode === "insecure" ? (options.path ? "unix" : "tcp") : "tls");
    handshakeAsListener(channel, {
      role: options.role,
      expect: options.expect,
      session: () => session,
      onAccept: (peer) => {
        if (session === undefined && adopt) session = peer.session;
      },
      replay,
      ...(options.capabilities === undefined ? {} : { capabilities: options.capabilities }),
      timeoutMs,
    }).then(
      ({ local, peer }) => {
        pending.delete(keyOf(socket));
        // A socket destroyed meanwhile has its close still to come (or done): not counted.
        if (!socket.destroyed) {
          handedOut++;
          socket.once("close", () => handedOut--);
        }
        log("info", `accepted ${peer.kind} connection from ${peer.role} at ${remote}`);
        onConnection({ channel, local, peer, remote, tls: tlsInfo(socket) });
      },
      (err: TransportError) => {
        pending.delete(keyOf(socket));
        refused(remote, err);
      },
    );
  };

  // The TLS server does not listen: the TCP server below accepts, applies the cap, and hands it
  // each admitted socket (its "connection" event), so a refused one costs no TLS work.
  let tlsServer: tls.Server | undefined;
  if (sec.mode !== "insecure") {
    tlsServer = tls.createServer(
      { ...serverTlsOptions(sec), allowHalfOpen: false, handshakeTimeout: timeoutMs },
      onSocket,
    );
    tlsServer.on("tlsClientError", (err, socket) => {
      const remote =
        socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : "unix";
      socket.destroy();
      refused(remote, fromNodeError(err, "TLS handshake"));
    });
  }
  const server = net.createServer({ allowHalfOpen: sec.mode === "insecure" }, (s: net.Socket) => {
    if (open - handedOut >= maxHandshakes) {
      s.destroy();
      if (overCap++ === 0) {
        log(
          "warn",
          `closing new connections: ${maxHandshakes} already in the handshake (maxHandshakes); further ones are closed without a log line until one gets in`,
          { remote: s.remoteAddress ?? "unix", maxHandshakes },
        );
      }
      return;
    }
    if (overCap > 0) {
      log("info", `closed ${overCap} connections over the handshake cap`, { closed: overCap });
      overCap = 0;
    }
    open++;
    s.once("close", () => open--);
    const key = keyOf(s);
    pending.set(key, s);
    s.once("close", () => {
      if (pending.get(key) === s) pending.delete(key);
    });
    if (tlsServer !== undefined) tlsServer.emit("connection", s);
    else onSocket(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) => reject(fromNodeError(err, `listen on ${options.path ?? host}`)));
    if (options.path !== undefined) server.listen(options.path, resolve);
    else server.listen(options.port ?? 0, host, resolve);
  });
  server.on("error", (err) => log("warn", `listener error: ${err.message}`));
  const addr = server.address();
  return {
    host,
    port: typeof addr === "object" && addr !== null ? addr.port : 0,
    path: options.path,
    get session() {
      return session;
    },
    setSession(s) {
      session = s;
    },
    onRefused(l) {
      refusedListeners.push(l);
    },
    close() {
      return new Promise((resolve) => {
        server.close();
        for (const s of pending.values()) s.destroy();
        pending.clear();
        setImmediate(resolve);
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// In memory.

export interface ConnectedPairOptions extends PairOptions {
  readonly kind: ChannelKindName;
  /** Dialler's role; the listener gets the counterpart. Default primary. */
  readonly role?: RoleName;
  readonly session?: Uint8Array;
  readonly capabilities?: bigint;
}

/**
 * Two in-memory Connections that have done the real hello exchange (no TLS): [dialler, listener].
 * Faults in `aToB` / `bToA` apply after the hello (offsets count from the first byte after it).
 */
export async function connectedPair(options: ConnectedPairOptions): Promise<[Connection, Connection]> {
  const {
    kind,
    role = "primary",
    session = crypto.getRandomValues(new Uint8Array(16)),
    capabilities,
    ...pair
  } = options;
  const [a, b] = openPair({ ...pair, aToB: {}, bToA: {} });
  const replay = new ReplayGuard();
  const [da, lb] = await Promise.all([
    handshakeAsDialler(a, { hello: { role, kind, session, capabilities: capabilities ?? 0n } }),
    handshakeAsListener(b, {
      role: counterpart(role),
      expect: { roles: [role], kinds: [kind] },
      session: () => session,
      replay,
      capabilities: capabilities ?? 0n,
    }),
  ]);
  a.setFaults(pair.aToB ?? {});
  b.setFaults(pair.bToA ?? {});
  return [
    { channel: a, local: da.local, peer: da.peer, remote: a.remote, tls: undefined },
    { channel: b, local: lb.local, peer: lb.peer, remote: b.remote, tls: undefined },
  ];
}
