import assert from "node:assert/strict";
import { test } from "node:test";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { Emitter } from "../../src/save/emit.ts";
import { isRestoreError, isSaveError } from "../../src/save/errors.ts";
import {
  type CheckpointedStream,
  type CheckpointedTarget,
  migrate,
  openCheckpointedStream,
  receiveCheckpointed,
  receiveMigration,
} from "../../src/save/migrate.ts";
import { CHECKPOINT_STATE, LIBXL } from "../../src/stream/format.ts";
import { fault, type Interceptor, openPair } from "../../src/transport/memory.ts";
import type { MemoryDomain } from "./helpers/memory-domain.ts";
import { channelEnds, startedGuest, targets } from "./helpers/setup.ts";

function busyDomain(pages: number, dirtyPerTick: number): Promise<MemoryDomain> {
  return startedGuest(
    { pages, dirtyPerTick, tickMs: 1, workingSet: Math.min(pages, 300), seed: 9 },
    { fill: 5, blob: "ctx", hostBlob: "host", fs: { "1:0": new Uint8Array(4096).fill(1) } },
  );
}

test("live migration of a guest that keeps dirtying pages gives a byte-identical target", async () => {
  const src = await busyDomain(4000, 40);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  const t = targets();
  const rounds: number[] = [];
  const [report, dst] = await Promise.all([
    migrate(src, l.source, {
      live: { downtimeTargetMs: 1, maxRounds: 6 },
      onProgress: (p) => rounds.push(p.round),
    }),
    receiveMigration(l.target, t),
  ]);
  assert.equal(src.state, "destroyed");
  assert.equal(dst.state, "running");
  await dst.suspend();
  assert.deepEqual((dst as MemoryDomain).memory().subarray(0), src.memory(), "memory identical");
  assert.deepEqual(await (dst as MemoryDomain).contextForTest(), await src.contextForTest());
  assert.ok(report.rounds >= 2, `pre-copy ran ${report.rounds} rounds`);
  assert.equal(report.pagesPerRound[0], 4000, "round 1 sends every page");
  // pages went in as runs (one writePages call per run within a chunk), not page by page
  const calls = (dst as MemoryDomain).writePagesCalls;
  assert.ok(calls > 0 && calls < 4000, `${calls} writePages calls`);
  assert.ok(report.downtimeMs >= 0 && Number.isFinite(report.downtimeMs));
  assert.ok(rounds.length > 0);
  await dst.destroy();
});

test("without RECEIVED the source resumes and keeps running", async () => {
  const src = await busyDomain(500, 5);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  // the target side says it is ready, reads everything but never answers, then drops the connection
  const drain = (async () => {
    await l.target.back.write(new Emitter().migrationTargetReady());
    for (let c = await l.target.source.read(); c !== null; c = await l.target.source.read()) {
      if (c.length > 0 && src.state === "suspended") break;
    }
    b.destroy();
  })();
  await assert.rejects(
    migrate(src, l.source, { live: false }),
    (e) => isSaveError(e, "no-received") || isSaveError(e, "back-channel") || isSaveError(e, "io"),
  );
  await drain;
  assert.equal(src.state, "running");
  await src.destroy();
});

test("a target that never says MIGRATION_TARGET_READY: the guest is never stopped", async () => {
  const src = await busyDomain(500, 5);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  let suspended = false;
  const drain = (async () => {
    for (let c = await l.target.source.read(); c !== null; c = await l.target.source.read()) {
      if (src.state === "suspended") suspended = true;
    }
  })();
  await assert.rejects(migrate(src, l.source, { readyTimeoutMs: 300 }), (e) => isSaveError(e, "no-ready"));
  b.destroy();
  await drain.catch(() => {});
  assert.equal(suspended, false);
  assert.equal(src.state, "running");
  await src.destroy();
});

test("a secondary that never says MIGRATION_TARGET_READY: no page is sent, the seed fails, the source runs", async () => {
  const src = await busyDomain(500, 5);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  let bytes = 0;
  const drain = (async () => {
    for (let c = await l.target.source.read(); c !== null; c = await l.target.source.read())
      bytes += c.length;
  })();
  await assert.rejects(openCheckpointedStream(src, l.source, { readyTimeoutMs: 300 }), (e) =>
    isSaveError(e, "no-ready"),
  );
  b.destroy();
  await drain.catch(() => {});
  assert.ok(bytes < 4096, `only headers and the module went out (${bytes} bytes)`);
  assert.equal(src.state, "running");
  await src.destroy();
});

