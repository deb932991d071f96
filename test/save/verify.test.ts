/**
 * Every stream the engine writes passes the stream layer's independent verifier (the code behind
 * `colo stream verify`): a saved file, a live migration's forward stream and back channel, and a
 * checkpointed stream with several checkpoints and its back channel.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  migrate,
  openCheckpointedStream,
  receiveCheckpointed,
  receiveMigration,
} from "../../src/save/migrate.ts";
import { saveDomain } from "../../src/save/save.ts";
import { CHECKPOINT_STATE, LIBXL } from "../../src/stream/format.ts";
import { verifyBytes } from "../../src/stream/verify.ts";
import { openPair } from "../../src/transport/memory.ts";
import { CollectSink } from "./helpers/bytes.ts";
import type { MemoryDomain } from "./helpers/memory-domain.ts";
import { channelEnds, startedGuest, targets } from "./helpers/setup.ts";

function guest(dirtyPerTick = 0): Promise<MemoryDomain> {
  return startedGuest(
    { pages: 1500, dirtyPerTick, tickMs: 1, workingSet: 200, seed: 4 },
    { fill: 2, blob: "c", hostBlob: "h", fs: { "2:3": new Uint8Array(4096).fill(2) } },
  );
}

/** A memory pair whose two directions are also recorded. */
function tappedPair() {
  const fwd: Uint8Array[] = [];
  const back: Uint8Array[] = [];
  const tap =
    (into: Uint8Array[]) =>
    (c: Uint8Array): Uint8Array[] => {
      into.push(c.slice());
      return [c];
    };
  const [a, b] = openPair({ aToB: { intercept: tap(fwd) }, bToA: { intercept: tap(back) } });
  return {
    ...channelEnds(a, b),
    fwd: () => Buffer.concat(fwd),
    back: () => Buffer.concat(back),
  };
}

const { createTarget } = targets();

test("a saved file verifies as a plain stream", async () => {
  const sink = new CollectSink();
  await saveDomain(await guest(), sink);
  const s = verifyBytes(sink.bytes(), { mode: "plain" });
  assert.equal(s.bytes, sink.bytes().length);
});

test("a live migration's forward stream and back channel verify", async () => {
  const p = tappedPair();
  const src = await guest(20);
  const [, dst] = await Promise.all([
    migrate(src, p.source, { live: { maxRounds: 4, downtimeTargetMs: 1 } }),
    receiveMigration(p.target, { createTarget }),
  ]);
  await dst.destroy();
  verifyBytes(p.fwd(), { mode: "plain" });
  verifyBytes(p.back(), { backChannel: true, mode: "plain" });
  assert.equal(p.back().readUInt32LE(0), LIBXL.MIGRATION_TARGET_READY);
});

test("a checkpointed stream with several checkpoints and its back channel verify", async () => {
  const p = tappedPair();
  const src = await guest(10);
  const [stream, target] = await Promise.all([
    openCheckpointedStream(src, p.source, { live: { maxRounds: 3 } }),
    receiveCheckpointed(p.target, { createTarget }),
  ]);
  // the controller's part after the seed: the secondary resumes and says so
  await target.back.state(CHECKPOINT_STATE.SVM_RESUMED, 1n);
  await stream.recvBack();
  for (let seq = 2n; seq <= 4n; seq++) {
    await stream.sendState(CHECKPOINT_STATE.NEW, seq);
    assert.equal((await target.next()).kind, "state");
    await src.suspend();
    await target.back.state(CHECKPOINT_STATE.SVM_SUSPENDED, seq);
    await target.back.dirtyPfns([1, 2, 3]);
    await target.back.fsBlocks([]);
    await stream.recvBack();
    const b = await stream.recvBack();
    assert.equal(b?.kind, "dirty-pfns");
    await stream.recvBack();
    const d = src.harvestDirty();
    const got = target.next();
    await stream.sendCheckpoint({ seq, pfns: [...d, 1, 2, 3], fsBlocks: await src.harvestFsDirty() });
    assert.equal((await got).kind, "checkpoint");
    await target.apply();
    await target.back.state(CHECKPOINT_STATE.SVM_READY, seq);
    await stream.recvBack();
    await src.resume();
    await target.back.state(CHECKPOINT_STATE.SVM_RESUMED, seq);
    await stream.recvBack();
  }
  await stream.close();
  await target.close();
  await src.destroy();
  verifyBytes(p.fwd(), { mode: "colo" });
  verifyBytes(p.back(), { backChannel: true, mode: "colo" });
  // the seed's target said it was ready before anything else
  assert.equal(p.back().readUInt32LE(0), LIBXL.MIGRATION_TARGET_READY);
});
