/**
 * Plain restore reads PAGE_DATA streamed (one copy, pages applied as they arrive): the target gets
 * exactly what the whole-record reader gives it, and a record with a pfn past the declared memory
 * size is refused before any of its pages is written.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { isRestoreError } from "../../src/save/errors.ts";
import { RecordReader } from "../../src/save/reader.ts";
import { restoreFromSource, restoreSeed } from "../../src/save/restore.ts";
import { saveDomain } from "../../src/save/save.ts";
import { decodeAll } from "../../src/stream/decoder.ts";
import { bytesSource, CollectSink } from "./helpers/bytes.ts";
import { MemoryDomain } from "./helpers/memory-domain.ts";

async function savedBytes(pages: number): Promise<Uint8Array> {
  const d = new MemoryDomain({ pages, seed: 5 });
  d.fill(7);
  await d.start();
  d.step(20);
  const sink = new CollectSink();
  await saveDomain(d, sink);
  return sink.bytes();
}

/** A factory whose targets log every page write (pfn; a run written at once logs each of its pfns). */
function loggingFactory() {
  const writes: number[] = [];
  const made: MemoryDomain[] = [];
  const createTarget = async () => {
    const d = new MemoryDomain({ pages: 1 });
    const write = d.writePage.bind(d);
    d.writePage = (pfn, src) => {
      writes.push(pfn);
      write(pfn, src);
    };
    const writeRun = d.writePages.bind(d);
    d.writePages = (first, src) => {
      for (let k = 0; k < src.length / 4096; k++) writes.push(first + k);
      writeRun(first, src);
    };
    made.push(d);
    return d;
  };
  return { createTarget, writes, made };
}

test("streamed restore = whole-record restore, in any chunking", async () => {
  const bytes = await savedBytes(2100); // three PAGE_DATA records, the first two of 1,024 pages
  for (const size of [0, 1000, 4096, 5000]) {
    const streamed = loggingFactory();
    const a = await restoreFromSource(bytesSource(bytes, size, size + 1), streamed);
    const whole = loggingFactory();
    const b = await restoreSeed(new RecordReader(bytesSource(bytes, size, size + 1)), whole);
    assert.deepEqual(
      (a.domain as MemoryDomain).memory(),
      (b.domain as MemoryDomain).memory(),
      `size ${size}`,
    );
    assert.deepEqual(streamed.writes, whole.writes, "the same pages, in the same order");
  }
});

test("a pfn past the declared size is refused before any page of its record is written", async () => {
  const bytes = (await savedBytes(2100)).slice();
  const records = decodeAll(bytes).filter((i) => i.kind === "record" && i.name === "PAGE_DATA");
  const second = records[1]!;
  // last entry of the second record: pfn 5000 (≥ 2100 declared pages), type NOTAB
  const entry = second.offset + 16 + 8 * 1023;
  bytes.set([0x88, 0x13, 0, 0, 0, 0, 0, 0], entry);
  for (const size of [0, 65536]) {
    const f = loggingFactory();
    await assert.rejects(restoreFromSource(bytesSource(bytes, size), f), (e) => {
      assert.ok(isRestoreError(e, "pfn-out-of-range"), String(e));
      assert.equal(e.offset, second.offset);
      return true;
    });
    assert.equal(f.writes.length, 1024, "the first record's pages only");
    for (const d of f.made) assert.equal(d.state, "destroyed");
  }
});
