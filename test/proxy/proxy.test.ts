/**
 * PrimaryProxy and SecondaryProxy wired through an in-memory mirror link, two fake replicas, and
 * real TCP clients on loopback.
 */
import assert from "node:assert/strict";
import { type TestContext, test } from "node:test";
import type { ProxyError } from "../../src/proxy/errors.ts";
import { MemoryMirrorLink } from "../../src/proxy/link.ts";
import {
  type CheckpointNeeded,
  type Divergence,
  PrimaryProxy,
  type PrimaryProxyOptions,
} from "../../src/proxy/primary.ts";
import { SecondaryProxy } from "../../src/proxy/secondary.ts";
import { Client, FakeGuest, type FakeGuestOptions, settle, until, upper, upperBang } from "./helpers.ts";

interface RigOptions {
  readonly pvm?: FakeGuestOptions;
  readonly svm?: FakeGuestOptions;
  readonly primary?: Partial<PrimaryProxyOptions>;
  readonly linkBound?: number;
}

async function rig(t: TestContext, options: RigOptions = {}) {
  const pvm = new FakeGuest("pvm", options.pvm);
  const svm = new FakeGuest("svm", options.svm);
  const link = new MemoryMirrorLink(options.linkBound);
  const stdio: string[] = [];
  const primary = new PrimaryProxy({
    port: pvm,
    link: link.primary,
    stdio: (s, b) => stdio.push(`${s}:${Buffer.from(b).toString("latin1")}`),
    ...options.primary,
  });
  const secondary = new SecondaryProxy({ port: svm, link: link.secondary });
  const divergences: Divergence[] = [];
  const needed: CheckpointNeeded[] = [];
  const errors: ProxyError[] = [];
  primary.on("divergence", (d) => divergences.push(d));
  primary.on("checkpoint-needed", (n) => needed.push(n));
  primary.on("protocol-error", (e) => errors.push(e));
  secondary.on("protocol-error", (e) => errors.push(e));
  const { port } = await primary.listen();
  const clients: Client[] = [];
  t.after(async () => {
    for (const c of clients) c.socket.destroy();
    await primary.close();
    secondary.close();
  });
  let seq = 0;
  return {
    pvm,
    svm,
    link,
    primary,
    secondary,
    divergences,
    needed,
    errors,
    stdio,
    async client(): Promise<Client> {
      const c = await Client.connect(port);
      clients.push(c);
      return c;
    },
    /** One checkpoint as the controller would run it (the fake SVM becomes a copy of the PVM). */
    async checkpoint(): Promise<number> {
      seq++;
      primary.pauseForCheckpoint();
      secondary.pauseForCheckpoint();
      await until(() => pvm.idle, "PVM idle");
      svm.applyStateOf(pvm);
      svm.transform = pvm.transform;
      secondary.checkpointApplied(seq, pvm.inputOffsets());
      primary.checkpointDone(seq);
      return seq;
    },
    async close(): Promise<void> {
      for (const c of clients) c.socket.destroy();
      await primary.close();
      secondary.close();
      assert.deepEqual(errors, []);
      assert.deepEqual([...pvm.errors, ...svm.errors], []);
    },
  };
}

