// A truncated checkpoint is never applied in part: the forward stream is cut at seeded random
// offsets anywhere inside a checkpoint (its info record, pages, guest context, host state, the
// last bytes before CHECKPOINT_END) and the secondary's replica afterwards is byte for byte the
// previous checkpoint's state (or, if the cut fell past the end, the whole new one): never a mix.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { channelSink, channelSource } from "../../src/save/channel.ts";
import { isRestoreError } from "../../src/save/errors.ts";
import { openCheckpointedStream, receiveCheckpointed } from "../../src/save/migrate.ts";
import { fault, type Interceptor, openPair } from "../../src/transport/memory.ts";
import { MemoryDomain, testIdentity } from "../save/helpers/memory-domain.ts";
import { formatTally, newTally } from "./history.ts";

const enc = new TextEncoder();

async function pair(hook: { fn: Interceptor | undefined }) {
  const src = new MemoryDomain({ pages: 300, dirtyPerTick: 40, tickMs: 1, workingSet: 300, seed: 3 });
  src.fill(11);
  src.setState({
    blob: enc.encode("ctx-1"),
    hostBlob: enc.encode("host-1"),
    fs: { "1:0": new Uint8Array(4096).fill(1) },
  });
  await src.start();
  const [a, b] = openPair({ aToB: { intercept: (c, o) => (hook.fn ? hook.fn(c, o) : [c]) } });
  let dst: MemoryDomain | undefined;
  const [stream, target] = await Promise.all([
    openCheckpointedStream(src, { sink: channelSink(a), back: channelSource(a) }, { live: false, seq: 1n }),
    receiveCheckpointed(
      { source: channelSource(b), back: channelSink(b) },
      {
        createTarget: async () => {
          dst = new MemoryDomain({ pages: 1, identity: testIdentity() });
          return dst;
        },
      },
    ),
  ]);
  return { src, stream, target, dst: dst! };
}

test("a checkpoint cut anywhere is discarded whole (seeded random cut points)", async () => {
  const tally = newTally();
  let discarded = 0;
  let completed = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.double({ min: 0, max: 1.05, noNaN: true }),
      fc.integer({ min: 1, max: 60 }),
      async (frac, steps) => {
        tally.runs++;
        const hook: { fn: Interceptor | undefined } = { fn: undefined };
        const { src, stream, target, dst } = await pair(hook);
        try {
          const beforeMem = dst.memory().slice();
          const beforeCtx = await dst.contextForTest();
          src.step(steps);
          await src.suspend();
          src.setState({ blob: enc.encode(`ctx-2-${steps}`), hostBlob: enc.encode("host-2") });
          const pfns = src.harvestDirty();
          // Size of this checkpoint: measure by sending it to nowhere is not possible, so bound it:
          // info + pages + context + host state + end, with generous headers.
          const estimate = 64 + pfns.length * (4096 + 16) + 4096 + 512;
          const cut = stream.bytes + Math.floor(frac * estimate);
          hook.fn = fault.truncate(cut);
          tally.kills++;
          const got = target.next().then(
            (ev) => ev,
            (e: unknown) => e,
          );
          await stream.sendCheckpoint({ seq: 2n, pfns, fsBlocks: "all" }).catch(() => {});
          const ev = await got;
          if (ev instanceof Error) {
            assert.ok(isRestoreError(ev, "truncated") || isRestoreError(ev, "io"), String(ev));
            assert.equal(target.receiver.state, "discarded");
            assert.equal(target.lastApplied, 1n);
            assert.deepEqual(dst.memory(), beforeMem, "memory untouched");
            assert.deepEqual(await dst.contextForTest(), beforeCtx, "context untouched");
            discarded++;
          } else {
            assert.equal((ev as { kind: string }).kind, "checkpoint");
            await target.apply();
            assert.deepEqual(dst.memory(), src.memory(), "whole checkpoint applied");
            assert.deepEqual(await dst.contextForTest(), await src.contextForTest());
            completed++;
          }
        } finally {
          await src.destroy();
          await dst.destroy().catch(() => {});
        }
      },
    ),
    { numRuns: 40, seed: 20240601 },
  );
  console.log(
    `${formatTally("truncated checkpoint", tally)} (discarded whole ${discarded}, completed ${completed})`,
  );
  assert.ok(discarded > 0);
});
