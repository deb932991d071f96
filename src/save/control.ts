/**
 * The local control socket of a running guest, as xl controls domains: `colo run --name NAME`
 * (and `colo restore`, `colo receive`) listen on a Unix socket NAME.sock in a per-user directory,
 * and `colo list | save | migrate` talk to it.
 *
 * Directory: `$XDG_RUNTIME_DIR/colo/` if XDG_RUNTIME_DIR is set, else `/tmp/colo-$UID/`; created
 * with mode 0700 (only the owner may connect: the socket can stop and export the guest).
 *
 * Protocol: JSON lines, UTF-8. The client sends one request `{"id":N,"op":"info"|"save"|"migrate",
 * "args":{…}}`; the server answers with zero or more `{"id":N,"progress":{…}}` lines and then one
 * `{"id":N,"ok":true,"result":{…}}` or `{"id":N,"ok":false,"error":{"code":"…","message":"…"}}`.
 * A request line longer than 64 KiB closes the connection.
 */
import { mkdirSync, readdirSync, statSync, unlinkSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";

export const CONTROL_LINE_MAX = 64 * 1024;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class ControlError extends Error {
  override readonly name = "ControlError";
  /** "bad-name" | "exists" | "not-found" | "io" | "protocol" | a remote error's own code. */
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export function validName(name: string): boolean {
  return NAME_RE.test(name);
}

/** The per-user control directory (created 0700 when `create`). */
export function controlDir(create = false): string {
  const xdg = process.env.XDG_RUNTIME_DIR;
  const dir =
    xdg !== undefined && xdg !== "" ? join(xdg, "colo") : join("/tmp", `colo-${process.getuid?.() ?? 0}`);
  if (create) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (process.getuid !== undefined && st.uid !== process.getuid()) {
      throw new ControlError("io", `control directory ${dir} belongs to uid ${st.uid}, not to us`);
    }
  }
  return dir;
}

export function controlPath(name: string): string {
  if (!validName(name))
    throw new ControlError("bad-name", `bad guest name '${name}' (letters, digits, . _ -)`);
  return join(controlDir(), `${name}.sock`);
}

export type ProgressSink = (progress: Record<string, unknown>) => void;
export type ControlHandler = (args: Record<string, unknown>, progress: ProgressSink) => Promise<unknown>;

export interface ControlServer {
  readonly name: string;
  readonly path: string;
  close(): Promise<void>;
}

/** Is something answering on this socket path? */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Listen on NAME.sock. Refuses ("exists") when a live guest already has that name; a stale
 * socket left by a dead process is removed. Each op's handler runs at most once at a time per op.
 */
export async function startControlServer(
  name: string,
  handlers: Readonly<Record<string, ControlHandler>>,
): Promise<ControlServer> {
  controlDir(true);
  const path = controlPath(name);
  if (await alive(path))
    throw new ControlError("exists", `a guest named '${name}' is already running (${path})`);
  try {
    unlinkSync(path);
  } catch {}
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    serveConnection(sock, handlers);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.unref();
  let closed = false;
  return {
    name,
    path,
    close: async () => {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.end();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      try {
        unlinkSync(path);
      } catch {}
    },
  };
}

function serveConnection(sock: Socket, handlers: Readonly<Record<string, ControlHandler>>): void {
  let buf = "";
  sock.setEncoding("utf8");
  const send = (obj: unknown): void => {
    if (!sock.destroyed) sock.write(`${JSON.stringify(obj)}\n`);
  };
  sock.on("data", (chunk: string) => {
    buf += chunk;
    if (buf.length > CONTROL_LINE_MAX && !buf.includes("\n")) {
      sock.destroy();
      return;
    }
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
      void handleLine(line, handlers, send);
    }
  });
}

async function handleLine(
  line: string,
  handlers: Readonly<Record<string, ControlHandler>>,
  send: (obj: unknown) => void,
): Promise<void> {
  let req: { id?: unknown; op?: unknown; args?: unknown };
  try {
    req = JSON.parse(line);
  } catch {
    send({ id: null, ok: false, error: { code: "protocol", message: "request is not JSON" } });
    return;
  }
  // JSON but not an object (null, a number, an array): reading its fields would throw out of
  // this un-awaited handler and take the process down.
  if (typeof req !== "object" || req === null || Array.isArray(req)) {
    send({ id: null, ok: false, error: { code: "protocol", message: "request is not a JSON object" } });
    return;
  }
  const id = typeof req.id === "number" ? req.id : null;
  const handler =
    typeof req.op === "string" && Object.hasOwn(handlers, req.op) ? handlers[req.op] : undefined;
  if (handler === undefined) {
    send({ id, ok: false, error: { code: "protocol", message: `unknown op ${JSON.stringify(req.op)}` } });
    return;
  }
  const args = typeof req.args === "object" && req.args !== null ? (req.args as Record<string, unknown>) : {};
  try {
    const result = await handler(args, (progress) => send({ id, progress }));
    send({ id, ok: true, result: result ?? null });
  } catch (e) {
    const code =
      typeof (e as { code?: unknown } | null)?.code === "string" ? (e as { code: string }).code : "error";
    send({ id, ok: false, error: { code, message: e instanceof Error ? e.message : String(e) } });
  }
}

/** Send one request to guest NAME and wait for its answer; progress lines go to `onProgress`. */
export function controlRequest(
  name: string,
  op: string,
  args: Record<string, unknown> = {},
  onProgress?: ProgressSink,
): Promise<unknown> {
  const path = controlPath(name);
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = "";
    let done = false;
    const finish = (err: Error | undefined, value?: unknown): void => {
      if (done) return;
      done = true;
      sock.destroy();
      if (err !== undefined) reject(err);
      else resolve(value);
    };
    sock.setEncoding("utf8");
    sock.once("connect", () => sock.write(`${JSON.stringify({ id: 1, op, args })}\n`));
    sock.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT" || e.code === "ECONNREFUSED") {
        finish(new ControlError("not-found", `no running guest named '${name}'`, { cause: e }));
      } else finish(new ControlError("io", `control socket ${path}: ${e.message}`, { cause: e }));
    });
    sock.on("close", () => finish(new ControlError("io", `guest '${name}' closed the control connection`)));
    sock.on("data", (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
        let msg: {
          progress?: Record<string, unknown>;
          ok?: boolean;
          result?: unknown;
          error?: { code?: string; message?: string };
        };
        try {
          msg = JSON.parse(line);
        } catch {
          finish(new ControlError("protocol", "control answer is not JSON"));
          return;
        }
        if (msg.progress !== undefined) onProgress?.(msg.progress);
        else if (msg.ok === true) finish(undefined, msg.result);
        else finish(new ControlError(msg.error?.code ?? "error", msg.error?.message ?? "request failed"));
      }
    });
  });
}

/** Names of guests with a socket in the control directory that answers; stale sockets are removed. */
export async function listGuestNames(): Promise<string[]> {
  let entries: string[];
  try {
    entries = readdirSync(controlDir());
  } catch {
    return [];
  }
  const names: string[] = [];
  for (const e of entries.sort()) {
    if (!e.endsWith(".sock")) continue;
    const name = e.slice(0, -5);
    if (!validName(name)) continue;
    const path = join(controlDir(), e);
    if (await alive(path)) names.push(name);
    else {
      try {
        unlinkSync(path);
      } catch {}
    }
  }
  return names;
}
