/**
 * TrackedDomain (the secondary's view of its replica) forwards page and byte writes, falls back
 * to read-patch-write for a domain without byte writes, and remembers every pfn it touched.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { TrackedDomain } from "../../src/replication/tracked-domain.ts";
import { MemoryDomain } from "../save/helpers/memory-domain.ts";

test("writeBytes and writePages land where a flat copy would, and every touched pfn is tracked", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          offset: fc.integer({ min: 0, max: 16 * PAGE_SIZE - 1 }),
          len: fc.integer({ min: 0, max: 3 * PAGE_SIZE }),
          fill: fc.integer({ min: 1, max: 255 }),
          whole: fc.boolean(),
        }),
        { maxLength: 12 },
      ),
      (writes) => {
        const inner = new MemoryDomain({ pages: 16, seed: 1 });
        const d = new TrackedDomain(inner);
        const want = inner.memory();
        const touched = new Set<number>();
        for (const w of writes) {
          if (w.whole) {
            const first = Math.floor(w.offset / PAGE_SIZE);
            const n = Math.min(Math.ceil(w.len / PAGE_SIZE), 16 - first);
            const src = new Uint8Array(n * PAGE_SIZE).fill(w.fill);
            d.writePages(first, src);
            want.set(src, first * PAGE_SIZE);
            for (let k = 0; k < n; k++) touched.add(first + k);
          } else {
            const len = Math.min(w.len, 16 * PAGE_SIZE - w.offset);
            const src = new Uint8Array(len).fill(w.fill);
            d.writeBytes(w.offset, src);
            want.set(src, w.offset);
            for (let b = w.offset; b < w.offset + len; b += 1) touched.add(Math.floor(b / PAGE_SIZE));
          }
        }
        assert.deepEqual(inner.memory(), want);
        assert.deepEqual(
          [...d.takeWritten()].sort((a, b) => a - b),
          [...touched].sort((a, b) => a - b),
        );
        assert.equal(d.takeWritten().size, 0, "taken once");
      },
    ),
    { numRuns: 200, seed: 77 },
  );
});
