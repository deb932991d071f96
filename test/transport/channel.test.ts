import assert from "node:assert/strict";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import {
  type ByteChannel,
  connectRaw,
  fault,
  MessageChannel,
  openFileForRead,
  openFileForWrite,
  openPair,
  socketChannel,
  TransportError,
} from "../../src/transport/index.ts";
import { collect } from "./helpers.ts";

const bytes = (n: number, seed = 1): Uint8Array => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);

/**
 * Write `total` bytes in `chunk`-sized pieces honouring backpressure; returns how many times
 * write() returned false and the largest queue seen.
 */
async function pump(
  ch: ByteChannel,
  total: number,
  chunk: number,
): Promise<{ falses: number; maxQueued: number }> {
  let sent = 0;
  let falses = 0;
  let maxQueued = 0;
  const data = bytes(chunk);
  while (sent < total) {
    const ok = ch.write([data.subarray(0, Math.min(chunk, total - sent))]);
    sent += Math.min(chunk, total - sent);
    maxQueued = Math.max(maxQueued, ch.writableLength);
    if (!ok) {
      falses++;
      await new Promise<void>((resolve) => ch.once("drain", () => resolve()));
    }
  }
  ch.end();
  return { falses, maxQueued };
}

for (const kind of ["memory", "tcp"] as const) {
  test(`${kind}: a slow reader makes write() return false, drain follows, memory stays bounded`, async () => {
    let a: ByteChannel;
    let b: ByteChannel;
    let server: net.Server | undefined;
    if (kind === "memory") {
      [a, b] = openPair({ highWaterMark: 64 * 1024 });
    } else {
      const accepted = Promise.withResolvers<net.Socket>();
      server = net.createServer({ allowHalfOpen: true }, accepted.resolve);
      await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
      a = await connectRaw({ port: (server.address() as net.AddressInfo).port });
      b = socketChannel(await accepted.promise, "tcp");
    }
    try {
      let received = 0;
      let maxInbox = 0;
      const total = 8 << 20;
      const done = new Promise<void>((resolve) => b.once("end", () => resolve()));
      b.pause();
      b.onData((c) => {
        received += c.byteLength;
        maxInbox = Math.max(maxInbox, c.byteLength);
        // A slow reader: pause after every chunk, resume on a later turn.
        b.pause();
        setImmediate(() => b.resume());
      });
      setTimeout(() => b.resume(), 20);
      const stats = await pump(a, total, 64 * 1024);
      await done;
      assert.equal(received, total);
      assert.ok(stats.falses > 0, "write() returned false at least once");
      assert.ok(
        stats.maxQueued <= a.writableHighWaterMark + 64 * 1024,
        `queue ${stats.maxQueued} stayed within high-water mark + one write`,
      );
    } finally {
      a.destroy();
      b.destroy();
      server?.close();
    }
  });
}

test("memory: ignoring write() === false hits the hard cap with a typed error", async () => {
  const [a, b] = openPair({ highWaterMark: 1024, maxBuffered: 4096 });
  b.pause();
  const closed = new Promise<TransportError | undefined>((resolve) => a.once("close", resolve));
  assert.throws(
    () => {
      for (let i = 0; i < 100; i++) a.write([new Uint8Array(512)]);
    },
    (e: unknown) => e instanceof TransportError && e.code === "backpressure",
  );
  assert.equal((await closed)?.code, "backpressure");
  assert.throws(
    () => a.write([new Uint8Array(1)]),
    (e: unknown) => e instanceof TransportError && e.code === "closed",
  );
});

test("memory: the reader's inbox is bounded while nobody reads", async () => {
  const [a, b] = openPair({ highWaterMark: 16 * 1024, inboxLimit: 32 * 1024 });
  let falses = 0;
  for (let i = 0; i < 10; i++) {
    if (!a.write([new Uint8Array(8 * 1024)])) falses++;
    await new Promise((r) => setImmediate(r));
  }
  // Nobody reads b: the inbox stops at its limit and the rest waits in a's queue.
  assert.ok(falses > 0);
  assert.ok(a.writableLength >= 80 * 1024 - 32 * 1024 - 8 * 1024);
  const all = collect(b);
  a.end();
  assert.equal((await all).byteLength, 80 * 1024);
});

test("memory faults: drop, corrupt, replay change exactly the bytes they name; truncate resets", async () => {
  const data = bytes(1000);
  const run = async (intercept: ReturnType<typeof fault.drop>) => {
    const [a, b] = openPair({ aToB: { intercept } });
    const got = collect(b);
    a.write([data.subarray(0, 300), data.subarray(300)]);
    a.end();
    return got;
  };
  const dropped = await run(fault.drop(100, 50));
  assert.deepEqual(dropped, new Uint8Array(Buffer.concat([data.subarray(0, 100), data.subarray(150)])));
  const corrupted = await run(fault.corrupt(299));
  assert.equal(corrupted[299], (data[299] ?? 0) ^ 0xff);
  assert.deepEqual(corrupted.subarray(300), data.subarray(300));
  const replayed = await run(fault.replay(0, 8));
  assert.equal(replayed.byteLength, 1008);
  await assert.rejects(
    run(fault.truncate(500)),
    (e: unknown) => e instanceof TransportError && e.code === "reset",
  );
});

test("memory fault: a truncated message stream gives a typed reset, never a partial message", async () => {
  const [a, b] = openPair({ aToB: { intercept: fault.truncate(20) } });
  const tx = new MessageChannel(a);
  const rx = new MessageChannel(b);
  const got: number[] = [];
  const closed = new Promise<TransportError | undefined>((resolve) => rx.on("close", resolve));
  rx.onMessage((m) => got.push(m.body.byteLength));
  tx.send(0x7f01, new Uint8Array(4));
  tx.send(0x7f01, new Uint8Array(100));
  assert.equal((await closed)?.code, "reset");
  assert.deepEqual(got, [4]);
});

test("memory fault: delay keeps order", async () => {
  const [a, b] = openPair({ aToB: { delayMs: 5 } });
  const got = collect(b);
  for (let i = 0; i < 20; i++) a.write([Uint8Array.of(i)]);
  a.end();
  assert.deepEqual([...(await got)], [...Array(20).keys()]);
});

test("message channel: an oversized frame from the peer closes with frame-too-large at its offset", async () => {
  const [a, b] = openPair();
  const rx = new MessageChannel(b, { maxMessage: 100 });
  const closed = new Promise<TransportError | undefined>((resolve) => rx.on("close", resolve));
  rx.onMessage(() => {});
  const tx = new MessageChannel(a);
  tx.send(0x7f01, new Uint8Array(10));
  tx.send(0x7f01, new Uint8Array(101));
  const err = await closed;
  assert.equal(err?.code, "frame-too-large");
  assert.equal(err?.offset, 18);
});

test("file channel: write-only then read-only round trip; no overwrite without force", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "colo-file-"));
  try {
    const file = path.join(dir, "save.bin");
    const data = bytes(3 << 20, 7);
    const w = await openFileForWrite(file);
    assert.equal(w.readable, false);
    const closed = new Promise<TransportError | undefined>((resolve) => w.once("close", resolve));
    w.write([data.subarray(0, 1 << 20), data.subarray(1 << 20)]);
    w.end();
    assert.equal(await closed, undefined);
    const r = await openFileForRead(file);
    assert.equal(r.writable, false);
    assert.deepEqual(await collect(r), data);
    await assert.rejects(openFileForWrite(file), (e: unknown) => e instanceof TransportError);
    const again = await openFileForWrite(file, { force: true });
    again.end();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
