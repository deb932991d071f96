import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { openPair } from "../../src/transport/memory.ts";
import { MessageChannel } from "../../src/transport/message-channel.ts";

test("batched sends: every message arrives once, in order, whatever the sizes (small copied, large uncopied)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({ type: fc.integer({ min: 1, max: 0xffff }), len: fc.oneof(fc.nat(40), fc.nat(9000)) }),
        {
          maxLength: 60,
        },
      ),
      async (specs) => {
        const [a, b] = openPair();
        const tx = new MessageChannel(a);
        const rx = new MessageChannel(b);
        tx.batch();
        const got: { type: number; body: number[] }[] = [];
        const done = new Promise<void>((resolve) => rx.on("end", () => resolve()));
        rx.onMessage((m) => got.push({ type: m.type, body: [...m.body] }));
        const sent = specs.map((s, i) => ({
          type: s.type,
          body: Array.from({ length: s.len }, (_, k) => (i + k) & 0xff),
        }));
        for (const m of sent) {
          // Split some bodies into a gather list.
          const bytes = Uint8Array.from(m.body);
          tx.send(m.type, m.body.length > 3 ? [bytes.subarray(0, 3), bytes.subarray(3)] : bytes);
        }
        tx.end(); // flushes the batch first
        await done;
        assert.deepEqual(got, sent);
        rx.end();
      },
    ),
    { numRuns: 40 },
  );
});

test("batched sends: false once the batch reaches the high-water mark, and a drain follows", async () => {
  const [a, b] = openPair({ highWaterMark: 4096 });
  const tx = new MessageChannel(a);
  const rx = new MessageChannel(b);
  tx.batch();
  let n = 0;
  rx.onMessage(() => n++);
  const drained = new Promise<void>((resolve) => tx.once("drain", () => resolve()));
  let sent = 0;
  let ok = true;
  while (ok && sent < 1000) {
    ok = tx.send(0x0101, new Uint8Array(100));
    sent++;
  }
  assert.equal(ok, false, "send() says wait before the batch is written");
  assert.ok(sent < 1000);
  await drained;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(n, sent);
  tx.destroy();
  rx.destroy();
});

test("destroy() discards a batch not yet written", async () => {
  const [a, b] = openPair();
  const tx = new MessageChannel(a);
  const rx = new MessageChannel(b);
  tx.batch();
  let n = 0;
  rx.onMessage(() => n++);
  tx.send(0x0101, new Uint8Array(10));
  tx.destroy();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(n, 0);
});
