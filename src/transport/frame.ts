/**
 * Message frames: the I/O-free codec. A frame is an 8-byte header (u32 body length, u16 type,
 * u16 reserved = 0, little-endian) followed by the body. The decoder is a push state machine:
 * give it bytes in any split, get whole messages; the length is checked against the cap before
 * a byte of the body is buffered, and every error names the stream offset of the frame header.
 */
import { TransportError } from "./errors.ts";
import { ABSOLUTE_MAX_MESSAGE, DEFAULT_MAX_MESSAGE, FRAME_HEADER_SIZE } from "./format.ts";

export interface Message {
  readonly type: number;
  /** Owned by the receiver. May be a view into a larger buffer (no copy when a frame arrives whole). */
  readonly body: Uint8Array;
}

/** The 8-byte frame header for a body of `length` bytes. */
export function encodeFrameHeader(type: number, length: number): Uint8Array {
  const h = new Uint8Array(FRAME_HEADER_SIZE);
  writeFrameHeader(h, 0, type, length);
  return h;
}

/** Write the 8-byte frame header for a body of `length` bytes into `target` at `at` (no allocation). */
export function writeFrameHeader(target: Uint8Array, at: number, type: number, length: number): void {
  if (!Number.isInteger(type) || type <= 0 || type > 0xffff) {
    throw new TransportError("invalid-argument", `message type ${type} outside 1..0xffff`);
  }
  if (!Number.isInteger(length) || length < 0 || length > ABSOLUTE_MAX_MESSAGE) {
    throw new TransportError(
      "invalid-argument",
      `message length ${length} outside 0..${ABSOLUTE_MAX_MESSAGE}`,
    );
  }
  target[at] = length & 0xff;
  target[at + 1] = (length >>> 8) & 0xff;
  target[at + 2] = (length >>> 16) & 0xff;
  target[at + 3] = length >>> 24;
  target[at + 4] = type & 0xff;
  target[at + 5] = type >>> 8;
  target[at + 6] = 0;
  target[at + 7] = 0;
}

/** Header plus body parts as a gather list (no concatenation). */
export function encodeFrame(type: number, body: Uint8Array | readonly Uint8Array[]): Uint8Array[] {
  const parts = body instanceof Uint8Array ? [body] : [...body];
  let length = 0;
  for (const p of parts) length += p.byteLength;
  return [encodeFrameHeader(type, length), ...parts];
}

export interface DecoderOptions {
  /** Largest body accepted (bytes); default DEFAULT_MAX_MESSAGE, at most ABSOLUTE_MAX_MESSAGE. */
  maxMessage?: number;
}

export class FrameDecoder {
  readonly maxMessage: number;
  /** Stream offset of the next byte to be pushed. */
  #offset = 0;
  /** Stream offset of the frame being assembled. */
  #frameStart = 0;
  #header = new Uint8Array(FRAME_HEADER_SIZE);
  #headerView = new DataView(this.#header.buffer);
  #headerHave = 0;
  #type = 0;
  #body: Uint8Array | undefined;
  #bodyHave = 0;
  #failed: TransportError | undefined;

  constructor(options: DecoderOptions = {}) {
    this.maxMessage = options.maxMessage ?? DEFAULT_MAX_MESSAGE;
    if (!(this.maxMessage >= 0 && this.maxMessage <= ABSOLUTE_MAX_MESSAGE)) {
      throw new TransportError("invalid-argument", `maxMessage must be 0..${ABSOLUTE_MAX_MESSAGE}`);
    }
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#offset;
  }

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.#headerHave === 0 && this.#body === undefined;
  }

  /** Bytes buffered in a partial frame (bounded by header + maxMessage). */
  get buffered(): number {
    return this.#headerHave + this.#bodyHave;
  }

  /**
   * Feed bytes; returns the messages completed by them, in order. After an error the decoder
   * stays failed (every later push throws the same error).
   */
  push(chunk: Uint8Array): Message[] {
    if (this.#failed !== undefined) throw this.#failed;
    const out: Message[] = [];
    let i = 0;
    const n = chunk.byteLength;
    while (i < n) {
      if (this.#body === undefined) {
        // Fast path: a whole header and body inside this chunk: hand out a view, no copy.
        if (this.#headerHave === 0 && n - i >= FRAME_HEADER_SIZE) {
          // Read the header byte by byte (no DataView per frame).
          const type = chunk[i + 4]! | (chunk[i + 5]! << 8);
          const length = this.#check(
            (chunk[i]! | (chunk[i + 1]! << 8) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 24)) >>> 0,
            type,
            chunk[i + 6]! | (chunk[i + 7]! << 8),
          );
          if (n - i - FRAME_HEADER_SIZE >= length) {
            const start = i + FRAME_HEADER_SIZE;
            out.push({ type, body: chunk.subarray(start, start + length) });
            i = start + length;
            this.#offset += FRAME_HEADER_SIZE + length;
            this.#frameStart = this.#offset;
            continue;
          }
        }
        const take = Math.min(FRAME_HEADER_SIZE - this.#headerHave, n - i);
        this.#header.set(chunk.subarray(i, i + take), this.#headerHave);
        this.#headerHave += take;
        i += take;
        this.#offset += take;
        if (this.#headerHave < FRAME_HEADER_SIZE) break;
        const v = this.#headerView;
        this.#type = v.getUint16(4, true);
        const length = this.#check(v.getUint32(0, true), this.#type, v.getUint16(6, true));
        this.#body = new Uint8Array(length); // bounded by #check
        this.#bodyHave = 0;
      }
      const body = this.#body;
      const take = Math.min(body.byteLength - this.#bodyHave, n - i);
      body.set(chunk.subarray(i, i + take), this.#bodyHave);
      this.#bodyHave += take;
      i += take;
      this.#offset += take;
      if (this.#bodyHave === body.byteLength) {
        out.push({ type: this.#type, body });
        this.#body = undefined;
        this.#headerHave = 0;
        this.#bodyHave = 0;
        this.#frameStart = this.#offset;
      }
    }
    return out;
  }

  /** The input ended: throws "frame-truncated" if a frame is incomplete. */
  end(): void {
    if (this.#failed !== undefined) throw this.#failed;
    if (!this.idle) {
      this.#failed = new TransportError("frame-truncated", "input ended inside a frame", {
        offset: this.#frameStart,
        details: {
          headerHave: this.#headerHave,
          bodyHave: this.#bodyHave,
          bodyLength: this.#body?.byteLength,
        },
      });
      throw this.#failed;
    }
  }

  #check(length: number, type: number, reserved: number): number {
    if (length > this.maxMessage) {
      this.#failed = new TransportError(
        "frame-too-large",
        `message of ${length} bytes exceeds cap ${this.maxMessage}`,
        {
          offset: this.#frameStart,
          details: { length, max: this.maxMessage, type },
        },
      );
      throw this.#failed;
    }
    if (type === 0 || reserved !== 0) {
      this.#failed = new TransportError(
        "frame-malformed",
        type === 0 ? "message type 0" : "reserved field not zero",
        {
          offset: this.#frameStart,
          details: { type, reserved },
        },
      );
      throw this.#failed;
    }
    return length;
  }
}
