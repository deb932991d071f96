/**
 * Loopback bandwidth baselines, for benchmarks that report against them in the same run
 * (bench/transport.bench.ts, the migration benchmark): raw TCP, TLS with the colo cipher and a
 * pre-shared key, and the full colo channel (TLS + hello + ByteChannel write/backpressure).
 * Each sends `bytes` one way in `chunk`-sized writes, honouring backpressure, and times from the
 * first write to the last byte received. Not used by the product itself.
 */
import net from "node:net";
import tls from "node:tls";
import type { ByteChannel } from "./channel.ts";
import { dial, listen } from "./connect.ts";
import { newSessionId } from "./hello.ts";
import { clientTlsOptions, generatePsk, type Security, serverTlsOptions } from "./security.ts";

export interface BandwidthOptions {
  /** Bytes to send per measurement; default 256 MiB. */
  bytes?: number;
  /** Size of each write; default 1 MiB. */
  chunk?: number;
}

export interface Bandwidth {
  readonly bytes: number;
  readonly seconds: number;
  /** Decimal megabytes per second (1e6 bytes/s). */
  readonly mbPerSecond: number;
}

function result(bytes: number, start: bigint): Bandwidth {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { bytes, seconds, mbPerSecond: bytes / 1e6 / seconds };
}

/** Write `total` bytes to a Node socket with backpressure. */
async function pumpSocket(s: net.Socket, total: number, chunk: number): Promise<void> {
  const data = new Uint8Array(chunk).fill(0x5a);
  for (let sent = 0; sent < total; sent += chunk) {
    if (!s.write(data.subarray(0, Math.min(chunk, total - sent)))) {
      await new Promise<void>((resolve) => s.once("drain", resolve));
    }
  }
  s.end();
}

/** Count bytes arriving on a socket until `total`. */
function drainSocket(s: net.Socket, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    s.on("data", (d: Buffer) => {
      got += d.length;
      if (got >= total) resolve();
    });
    s.on("error", reject);
  });
}

async function socketPair(secure: Security | undefined, total: number, chunk: number): Promise<Bandwidth> {
  const received = Promise.withResolvers<{ done: Promise<void> }>();
  const onSocket = (s: net.Socket) => received.resolve({ done: drainSocket(s, total) });
  const server =
    secure === undefined ? net.createServer(onSocket) : tls.createServer(serverTlsOptions(secure), onSocket);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const client = await new Promise<net.Socket>((resolve, reject) => {
      const c =
        secure === undefined
          ? net.connect({ port, host: "127.0.0.1" }, () => resolve(c))
          : tls.connect({ ...clientTlsOptions(secure), port, host: "127.0.0.1" }, () => resolve(c));
      c.once("error", reject);
    });
    const { done } = await received.promise;
    const start = process.hrtime.bigint();
    await pumpSocket(client, total, chunk);
    await done;
    const r = result(total, start);
    client.destroy();
    return r;
  } finally {
    server.close();
  }
}

/** Raw loopback TCP. */
export function measureRawTcp(options: BandwidthOptions = {}): Promise<Bandwidth> {
  return socketPair(undefined, options.bytes ?? 256 << 20, options.chunk ?? 1 << 20);
}

/** TLS 1.3 with the colo cipher and a fresh pre-shared key, straight on node:tls. */
export function measureTls(options: BandwidthOptions = {}): Promise<Bandwidth> {
  return socketPair(
    { mode: "psk", key: generatePsk() },
    options.bytes ?? 256 << 20,
    options.chunk ?? 1 << 20,
  );
}

/** Write `total` bytes to a ByteChannel honouring its backpressure contract. */
export async function pumpChannel(ch: ByteChannel, total: number, chunk: number): Promise<void> {
  const data = new Uint8Array(chunk).fill(0x5a);
  for (let sent = 0; sent < total; sent += chunk) {
    if (!ch.write([data.subarray(0, Math.min(chunk, total - sent))])) {
      await new Promise<void>((resolve) => ch.once("drain", () => resolve()));
    }
  }
  ch.end();
}

/** The colo channel: dial/listen with TLS-PSK and the hello, then ByteChannel writes. */
export async function measureChannel(options: BandwidthOptions = {}): Promise<Bandwidth> {
  const total = options.bytes ?? 256 << 20;
  const chunk = options.chunk ?? 1 << 20;
  const security: Security = { mode: "psk", key: generatePsk() };
  const received = Promise.withResolvers<{ done: Promise<void> }>();
  const listener = await listen(
    { security, role: "target", expect: { roles: ["source"], kinds: ["migration"] }, log: () => {} },
    (conn) => {
      received.resolve({
        done: new Promise((resolve, reject) => {
          let got = 0;
          conn.channel.onData((c) => {
            got += c.byteLength;
            if (got >= total) resolve();
          });
          conn.channel.once("close", (err) => (err === undefined ? resolve() : reject(err)));
        }),
      });
    },
  );
  try {
    const conn = await dial({
      port: listener.port,
      security,
      hello: { role: "source", kind: "migration", session: newSessionId() },
    });
    const { done } = await received.promise;
    const start = process.hrtime.bigint();
    await pumpChannel(conn.channel, total, chunk);
    await done;
    const r = result(total, start);
    conn.channel.destroy();
    return r;
  } finally {
    await listener.close();
  }
}
