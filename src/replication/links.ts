/**
 * The three connections between a primary P and a secondary S (architecture: "Connections"):
 *
 *   replication  P → S the libxl/libxc stream; S → P the back channel (same connection)
 *   mirror       P → S client input; S → P the SVM's outputs (src/proxy/mirror-channel.ts)
 *   heartbeat    beats both ways, on a connection of its own so a large checkpoint never delays them
 *
 * P dials S's --listen address three times with one fresh session id; S accepts connections of
 * one session at a time and hands the set on once all three kinds have arrived. The primary's
 * replication hello carries the replication settings as capability bits (config.ts).
 */

import type { ProxyError } from "../proxy/errors.ts";
import type { PrimaryMirrorEnd, SecondaryMirrorEnd } from "../proxy/link.ts";
import { primaryMirrorChannel, secondaryMirrorChannel } from "../proxy/mirror-channel.ts";
import { channelSink, channelSource } from "../save/channel.ts";
import type { SourceLink, TargetLink } from "../save/migrate.ts";
import {
  type Connection,
  connectedPair,
  dial,
  type Listener,
  listen,
  type TransportLog,
} from "../transport/connect.ts";
import type { ChannelKindName } from "../transport/format.ts";
import { Heartbeat, type HeartbeatOptions } from "../transport/heartbeat.ts";
import { newSessionId } from "../transport/hello.ts";
import type { Faults } from "../transport/memory.ts";
import { MessageChannel } from "../transport/message-channel.ts";
import type { Security } from "../transport/security.ts";
import { ReplicationError } from "./errors.ts";

const KINDS: readonly ChannelKindName[] = ["replication", "mirror", "heartbeat"];

/** The primary's end of the three connections. */
export interface PrimaryLinks {
  readonly replication: SourceLink;
  readonly mirror: PrimaryMirrorEnd;
  readonly heartbeat: Heartbeat;
  readonly peer: string;
  /** The pair's session id (hex), the same on both ends (the fencing hook's lock name). */
  readonly session: string;
  /** A malformed or misdirected mirror message arrived (a protocol error). */
  onMirrorError(listener: (e: ProxyError) => void): void;
  /** Close every connection; `goodbye` first tells the peer's heartbeat this is no loss. */
  close(goodbye: boolean): void;
}

/** The secondary's end. */
export interface SecondaryLinks {
  readonly replication: TargetLink;
  readonly mirror: SecondaryMirrorEnd;
  readonly heartbeat: Heartbeat;
  /** The primary's capability bits (its replication settings). */
  readonly capabilities: bigint;
  readonly peer: string;
  /** The pair's session id (hex), the same on both ends (the fencing hook's lock name). */
  readonly session: string;
  onMirrorError(listener: (e: ProxyError) => void): void;
  close(goodbye: boolean): void;
}

interface Built {
  heartbeat: Heartbeat;
  mirrorErrors: ((e: ProxyError) => void)[];
  close(goodbye: boolean): void;
}

function build(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions,
): Built {
  const heartbeat = new Heartbeat(new MessageChannel(conns.heartbeat.channel), hb);
  const mirrorErrors: ((e: ProxyError) => void)[] = [];
  let closed = false;
  return {
    heartbeat,
    mirrorErrors,
    close(goodbye) {
      if (closed) return;
      closed = true;
      if (goodbye && heartbeat.state === "running") heartbeat.stop();
      else conns.heartbeat.channel.destroy();
      conns.replication.channel.destroy();
      conns.mirror.channel.destroy();
    },
  };
}

export function primaryLinksOf(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions = {},
): PrimaryLinks {
  const b = build(conns, hb);
  const ch = conns.replication.channel;
  const mirror = primaryMirrorChannel(new MessageChannel(conns.mirror.channel), {
    onError: (e) => {
      for (const l of b.mirrorErrors) l(e);
    },
  });
  return {
    replication: { sink: channelSink(ch), back: channelSource(ch) },
    mirror,
    heartbeat: b.heartbeat,
    peer: conns.replication.remote,
    session: Buffer.from(conns.replication.local.session).toString("hex"),
    onMirrorError: (l) => b.mirrorErrors.push(l),
    close: b.close,
  };
}

export function secondaryLinksOf(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions = {},
): SecondaryLinks {
  const b = build(conns, hb);
  const ch = conns.replication.channel;
  const mirror = secondaryMirrorChannel(new MessageChannel(conns.mirror.channel), {
    onError: (e) => {
      for (const l of b.mirrorErrors) l(e);
    },
  });
  return {
    replication: { source: channelSource(ch), back: channelSink(ch) },
    mirror,
    heartbeat: b.heartbeat,
    capabilities: conns.replication.peer.capabilities,
    peer: conns.replication.remote,
    session: Buffer.from(conns.replication.local.session).toString("hex"),
    onMirrorError: (l) => b.mirrorErrors.push(l),
    close: b.close,
  };
}

export interface DialSecondaryOptions {
  readonly host: string;
  readonly port: number;
  readonly security: Security;
  readonly capabilities: bigint;
  readonly heartbeat?: HeartbeatOptions;
  readonly timeoutMs?: number;
  readonly log?: TransportLog;
}