test("a secondary that says something else before MIGRATION_TARGET_READY is refused", async () => {
  const src = await busyDomain(200, 0);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  await l.target.back.write(new Emitter().checkpointState(CHECKPOINT_STATE.SVM_READY, 1n));
  const drain = (async () => {
    for (let c = await l.target.source.read(); c !== null; c = await l.target.source.read()) {}
  })();
  await assert.rejects(openCheckpointedStream(src, l.source), (e) => isSaveError(e, "no-ready"));
  b.destroy();
  await drain.catch(() => {});
  assert.equal(src.state, "running");
  await src.destroy();
});

test("without GO the target discards what it received", async () => {
  const src = await busyDomain(300, 0);
  // Cut the forward stream after END, before GO: GO is the last record, 8 bytes.
  let total = Number.POSITIVE_INFINITY;
  const [a, b] = openPair({ aToB: { intercept: (c, o) => (o + c.length > total ? "cut" : [c]) } });
  const l = channelEnds(a, b);
  const t = targets();
  const srcPromise = (async () => {
    // A saver that stops before GO: run the real migration but cut GO out.
    total = Number.POSITIVE_INFINITY;
    return migrate(src, l.source, { live: false });
  })();
  // Intercept: once RECEIVED was sent, anything more from the source is cut.
  const tgt = receiveMigration(
    {
      source: l.target.source,
      back: {
        write: async (ch) => {
          // MIGRATION_TARGET_READY goes first; cut at RECEIVED
          const head = ch[0];
          if (
            head !== undefined &&
            new DataView(head.buffer, head.byteOffset).getUint32(0, true) === LIBXL.MIGRATION_RECEIVED
          )
            total = 0;
          await l.target.back.write(ch);
        },
        end: () => l.target.back.end(),
        retains: true,
      },
    },
    t,
  );
  await assert.rejects(tgt, (e) => isRestoreError(e, "no-go"));
  await srcPromise.catch(() => {});
  assert.equal(t.made[0]?.state, "destroyed");
});

/** Suspend, dirty some pages while "running", and send one checkpoint; returns D. */
async function oneCheckpoint(
  stream: CheckpointedStream,
  src: MemoryDomain,
  target: CheckpointedTarget | undefined,
  seq: bigint,
) {
  src.step(30);
  await src.suspend();
  const pfns = src.harvestDirty();
  const fs = await src.harvestFsDirty();
  const sent = stream.sendCheckpoint({ seq, pfns, fsBlocks: fs });
  const got = target?.next();
  await sent;
  return got;
}

test("checkpointed stream: seed acknowledged by SVM_READY, then whole checkpoints applied in order", async () => {
  const src = await busyDomain(800, 0);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  const t = targets();
  const [stream, target] = await Promise.all([
    openCheckpointedStream(src, l.source, { live: { maxRounds: 3 }, seq: 1n }),
    receiveCheckpointed(l.target, t),
  ]);
  assert.equal(src.state, "running", "the source keeps running after the seed");
  assert.equal(target.lastApplied, 1n);
  const dst = t.made[0]!;
  for (let seq = 2n; seq <= 5n; seq++) {
    // the primary announces the checkpoint; the secondary answers on the back channel
    await stream.sendState(CHECKPOINT_STATE.NEW, seq);
    assert.deepEqual(await target.next(), { kind: "state", id: CHECKPOINT_STATE.NEW, seq });
    await target.back.state(CHECKPOINT_STATE.SVM_SUSPENDED, seq);
    await target.back.dirtyPfns([0, 1]);
    assert.deepEqual(await stream.recvBack(), { kind: "state", id: CHECKPOINT_STATE.SVM_SUSPENDED, seq });
    const b = await stream.recvBack();
    assert.equal(b?.kind, "dirty-pfns");
    const ev = await oneCheckpoint(stream, src, target, seq);
    assert.equal(ev?.kind, "checkpoint");
    assert.equal(target.receiver.state, "complete");
    await target.apply();
    assert.equal(target.lastApplied, seq);
    assert.deepEqual(dst.memory(), src.memory());
    assert.deepEqual(await dst.contextForTest(), await src.contextForTest());
    await target.back.state(CHECKPOINT_STATE.SVM_READY, seq);
    assert.deepEqual(await stream.recvBack(), { kind: "state", id: CHECKPOINT_STATE.SVM_READY, seq });
    await src.resume();
  }
  await stream.close();
  assert.deepEqual(await target.next(), { kind: "end" });
  await src.destroy();
});