test("identical replicas: every byte released, replies equal the PVM's output, chunking differences don't count", async (t) => {
  const r = await rig(t, { pvm: { seed: 1 }, svm: { seed: 2, maxChunk: 3 } });
  const clients = await Promise.all([r.client(), r.client(), r.client()]);
  const words = ["hello", " world", "\nabc", "xyz!"];
  for (const w of words) for (const c of clients) c.write(w);
  const expect = upper(new TextEncoder().encode(words.join("")));
  for (const c of clients) await c.until(() => c.received.byteLength === expect.byteLength, "echo");
  for (const c of clients) c.socket.end();
  for (const c of clients) await c.until(() => c.ended, "guest close released as end");
  for (const [i, c] of clients.entries()) {
    assert.deepEqual(new Uint8Array(c.received), expect);
    assert.deepEqual(new Uint8Array(c.received), r.pvm.producedOn(i));
  }
  assert.deepEqual(r.divergences, []);
  const m = r.primary.metrics();
  assert.equal(m.bytesIn, 3 * expect.byteLength);
  assert.equal(m.bytesMirrored, m.bytesIn);
  assert.equal(m.bytesReleased, m.bytesIn);
  assert.equal(m.heldBytes, 0);
  assert.equal(m.connectionsAccepted, 3);
  // The SVM got the same events in the same chunks.
  const strip = (g: FakeGuest) => g.inputs.map((e) => JSON.stringify(e));
  assert.deepEqual(strip(r.svm), strip(r.pvm));
  await r.close();
});

test("a differing byte: divergence at its offset, only the common prefix released; checkpoint releases the rest", async (t) => {
  const r = await rig(t, { svm: { transform: upperBang } });
  const c = await r.client();
  c.write("abc!def");
  await until(() => r.divergences.length === 1, "divergence");
  await settle();
  assert.equal(c.text, "ABC");
  const d = r.divergences[0]!;
  assert.equal(d.kind, "output");
  assert.equal(d.offset, 3);
  assert.deepEqual(d.stream, { kind: "conn", id: 0 });
  assert.equal(d.seq, 0);
  assert.equal(r.primary.metrics().heldBytes, 4);
  assert.equal(r.primary.metrics().divergences.output, 1);

  // The controller checkpoints: the PVM's output is the truth.
  await r.checkpoint();
  await c.until(() => c.text === "ABC!DEF", "held output released");
  assert.equal(r.primary.metrics().heldBytes, 0);
  // Comparison restarts at the PVM's offsets; the SVM is now an exact copy.
  c.write("more!");
  await c.until(() => c.text === "ABC!DEFMORE!", "compared after checkpoint");
  assert.equal(r.divergences.length, 1);
  assert.equal(r.secondary.seq, 1);
  await r.close();
});

test("close/shutdown mismatch is a divergence; nothing past the SVM's shutdown is released", async (t) => {
  const r = await rig(t, { svm: { shutdownOn: 0x23 } });
  const c = await r.client();
  c.write("ab#");
  await c.until(() => c.text === "AB#", "prefix");
  c.write("cd");
  await until(() => r.divergences.length === 1, "divergence");
  await settle();
  assert.equal(r.divergences[0]!.kind, "close-mismatch");
  assert.equal(r.divergences[0]!.offset, 3);
  assert.equal(c.text, "AB#");
  assert.equal(c.ended, false);
  await r.close();
});

test("an SVM silent past the timeout while the PVM holds output is a divergence", async (t) => {
  const r = await rig(t, { primary: { svmTimeoutMs: 30 } });
  r.link.stall("primary", true);
  const c = await r.client();
  c.write("hi");
  await until(() => r.divergences.length === 1, "svm-timeout");
  assert.equal(r.divergences[0]!.kind, "svm-timeout");
  assert.deepEqual(r.divergences[0]!.stream, { kind: "conn", id: 0 });
  assert.equal(c.text, "");
  r.link.stall("primary", false);
  await r.close();
});

test("held output past the cap asks for a checkpoint and pauses client input", async (t) => {
  const r = await rig(t, { primary: { heldCap: 64 } });
  r.link.stall("primary", true);
  const c = await r.client();
  c.write("x".repeat(100));
  await until(() => r.needed.length === 1, "checkpoint-needed");
  assert.equal(r.needed[0]!.reason, "held-cap");
  assert.ok(r.needed[0]!.heldBytes >= 64);
  assert.ok(r.primary.metrics().inputPauses >= 1);
  await r.checkpoint();
  await c.until(() => c.text === "X".repeat(100), "released by checkpoint");
  r.link.stall("primary", false);
  await r.close();
});

