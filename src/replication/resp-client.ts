/**
 * A small RESP (Redis protocol) client for the demo, the tests and the benchmark: one TCP
 * connection, one request at a time, replies parsed incrementally (simple strings, errors,
 * integers, bulk strings, arrays). Not a general Redis client.
 */
import net from "node:net";

export type RespValue = string | number | null | RespError | RespValue[];

export class RespError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

/** Encode one command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly string[]): Buffer {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return Buffer.from(s);
}

/** Parse one value at `at`; undefined when the buffer does not hold all of it yet. */
export function parseReply(buf: Buffer, at = 0): { value: RespValue; end: number } | undefined {
  const nl = buf.indexOf("\r\n", at);
  if (nl < 0) return undefined;
  const type = String.fromCharCode(buf[at]!);
  const line = buf.toString("utf8", at + 1, nl);
  const next = nl + 2;
  switch (type) {
    case "+":
      return { value: line, end: next };
    case "-":
      return { value: new RespError(line), end: next };
    case ":":
      return { value: Number(line), end: next };
    case "$": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return undefined;
      return { value: buf.toString("utf8", next, next + n), end: next + n + 2 };
    }
    case "*": {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, p);
        if (r === undefined) return undefined;
        items.push(r.value);
        p = r.end;
      }
      return { value: items, end: p };
    }
    default:
      throw new Error(`not a RESP reply: type byte ${JSON.stringify(type)}`);
  }
}

export class RespClient {
  readonly socket: net.Socket;
  #buf: Buffer = Buffer.alloc(0);
  #waiters: { resolve(v: RespValue): void; reject(e: Error): void }[] = [];
  #closed: Error | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on("data", (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      for (;;) {
        const w = this.#waiters[0];
        if (w === undefined) break;
        let r: ReturnType<typeof parseReply>;
        try {
          r = parseReply(this.#buf);
        } catch (e) {
          this.#fail(e as Error);
          return;
        }
        if (r === undefined) break;
        this.#buf = this.#buf.subarray(r.end);
        this.#waiters.shift();
        w.resolve(r.value);
      }
    });
    socket.on("error", (e) => this.#fail(e));
    socket.on("close", () => this.#fail(new Error("connection closed")));
  }

  static connect(port: number, host = "127.0.0.1"): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.once("connect", () => {
        s.off("error", reject);
        resolve(new RespClient(s));
      });
      s.once("error", reject);
    });
  }

  #fail(e: Error): void {
    this.#closed ??= e;
    for (const w of this.#waiters.splice(0)) w.reject(e);
  }

  /** Send one command and wait for its reply. */
  command(...args: string[]): Promise<RespValue> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.socket.write(encodeCommand(args));
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}
