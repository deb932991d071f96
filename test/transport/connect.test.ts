import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import tls from "node:tls";
import { encodeHello, newNonce } from "../../src/transport/hello.ts";
import {
  type Connection,
  connectedPair,
  connectRaw,
  dial,
  generatePsk,
  type Listener,
  listen,
  loadCertFiles,
  newSessionId,
  type RefusedInfo,
  type Security,
  TLS_CIPHER,
  TransportError,
} from "../../src/transport/index.ts";
import { collect, quietLog } from "./helpers.ts";

const psk = (): Security => ({ mode: "psk", key: generatePsk() });

interface Harness {
  listener: Listener;
  accepted: Connection[];
  refused: RefusedInfo[];
  nextRefusal(): Promise<RefusedInfo>;
}

async function harness(
  security: Security,
  extra: Partial<Parameters<typeof listen>[0]> = {},
): Promise<Harness> {
  const accepted: Connection[] = [];
  const refused: RefusedInfo[] = [];
  const waiters: ((r: RefusedInfo) => void)[] = [];
  const listener = await listen(
    {
      security,
      role: "secondary",
      expect: { roles: ["primary"], kinds: ["replication", "mirror", "heartbeat"] },
      log: quietLog,
      ...extra,
    },
    (c) => {
      accepted.push(c);
      c.channel.onData(() => {});
    },
  );
  listener.onRefused((r) => {
    refused.push(r);
    waiters.shift()?.(r);
  });
  return {
    listener,
    accepted,
    refused,
    nextRefusal: () =>
      refused.length > 0
        ? Promise.resolve(refused.shift()!)
        : new Promise((resolve) => waiters.push(resolve)),
  };
}

test("TLS-PSK round trip over loopback, both directions, with the chosen cipher", async () => {
  const security = psk();
  const session = newSessionId();
  const got = Promise.withResolvers<Connection>();
  const listener = await listen(
    { security, role: "secondary", expect: { roles: ["primary"], kinds: ["replication"] }, log: quietLog },
    got.resolve,
  );
  try {
    const client = await dial({
      port: listener.port,
      security,
      hello: { role: "primary", kind: "replication", session, capabilities: 5n },
    });
    const server = await got.promise;
    assert.equal(client.tls?.protocol, "TLSv1.3");
    assert.equal(client.tls?.cipher, TLS_CIPHER);
    assert.equal(server.peer.role, "primary");
    assert.equal(server.peer.capabilities, 5n);
    assert.deepEqual(client.peer.session, session);
    assert.equal(client.peer.role, "secondary");
    assert.deepEqual(listener.session, session, "the listener adopted the first session");

    const payload = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    const atServer = collect(server.channel);
    client.channel.write([payload.subarray(0, 1000), payload.subarray(1000)]);
    client.channel.end();
    const reply = collect(client.channel);
    assert.deepEqual(await atServer, payload);
    server.channel.write([Uint8Array.of(1, 2, 3)]);
    server.channel.end();
    assert.deepEqual(await reply, Uint8Array.of(1, 2, 3));
  } finally {
    await listener.close();
  }
});

test("a wrong pre-shared key is refused at the TLS handshake and no byte is delivered", async () => {
  const h = await harness(psk());
  try {
    await assert.rejects(
      dial({
        port: h.listener.port,
        security: psk(),
        hello: { role: "primary", kind: "replication", session: newSessionId() },
      }),
      (err: unknown) => err instanceof TransportError && (err.code === "auth" || err.code === "tls"),
    );
    const r = await h.nextRefusal();
    assert.equal(r.error.code, "auth");
    assert.equal(h.accepted.length, 0);
  } finally {
    await h.listener.close();
  }
});

test("plain TCP garbage to a TLS listener is refused before any byte reaches the layer above", async () => {
  const h = await harness(psk());
  try {
    const raw = await connectRaw({ port: h.listener.port });
    const closed = new Promise<void>((resolve) => {
      raw.on("end", () => resolve());
      raw.on("close", () => resolve());
    });
    raw.onData(() => {});
    raw.write([new TextEncoder().encode("GET / HTTP/1.0\r\n\r\nCOLOHELO garbage garbage garbage")]);
    const r = await h.nextRefusal();
    assert.ok(r.error.code === "tls" || r.error.code === "auth", r.error.code);
    await closed;
    assert.equal(h.accepted.length, 0);
  } finally {
    await h.listener.close();
  }
});