test("a full mirror link pushes back on the client: memory stays bounded while a client floods", async (t) => {
  const bound = 64 << 10;
  const r = await rig(t, { linkBound: bound, primary: { inputBufferCap: 64 << 10 } });
  r.link.stall("secondary", true);
  const c = await r.client();
  const total = 4 << 20;
  c.write(Buffer.alloc(total, 0x61));
  await until(() => r.primary.metrics().inputPauses > 0, "client paused");
  await settle(30);
  const m = r.primary.metrics();
  // At most the link's bound plus one socket read was taken from the client.
  assert.ok(m.bytesIn <= bound + (128 << 10), `bytesIn ${m.bytesIn}`);
  assert.ok(r.link.queuedBytes("secondary") <= bound + (128 << 10));
  assert.ok(m.pendingInputBytes <= (64 << 10) + (64 << 10));
  r.link.stall("secondary", false);
  await c.until(() => c.received.byteLength === total, "everything echoed", 20_000);
  assert.ok(c.received.every((b) => b === 0x41));
  assert.deepEqual(r.divergences, []);
  await r.close();
});

test("remus: output held until the covering checkpoint is acknowledged", async (t) => {
  const pvm = new FakeGuest("pvm");
  const primary = new PrimaryProxy({ port: pvm, mode: "remus" });
  t.after(() => primary.close());
  const { port } = await primary.listen();
  const c = await Client.connect(port);
  c.write("hello");
  await until(() => pvm.producedOn(0).byteLength === 5, "PVM output");
  await settle();
  assert.equal(c.text, "");
  primary.pauseForCheckpoint();
  primary.checkpointDone(1);
  c.write("more");
  await until(() => pvm.producedOn(0).byteLength === 9, "PVM output after checkpoint 1");
  assert.equal(c.text, "");
  primary.releaseUpTo(1);
  await c.until(() => c.text === "HELLO", "checkpoint 1's output");
  await settle();
  assert.equal(c.text, "HELLO");
  primary.pauseForCheckpoint();
  primary.checkpointDone(2);
  primary.releaseUpTo(2);
  await c.until(() => c.text === "HELLOMORE", "checkpoint 2's output");
  c.socket.destroy();
  await primary.close();
});

test("unprotected releases at once; switching a diverged colo proxy to unprotected releases what it held", async (t) => {
  const pvm = new FakeGuest("pvm");
  const plain = new PrimaryProxy({ port: pvm, mode: "unprotected" });
  t.after(() => plain.close());
  const { port } = await plain.listen();
  const c0 = await Client.connect(port);
  c0.write("quick");
  await c0.until(() => c0.text === "QUICK", "echo");
  c0.socket.destroy();
  await plain.close();

  const r = await rig(t, { svm: { transform: upperBang } });
  const c = await r.client();
  c.write("ab!cd");
  await until(() => r.divergences.length === 1, "divergence");
  await settle();
  assert.equal(c.text, "AB");
  r.primary.setMode("unprotected");
  await c.until(() => c.text === "AB!CD", "released");
  const mirrored = r.primary.metrics().bytesMirrored;
  c.write("x");
  await c.until(() => c.text === "AB!CDX", "unprotected echo");
  assert.equal(r.primary.metrics().bytesMirrored, mirrored, "no mirroring once unprotected");
  await r.close();
});

test("a client reset sends eof to both replicas", async (t) => {
  const r = await rig(t);
  const c = await r.client();
  c.write("abc");
  await c.until(() => c.text === "ABC", "echo");
  c.socket.resetAndDestroy();
  const hasEof = (g: FakeGuest) => g.inputs.some((e) => e.kind === "eof" && e.conn === 0);
  await until(() => hasEof(r.pvm) && hasEof(r.svm), "eof on both");
  await until(() => r.primary.metrics().connectionsOpen === 0, "connection retired");
  assert.deepEqual(r.divergences, []);
  await r.close();
});

