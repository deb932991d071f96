/**
 * Request/response through the COLO proxy on loopback, against a direct echo server measured in
 * the same run (the ratio is the figure). Replicas are in-process echo guests behind GuestPort;
 * the mirror link is in memory (`colo mem`) or the transport's mirror codec over an in-memory
 * byte channel (`colo codec`), so this measures the proxy's own cost: accept, feed, mirror,
 * compare, release.
 *
 *   node bench/proxy.bench.ts                     quick: 10,000 requests per config and load, 3 rounds
 *   COLO_BENCH_LONG=1 node bench/proxy.bench.ts   50,000 requests, 5 rounds
 *
 * Loads: 1 client and 16 clients, each with one 64-byte request in flight. Figures are medians
 * over rounds; configurations are interleaved within each round.
 */
import net from "node:net";
import type { ConnId, GuestPort, PortInput, PortOutput } from "../src/guest/port.ts";
import { MemoryMirrorLink, type PrimaryMirrorEnd, type SecondaryMirrorEnd } from "../src/proxy/link.ts";
import { primaryMirrorChannel, secondaryMirrorChannel } from "../src/proxy/mirror-channel.ts";
import { PrimaryProxy } from "../src/proxy/primary.ts";
import { SecondaryProxy } from "../src/proxy/secondary.ts";
import { openPair } from "../src/transport/memory.ts";
import { MessageChannel } from "../src/transport/message-channel.ts";

const LONG = process.env.COLO_BENCH_LONG === "1";
const REQUESTS = LONG ? 50_000 : 10_000;
const ROUNDS = LONG ? 5 : 3;
const SIZE = 64;
const LOADS = [1, 16] as const;

/** An echo guest: each input chunk comes back as output (on a microtask, like a woken guest). */
class EchoPort implements GuestPort {
  readonly #listeners = new Set<(e: PortOutput) => void>();
  readonly #out = new Map<ConnId, number>();
  input(e: PortInput): number {
    queueMicrotask(() => {
      if (e.kind === "open") this.#out.set(e.conn, 0);
      else if (e.kind === "data") {
        const offset = this.#out.get(e.conn) ?? 0;
        this.#out.set(e.conn, offset + e.bytes.byteLength);
        this.#emit({ kind: "data", stream: { kind: "conn", id: e.conn }, offset, bytes: e.bytes });
      } else {
        this.#emit({ kind: "shutdown", conn: e.conn });
        this.#emit({ kind: "close", conn: e.conn });
        this.#out.delete(e.conn);
      }
    });
    return 0;
  }
  onOutput(l: (e: PortOutput) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  #emit(e: PortOutput): void {
    for (const l of this.#listeners) l(e);
  }
}

interface Target {
  readonly port: number;
  stop(): Promise<void>;
}

async function direct(): Promise<Target> {
  const server = net.createServer({ noDelay: true }, (s) => s.on("data", (d) => s.write(d)));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    stop: () => new Promise((r) => server.close(() => r())),
  };
}

async function proxied(kind: "unprotected" | "colo mem" | "colo codec"): Promise<Target> {
  const pvm = new EchoPort();
  if (kind === "unprotected") {
    const p = new PrimaryProxy({ port: pvm, mode: "unprotected" });
    const { port } = await p.listen();
    return { port, stop: () => p.close() };
  }
  let pEnd: PrimaryMirrorEnd;
  let sEnd: SecondaryMirrorEnd;
  let cleanup = (): void => {};
  if (kind === "colo mem") {
    const link = new MemoryMirrorLink();
    pEnd = link.primary;
    sEnd = link.secondary;
  } else {
    const [a, b] = openPair();
    const pc = new MessageChannel(a);
    const sc = new MessageChannel(b);
    pEnd = primaryMirrorChannel(pc);
    sEnd = secondaryMirrorChannel(sc);
    cleanup = () => {
      pc.destroy();
      sc.destroy();
    };
  }
  const p = new PrimaryProxy({ port: pvm, link: pEnd });
  const s = new SecondaryProxy({ port: new EchoPort(), link: sEnd });
  let divergences = 0;
  p.on("divergence", () => divergences++);
  const { port } = await p.listen();
  return {
    port,
    stop: async () => {
      await p.close();
      s.close();
      cleanup();
      if (divergences > 0) throw new Error(`${divergences} divergences between identical echo replicas`);
    },
  };
}

/** `clients` connections, each `perClient` requests one at a time; returns throughput and latencies (µs). */
async function load(
  port: number,
  clients: number,
  total: number,
): Promise<{ rps: number; lat: Float64Array }> {
  const perClient = Math.ceil(total / clients);
  const lat = new Float64Array(perClient * clients);
  let li = 0;
  const request = Buffer.alloc(SIZE, 0x61);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
      await new Promise<void>((r) => s.once("connect", () => r()));
      await new Promise<void>((resolve, reject) => {
        let n = 0;
        let got = 0;
        let sent = process.hrtime.bigint();
        s.on("error", reject);
        s.on("data", (d: Buffer) => {
          got += d.byteLength;
          if (got < SIZE) return;
          got -= SIZE;
          lat[li++] = Number(process.hrtime.bigint() - sent) / 1000;
          if (++n === perClient) {
            s.end();
            resolve();
            return;
          }
          sent = process.hrtime.bigint();
          s.write(request);
        });
        s.write(request);
      });
      s.destroy();
    }),
  );
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rps: li / secs, lat: lat.subarray(0, li).sort() };
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

const CONFIGS = ["direct", "unprotected", "colo mem", "colo codec"] as const;
type Config = (typeof CONFIGS)[number];

const results = new Map<string, { rps: number[]; p50: number[]; p99: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const clients of LOADS) {
    for (const config of CONFIGS) {
      const target = config === "direct" ? await direct() : await proxied(config);
      const r = await load(target.port, clients, REQUESTS);
      await target.stop();
      const key = `${config}|${clients}`;
      const entry = results.get(key) ?? { rps: [], p50: [], p99: [] };
      entry.rps.push(r.rps);
      entry.p50.push(pct(r.lat, 0.5));
      entry.p99.push(pct(r.lat, 0.99));
      results.set(key, entry);
    }
  }
}

const rows: string[][] = [["config", "clients", "req/s", "p50 µs", "p99 µs", "vs direct"]];
for (const clients of LOADS) {
  const base = median(results.get(`direct|${clients}`)!.rps);
  for (const config of CONFIGS as readonly Config[]) {
    const e = results.get(`${config}|${clients}`)!;
    const rps = median(e.rps);
    rows.push([
      config,
      String(clients),
      rps.toFixed(0),
      median(e.p50).toFixed(0),
      median(e.p99).toFixed(0),
      `${((rps / base) * 100).toFixed(0)} %`,
    ]);
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
process.stdout.write(
  `proxy request/response, ${SIZE}-byte requests, ${REQUESTS} per config, median of ${ROUNDS} rounds\n`,
);
for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padStart(widths[i]!)).join("  ")}\n`);