test("a TLS client without the key (certificate-less, no PSK) is refused", async () => {
  const h = await harness(psk());
  try {
    const err = await new Promise<Error>((resolve) => {
      const s = tls.connect({ port: h.listener.port, host: "127.0.0.1", rejectUnauthorized: false });
      s.on("error", resolve);
      s.on("secureConnect", () => resolve(new Error("handshake unexpectedly succeeded")));
    });
    assert.notEqual(err.message, "handshake unexpectedly succeeded");
    await h.nextRefusal();
    assert.equal(h.accepted.length, 0);
  } finally {
    await h.listener.close();
  }
});

for (const c of [
  { name: "role", hello: { role: "secondary", kind: "replication" }, code: "hello-role" },
  { name: "role of another pair", hello: { role: "source", kind: "replication" }, code: "hello-role" },
  { name: "kind", hello: { role: "primary", kind: "migration" }, code: "hello-kind" },
] as const) {
  test(`${c.name} mismatch gives a typed error on both ends`, async () => {
    const security = psk();
    const h2 = await harness(security);
    try {
      await assert.rejects(
        dial({ port: h2.listener.port, security, hello: { ...c.hello, session: newSessionId() } }),
        (err: unknown) => err instanceof TransportError && err.code === c.code,
      );
      const r = await h2.nextRefusal();
      assert.equal(r.error.code, c.code);
      assert.equal(h2.accepted.length, 0);
    } finally {
      await h2.listener.close();
    }
  });
}

test("a session that is not the current one is refused on both ends", async () => {
  const security = psk();
  const current = newSessionId();
  const h = await harness(security, { session: current });
  try {
    await assert.rejects(
      dial({
        port: h.listener.port,
        security,
        hello: { role: "primary", kind: "mirror", session: newSessionId() },
      }),
      (err: unknown) => err instanceof TransportError && err.code === "hello-session",
    );
    assert.equal((await h.nextRefusal()).error.code, "hello-session");
    const ok = await dial({
      port: h.listener.port,
      security,
      hello: { role: "primary", kind: "mirror", session: current },
    });
    ok.channel.destroy();
  } finally {
    await h.listener.close();
  }
});

test("an adopting listener refuses a second session until told otherwise", async () => {
  const security = psk();
  const h = await harness(security);
  try {
    const first = newSessionId();
    const a = await dial({
      port: h.listener.port,
      security,
      hello: { role: "primary", kind: "replication", session: first },
    });
    await assert.rejects(
      dial({
        port: h.listener.port,
        security,
        hello: { role: "primary", kind: "replication", session: newSessionId() },
      }),
      (err: unknown) => err instanceof TransportError && err.code === "hello-session",
    );
    h.listener.setSession(undefined);
    const third = newSessionId();
    const b = await dial({
      port: h.listener.port,
      security,
      hello: { role: "primary", kind: "replication", session: third },
    });
    assert.deepEqual(h.listener.session, third);
    a.channel.destroy();
    b.channel.destroy();
  } finally {
    await h.listener.close();
  }
});

/** A valid primary/replication hello with a fresh session and nonce. */
function sampleHello(): Uint8Array {
  return encodeHello({
    version: 1,
    role: "primary",
    kind: "replication",
    session: newSessionId(),
    capabilities: 0n,
    nonce: newNonce(),
    sequence: 0,
  });
}

/** Open a TLS-PSK connection by hand and send exactly `hello`; returns the verdict code. */
async function rawHello(port: number, key: Uint8Array, hello: Uint8Array): Promise<number> {
  const s = tls.connect({
    port,
    host: "127.0.0.1",
    minVersion: "TLSv1.3",
    ciphers: TLS_CIPHER,
    pskCallback: () => ({ psk: Buffer.from(key), identity: "colo/1" }),
    checkServerIdentity: () => undefined,
  });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    s.on("secureConnect", () => {
      s.write(hello);
    });
    s.on("data", (d: Buffer) => {
      chunks.push(d);
      if (Buffer.concat(chunks).length >= 72) resolve();
    });
    s.on("error", reject);
    s.on("close", () => resolve());
  });
  s.destroy();
  const all = Buffer.concat(chunks);
  assert.ok(all.length >= 72, "listener answered with hello and verdict");
  return all.readUInt16LE(68);
}

