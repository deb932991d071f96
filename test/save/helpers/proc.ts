/** Child `colo` processes for the process-level save/migrate tests, and a tiny RESP client. */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "../../..");
export const COLO = join(ROOT, "bin/colo.js");
export const KV = join(ROOT, "guests/kv.wasm");

export class Colo {
  readonly child: ChildProcessWithoutNullStreams;
  out = "";
  err = "";
  readonly finished: Promise<number | null>;
  /** `prefix`: a command that runs the rest, e.g. ["ip", "netns", "exec", NS]. */
  constructor(args: readonly string[], env: NodeJS.ProcessEnv, prefix: readonly string[] = []) {
    const argv = [...prefix, process.execPath, COLO, ...args];
    this.child = spawn(argv[0] as string, argv.slice(1), { cwd: ROOT, stdio: "pipe", env });
    this.child.stdout.setEncoding("utf8").on("data", (s: string) => {
      this.out += s;
    });
    this.child.stderr.setEncoding("utf8").on("data", (s: string) => {
      this.err += s;
    });
    this.finished = new Promise((resolve) => this.child.on("close", (status) => resolve(status)));
  }

  /** Wait for a stderr line matching `re` (bounded); returns the match. */
  async waitFor(re: RegExp, ms = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    let done = false;
    void this.finished.then(() => {
      done = true;
    });
    for (;;) {
      const m = re.exec(this.err);
      if (m !== null) return m;
      if (done || Date.now() > deadline) throw new Error(`no ${re} from colo; stderr:\n${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  kill(): void {
    this.child.kill("SIGTERM");
  }
}

/** Run `colo ARGS` to the end. */
export async function colo(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  prefix: readonly string[] = [],
): Promise<{ status: number | null; out: string; err: string }> {
  const c = new Colo(args, env, prefix);
  const status = await c.finished;
  return { status, out: c.out, err: c.err };
}

/** A minimal RESP client: one command at a time, replies as strings (errors throw). */
export class Resp {
  readonly sock: Socket;
  #buf = "";
  #waiters: (() => void)[] = [];
  #closed = false;
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.setEncoding("utf8");
    sock.on("data", (s: string) => {
      this.#buf += s;
      for (const w of this.#waiters.splice(0)) w();
    });
    const close = (): void => {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w();
    };
    sock.on("close", close);
    sock.on("error", close);
  }

  static open(port: number): Promise<Resp> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port });
      s.once("connect", () => resolve(new Resp(s)));
      s.once("error", reject);
    });
  }

  async command(...args: string[]): Promise<string | null> {
    if (this.#closed) throw new Error("connection closed");
    this.sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`);
    for (;;) {
      const nl = this.#buf.indexOf("\r\n");
      if (nl >= 0) {
        const head = this.#buf.slice(0, nl);
        if (head[0] === "$") {
          const n = Number(head.slice(1));
          if (n < 0) {
            this.#buf = this.#buf.slice(nl + 2);
            return null;
          }
          if (this.#buf.length >= nl + 2 + n + 2) {
            const v = this.#buf.slice(nl + 2, nl + 2 + n);
            this.#buf = this.#buf.slice(nl + 2 + n + 2);
            return v;
          }
        } else {
          this.#buf = this.#buf.slice(nl + 2);
          if (head[0] === "-") throw new Error(head);
          return head.slice(1);
        }
      }
      if (this.#closed) throw new Error("connection closed");
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  close(): void {
    this.sock.destroy();
  }
}
