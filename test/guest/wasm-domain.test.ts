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
