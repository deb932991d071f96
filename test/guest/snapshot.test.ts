/**
 * Domain.snapshot(): the guest's own thread takes its dirty pages, context and host state in one
 * step and runs on. A copy of the state at an earlier stop, patched with the snapshot's pages,
 * context and host state, must digest to what the snapshot says the guest's state was, snapshot
 * after snapshot, while the guest keeps writing memory; over the page limit it is a plain stop
 * that loses nothing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { WasmDomain, type WasmDomainOptions } from "../../src/guest/wasm/wasm-domain.ts";
import { CACHE_DIR, GUESTS, restore, snapshot } from "./helpers.ts";

const compute = new Uint8Array(readFileSync(new URL("compute.wasm", GUESTS)));

function options(args: string[]): WasmDomainOptions {
  return {
    host: { args: ["compute", ...args], env: [], preopens: [], fsLimitBytes: 1 << 20 },
    cacheDir: CACHE_DIR,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("snapshots of a running guest: the earlier state patched with each equals its digest", async () => {
  // Dirty mode: 20,000 pseudo-random page writes a second, reports on stdout every 20 ms.
  const opts = options(["--mem-mib", "8", "--ws-mib", "8", "--pages-per-sec", "20000", "--report-ms", "20"]);
  const d = await WasmDomain.create(compute, opts);
  let y: WasmDomain | undefined;
  try {
    await d.start();
    await sleep(30);
    await d.suspend();
    const base = await snapshot(d);
    d.harvestDirty();
    await d.harvestFsDirty();
    await d.resume();
    y = await restore(compute, opts, base);
    let taken = 0;
    for (let i = 0; i < 4; i++) {
      await sleep(15);
      let onTaken = 0;
      const s = await d.snapshot({ maxPages: 1 << 20, digest: true, onTaken: () => onTaken++ });
      assert.equal(s.kind, "snapshot");
      if (s.kind !== "snapshot") return;
      assert.equal(onTaken, 1);
      assert.equal(d.state, "running", "the guest runs on");
      assert.equal(s.pages.length, s.pfns.length * PAGE_SIZE);
      assert.ok(s.digest !== undefined);
      assert.ok(s.resumedAt <= performance.now() && s.stoppedMs >= 0);
      for (let k = 1; k < s.pfns.length; k++) assert.ok(s.pfns[k]! > s.pfns[k - 1]!, "ascending pfns");
      if (s.memoryPages !== y.pageCount()) await y.resize(s.memoryPages);
      for (let k = 0; k < s.pfns.length; k++)
        y.writePage(s.pfns[k]!, s.pages.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
      await y.applyContext(s.context);
      await y.applyHostState(s.hostState);
      assert.deepEqual(await y.digest(), s.digest, `snapshot ${i}: the patched copy differs`);
      taken += s.pfns.length;
    }
    assert.ok(taken > 0, "the guest wrote pages between snapshots");
    // The guest still runs and stops normally after them.
    await d.suspend();
    assert.equal(d.state, "suspended");
  } finally {
    await y?.destroy();
    await d.destroy();
  }
});

test("a snapshot over the page limit is a stop that keeps every dirty page", async () => {
  const opts = options(["--mem-mib", "8", "--ws-mib", "8", "--pages-per-sec", "20000", "--report-ms", "20"]);
  const d = await WasmDomain.create(compute, opts);
  try {
    await d.start();
    await sleep(30);
    const r = await d.snapshot({ maxPages: 0 });
    assert.deepEqual(r, { kind: "stopped" });
    assert.equal(d.state, "suspended");
    // Nothing was harvested: the stop's pages are all still in the dirty log.
    assert.ok(d.harvestDirty().length > 0);
    await d.captureContext();
    await d.resume();
    // A snapshot and a suspend asked together: the snapshot first, then the stop.
    const snap = d.snapshot({ maxPages: 1 << 20 });
    const stop = d.suspend();
    assert.equal((await snap).kind, "snapshot");
    await stop;
    assert.equal(d.state, "suspended");
    await assert.rejects(d.snapshot({ maxPages: 1 }), /bad-state|suspended/);
    await d.resume();
    await assert.rejects(d.snapshot({ maxPages: -1 }), RangeError);
  } finally {
    await d.destroy();
  }
});

test("a guest that ends before the snapshot rejects it", async () => {
  const d = await WasmDomain.create(compute, options(["--mem-mib", "1", "--ws-mib", "1", "--rounds", "1"]));
  try {
    await d.start();
    await d.whenStopped();
    assert.equal(d.state, "exited");
    await assert.rejects(d.snapshot({ maxPages: 10 }), /exited|bad-state/);
  } finally {
    await d.destroy();
  }
});
