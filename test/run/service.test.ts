// ServicePlug against a scripted in-memory GuestPort: ids, offsets, eof, output, close, backpressure.
import assert from "node:assert/strict";
import net from "node:net";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { parseServiceAddress, ServicePlug } from "../../src/cli/service.ts";
import type { GuestPort, PortInput, PortOutput, StdinInput } from "../../src/guest/port.ts";

const STDIN = -1;

/** A fake guest port: records inputs, lets the test emit outputs, reports `queued` bytes per conn (stdin's under -1). */
class FakePort implements GuestPort {
  readonly inputs: Array<PortInput | StdinInput> = [];
  readonly queued = new Map<number, number>();
  #listeners: ((ev: PortOutput) => void)[] = [];
  #waiters: (() => void)[] = [];
  input(event: PortInput | StdinInput): number {
    this.inputs.push(event);
    for (const w of this.#waiters.splice(0)) w();
    const key = "conn" in event ? event.conn : STDIN;
    if (!("bytes" in event)) return this.queued.get(key) ?? 0;
    const q = (this.queued.get(key) ?? 0) + event.bytes.byteLength;
    this.queued.set(key, q);
    return q;
  }
  onOutput(listener: (ev: PortOutput) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }
  emit(ev: PortOutput): void {
    for (const l of this.#listeners) l(ev);
  }
  /** Resolve once `pred` holds over the inputs so far (bounded by the test's own timeout). */
  async until(pred: (inputs: Array<PortInput | StdinInput>) => boolean): Promise<void> {
    while (!pred(this.inputs)) await new Promise<void>((r) => this.#waiters.push(r));
  }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => resolve(s));
    s.once("error", reject);
  });
}

function readAll(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    s.on("data", (b: Buffer) => {
      text += b.toString();
    });
    s.on("end", () => resolve(text));
  });
}