test("stdout is compared like a connection", async (t) => {
  const r = await rig(t);
  r.pvm.writeStdout("same\n");
  r.svm.writeStdout("same\n");
  await until(() => r.stdio.length > 0, "stdout released");
  assert.deepEqual(r.stdio, ["stdout:same\n"]);
  r.pvm.writeStdout("x");
  r.svm.writeStdout("y");
  await until(() => r.divergences.length === 1, "stdout divergence");
  assert.deepEqual(r.divergences[0]!.stream, { kind: "stdout" });
  assert.equal(r.divergences[0]!.offset, 5);
  await r.close();
});

test("a trap or exit in one replica only is a divergence; the same end in both is not", async (t) => {
  const r = await rig(t, { primary: { svmTimeoutMs: 20 } });
  r.primary.replicaEnded("pvm", { kind: "exit", code: 0 });
  r.primary.replicaEnded("svm", { kind: "exit", code: 0 });
  await settle(30);
  assert.equal(r.divergences.length, 0);
  await r.checkpoint();
  r.primary.replicaEnded("svm", { kind: "trap", message: "unreachable" });
  await until(() => r.divergences.length === 1, "end-mismatch");
  assert.equal(r.divergences[0]!.kind, "end-mismatch");
  assert.match(r.divergences[0]!.detail, /trap/);
  await r.close();
});

test("takeover: the secondary's port served by a new unprotected primary, ids continue", async (t) => {
  const r = await rig(t);
  const c = await r.client();
  c.write("before");
  await c.until(() => c.text === "BEFORE", "echo");
  // The primary dies; the controller on S takes over.
  await r.primary.close();
  const stdio: string[] = [];
  const taken = r.secondary.takeover({ stdio: (s, b) => stdio.push(`${s}:${Buffer.from(b).toString()}`) });
  assert.equal(taken.mode, "unprotected");
  assert.equal(taken.nextConnId, 1);
  // The old primary's client is gone: the guest got an eof for it.
  await until(() => r.svm.inputs.some((e) => e.kind === "eof" && e.conn === 0), "eof for old client");
  const { port } = await taken.listen();
  const c2 = await Client.connect(port);
  c2.write("after");
  await c2.until(() => c2.text === "AFTER", "served by the new primary");
  assert.ok(r.svm.conns.has(1));
  // The guest's stdout offset, unknown to the new proxy, is learned; output goes straight out.
  r.svm.stdoutOff = 10;
  r.svm.writeStdout("late");
  assert.deepEqual(stdio, ["stdout:late"]);
  c2.socket.destroy();
  await taken.close();
  await r.close();
});

test("a PVM whose host queue is over its bound pauses that client until the port says drained", async (t) => {
  const r = await rig(t, { primary: { portQueueBound: 1024 } });
  const c = await r.client();
  r.pvm.hold();
  r.svm.hold();
  const total = 1 << 20;
  c.write(Buffer.alloc(total, 0x62));
  await until(() => r.primary.metrics().inputPauses > 0, "client paused on the PVM's queue");
  await settle(30);
  assert.ok(r.primary.metrics().bytesIn < total, `bytesIn ${r.primary.metrics().bytesIn}`);
  r.pvm.release();
  r.svm.release();
  await c.until(() => c.received.byteLength === total, "all echoed after drained", 20_000);
  assert.deepEqual(r.divergences, []);
  await r.close();
});

/**
 * A checkpoint whose PVM runs again at the cut (pvmResume "copied"): the SVM gets the state as of
 * the cut; what the PVM produces after it must not be released, nor compared with the SVM's
 * output from before the checkpoint, until checkpointDone; then it is compared afresh.
 */
