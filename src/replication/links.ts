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
import { MessageType } from "../transport/format.ts";
import type { Message } from "../transport/frame.ts";
import { Heartbeat, type HeartbeatOptions } from "../transport/heartbeat.ts";
import { newSessionId } from "../transport/hello.ts";
import type { Faults } from "../transport/memory.ts";
import { MessageChannel } from "../transport/message-channel.ts";
import type { Security } from "../transport/security.ts";
import { ReplicationError } from "./errors.ts";

const KINDS: readonly ChannelKindName[] = ["replication", "mirror", "heartbeat"];

/**
 * Control messages of the pair, on the heartbeat connection (message types in the transport's
 * control range 0x0300–0x03ff; body: UTF-8 JSON). The heartbeat counts them as signs of life.
 * - SWITCHOVER_TAKE_OVER (P → S) `{ seq, listen }`: planned switchover; P has paused client input
 *   after checkpoint `seq` and will be a secondary on `listen` (HOST:PORT): serve, then protect
 *   yourself by dialing it.
 * - SWITCHOVER_SERVING (S → P) `{ service }`: S serves clients on `service` (HOST:PORT).
 */
export const CONTROL = {
  switchoverTakeOver: MessageType.controlFirst + 1,
  switchoverServing: MessageType.controlFirst + 2,
} as const;

/** The heartbeat's message channel, with messages of the control range handed aside too. */
class TappedChannel extends MessageChannel {
  readonly control: ((type: number, body: Record<string, unknown>) => void)[] = [];
  override onMessage(listener: (message: Message) => void): void {
    super.onMessage((m) => {
      if (m.type >= MessageType.controlFirst && m.type <= MessageType.controlLast) {
        let body: Record<string, unknown> = {};
        try {
          const parsed: unknown = JSON.parse(new TextDecoder().decode(m.body));
          // Only an object is handed on: listeners read fields at once, and null would throw
          // out of the socket's data handler (an uncaught exception ends the process).
          if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed))
            body = parsed as Record<string, unknown>;
        } catch {
          // a malformed body is handed on empty; the receiver checks its fields
        }
        for (const l of this.control) l(m.type, body);
      }
      listener(m);
    });
  }
}

/** What both ends of the three connections offer. */
export interface PairLinks {
  readonly heartbeat: Heartbeat;
  readonly peer: string;
  /** The pair's session id (hex), the same on both ends (the fencing hook's lock name). */
  readonly session: string;
  /** A malformed or misdirected mirror message arrived (a protocol error). */
  onMirrorError(listener: (e: ProxyError) => void): void;
  /** Send a control message (CONTROL) on the heartbeat connection. */
  sendControl(type: number, body: Record<string, unknown>): void;
  /** Control messages from the peer (delivered once the heartbeat has started). */
  onControl(listener: (type: number, body: Record<string, unknown>) => void): void;
  /** Close every connection; `goodbye` first tells the peer's heartbeat this is no loss. */
  close(goodbye: boolean): void;
}

/** The primary's end of the three connections. */
export interface PrimaryLinks extends PairLinks {
  readonly replication: SourceLink;
  readonly mirror: PrimaryMirrorEnd;
}

/** The secondary's end. */
export interface SecondaryLinks extends PairLinks {
  readonly replication: TargetLink;
  readonly mirror: SecondaryMirrorEnd;
  /** The primary's capability bits (its replication settings). */
  readonly capabilities: bigint;
}

/** The parts both ends share, and the options their mirror channel is made with. */
interface Built {
  readonly links: PairLinks;
  readonly mirrorOptions: { onError(e: ProxyError): void };
}

function build(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions,
): Built {
  const tapped = new TappedChannel(conns.heartbeat.channel);
  const heartbeat = new Heartbeat(tapped, hb);
  const mirrorErrors: ((e: ProxyError) => void)[] = [];
  let closed = false;
  const links: PairLinks = {
    heartbeat,
    peer: conns.replication.remote,
    session: Buffer.from(conns.replication.local.session).toString("hex"),
    onMirrorError: (l) => mirrorErrors.push(l),
    sendControl(type, body) {
      if (!tapped.closed) tapped.send(type, new TextEncoder().encode(JSON.stringify(body)));
    },
    onControl: (l) => tapped.control.push(l),
    close(goodbye) {
      if (closed) return;
      closed = true;
      if (goodbye && heartbeat.state === "running") heartbeat.stop();
      else conns.heartbeat.channel.destroy();
      conns.replication.channel.destroy();
      conns.mirror.channel.destroy();
    },
  };
  return {
    links,
    mirrorOptions: {
      onError: (e) => {
        for (const l of mirrorErrors) l(e);
      },
    },
  };
}

export function primaryLinksOf(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions = {},
): PrimaryLinks {
  const { links, mirrorOptions } = build(conns, hb);
  const ch = conns.replication.channel;
  return {
    ...links,
    replication: { sink: channelSink(ch), back: channelSource(ch) },
    mirror: primaryMirrorChannel(new MessageChannel(conns.mirror.channel), mirrorOptions),
  };
}

export function secondaryLinksOf(
  conns: Record<"replication" | "mirror" | "heartbeat", Connection>,
  hb: HeartbeatOptions = {},
): SecondaryLinks {
  const { links, mirrorOptions } = build(conns, hb);
  const ch = conns.replication.channel;
  return {
    ...links,
    replication: { source: channelSource(ch), back: channelSink(ch) },
    mirror: secondaryMirrorChannel(new MessageChannel(conns.mirror.channel), mirrorOptions),
    capabilities: conns.replication.peer.capabilities,
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