test("parseServiceAddress", () => {
  assert.deepEqual(parseServiceAddress("127.0.0.1:6379"), { host: "127.0.0.1", port: 6379 });
  assert.deepEqual(parseServiceAddress("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parseServiceAddress("localhost:80"), { host: "localhost", port: 80 });
  for (const bad of ["6379", ":6379", "127.0.0.1:", "127.0.0.1:65536", "::1:80", "a:b", "[]:1"]) {
    assert.equal(parseServiceAddress(bad), undefined, bad);
  }
});

test("connections get fresh ids; chunks carry offsets; FIN is eof; guest output and close reach the client", async (t) => {
  const port = new FakePort();
  const plug = new ServicePlug(port);
  t.after(() => plug.close());
  const addr = await plug.listen({ host: "127.0.0.1", port: 0 });

  const a = await connect(addr.port);
  await port.until((ins) => ins.some((e) => e.kind === "open" && e.conn === 1));
  const b = await connect(addr.port);
  await port.until((ins) => ins.some((e) => e.kind === "open" && e.conn === 2));

  a.write("hello ");
  await port.until((ins) => ins.filter((e) => e.kind === "data" && e.conn === 1).length === 1);
  a.end("world");
  await port.until((ins) => ins.some((e) => e.kind === "eof" && e.conn === 1));
  const data1 = port.inputs.filter((e) => e.kind === "data" && e.conn === 1);
  assert.deepEqual(
    data1.map((e) => (e.kind === "data" ? [e.offset, Buffer.from(e.bytes).toString()] : [])),
    [
      [0, "hello "],
      [6, "world"],
    ],
  );
  // Half-open: the client's FIN does not close our side; the guest answers, then closes.
  const replyA = readAll(a);
  port.emit({ kind: "data", stream: { kind: "conn", id: 1 }, offset: 0, bytes: Buffer.from("+OK\r\n") });
  port.emit({ kind: "close", conn: 1 });
  assert.equal(await replyA, "+OK\r\n");

  // Guest shutdown ends the sending side; the client then sees end.
  const replyB = readAll(b);
  port.emit({ kind: "data", stream: { kind: "conn", id: 2 }, offset: 0, bytes: Buffer.from("bye") });
  port.emit({ kind: "shutdown", conn: 2 });
  assert.equal(await replyB, "bye");
  b.destroy();
  await port.until((ins) => ins.some((e) => e.kind === "eof" && e.conn === 2));
  // Exactly one eof per connection, whatever mix of FIN/close events the socket produced.
  assert.equal(port.inputs.filter((e) => e.kind === "eof" && e.conn === 2).length, 1);
  assert.equal(port.inputs.filter((e) => e.kind === "eof" && e.conn === 1).length, 1);
});

test("stdout and stderr go to their sinks", async (t) => {
  const port = new FakePort();
  const out: string[] = [];
  const err: string[] = [];
  const plug = new ServicePlug(port, {
    stdout: (b) => out.push(Buffer.from(b).toString()),
    stderr: (b) => err.push(Buffer.from(b).toString()),
  });
  t.after(() => plug.close());
  port.emit({ kind: "data", stream: { kind: "stdout" }, offset: 0, bytes: Buffer.from("o1") });
  port.emit({ kind: "data", stream: { kind: "stderr" }, offset: 0, bytes: Buffer.from("e1") });
  port.emit({ kind: "data", stream: { kind: "stdout" }, offset: 2, bytes: Buffer.from("o2") });
  assert.deepEqual(out, ["o1", "o2"]);
  assert.deepEqual(err, ["e1"]);
});

test("a socket is paused above the high-water mark and resumed on drained", async (t) => {
  const port = new FakePort();
  const plug = new ServicePlug(port, { highWaterBytes: 1000 });
  t.after(() => plug.close());
  const addr = await plug.listen({ host: "127.0.0.1", port: 0 });
  const s = await connect(addr.port);
  t.after(() => s.destroy());
  s.write(Buffer.alloc(1500, 1));
  await port.until((ins) => ins.some((e) => e.kind === "data"));
  const fed = () => port.inputs.reduce((n, e) => n + (e.kind === "data" ? e.bytes.byteLength : 0), 0);
  // Let the first chunk(s) through; while paused, further bytes must not be fed.
  await port.until(() => fed() >= 1001);
  const before = fed();
  s.write(Buffer.alloc(500, 2));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(fed(), before, "no input fed while paused");
  // The guest reads everything; the host says drained; the rest arrives.
  port.queued.set(1, 0);
  port.emit({ kind: "drained", conn: 1 });
  await port.until(() => fed() === 2000);
  assert.equal(fed(), 2000);
});

test("listen on a busy address rejects with EADDRINUSE", async (t) => {
  const port = new FakePort();
  const a = new ServicePlug(port);
  const b = new ServicePlug(port);
  t.after(async () => {
    await a.close();
    await b.close();
  });
  const addr = await a.listen({ host: "127.0.0.1", port: 0 });
  await assert.rejects(b.listen(addr), (err: NodeJS.ErrnoException) => err.code === "EADDRINUSE");
});

const tick = () => new Promise<void>((r) => setImmediate(r));

test("stdin chunks carry offsets, pause above the high-water mark, resume on stdin-drained, end is stdin-eof", async () => {
  const port = new FakePort();
  const stdin = new PassThrough();
  const plug = new ServicePlug(port, { stdin, highWaterBytes: 10 });
  stdin.write("abcd");
  await tick();
  stdin.write("efghijkl"); // 12 queued > 10: paused
  await tick();
  const fed = () =>
    port.inputs.map((e) => (e.kind === "stdin" ? [e.offset, Buffer.from(e.bytes).toString()] : e.kind));
  assert.deepEqual(fed(), [
    [0, "abcd"],
    [4, "efghijkl"],
  ]);
  assert.equal(stdin.isPaused(), true);
  stdin.write("mn"); // stays in the stream while paused
  await tick();
  assert.equal(port.inputs.length, 2);
  port.queued.set(STDIN, 0); // the guest read it all
  port.emit({ kind: "stdin-drained" });
  await tick();
  assert.equal(stdin.isPaused(), false);
  stdin.end();
  await port.until((inputs) => inputs.length === 4);
  assert.deepEqual(fed().slice(2), [[12, "mn"], "stdin-eof"]);
  // After close nothing more is fed, and an error on the stream is not left unhandled.
  const other = new PassThrough();
  const plug2 = new ServicePlug(port, { stdin: other });
  await plug2.close();
  other.write("late");
  other.destroy(new Error("EIO"));
  await tick();
  assert.equal(port.inputs.length, 4);
  await plug.close();
});
