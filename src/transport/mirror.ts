/**
 * The mirror connection's messages (P -> S: client input; S -> P: the secondary's outputs).
 * Used by the proxy; the transport only encodes, decodes and checks layouts.
 *
 * Every mirror message body starts with the same 24-byte header, then the bytes (if any):
 *
 *   0  u64 checkpoint   the checkpoint sequence number the sender is in (late/replayed = older)
 *   8  u8  stream       0 = connection, 1 = stdout, 2 = stderr (only output may be 1 or 2)
 *   9  u8[3] reserved   zero
 *  12  u32 conn         connection id (0 for stdout/stderr)
 *  16  u64 offset       input or output offset of the first byte (or of the event)
 *  24  bytes            input / output bytes (input and output only; empty otherwise)
 *
 * "end" (S -> P: the secondary's guest exited or trapped) uses the header so: conn = 0 for an
 * exit, 1 for a trap; offset = the exit status (a u32; 0 for a trap); bytes = the trap's message
 * in UTF-8 (at most MIRROR_END_MESSAGE_MAX bytes; empty for an exit).
 *
 * u64 fields are JavaScript numbers here: documented safe below 2^53 (8 PiB of one stream, or
 * 2^53 checkpoints); a larger value on the wire is rejected as malformed.
 */
import { TransportError } from "./errors.ts";
import { MessageType } from "./format.ts";
import type { Message } from "./frame.ts";
import type { MessageChannel } from "./message-channel.ts";

export const MIRROR_HEADER_SIZE = 24;
/** Longest trap message an "end" carries (bytes of UTF-8; longer ones are cut when encoding). */
export const MIRROR_END_MESSAGE_MAX = 1024;

/** Where a mirrored output came from (same shape as the guest port's OutputStream). */
export type MirrorStream =
  | { readonly kind: "conn"; readonly id: number }
  | { readonly kind: "stdout" }
  | { readonly kind: "stderr" };

export type MirrorMessage =
  /** A client connected (P -> S). */
  | { readonly kind: "open"; readonly checkpoint: number; readonly conn: number }
  /** A client input chunk, delivered to the replica as one unit (P -> S). */
  | {
      readonly kind: "input";
      readonly checkpoint: number;
      readonly conn: number;
      readonly offset: number;
      readonly bytes: Uint8Array;
    }
  /** The client closed its sending side after `offset` input bytes (P -> S). */
  | { readonly kind: "eof"; readonly checkpoint: number; readonly conn: number; readonly offset: number }
  /** Bytes the secondary produced (S -> P). */
  | {
      readonly kind: "output";
      readonly checkpoint: number;
      readonly stream: MirrorStream;
      readonly offset: number;
      readonly bytes: Uint8Array;
    }
  /** The secondary's guest shut down its sending side after `offset` output bytes (S -> P). */
  | { readonly kind: "shutdown"; readonly checkpoint: number; readonly conn: number; readonly offset: number }
  /** The secondary's guest closed the connection after `offset` output bytes (S -> P). */
  | { readonly kind: "close"; readonly checkpoint: number; readonly conn: number; readonly offset: number }
  /** The secondary's guest ended: exited with `code`, or trapped with `message` (S -> P). */
  | {
      readonly kind: "end";
      readonly checkpoint: number;
      readonly end:
        | { readonly kind: "exit"; readonly code: number }
        | { readonly kind: "trap"; readonly message: string };
    };

const TYPE_OF = {
  open: MessageType.mirrorOpen,
  input: MessageType.mirrorInput,
  eof: MessageType.mirrorEof,
  output: MessageType.mirrorOutput,
  shutdown: MessageType.mirrorShutdown,
  close: MessageType.mirrorClose,
  end: MessageType.mirrorEnd,
} as const;

const STREAM_CODE = { conn: 0, stdout: 1, stderr: 2 } as const;

export function isMirrorType(type: number): boolean {
  return type >= MessageType.mirrorInput && type <= MessageType.mirrorEnd;
}

function u64(v: DataView, at: number, value: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TransportError(
      "invalid-argument",
      `mirror ${field} ${value} is not a safe non-negative integer`,
    );
  }
  // Two u32 halves: no BigInt per field on the hot path.
  v.setUint32(at, value % 0x1_0000_0000, true);
  v.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** Encode: the message type and the body as a gather list (header, then the bytes uncopied). */