async function cutCheckpoint(
  r: Awaited<ReturnType<typeof rig>>,
  seq: number,
  afterCut: () => void,
): Promise<void> {
  r.primary.pauseForCheckpoint();
  r.secondary.pauseForCheckpoint();
  await until(() => r.pvm.idle, "PVM idle");
  r.svm.applyStateOf(r.pvm); // the checkpoint: the PVM's state at the cut
  r.svm.transform = r.pvm.transform;
  const offsets = r.pvm.inputOffsets();
  r.primary.checkpointCut();
  afterCut(); // the PVM runs again while the checkpoint is on its way
  await settle();
  r.secondary.checkpointApplied(seq, offsets);
  r.primary.checkpointDone(seq);
}

test("checkpointCut: the PVM's output after the cut waits for checkpointDone, then is compared with the SVM's", async (t) => {
  const r = await rig(t, { svm: { transform: upperBang } });
  const c = await r.client();
  c.write("abc!def");
  await until(() => r.divergences.length === 1, "divergence");
  r.svm.writeStdout("old svm line\n"); // unmatched SVM output from before the checkpoint
  await settle();
  await cutCheckpoint(r, 1, () => {
    r.pvm.writeStdout("after the cut\n");
    // Nothing of it is out, and it was not compared with the SVM's stale line.
    assert.equal(r.primary.metrics().divergences.output, 1);
  });
  assert.deepEqual(r.stdio, []);
  assert.equal(r.divergences.length, 1);
  await c.until(() => c.text === "ABC!DEF", "held output released at checkpointDone");
  // Compared afresh: released once the SVM (resumed from the cut) produced the same.
  await settle();
  assert.deepEqual(r.stdio, []);
  r.svm.writeStdout("after the cut\n");
  await until(() => r.stdio.length === 1, "released when matched");
  assert.deepEqual(r.stdio, ["stdout:after the cut\n"]);
  assert.equal(r.divergences.length, 1);
  assert.equal(r.primary.metrics().heldBytes, 0);
  await r.close();
});

test("checkpointCut: output after the cut that the SVM does not match is a divergence at its offset", async (t) => {
  const r = await rig(t);
  r.pvm.writeStdout("same\n");
  r.svm.writeStdout("same\n");
  await until(() => r.stdio.length === 1, "stdout released");
  await cutCheckpoint(r, 1, () => r.pvm.writeStdout("pvm"));
  r.svm.writeStdout("svm");
  await until(() => r.divergences.length === 1, "divergence after the cut");
  assert.deepEqual(r.divergences[0]!.stream, { kind: "stdout" });
  assert.equal(r.divergences[0]!.offset, 5);
  assert.equal(r.divergences[0]!.seq, 1);
  assert.deepEqual(r.stdio, ["stdout:same\n"]);
  await r.close();
});

test("checkpointCut: losing the secondary in the window releases what the PVM produced after the cut", async (t) => {
  const r = await rig(t);
  r.primary.pauseForCheckpoint();
  await until(() => r.pvm.idle, "PVM idle");
  r.primary.checkpointCut();
  r.pvm.writeStdout("late\n");
  await settle();
  assert.deepEqual(r.stdio, []);
  r.primary.setMode("unprotected");
  await until(() => r.stdio.length === 1, "released unprotected");
  assert.deepEqual(r.stdio, ["stdout:late\n"]);
  await r.close();
});

test("checkpointCut: a PVM end after the cut counts after the checkpoint, and input stays paused", async (t) => {
  const r = await rig(t, { primary: { svmTimeoutMs: 20 } });
  const c = await r.client();
  c.write("x");
  await c.until(() => c.text === "X", "echo");
  await cutCheckpoint(r, 1, () => r.primary.replicaEnded("pvm", { kind: "exit", code: 0 }));
  // Not an end of both (the SVM was restored from a state that had not ended): a mismatch only
  // if the SVM does not end too.
  c.write("y");
  await settle(40);
  assert.equal(r.divergences.length, 1);
  assert.equal(r.divergences[0]!.kind, "end-mismatch");
  assert.equal(c.text, "X");
  assert.equal(r.pvm.inputs.filter((e) => e.kind === "data").length, 1, "no input after the PVM's end");
  await r.close();
});

