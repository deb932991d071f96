/**
 * The fault scenarios, shared by the short tests (test/fault/*.test.ts), the long campaign
 * (scripts/fault-campaign.ts) and the failover benchmark (bench/failover.bench.ts). Each run
 * starts a real `colo secondary` and `colo primary` with the kv guest on loopback, drives the
 * write workload at the service addresses, injects one fault, and checks the history.
 */
import net from "node:net";
import { ColoProc, KV, prng, scratch } from "./cluster.ts";
import { checkHistory, type HistoryVerdict } from "./history.ts";
import { waitForPong } from "./resp.ts";
import { type Address, readAll, sleep, Workload } from "./workload.ts";

/** A free loopback TCP port (bound and released; a small race, acceptable in tests). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface PairOptions {
  readonly heartbeatMs?: number;
  readonly heartbeatTimeoutMs?: number;
  /** Checkpoint at least this often (ms): small values make kills land mid-checkpoint often. */
  readonly maxIntervalMs?: number;
  readonly fenceCmd?: string;
  readonly extraPrimary?: readonly string[];
  readonly extraSecondary?: readonly string[];
  /** Command prefixes (e.g. ip netns exec NS) and hosts, for the namespace test. */
  readonly primaryPrefix?: readonly string[];
  readonly secondaryPrefix?: readonly string[];
  readonly primaryHost?: string;
  readonly secondaryHost?: string;
  /** Service addresses' hosts when they differ from the replication hosts (namespace test). */
  readonly primaryServiceHost?: string;
  readonly secondaryServiceHost?: string;
  readonly tag?: string;
}

export interface Pair {
  readonly primary: ColoProc;
  readonly secondary: ColoProc;
  readonly primaryService: Address;
  readonly secondaryService: Address;
  readonly replication: Address;
  readonly name: string;
  /** Environment of both processes (control directory, key): run `colo failover` with it. */
  readonly env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

/** The protected line the primary prints once the seed is acknowledged. */
export const PROTECTED_RE = /colo primary: protected/;
export const UNPROTECTED_RE = /UNPROTECTED/;

/** A scratch directory holding the key (cluster.ts `scratch()`); control sockets go there too. */
export interface Scratch {
  readonly dir: string;
  readonly psk: string;
}

/**
 * A lone `colo secondary` named `name`, replication on 127.0.0.1:`rPort`, for tests that talk to
 * it themselves; killed when the test ends. Resolves once it listens.
 */
export async function listeningSecondary(
  t: { after(fn: () => unknown): void },
  s: Scratch,
  name: string,
  rPort: number,
): Promise<ColoProc> {
  const secondary = new ColoProc(
    "secondary",
    [
      "secondary",
      "--name",
      name,
      "--listen",
      `127.0.0.1:${rPort}`,
      "--service",
      `127.0.0.1:${await freePort()}`,
      "--psk-file",
      s.psk,
    ],
    { XDG_RUNTIME_DIR: s.dir },
  );
  t.after(() => secondary.kill9());
  await secondary.waitFor(/listening on/, 30_000);
  return secondary;
}

/** A `colo primary` (kv guest) named `name` against 127.0.0.1:`port`; killed when the test
 * ends. Resolves once it is protected. */
export async function protectedPrimary(
  t: { after(fn: () => unknown): void },
  s: Scratch,
  name: string,
  port: number,
  extra: readonly string[] = [],
): Promise<ColoProc> {
  const primary = new ColoProc(
    "primary",
    [
      "primary",
      KV,
      "--name",
      name,
      "--service",
      "127.0.0.1:0",
      "--secondary",
      `127.0.0.1:${port}`,
      "--psk-file",
      s.psk,
      ...extra,
    ],
    { XDG_RUNTIME_DIR: s.dir },
  );
  t.after(() => primary.kill9());
  await primary.waitFor(PROTECTED_RE, 60_000);
  return primary;
}

/** Seeds that failed (the primary ran on unprotected before it was ever protected) and were retried. */
export const seedFailures = { count: 0 };

/**
 * Start a secondary and a primary and wait until the primary is protected. A seed that fails
 * (the primary reports UNPROTECTED first) is retried with fresh processes, at most 3 times, and
 * counted in `seedFailures` (not a failover fault; see the report of issue 6).
 */
export async function startPair(o: PairOptions = {}): Promise<Pair> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startPairOnce(o);
    } catch (e) {
      if (!(e instanceof SeedFailed) || attempt >= 3) throw e;
      seedFailures.count++;
    }
  }
}

class SeedFailed extends Error {}

