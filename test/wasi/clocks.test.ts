import assert from "node:assert/strict";
import { test } from "node:test";
import { createRealtimeClock, REALTIME_RESYNC_NS } from "../../src/guest/wasi/clocks.ts";

const MS = 1_000_000n;

test("realtime clock: nanosecond steps from the monotonic clock on a Date.now() base", () => {
  let wall = 1_700_000_000_000;
  let mono = 5_000n;
  const clock = createRealtimeClock({ wallMs: () => wall, monoNs: () => mono });
  const base = BigInt(wall) * MS;
  assert.equal(clock(), base);
  mono += 1_234n; // 1.234 µs later, same millisecond on the wall clock
  assert.equal(clock(), base + 1_234n);
  mono += 2n * MS;
  wall += 2;
  assert.equal(clock(), base + 2n * MS + 1_234n);
});

test("realtime clock: rebased on Date.now() when the wall clock steps or the clocks drift", () => {
  let wall = 1_700_000_000_000;
  let mono = 0n;
  const clock = createRealtimeClock({ wallMs: () => wall, monoNs: () => mono });
  // Wall clock stepped forward by an hour: follow it.
  wall += 3_600_000;
  mono += 10n;
  assert.equal(clock(), BigInt(wall) * MS);
  // Stepped back by a second: follow it too (realtime may go back; monotonic never does).
  wall -= 1000;
  assert.equal(clock(), BigInt(wall) * MS);
  // A drift within the bound is kept (no jumps for small differences)...
  mono += REALTIME_RESYNC_NS;
  assert.equal(clock(), BigInt(wall) * MS + REALTIME_RESYNC_NS);
  // ...one beyond it is not.
  mono += 2n * MS;
  assert.equal(clock(), BigInt(wall) * MS);
});

test("realtime clock on the system clocks: sub-millisecond resolution, monotone, near Date.now()", () => {
  const clock = createRealtimeClock();
  const reads: bigint[] = [];
  const before = BigInt(Date.now()) * MS;
  for (let i = 0; i < 20_000; i++) reads.push(clock());
  const after = BigInt(Date.now()) * MS;
  let subMs = 0;
  let notWholeMs = 0;
  for (let i = 0; i < reads.length; i++) {
    const v = reads[i]!;
    assert.ok(v >= before - REALTIME_RESYNC_NS - MS && v <= after + REALTIME_RESYNC_NS + MS, `read ${i}`);
    if (v % MS !== 0n) notWholeMs++;
    if (i > 0) {
      const d = v - reads[i - 1]!;
      assert.ok(d >= 0n, `read ${i} went back by ${-d} ns`);
      if (d > 0n && d < MS) subMs++;
    }
  }
  // With millisecond resolution both counts would be 0.
  assert.ok(notWholeMs > 0, "every read was a whole millisecond");
  assert.ok(subMs > 0, "no two reads less than a millisecond apart differed");
});