/** P: dial the three connections with one new session id. */
export async function dialSecondary(o: DialSecondaryOptions): Promise<PrimaryLinks> {
  const session = newSessionId();
  const made: Connection[] = [];
  try {
    const conns = {} as Record<"replication" | "mirror" | "heartbeat", Connection>;
    for (const kind of KINDS) {
      const c = await dial({
        host: o.host,
        port: o.port,
        security: o.security,
        hello: {
          role: "primary",
          kind,
          session,
          capabilities: kind === "replication" ? o.capabilities : 0n,
        },
        ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
        ...(o.log === undefined ? {} : { log: o.log }),
      });
      made.push(c);
      conns[kind as "replication"] = c;
    }
    return primaryLinksOf(conns, o.heartbeat);
  } catch (e) {
    for (const c of made) c.channel.destroy();
    throw new ReplicationError("link", `cannot connect to the secondary at ${o.host}:${o.port}`, {
      cause: e,
    });
  }
}

export interface ListenPrimaryOptions {
  readonly host: string;
  readonly port: number;
  readonly security: Security;
  readonly allowNonLoopback?: boolean;
  readonly heartbeat?: HeartbeatOptions;
  readonly log?: TransportLog;
  /** Ms a partial set (fewer than three connections) may wait before it is dropped; default 10 s. */
  readonly setupTimeoutMs?: number;
}

/**
 * S: listen for primaries. Each complete set of three connections of one session is handed to
 * `onLinks`; while `busy()` says so, new sets are refused (closed). The listener adopts one
 * session at a time; `listener.setSession(undefined)` (done here when a set is dropped or after
 * `onLinks`'s controller calls `ready()`) lets the next primary in.
 */
export async function listenForPrimary(
  o: ListenPrimaryOptions,
  onLinks: (links: SecondaryLinks) => void,
  busy: () => boolean,
): Promise<Listener> {
  let partial:
    | { session: string; conns: Partial<Record<ChannelKindName, Connection>>; timer: NodeJS.Timeout }
    | undefined;
  const hex = (s: Uint8Array): string => Buffer.from(s).toString("hex");
  const drop = (): void => {
    if (partial === undefined) return;
    clearTimeout(partial.timer);
    for (const c of Object.values(partial.conns)) c?.channel.destroy();
    partial = undefined;
  };
  const listener: Listener = await listen(
    {
      host: o.host,
      port: o.port,
      security: o.security,
      role: "secondary",
      expect: { roles: ["primary"], kinds: [...KINDS] },
      session: "adopt",
      ...(o.allowNonLoopback === undefined ? {} : { allowNonLoopback: o.allowNonLoopback }),
      ...(o.log === undefined ? {} : { log: o.log }),
    },
    (conn) => {
      const s = hex(conn.peer.session);
      if (busy() || (partial !== undefined && partial.session !== s)) {
        conn.channel.destroy();
        return;
      }
      if (partial === undefined) {
        const timer = setTimeout(() => {
          drop();
          listener.setSession(undefined);
        }, o.setupTimeoutMs ?? 10_000);
        timer.unref();
        partial = { session: s, conns: {}, timer };
      }
      if (partial.conns[conn.peer.kind] !== undefined) {
        conn.channel.destroy();
        return;
      }
      partial.conns[conn.peer.kind] = conn;
      const c = partial.conns;
      if (c.replication !== undefined && c.mirror !== undefined && c.heartbeat !== undefined) {
        clearTimeout(partial.timer);
        partial = undefined;
        onLinks(
          secondaryLinksOf(
            { replication: c.replication, mirror: c.mirror, heartbeat: c.heartbeat },
            o.heartbeat,
          ),
        );
      }
    },
  );
  return listener;
}

export interface MemoryLinksOptions {
  readonly capabilities: bigint;
  readonly heartbeat?: HeartbeatOptions;
  /** Faults on the replication connection, P → S and S → P (settable later on `channels`). */
  readonly replicationFaults?: { readonly aToB?: Faults; readonly bToA?: Faults };
}

/** Both ends wired in memory, with the real hellos (tests, benchmarks). */
export async function memoryLinks(o: MemoryLinksOptions) {
  const session = newSessionId();
  const pairs = {} as Record<"replication" | "mirror" | "heartbeat", [Connection, Connection]>;
  for (const kind of KINDS) {
    pairs[kind as "replication"] = await connectedPair({
      kind,
      session,
      capabilities: kind === "replication" ? o.capabilities : 0n,
      ...(kind === "replication" ? (o.replicationFaults ?? {}) : {}),
    });
  }
  const primary = primaryLinksOf(
    { replication: pairs.replication[0], mirror: pairs.mirror[0], heartbeat: pairs.heartbeat[0] },
    o.heartbeat,
  );
  const secondary = secondaryLinksOf(
    { replication: pairs.replication[1], mirror: pairs.mirror[1], heartbeat: pairs.heartbeat[1] },
    o.heartbeat,
  );
  return { primary, secondary, pairs };
}