async function startPairOnce(o: PairOptions): Promise<Pair> {
  const s = scratch();
  const pHost = o.primaryHost ?? "127.0.0.1";
  const sHost = o.secondaryHost ?? "127.0.0.1";
  const pServiceHost = o.primaryServiceHost ?? pHost;
  const sServiceHost = o.secondaryServiceHost ?? sHost;
  const [pPort, sPort, rPort] =
    o.primaryHost === undefined ? [await freePort(), await freePort(), await freePort()] : [6379, 6379, 7000];
  const name = `f${process.pid}x${Math.floor(Math.random() * 1e9).toString(36)}`;
  const hb = [
    ...(o.heartbeatMs === undefined ? [] : ["--heartbeat-ms", String(o.heartbeatMs)]),
    ...(o.heartbeatTimeoutMs === undefined ? [] : ["--heartbeat-timeout-ms", String(o.heartbeatTimeoutMs)]),
  ];
  const fence = o.fenceCmd === undefined ? [] : ["--fence-cmd", o.fenceCmd];
  const env = { COLO_PSK_FILE: s.psk, XDG_RUNTIME_DIR: s.dir };
  const secondary = new ColoProc(
    "secondary",
    [
      "secondary",
      "--name",
      `${name}-s`,
      "--listen",
      `${sHost}:${rPort}`,
      "--service",
      `${sServiceHost}:${sPort}`,
      "--psk-file",
      s.psk,
      ...(sHost === "127.0.0.1" ? [] : ["--listen-any"]),
      ...hb,
      ...fence,
      ...(o.extraSecondary ?? []),
    ],
    env,
    o.secondaryPrefix,
  );
  await secondary.waitFor(/listen/i, 30_000);
  const primary = new ColoProc(
    "primary",
    [
      "primary",
      KV,
      "--name",
      name,
      "--service",
      `${pServiceHost}:${pPort}`,
      "--secondary",
      `${sHost}:${rPort}`,
      "--psk-file",
      s.psk,
      ...(o.maxIntervalMs === undefined ? [] : ["--max-interval-ms", String(o.maxIntervalMs)]),
      ...hb,
      ...fence,
      ...(o.extraPrimary ?? []),
    ],
    env,
    o.primaryPrefix,
  );
  try {
    const m = await primary.waitFor(new RegExp(`${PROTECTED_RE.source}|${UNPROTECTED_RE.source}`), 60_000);
    if (UNPROTECTED_RE.test(m[0])) throw new SeedFailed(`seed failed:\n${primary.err}`);
  } catch (e) {
    await Promise.all([primary.kill9(), secondary.kill9()]);
    s.cleanup();
    throw e;
  }
  return {
    primary,
    secondary,
    primaryService: { host: pServiceHost, port: pPort },
    secondaryService: { host: sServiceHost, port: sPort },
    replication: { host: sHost, port: rPort },
    name,
    env,
    async stop() {
      await Promise.all([primary.stop(), secondary.stop()]);
      s.cleanup();
    },
  };
}

export interface RunResult {
  readonly verdict: HistoryVerdict;
  /** Primary killed → secondary answers PING on its service address (ms); kill-primary only. */
  readonly failoverMs: number | undefined;
  readonly killAfterMs: number;
}

/**
 * How the primary is lost: "kill" is kill -9 (its kernel closes its sockets, so the secondary
 * sees the heartbeat connection drop at once); "hang" is SIGSTOP, a host that stops answering
 * with its sockets still open, which only the heartbeat timeout reveals. A hung primary is
 * killed once the secondary serves (without a fencing hook it would otherwise come back and
 * serve too: the split brain docs/failover.md describes).
 */
export type PrimaryLoss = "kill" | "hang";

/**
 * kill -9 (or SIGSTOP) of the primary at a seeded random moment under the write workload; the
 * workload moves to the secondary's address; every key is then read from the secondary and checked.
 */
export async function killPrimaryRun(
  seed: number,
  o: PairOptions & { maxKillDelayMs?: number; loss?: PrimaryLoss } = {},
): Promise<RunResult> {
  const rnd = prng(seed);
  const pair = await startPair({ maxIntervalMs: 20, ...o });
  try {
    const wl = new Workload({
      addresses: () => [pair.primaryService, pair.secondaryService],
      clients: 4,
      maxMs: 30_000,
      tag: `s${seed}`,
    }).start();
    await wl.progress(20, 20_000);
    const killAfterMs = Math.floor(rnd() * (o.maxKillDelayMs ?? 400));
    await sleep(killAfterMs);
    const t0 = performance.now();
    if (o.loss === "hang") pair.primary.child.kill("SIGSTOP");
    else await pair.primary.kill9();
    const up = await waitForPong(pair.secondaryService.host, pair.secondaryService.port, 20_000, 2);
    const failoverMs = up ? performance.now() - t0 : undefined;
    if (o.loss === "hang") await pair.primary.kill9();
    if (!up) throw new Error(`secondary never served after the kill; stderr:\n${pair.secondary.err}`);
    await wl.progress(20, 10_000);
    await wl.stop();
    const reads = await readAll(
      pair.secondaryService,
      wl.writes.map((w) => w.key),
    );
    return { verdict: checkHistory(wl.writes, reads), failoverMs, killAfterMs };
  } finally {
    await pair.stop();
  }
}

/** kill -9 of the secondary: the primary runs on unprotected; keys read from the primary. */
export async function killSecondaryRun(seed: number, o: PairOptions = {}): Promise<RunResult> {
  const rnd = prng(seed);
  const pair = await startPair({ maxIntervalMs: 20, ...o });
  try {
    const wl = new Workload({
      addresses: () => [pair.primaryService],
      clients: 4,
      maxMs: 30_000,
      tag: `t${seed}`,
    }).start();
    await wl.progress(20, 20_000);
    const killAfterMs = Math.floor(rnd() * 300);
    await sleep(killAfterMs);
    await pair.secondary.kill9();
    await pair.primary.waitFor(UNPROTECTED_RE, 10_000);
    await wl.progress(50, 10_000);
    await wl.stop();
    const reads = await readAll(
      pair.primaryService,
      wl.writes.map((w) => w.key),
    );
    return { verdict: checkHistory(wl.writes, reads), failoverMs: undefined, killAfterMs };
  } finally {
    await pair.stop();
  }
}
