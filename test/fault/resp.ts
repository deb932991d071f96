/**
 * A small RESP2 client for the fault tests: encode a command, parse replies incrementally, and
 * one connection that sends one command at a time and tells apart the three outcomes the history
 * checker needs:
 * - "reply": a complete reply arrived (an error reply included: the server answered);
 * - "unsent": the command never left this process (connect failed, socket already closed): it
 *   cannot have taken effect;
 * - "no-reply": the command was written and no complete reply came (reset, timeout): it may or
 *   may not have taken effect (indeterminate).
 * Every wait is bounded by a timeout. Test-only code: no production path imports it.
 */
import net from "node:net";

export type RespValue =
  | { readonly type: "simple"; readonly value: string }
  | { readonly type: "error"; readonly value: string }
  | { readonly type: "integer"; readonly value: number }
  | { readonly type: "bulk"; readonly value: string | null }
  | { readonly type: "array"; readonly value: readonly RespValue[] | null };

/** A RESP multibulk request. */
export function encodeCommand(args: readonly string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) parts.push(`$${Buffer.byteLength(a)}\r\n${a}\r\n`);
  return Buffer.from(parts.join(""));
}

/** Thrown by the parser on bytes that are not RESP2. */
export class RespProtocolError extends Error {
  override readonly name = "RespProtocolError";
  readonly code = "resp-protocol";
}

/** Largest reply the parser accepts (bytes of one bulk string). */
const MAX_BULK = 16 << 20;

/**
 * Parse one reply at `offset`; undefined when the bytes end before it does. Pure.
 * Returns the value and the offset just past it.
 */
export function parseReply(buf: Buffer, offset = 0): { value: RespValue; end: number } | undefined {
  const lineEnd = buf.indexOf("\r\n", offset);
  if (lineEnd < 0) return undefined;
  const kind = String.fromCharCode(buf[offset]!);
  const line = buf.toString("utf8", offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (kind) {
    case "+":
      return { value: { type: "simple", value: line }, end: next };
    case "-":
      return { value: { type: "error", value: line }, end: next };
    case ":": {
      const n = Number(line);
      if (!/^-?\d+$/.test(line)) throw new RespProtocolError(`bad integer reply '${line}'`);
      return { value: { type: "integer", value: n }, end: next };
    }
    case "$": {
      if (!/^-?\d+$/.test(line)) throw new RespProtocolError(`bad bulk length '${line}'`);
      const n = Number(line);
      if (n === -1) return { value: { type: "bulk", value: null }, end: next };
      if (n < 0 || n > MAX_BULK) throw new RespProtocolError(`bulk length ${n} out of range`);
      if (buf.length < next + n + 2) return undefined;
      if (buf[next + n] !== 0x0d || buf[next + n + 1] !== 0x0a) {
        throw new RespProtocolError("bulk string not followed by CRLF");
      }
      return { value: { type: "bulk", value: buf.toString("utf8", next, next + n) }, end: next + n + 2 };
    }
    case "*": {
      if (!/^-?\d+$/.test(line)) throw new RespProtocolError(`bad array length '${line}'`);
      const n = Number(line);
      if (n === -1) return { value: { type: "array", value: null }, end: next };
      if (n < 0 || n > 1 << 20) throw new RespProtocolError(`array length ${n} out of range`);
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: { type: "array", value: items }, end: at };
    }
    default:
      throw new RespProtocolError(`unknown reply type byte 0x${(buf[offset] ?? 0).toString(16)}`);
  }
}

export type CommandOutcome =
  | { readonly kind: "reply"; readonly reply: RespValue }
  | { readonly kind: "unsent"; readonly why: string }
  | { readonly kind: "no-reply"; readonly why: string };

/** One client connection; commands strictly one at a time. */
export class RespConnection {
  readonly #sock: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #closed = false;
  #closeWhy = "";
  #waiter: (() => void) | undefined;

  private constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on("data", (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#waiter?.();
    });
    const onGone = (why: string) => {
      if (!this.#closed) {
        this.#closed = true;
        this.#closeWhy = why;
      }
      this.#waiter?.();
    };
    sock.on("error", (e) => onGone((e as NodeJS.ErrnoException).code ?? e.message));
    sock.on("end", () => onGone("eof"));
    sock.on("close", () => onGone("closed"));
  }

  /** Connect within `timeoutMs`; rejects on failure (nothing was sent). */
  static connect(host: string, port: number, timeoutMs = 2000): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port, noDelay: true });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect ${host}:${port} timed out`));
      }, timeoutMs);
      sock.once("error", (e) => {
        clearTimeout(timer);
        sock.destroy();
        reject(e);
      });
      sock.once("connect", () => {
        clearTimeout(timer);
        sock.removeAllListeners("error");
        resolve(new RespConnection(sock));
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Send one command and wait (at most `timeoutMs`) for its reply. Never throws. */
  async command(args: readonly string[], timeoutMs = 5000): Promise<CommandOutcome> {
    if (this.#closed) return { kind: "unsent", why: `connection already closed (${this.#closeWhy})` };
    this.#sock.write(encodeCommand(args));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let parsed: ReturnType<typeof parseReply>;
      try {
        parsed = parseReply(this.#buf);
      } catch (e) {
        this.close();
        return { kind: "no-reply", why: (e as Error).message };
      }
      if (parsed !== undefined) {
        this.#buf = this.#buf.subarray(parsed.end);
        return { kind: "reply", reply: parsed.value };
      }
      if (this.#closed) return { kind: "no-reply", why: this.#closeWhy };
      const left = deadline - Date.now();
      if (left <= 0) {
        this.close();
        return { kind: "no-reply", why: "timeout" };
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
  }

  close(): void {
    this.#closed = true;
    this.#closeWhy ||= "closed locally";
    this.#sock.destroy();
  }
}

/** PING until PONG or `timeoutMs` passes; true on PONG. Each attempt a fresh connection. */
export async function waitForPong(
  host: string,
  port: number,
  timeoutMs: number,
  stepMs = 5,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const c = await RespConnection.connect(host, port, Math.max(1, Math.min(500, deadline - Date.now())));
      const r = await c.command(["PING"], Math.max(1, Math.min(1000, deadline - Date.now())));
      c.close();
      if (r.kind === "reply" && r.reply.type === "simple" && r.reply.value === "PONG") return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return false;
}
