/** WasmDomain: the conformance suite, preemption of a compute-bound loop, the real WASI host. */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import binaryen from "binaryen";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { runDomainConformance } from "./domain-conformance.ts";
import { CACHE_DIR, GUESTS, Stdout, stubOptions } from "./helpers.ts";

/** A guest that never calls the host: an endless loop of stores over 8 pages. */
const SPIN = (() => {
  const m = binaryen.parseText(`(module
   (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
   (memory (export "memory") 2)
   (global $n (mut i32) (i32.const 0))
   (func (export "_start") (local $i i32)
    (loop $l
     (i32.store offset=65536 (i32.and (i32.mul (local.get $i) (i32.const 4)) (i32.const 32767)) (local.get $i))
     (global.set $n (i32.add (global.get $n) (i32.const 1)))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $l))))`);
  m.setFeatures(binaryen.Features.MutableGlobals);
  const b = m.emitBinary();
  m.dispose();
  return b;
})();

runDomainConformance("WasmDomain", {
  running: () => WasmDomain.create(SPIN, stubOptions(["spin"])),
  restoreTarget: () => WasmDomain.createRestoreTarget(SPIN, stubOptions(["spin"])),
});

test("a compute-bound guest with no host calls stops at a loop head and resumes", async () => {
  const d = await WasmDomain.create(SPIN, stubOptions(["spin"]));
  try {
    await d.start();
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 5));
      await d.suspend();
      assert.equal(d.state, "suspended");
      const ctx = await d.captureContext();
      assert.ok(ctx.length > 16, "an Asyncify stack was captured");
      await d.resume();
    }
  } finally {
    await d.destroy();
  }
});

/** An endless outer loop calling a function whose two nested loops run 3 × 2 iterations per call. */
const NESTED = (() => {
  const m = binaryen.parseText(`(module
   (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
   (memory (export "memory") 2)
   (global $n (mut i32) (i32.const 0))
   (func $inner (param $p i32) (local $i i32) (local $j i32)
    (loop $a
     (local.set $j (i32.const 0))
     (loop $b
      (i32.store offset=65536 (i32.and (i32.add (local.get $p) (local.get $j)) (i32.const 32764)) (local.get $i))
      (local.set $j (i32.add (local.get $j) (i32.const 4)))
      (br_if $b (i32.lt_u (local.get $j) (i32.const 8))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br_if $a (i32.lt_u (local.get $i) (i32.const 3)))))
   (func (export "_start") (local $k i32)
    (loop $l
     (call $inner (i32.shl (local.get $k) (i32.const 3)))
     (global.set $n (i32.add (global.get $n) (i32.const 1)))
     (local.set $k (i32.add (local.get $k) (i32.const 1)))
     (br $l))))`);
  m.setFeatures(binaryen.Features.MutableGlobals);
  const b = m.emitBinary();
  m.dispose();
  return b;
})();

test("short loops in a callee stop the guest even when the interval counter never runs out", async () => {
  // With an interval of 2^30 only the checks on loop entry can stop this guest: its loops run
  // 2 or 3 iterations per entry, and the endless outer loop would need 2^30 of its own.
  const d = await WasmDomain.create(NESTED, {
    ...stubOptions(["nested"]),
    transform: { preemptInterval: 1 << 30 },
  });
  try {
    await d.start();
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 5));
      let timer: NodeJS.Timeout | undefined;
      const stuck = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("suspend did not complete within 20 s")), 20_000);
      });
      await Promise.race([d.suspend(), stuck]).finally(() => clearTimeout(timer));
      assert.equal(d.state, "suspended");
      await d.resume();
    }
  } finally {
    await d.destroy();
  }
});

test("the restore target refuses a different instrumented module", async () => {
  const a = await WasmDomain.create(SPIN, stubOptions(["spin"]));
  const id = a.identity;
  await a.destroy();
  await assert.rejects(
    WasmDomain.createRestoreTarget(SPIN, { ...stubOptions(["spin"]), transform: { preempt: false } }, id),
    (e: unknown) => (e as { code?: string }).code === "identity-mismatch",
  );
});

const COMPUTE = new URL("compute.wasm", GUESTS);
test("the C compute guest on the real WASI host: suspended mid-run, same output as a plain run", async (t) => {
  if (!existsSync(COMPUTE)) return t.skip("guests/compute.wasm not built");
  if (!existsSync(new URL("../../src/guest/wasi/host.ts", import.meta.url)))
    return t.skip("no WASI host yet");
  const bytes = new Uint8Array(readFileSync(COMPUTE));
  const host = {
    args: ["compute", "--rounds", "4", "--mem-mib", "2", "--ws-mib", "1"],
    env: [],
    preopens: [],
    fsLimitBytes: 1 << 20,
  };
  const run = async (transform: { dirty: boolean; asyncify: boolean; preempt: boolean }, stops: number) => {
    const d = await WasmDomain.create(bytes, { host, transform, cacheDir: CACHE_DIR });
    const out = new Stdout();
    out.attach(d);
    await d.start();
    for (let i = 0; i < stops && d.state === "running"; i++) {
      await new Promise((r) => setTimeout(r, 3));
      if (d.state !== "running") break;
      await d.suspend();
      if ((d.state as string) === "suspended") await d.resume();
    }
    await d.whenStopped();
    const end = d.end;
    await d.destroy();
    return { text: out.text, end };
  };
  const plain = await run({ dirty: false, asyncify: false, preempt: false }, 0);
  const full = await run({ dirty: true, asyncify: true, preempt: true }, 5);
  assert.deepEqual(plain.end, { kind: "exit", code: 0 });
  assert.deepEqual(full.end, plain.end);
  assert.equal(full.text, plain.text);
});