async function seeded(intercept: { hook: Interceptor | undefined }) {
  const src = await busyDomain(600, 0);
  const [a, b] = openPair({ aToB: { intercept: (c, o) => (intercept.hook ? intercept.hook(c, o) : [c]) } });
  const l = channelEnds(a, b);
  const t = targets();
  const [stream, target] = await Promise.all([
    openCheckpointedStream(src, l.source, { live: false, seq: 1n }),
    receiveCheckpointed(l.target, t),
  ]);
  return { src, stream, target, dst: t.made[0]! };
}

test("a checkpoint in two parts (A, then the secondary's B): B's pages that A lacked go too, once each, and the target matches", async () => {
  // Pages read one by one, lent as views, copied page by page, copied in runs from one view.
  const modes = [
    { borrow: false, copy: false, view: false },
    { borrow: true, copy: false, view: true },
    { borrow: false, copy: true, view: false },
    { borrow: false, copy: true, view: true },
  ];
  for (const { borrow, copy, view } of modes) {
    const { src, stream, target, dst } = await seeded({ hook: undefined });
    if (view) {
      // a domain that lends views of its memory (the test double copies; the engine cannot tell)
      Object.assign(src, {
        pageView(pfn: number, count: number): Uint8Array {
          const v = new Uint8Array(count * PAGE_SIZE);
          for (let i = 0; i < count; i++)
            src.readPage(pfn + i, v.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
          return v;
        },
      });
    }
    src.step(30);
    await src.suspend();
    const a = src.harvestDirty();
    const fs = await src.harvestFsDirty();
    // The secondary wrote pages of its own (B − A): only the source's copies repair them.
    const notInA = [...Array(src.pageCount()).keys()].filter((p) => !a.includes(p)).slice(0, 5);
    for (const p of notInA) dst.writePage(p, new Uint8Array(PAGE_SIZE).fill(0xee));
    const b = [notInA[0]!, ...notInA, a[0]!, src.pageCount() + 7]; // duplicates, a page of A, one past the size
    const got = target.next();
    stream.beginCheckpoint(2n, a, { borrow, copy });
    assert.throws(
      () => stream.beginCheckpoint(3n, a),
      (e) => isSaveError(e, "bad-state"),
    );
    const atCheckpoint = src.memory();
    const contextAt = await src.contextForTest();
    let copied = false;
    const sent = await stream.finishCheckpoint({
      more: b,
      fsBlocks: fs,
      // The source may run on from here while the bytes are written: they must be copies.
      onCopied: () => {
        copied = true;
        src.step(30);
      },
    });
    assert.equal(copied, copy, "onCopied is called for a copied checkpoint only");
    const ev = await got;
    assert.equal(sent.pages, a.length + notInA.length);
    assert.equal(ev.kind === "checkpoint" && ev.summary.pages, a.length + notInA.length);
    await target.apply();
    assert.deepEqual(dst.memory(), atCheckpoint, `borrow ${borrow}, copy ${copy}, view ${view}`);
    if (copy) assert.notDeepEqual(src.memory(), atCheckpoint, "the source ran on");
    assert.deepEqual(await dst.contextForTest(), contextAt);
    await assert.rejects(stream.finishCheckpoint({ fsBlocks: fs }), (e) => isSaveError(e, "bad-state"));
    await src.destroy();
  }
});

test("a checkpoint cut short is never applied in part: the previous state stays", async () => {
  const hook: { hook: Interceptor | undefined } = { hook: undefined };
  const { src, stream, target, dst } = await seeded(hook);
  const ev = await oneCheckpoint(stream, src, target, 2n);
  await target.apply();
  assert.equal(ev?.kind, "checkpoint");
  const before = dst.memory();
  const ctxBefore = await dst.contextForTest();
  await src.resume();
  // cut the forward stream in the middle of checkpoint 3's pages
  const at = stream.bytes + 20_000;
  hook.hook = fault.truncate(at);
  // MemoryChannel interceptor offsets count from the first byte of the stream
  src.step(30);
  await src.suspend();
  const pfns = src.harvestDirty();
  const got = target.next();
  await stream.sendCheckpoint({ seq: 3n, pfns, fsBlocks: [] }).catch(() => {});
  await assert.rejects(got, (e) => isRestoreError(e, "io") || isRestoreError(e, "truncated"));
  assert.equal(target.receiver.state, "discarded");
  assert.equal(target.lastApplied, 2n);
  assert.deepEqual(dst.memory(), before);
  assert.deepEqual(await dst.contextForTest(), ctxBefore);
  await src.destroy();
});

test("a malformed record mid-checkpoint discards the partial checkpoint", async () => {
  const hook: { hook: Interceptor | undefined } = { hook: undefined };
  const { src, stream, target, dst } = await seeded(hook);
  const before = dst.memory();
  // corrupt the reserved word of checkpoint 2's first PAGE_DATA: CHECKPOINT_INFO is 24 bytes,
  // then the PAGE_DATA header (8), count (4), reserved (4)
  hook.hook = fault.corrupt(stream.bytes + 24 + 12, 0x01);
  const got = oneCheckpoint(stream, src, target, 2n);
  await assert.rejects(got, (e) => isRestoreError(e, "malformed"));
  assert.equal(target.receiver.state, "discarded");
  assert.equal(target.lastApplied, 1n);
  assert.deepEqual(dst.memory(), before);
  await src.destroy();
});

test("pre-copy goes one more round while a set that fits is still large and halving", async () => {
  const src = await busyDomain(4000, 40);
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  const t = targets();
  const [report, dst] = await Promise.all([
    // a budget every set fits in: only minFinalPages keeps pre-copy going
    migrate(src, l.source, { live: { downtimeTargetMs: 60_000, minFinalPages: 16 } }),
    receiveMigration(l.target, t),
  ]);
  const rounds = report.pagesPerRound;
  assert.ok(rounds.length >= 3, `rounds ${rounds.join(", ")}`);
  assert.ok(rounds[1]! > 16, `round 2 had something to send: ${rounds.join(", ")}`);
  assert.ok(rounds.at(-1)! < rounds[1]!, `the stop sent less than round 2: ${rounds.join(", ")}`);
  await dst.suspend();
  assert.deepEqual((dst as MemoryDomain).memory(), src.memory());
  await dst.destroy();
});

test("a checkpoint begun from a snapshot: built from its copies while the source runs on; pages it lacks refused; dropped, nothing of it is written", async () => {
  const { src, stream, target, dst } = await seeded({ hook: undefined });
  // What Domain.snapshot hands over: the dirty pages copied, the context, the host state.
  const take = async () => {
    src.step(30);
    await src.suspend();
    const pfns = src.harvestDirty();
    const fsBlocks = await src.harvestFsDirty();
    const pages = new Uint8Array(pfns.length * PAGE_SIZE);
    pfns.forEach((p, i) => {
      src.readPage(p, pages.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    });
    const snap = {
      pfns,
      pages,
      memoryPages: src.pageCount(),
      fsBlocks,
      context: await src.captureContext(),
      hostState: await src.captureHostState({ kind: "some", blocks: fsBlocks }),
      memory: src.memory(),
    };
    await src.resume();
    src.step(30); // the source runs on: the checkpoint must come from the copies
    return snap;
  };
  let s = await take();
  const notInS = [...Array(src.pageCount()).keys()].find((p) => !s.pfns.includes(p))!;
  const bytes0 = stream.bytes;
  stream.beginCheckpoint(2n, s.pfns, { snapshot: s });
  await assert.rejects(
    stream.finishCheckpoint({
      more: [notInS],
      fsBlocks: s.fsBlocks,
      context: Promise.resolve(s.context),
      hostState: Promise.resolve(s.hostState),
    }),
    (e) => isSaveError(e, "bad-state"),
  );
  // Dropped (the primary would stop its PVM and take it again): nothing went out.
  stream.beginCheckpoint(2n, s.pfns, { snapshot: s });
  stream.abandonCheckpoint();
  assert.throws(
    () => stream.abandonCheckpoint(),
    (e) => isSaveError(e, "bad-state"),
  );
  assert.equal(stream.bytes, bytes0);
  // Taken again: the target gets the second snapshot's state, the source long past it.
  const first = s.pfns; // harvested by the dropped snapshot: the retake must carry them
  await src.suspend();
  const carry = src.harvestDirty();
  await src.resume();
  s = await take();
  const pfns = Uint32Array.from(new Set([...first, ...carry, ...s.pfns])).sort();
  const all = new Uint8Array(pfns.length * PAGE_SIZE);
  pfns.forEach((p, i) => {
    all.set(s.memory.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE), i * PAGE_SIZE);
  });
  const got = target.next();
  stream.beginCheckpoint(2n, pfns, { snapshot: { pages: all, memoryPages: s.memoryPages } });
  await stream.finishCheckpoint({
    more: [s.pfns[0]!],
    fsBlocks: s.fsBlocks,
    context: Promise.resolve(s.context),
    hostState: Promise.resolve(s.hostState),
  });
  assert.equal((await got).kind, "checkpoint");
  await target.apply();
  assert.deepEqual(dst.memory(), s.memory, "the target holds the snapshot's state");
  assert.deepEqual(await dst.contextForTest(), s.context);
  assert.notDeepEqual(src.memory(), s.memory, "the source ran on");
  await src.suspend();
  await src.resume();
  await src.destroy();
});