export function encodeMirror(m: MirrorMessage): { type: number; body: Uint8Array[] } {
  const header = new Uint8Array(MIRROR_HEADER_SIZE);
  const v = new DataView(header.buffer);
  u64(v, 0, m.checkpoint, "checkpoint");
  let conn = 0;
  let stream = 0;
  if (m.kind === "end") {
    const trap = m.end.kind === "trap";
    if (!trap && (!Number.isInteger(m.end.code) || m.end.code < 0 || m.end.code > 0xffff_ffff)) {
      throw new TransportError("invalid-argument", `exit status ${m.end.code} is not a u32`);
    }
    v.setUint32(12, trap ? 1 : 0, true);
    u64(v, 16, m.end.kind === "exit" ? m.end.code : 0, "exit status");
    if (m.end.kind === "exit") return { type: TYPE_OF.end, body: [header] };
    let text = new TextEncoder().encode(m.end.message);
    if (text.byteLength > MIRROR_END_MESSAGE_MAX) {
      // Cut at a character boundary (never inside a UTF-8 sequence).
      let n = MIRROR_END_MESSAGE_MAX;
      while (n > 0 && (text[n]! & 0xc0) === 0x80) n--;
      text = text.subarray(0, n);
    }
    return { type: TYPE_OF.end, body: [header, text] };
  }
  if (m.kind === "output") {
    stream = STREAM_CODE[m.stream.kind];
    if (m.stream.kind === "conn") conn = m.stream.id;
  } else {
    conn = m.conn;
  }
  if (!Number.isInteger(conn) || conn < 0 || conn > 0xffff_ffff) {
    throw new TransportError("invalid-argument", `connection id ${conn} is not a u32`);
  }
  v.setUint8(8, stream);
  v.setUint32(12, conn, true);
  u64(v, 16, m.kind === "open" ? 0 : m.offset, "offset");
  const body = m.kind === "input" || m.kind === "output" ? [header, m.bytes] : [header];
  return { type: TYPE_OF[m.kind], body };
}

/** Send one mirror message; the channel's backpressure contract applies (false: wait for drain). */
export function sendMirror(channel: MessageChannel, m: MirrorMessage): boolean {
  const { type, body } = encodeMirror(m);
  return channel.send(type, body);
}

function malformed(reason: string, type: number, details: Record<string, unknown> = {}): TransportError {
  return new TransportError(
    "message-malformed",
    `mirror message 0x${type.toString(16).padStart(4, "0")}: ${reason}`,
    {
      details: { type, ...details },
    },
  );
}

function safe(v: DataView, at: number, field: string, type: number): number {
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  if (hi > 0x1f_ffff) {
    const big = v.getBigUint64(at, true);
    throw malformed(`${field} ${big} above 2^53`, type, { field });
  }
  return hi * 0x1_0000_0000 + lo;
}

/** Decode a mirror message; throws "message-malformed" for an unknown type or a bad layout. */
export function decodeMirror(msg: Message): MirrorMessage {
  const { type, body } = msg;
  if (!isMirrorType(type)) throw malformed("not a mirror message type", type);
  if (body.byteLength < MIRROR_HEADER_SIZE) {
    throw malformed(
      `body of ${body.byteLength} bytes is shorter than the ${MIRROR_HEADER_SIZE}-byte header`,
      type,
    );
  }
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const checkpoint = safe(v, 0, "checkpoint", type);
  const streamCode = v.getUint8(8);
  if (v.getUint8(9) !== 0 || v.getUint8(10) !== 0 || v.getUint8(11) !== 0)
    throw malformed("reserved bytes not zero", type);
  const conn = v.getUint32(12, true);
  const offset = safe(v, 16, "offset", type);
  const bytes = body.subarray(MIRROR_HEADER_SIZE);
  if (type !== MessageType.mirrorOutput && streamCode !== 0)
    throw malformed(`stream ${streamCode} on a connection event`, type);
  if (
    type !== MessageType.mirrorInput &&
    type !== MessageType.mirrorOutput &&
    type !== MessageType.mirrorEnd &&
    bytes.byteLength !== 0
  ) {
    throw malformed(`${bytes.byteLength} trailing bytes`, type);
  }
  switch (type) {
    case MessageType.mirrorOpen:
      if (offset !== 0) throw malformed("open with a non-zero offset", type);
      return { kind: "open", checkpoint, conn };
    case MessageType.mirrorInput:
      return { kind: "input", checkpoint, conn, offset, bytes };
    case MessageType.mirrorEof:
      return { kind: "eof", checkpoint, conn, offset };
    case MessageType.mirrorShutdown:
      return { kind: "shutdown", checkpoint, conn, offset };
    case MessageType.mirrorClose:
      return { kind: "close", checkpoint, conn, offset };
    case MessageType.mirrorEnd: {
      if (conn > 1) throw malformed(`end kind ${conn} (0 = exit, 1 = trap)`, type);
      if (conn === 0) {
        if (bytes.byteLength !== 0) throw malformed(`${bytes.byteLength} trailing bytes on an exit`, type);
        if (offset > 0xffff_ffff) throw malformed(`exit status ${offset} is not a u32`, type);
        return { kind: "end", checkpoint, end: { kind: "exit", code: offset } };
      }
      if (offset !== 0) throw malformed("trap with a non-zero status", type);
      if (bytes.byteLength > MIRROR_END_MESSAGE_MAX)
        throw malformed(`trap message of ${bytes.byteLength} bytes`, type);
      let message: string;
      try {
        message = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        throw malformed("trap message is not UTF-8", type);
      }
      return { kind: "end", checkpoint, end: { kind: "trap", message } };
    }
    default: {
      let stream: MirrorStream;
      if (streamCode === 0) stream = { kind: "conn", id: conn };
      else if (streamCode === 1 || streamCode === 2) {
        if (conn !== 0) throw malformed("stdout/stderr output with a connection id", type);
        stream = { kind: streamCode === 1 ? "stdout" : "stderr" };
      } else throw malformed(`unknown stream ${streamCode}`, type);
      return { kind: "output", checkpoint, stream, offset, bytes };
    }
  }
}
