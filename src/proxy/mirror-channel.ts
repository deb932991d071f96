/**
 * The mirror link over a transport MessageChannel: adapts the transport's mirror codec
 * (src/transport/mirror.ts: "input"/"output" messages, `checkpoint` numbers) to the proxy's
 * MirrorEnd (link.ts). Backpressure passes straight through: `send()` is the channel's send
 * (false: wait for "drain"), `onDrain` is its "drain" event.
 *
 * Receive side: a message that does not decode, or that travels the wrong way (output toward the
 * secondary, input toward the primary), is never delivered; it goes to `onError` (default:
 * destroy the channel with that error), since a malformed mirror message is a protocol error.
 */
import type { TransportError } from "../transport/errors.ts";
import type { MessageChannel } from "../transport/message-channel.ts";
import { decodeMirror, isMirrorType, type MirrorMessage, sendMirror } from "../transport/mirror.ts";
import { ProxyError } from "./errors.ts";
import type { MirrorEnd, MirrorInput, MirrorOutput, PrimaryMirrorEnd, SecondaryMirrorEnd } from "./link.ts";

export interface MirrorChannelOptions {
  /** A malformed or misdirected message; default: destroy the channel. */
  readonly onError?: (error: ProxyError) => void;
}

function toWire(m: MirrorInput | MirrorOutput): MirrorMessage {
  switch (m.kind) {
    case "open":
      return { kind: "open", checkpoint: m.seq, conn: m.conn };
    case "eof":
      return { kind: "eof", checkpoint: m.seq, conn: m.conn, offset: m.offset };
    case "shutdown":
    case "close":
      return { kind: m.kind, checkpoint: m.seq, conn: m.conn, offset: m.offset };
    case "end":
      return { kind: "end", checkpoint: m.seq, end: m.end };
    case "data":
      return "conn" in m
        ? { kind: "input", checkpoint: m.seq, conn: m.conn, offset: m.offset, bytes: m.bytes }
        : { kind: "output", checkpoint: m.seq, stream: m.stream, offset: m.offset, bytes: m.bytes };
  }
}

/** Wire message → proxy message for the given direction, or undefined when it goes the wrong way. */
function fromWire(w: MirrorMessage, toward: "primary" | "secondary"): MirrorInput | MirrorOutput | undefined {
  if (toward === "secondary") {
    switch (w.kind) {
      case "open":
        return { kind: "open", seq: w.checkpoint, conn: w.conn };
      case "input":
        return { kind: "data", seq: w.checkpoint, conn: w.conn, offset: w.offset, bytes: w.bytes };
      case "eof":
        return { kind: "eof", seq: w.checkpoint, conn: w.conn, offset: w.offset };
      default:
        return undefined;
    }
  }
  switch (w.kind) {
    case "output":
      return { kind: "data", seq: w.checkpoint, stream: w.stream, offset: w.offset, bytes: w.bytes };
    case "shutdown":
    case "close":
      return { kind: w.kind, seq: w.checkpoint, conn: w.conn, offset: w.offset };
    case "end":
      return { kind: "end", seq: w.checkpoint, end: w.end };
    default:
      return undefined;
  }
}

function end<Out extends MirrorInput | MirrorOutput, In extends MirrorInput | MirrorOutput>(
  channel: MessageChannel,
  toward: "primary" | "secondary",
  options: MirrorChannelOptions,
): MirrorEnd<Out, In> {
  const listeners = new Set<(m: In) => void>();
  // Many small messages per event-loop turn (one per client chunk or SVM output): one write.
  channel.batch();
  const fail = options.onError ?? ((e: ProxyError) => channel.destroy(e.cause as TransportError | undefined));
  channel.onMessage((raw) => {
    if (!isMirrorType(raw.type)) {
      fail(new ProxyError("protocol", `message type 0x${raw.type.toString(16)} on the mirror link`));
      return;
    }
    let wire: MirrorMessage;
    try {
      wire = decodeMirror(raw);
    } catch (cause) {
      fail(new ProxyError("protocol", "malformed mirror message", { cause }));
      return;
    }
    const m = fromWire(wire, toward);
    if (m === undefined) {
      fail(
        new ProxyError("protocol", `mirror ${wire.kind} message toward the ${toward}`, {
          details: { kind: wire.kind },
        }),
      );
      return;
    }
    for (const l of listeners) l(m as In);
  });
  return {
    send: (m: Out) => sendMirror(channel, toWire(m)),
    onMessage: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    onDrain: (l) => {
      channel.on("drain", l);
      return () => channel.off("drain", l);
    },
  };
}

/** The primary's end of the mirror over `channel` (it sends input, receives the SVM's output). */
export function primaryMirrorChannel(
  channel: MessageChannel,
  options: MirrorChannelOptions = {},
): PrimaryMirrorEnd {
  return end<MirrorInput, MirrorOutput>(channel, "primary", options);
}

/** The secondary's end of the mirror over `channel`. */
export function secondaryMirrorChannel(
  channel: MessageChannel,
  options: MirrorChannelOptions = {},
): SecondaryMirrorEnd {
  return end<MirrorOutput, MirrorInput>(channel, "secondary", options);
}