test("a replayed connection (same session, kind and nonce) is refused", async () => {
  const security = psk();
  const h = await harness(security);
  try {
    const hello = sampleHello();
    const key = (security as { key: Uint8Array }).key;
    assert.equal(await rawHello(h.listener.port, key, hello), 0, "first use accepted");
    assert.equal(await rawHello(h.listener.port, key, hello), 5, "second use refused as a replay");
    const refusals = h.refused.map((r) => r.error.code);
    assert.ok(refusals.includes("hello-replay"), refusals.join(","));
  } finally {
    await h.listener.close();
  }
});

test("a peer of another protocol version is refused on both ends", async () => {
  const security = psk();
  const h = await harness(security);
  try {
    const hello = sampleHello();
    new DataView(hello.buffer).setUint16(8, 2, true);
    const key = (security as { key: Uint8Array }).key;
    assert.equal(await rawHello(h.listener.port, key, hello), 1);
    assert.equal((await h.nextRefusal()).error.code, "hello-version");
    assert.equal(h.accepted.length, 0);
  } finally {
    await h.listener.close();
  }
});

test("connectedPair runs the real hello exchange in memory", async () => {
  const [a, b] = await connectedPair({ kind: "heartbeat" });
  assert.equal(a.peer.role, "secondary");
  assert.equal(b.peer.role, "primary");
  a.channel.destroy();
});

test("listeners bind to loopback unless told otherwise", async () => {
  await assert.rejects(
    listen(
      {
        host: "0.0.0.0",
        security: psk(),
        role: "secondary",
        expect: { roles: ["primary"], kinds: ["replication"] },
      },
      () => {},
    ),
    (err: unknown) => err instanceof TransportError && err.code === "config",
  );
  const l = await listen(
    {
      host: "0.0.0.0",
      allowNonLoopback: true,
      port: 0,
      security: psk(),
      role: "secondary",
      expect: { roles: ["primary"], kinds: ["replication"] },
      log: quietLog,
    },
    () => {},
  );
  await l.close();
});

test("mutual TLS with client certificates (openssl-made CA)", async (t) => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
  } catch {
    t.skip("needs Debian package openssl");
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "colo-certs-"));
  try {
    const ossl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    const makeCa = (name: string) => {
      ossl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.crt`,
      );
    };
    const makeLeaf = (name: string, ca: string) => {
      ossl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        `/CN=${name}`,
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
      );
      fs.writeFileSync(path.join(dir, `${name}.ext`), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
      ossl(
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        `${ca}.crt`,
        "-CAkey",
        `${ca}.key`,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        `${name}.ext`,
        "-out",
        `${name}.crt`,
      );
    };
    makeCa("ca");
    makeCa("otherca");
    makeLeaf("s", "ca");
    makeLeaf("p", "ca");
    makeLeaf("stranger", "otherca");
    const f = (n: string) => path.join(dir, n);
    const server = loadCertFiles({ cert: f("s.crt"), key: f("s.key"), ca: f("ca.crt") });
    const client = loadCertFiles({
      cert: f("p.crt"),
      key: f("p.key"),
      ca: f("ca.crt"),
      servername: "localhost",
    });
    const stranger = loadCertFiles({ cert: f("stranger.crt"), key: f("stranger.key"), ca: f("ca.crt") });
    const h = await harness(server);
    try {
      const c = await dial({
        port: h.listener.port,
        security: client,
        hello: { role: "primary", kind: "replication", session: newSessionId() },
      });
      assert.equal(c.tls?.protocol, "TLSv1.3");
      c.channel.destroy();
      await assert.rejects(
        dial({
          port: h.listener.port,
          security: stranger,
          hello: { role: "primary", kind: "replication", session: newSessionId() },
        }),
        (err: unknown) => err instanceof TransportError,
      );
      const r = await h.nextRefusal();
      assert.equal(r.error.code, "auth");
      assert.equal(h.accepted.length, 1);
    } finally {
      await h.listener.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
