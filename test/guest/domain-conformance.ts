/**
 * The Domain lifecycle contract (src/guest/domain.ts), as a suite any implementation can run:
 *   runDomainConformance("WasmDomain", factory)
 * The factory returns a fresh domain in state "created" whose guest, once started, keeps running
 * (and writing memory) until suspended; `restoreTarget` returns a fresh created domain of the
 * same module for apply*() + resume().
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Domain, PAGE_SIZE } from "../../src/guest/domain.ts";

export interface ConformanceFactory {
  running(): Promise<Domain>;
  restoreTarget(): Promise<Domain>;
}

async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  const run = typeof p === "function" ? async () => p() : () => p;
  await assert.rejects(
    run,
    (e: unknown) =>
      (e as { name?: string; code?: string }).name === "DomainError" && (e as { code: string }).code === code,
  );
}

export function runDomainConformance(name: string, f: ConformanceFactory): void {
  test(`${name} conformance: created state`, async () => {
    const d = await f.running();
    try {
      assert.equal(d.state, "created");
      assert.equal(d.end, undefined);
      assert.ok(d.pageCount() > 0);
      const page = new Uint8Array(PAGE_SIZE);
      d.readPage(0, page);
      page.fill(0xab);
      d.writePage(d.pageCount() - 1, page);
      const back = new Uint8Array(PAGE_SIZE);
      d.readPage(d.pageCount() - 1, back);
      assert.deepEqual(back, page);
      assert.throws(() => d.readPage(d.pageCount(), back), RangeError);
      await rejectsWith(d.suspend(), "bad-state");
      await rejectsWith(d.captureContext(), "bad-state");
      await rejectsWith(d.resume(), "bad-state");
    } finally {
      await d.destroy();
    }
  });

  test(`${name} conformance: start, harvest while running, suspend, capture, resume`, async () => {
    const d = await f.running();
    try {
      await d.start();
      assert.equal(d.state, "running");
      await rejectsWith(d.start(), "bad-state");
      await rejectsWith(d.captureContext(), "bad-state");
      assert.throws(
        () => d.writePage(0, new Uint8Array(PAGE_SIZE)),
        (e: unknown) => (e as { code?: string }).code === "bad-state",
      );
      await new Promise((r) => setTimeout(r, 30));
      const running = d.harvestDirty(); // safe while running
      for (let i = 1; i < running.length; i++) assert.ok(running[i - 1]! < running[i]!, "ascending");
      await d.suspend();
      assert.equal(d.state, "suspended");
      const a = d.harvestDirty();
      for (let i = 1; i < a.length; i++) assert.ok(a[i - 1]! < a[i]!, "ascending");
      assert.ok(running.length + a.length > 0, "a running guest dirtied pages");
      assert.deepEqual([...d.harvestDirty()], [], "harvest clears the log");
      const c1 = await d.captureContext();
      const c2 = await d.captureContext();
      assert.deepEqual(c1, c2, "same state, same context bytes");
      const g1 = await d.digest();
      assert.deepEqual(await d.digest(), g1, "digest is stable while suspended");
      await d.captureHostState({ kind: "all" });
      await d.harvestFsDirty();
      await d.resume();
      assert.equal(d.state, "running");
      await d.suspend();
      assert.equal(d.state, "suspended");
      assert.ok(d.harvestDirty().length > 0, "the resumed guest ran and dirtied pages");
    } finally {
      await d.destroy();
    }
  });

  test(`${name} conformance: a restore target takes the state and gives the same digest`, async () => {
    const a = await f.running();
    const b = await f.restoreTarget();
    try {
      await a.start();
      await new Promise((r) => setTimeout(r, 20));
      await a.suspend();
      await b.resize(a.pageCount());
      const page = new Uint8Array(PAGE_SIZE);
      for (let p = 0; p < a.pageCount(); p++) {
        a.readPage(p, page);
        b.writePage(p, page);
      }
      await b.applyContext(await a.captureContext());
      await b.applyHostState(await a.captureHostState({ kind: "all" }));
      await rejectsWith(b.start(), "bad-state");
      await b.resume();
      await b.suspend();
      assert.equal(b.state, "suspended");
    } finally {
      await a.destroy();
      await b.destroy();
    }
  });

  test(`${name} conformance: resize and destroy`, async () => {
    const d = await f.running();
    await d.start();
    await d.suspend();
    const n = d.pageCount();
    const page = new Uint8Array(PAGE_SIZE).fill(7);
    d.writePage(n - 1, page);
    await d.resize(n + 32);
    assert.equal(d.pageCount(), n + 32);
    const z = new Uint8Array(PAGE_SIZE).fill(1);
    d.readPage(n + 31, z);
    assert.ok(
      z.every((b) => b === 0),
      "grown pages read as zero",
    );
    await d.resize(n);
    assert.equal(d.pageCount(), n);
    d.readPage(n - 1, z);
    assert.deepEqual(z, page, "shrink keeps the first pages");
    await d.resume();
    await d.suspend();
    assert.equal(d.state, "suspended", "the re-created instance runs on");
    await d.destroy();
    assert.equal(d.state, "destroyed");
    await d.destroy(); // idempotent
    assert.throws(
      () => d.pageCount(),
      (e: unknown) => (e as { code?: string }).code === "destroyed",
    );
    await rejectsWith(d.resume(), "destroyed");
  });
}