test("checkpointCut outside a checkpoint is refused", async (t) => {
  const r = await rig(t);
  assert.throws(() => r.primary.checkpointCut(), { code: "bad-state" });
  await r.close();
});

test("checkpointCut: a refused checkpointDone keeps what waited after the cut", async (t) => {
  const r = await rig(t);
  r.primary.pauseForCheckpoint();
  r.secondary.pauseForCheckpoint();
  await until(() => r.pvm.idle, "PVM idle");
  r.svm.applyStateOf(r.pvm);
  const offsets = r.pvm.inputOffsets();
  r.primary.checkpointCut();
  r.pvm.writeStdout("late\n");
  await settle();
  assert.throws(() => r.primary.checkpointDone(0), { code: "invalid-argument" });
  r.secondary.checkpointApplied(1, offsets);
  r.primary.checkpointDone(1);
  r.svm.writeStdout("late\n");
  await until(() => r.stdio.length === 1, "compared and released after the real checkpointDone");
  assert.deepEqual(r.stdio, ["stdout:late\n"]);
  await r.close();
});

test("checkpointCover: what the PVM produced after the cut is covered by a checkpoint taken at a later stop: released unmatched, compared afresh past it", async (t) => {
  const r = await rig(t);
  const c = await r.client();
  c.write("a");
  await c.until(() => c.text === "A", "echo");
  // Input the PVM has not processed when the checkpoint begins (its worker was busy).
  r.pvm.hold();
  r.svm.hold();
  c.write("q");
  await until(() => r.primary.metrics().bytesIn === 2, "input mirrored");
  await settle();
  r.primary.pauseForCheckpoint();
  r.secondary.pauseForCheckpoint();
  r.primary.checkpointCut(); // the snapshot: the PVM runs on
  r.pvm.release();
  await until(() => r.pvm.idle, "PVM processed q");
  r.pvm.writeStdout("between\n");
  await settle();
  assert.equal(c.text, "A", "nothing after the cut is out");
  assert.deepEqual(r.stdio, []);
  // S's list named a page the snapshot lacked: the PVM stops again, the checkpoint is taken there.
  r.primary.checkpointCover();
  r.svm.applyStateOf(r.pvm);
  r.svm.release();
  const offsets = r.pvm.inputOffsets();
  r.primary.checkpointCut(); // the PVM resumes from the second stop
  r.pvm.writeStdout("after\n");
  await settle();
  r.secondary.checkpointApplied(1, offsets);
  r.primary.checkpointDone(1);
  // Covered: released although the SVM never produced them.
  await c.until(() => c.text === "AQ", "covered connection output released");
  await until(() => r.stdio.length === 1, "covered stdout released");
  assert.deepEqual(r.stdio, ["stdout:between\n"]);
  // Past the cover, compared as usual: released once the SVM matches.
  await settle();
  assert.equal(r.stdio.length, 1);
  r.svm.writeStdout("after\n");
  await until(() => r.stdio.length === 2, "matched after the cover");
  assert.deepEqual(r.stdio, ["stdout:between\n", "stdout:after\n"]);
  assert.deepEqual(r.divergences, []);
  assert.equal(r.primary.metrics().heldBytes, 0);
  // And the connection is compared again too.
  c.write("z");
  await c.until(() => c.text === "AQZ", "echo after the checkpoint");
  await r.close();
});

test("checkpointCover is refused without a cut, and after a PVM end past the cut", async (t) => {
  const r = await rig(t);
  r.primary.pauseForCheckpoint();
  assert.throws(() => r.primary.checkpointCover(), { code: "bad-state" });
  r.primary.checkpointCut();
  r.primary.replicaEnded("pvm", { kind: "exit", code: 0 });
  assert.throws(() => r.primary.checkpointCover(), { code: "bad-state" });
  await r.close();
});
