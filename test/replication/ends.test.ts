// A replica that ends (trap or exit), through two real processes on loopback with --verify and a
// tiny guest (fixtures/ender.c) that ends on command or on its own clock (the test stalls the
// secondary's process past a deadline so that exactly one replica ends):
// - the SVM alone: the next checkpoint restores it, service goes on, every checkpoint verified;
// - the PVM alone: the secondary takes over (the primary exits 5), clients are served there
//   with the state the pair had;
// - both (the same command): the guest's exit propagates (primary exits with it), the secondary
//   stands down.
import assert from "node:assert/strict";
import net from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { type ColoChild, startPair } from "../../src/cli/child.ts";
import { controlRequest } from "../../src/save/control.ts";
import { ROOT } from "./helpers.ts";

const ENDER = join(ROOT, "test/replication/fixtures/ender.wasm");

/** A line client: send a command, read one reply line (undefined if the connection ends first). */
class LineClient {
  readonly #socket: net.Socket;
  #buf = "";
  #waiters: ((line: string | undefined) => void)[] = [];
  #closed = false;
  constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      this.#buf += d;
      for (let i = this.#buf.indexOf("\n"); i >= 0 && this.#waiters.length > 0; i = this.#buf.indexOf("\n")) {
        const line = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 1);
        this.#waiters.shift()!(line);
      }
    });
    const gone = (): void => {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w(undefined);
    };
    socket.on("close", gone);
    socket.on("error", gone);
  }
  static connect(port: number): Promise<LineClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port }, () => resolve(new LineClient(s)));
      s.once("error", reject);
    });
  }
  ask(line: string, ms = 10_000): Promise<string | undefined> {
    if (this.#closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(undefined), ms);
      this.#waiters.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
      this.#socket.write(`${line}\n`);
    });
  }
  close(): void {
    this.#socket.destroy();
  }
}

async function pair(tag: string) {
  const p = await startPair({
    guest: ENDER,
    secondaryName: `${tag}-s`,
    primaryName: `${tag}-p`,
    primaryArgs: ["--verify"],
    waitMs: 20_000,
  });
  return { ...p, sec: p.sec! };
}

async function verifiedAll(tag: string): Promise<{ n: number; all: boolean }> {
  const records = (await controlRequest(`${tag}-p`, "checkpoints")) as { verified?: boolean }[];
  return { n: records.length, all: records.every((r) => r.verified === true) };
}

test("both replicas end the same way: the guest's exit propagates, the secondary stands down", async () => {
  const tag = `ends-both-${process.pid}`;
  const p = await pair(tag);
  try {
    const c = await LineClient.connect(p.port);
    assert.equal(await c.ask("INCR"), "1");
    void c.ask("EXIT 7", 2000);
    assert.equal((await p.pri.finished).status, 7, p.pri.log);
    assert.match(p.pri.log, /both replicas ended/);
    await p.sec.line(/stood down/);
    assert.doesNotMatch(p.sec.log, /took over/);
    c.close();
  } finally {
    await p.close();
  }
});

/** Stall the secondary's process for `ms` (SIGSTOP/SIGCONT: shorter than its heartbeat timeout). */
async function stall(p: ColoChild, ms: number): Promise<void> {
  p.child.kill("SIGSTOP");
  await new Promise((r) => setTimeout(r, ms));
  p.child.kill("SIGCONT");
}

test("the SVM alone ends (exit, then trap): the next checkpoint restores it, service goes on, all verified", async () => {
  const tag = `ends-svm-${process.pid}`;
  const p = await pair(tag);
  try {
    const c = await LineClient.connect(p.port);
    assert.equal(await c.ask("INCR"), "1");
    let count = 1;
    for (const suffix of ["", " trap"]) {
      // The PVM reads the clock before t and lives; the stalled SVM reads it after t and ends.
      const stalled = stall(p.sec, 150);
      const reply = c.ask(`AFTER ${Date.now() + 60}${suffix}`);
      await stalled;
      assert.equal(await reply, "LIVE");
      assert.equal(await c.ask("INCR"), String(++count));
      assert.equal(await c.ask("INCR"), String(++count));
    }
    await p.sec.line(/the SVM exited with 9/);
    await p.sec.line(/the SVM trapped/);
    assert.equal(p.pri.child.exitCode, null, "the primary runs on");
    const v = await verifiedAll(tag);
    assert.ok(v.n >= 3, `a checkpoint after each SVM end (${v.n} records)`);
    assert.ok(v.all, "every checkpoint verified");
    const status = (await controlRequest(`${tag}-p`, "status")) as { state: string };
    assert.match(status.state, /protected|checkpointing/);
    c.close();
  } finally {
    await p.close();
  }
});

test("the PVM alone ends (trap): the secondary takes over with the pair's state; the primary exits 5", async () => {
  const tag = `ends-pvm-${process.pid}`;
  const p = await pair(tag);
  try {
    const c = await LineClient.connect(p.port);
    assert.equal(await c.ask("INCR"), "1");
    assert.equal(await c.ask("INCR"), "2");
    // The PVM reads the clock before t and traps; the stalled SVM reads it after t and lives.
    const stalled = stall(p.sec, 150);
    void c.ask(`BEFORE ${Date.now() + 60} trap`, 5000);
    await stalled;
    assert.equal((await p.pri.finished).status, 5, p.pri.log);
    assert.match(p.pri.log, /handing over to the secondary/);
    const at = await p.sec.line(/took over; service on (\S+)/);
    const c2 = await LineClient.connect(Number(at.slice(at.lastIndexOf(":") + 1)));
    assert.equal(await c2.ask("INCR"), "3", "the survivor keeps the pair's state");
    assert.equal(await c2.ask("INCR"), "4");
    c2.close();
    c.close();
  } finally {
    await p.close();
  }
});
