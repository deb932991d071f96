/**
 * The control socket of one running guest (`colo run --name NAME`, `colo restore`, `colo receive`):
 * ops `info`, `save` and `migrate`, served by the process that owns the domain.
 *
 * While a save or a migration runs, the guest is "held": the process's run loop must not resume
 * it when it sees it suspended (`held`), and waits for `idle()` instead. When the op succeeds the
 * guest has left this process (`handedOff`): the domain is destroyed and the process should exit
 * with status 0. When it fails, the guest runs on here.
 */
import type { Domain } from "../guest/domain.ts";
import { channelSink, channelSource } from "./channel.ts";
import { ControlError, type ControlServer, startControlServer } from "./control.ts";
import { writeFileAtomically } from "./files.ts";
import { migrate } from "./migrate.ts";
import { type SaveProgress, type SaveReport, saveDomain } from "./save.ts";

export interface GuestControlOptions {
  readonly name: string;
  readonly domain: Domain;
  /** Shown by `colo list`. */
  readonly service?: string | undefined;
  readonly module?: string | undefined;
  /** Called before the guest stops for good (close the service plug: clients reconnect elsewhere). */
  readonly beforeHandOff?: () => Promise<void> | void;
  /** Called when the op failed after beforeHandOff (re-open the service). */
  readonly afterFailure?: () => Promise<void> | void;
}

export interface GuestControl {
  readonly server: ControlServer;
  /** A save or migration is in progress: do not resume the guest. */
  readonly held: boolean;
  /** Resolves when no op is in progress. */
  idle(): Promise<void>;
  /** What happened to the guest, once it left this process. */
  readonly handedOff: string | undefined;
  close(): Promise<void>;
}

function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]*)\]?:(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1] || "127.0.0.1", port } : undefined;
}

function progressRecord(p: SaveProgress): Record<string, unknown> {
  return { ...p };
}

export async function startGuestControl(opts: GuestControlOptions): Promise<GuestControl> {
  const { domain } = opts;
  const started = Date.now();
  let busy: Promise<unknown> | undefined;
  let handedOff: string | undefined;

  const exclusive = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    if (busy !== undefined) throw new ControlError("busy", `the guest is busy (${what} refused)`);
    if (domain.state !== "running") throw new ControlError("bad-state", `the guest is ${domain.state}`);
    const p = f();
    busy = p;
    try {
      return await p;
    } finally {
      busy = undefined;
    }
  };

  const server = await startControlServer(opts.name, {
    info: async () => ({
      name: opts.name,
      pid: process.pid,
      state: busy !== undefined ? "busy" : domain.state,
      pages: domain.state === "destroyed" ? 0 : domain.pageCount(),
      module: opts.module,
      service: opts.service,
      uptimeS: Math.round((Date.now() - started) / 1000),
    }),
    save: (args, progress) =>
      exclusive("save", async (): Promise<SaveReport & { path: string }> => {
        const path = typeof args.path === "string" ? args.path : undefined;
        if (path === undefined) throw new ControlError("usage", "save: missing path");
        let report: SaveReport;
        try {
          report = await writeFileAtomically(path, args.force === true, (sink) =>
            saveDomain(domain, sink, { onProgress: (p) => progress(progressRecord(p)) }),
          );
        } catch (e) {
          if (domain.state === "suspended") await domain.resume();
          throw e;
        }
        handedOff = `saved to ${path}`;
        await opts.beforeHandOff?.();
        await domain.destroy();
        return { ...report, path };
      }),
    migrate: (args, progress) =>
      exclusive("migrate", async (): Promise<SaveReport & { to: string }> => {
        const to = typeof args.to === "string" ? parseHostPort(args.to) : undefined;
        if (to === undefined) throw new ControlError("usage", "migrate: destination is not HOST:PORT");
        const { dial } = await import("../transport/connect.ts");
        const { securityFromOptions } = await import("../transport/security.ts");
        const { newSessionId } = await import("../transport/hello.ts");
        const security = securityFromOptions({
          pskFile: typeof args.pskFile === "string" ? args.pskFile : undefined,
          insecure: args.insecure === true,
        });
        const conn = await dial({
          host: to.host,
          port: to.port,
          security,
          hello: { role: "source", kind: "migration", session: newSessionId() },
        });
        const link = { sink: channelSink(conn.channel), back: channelSource(conn.channel) };
        let report: SaveReport;
        try {
          report = await migrate(domain, link, {
            live: {
              downtimeTargetMs: typeof args.downtimeMs === "number" ? args.downtimeMs : 20,
              maxRounds: typeof args.maxRounds === "number" ? args.maxRounds : 30,
            },
            onProgress: (p) => progress(progressRecord(p)),
          });
        } catch (e) {
          conn.channel.destroy();
          throw e;
        }
        handedOff = `migrated to ${args.to}`;
        await opts.beforeHandOff?.();
        conn.channel.end();
        return { ...report, to: String(args.to) };
      }),
  });

  return {
    server,
    get held() {
      return busy !== undefined;
    },
    async idle() {
      while (busy !== undefined) await busy.catch(() => {});
    },
    get handedOff() {
      return handedOff;
    },
    close: () => server.close(),
  };
}
