/**
 * Runs of stores off one base local are marked once, after the run's last store (transform.ts,
 * Walker#block). These tests would fail if a run reached across a point where the guest calls
 * out (here a WASI call that harvests in the middle of the block, as the main thread may at any
 * time), across a change of the base or a memory.grow, or if the run's two marks missed a page.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import binaryen from "binaryen";
import fc from "fast-check";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { CTL_MEMORY_PAGES, CTL_STOP } from "../../src/guest/wasm/layout.ts";
import { harvestMap } from "../../src/guest/wasm/state-tools.ts";
import { transform } from "../../src/guest/wasm/transform.ts";

type Op =
  | {
      readonly t: "store";
      readonly width: 1 | 2 | 4 | 8;
      readonly form: 0 | 1 | 2;
      readonly k: number;
      readonly off: number;
    }
  | { readonly t: "call" }
  | { readonly t: "rebase"; readonly delta: number }
  | { readonly t: "load" }
  | { readonly t: "grow" };

const STORE = { 1: "i32.store8", 2: "i32.store16", 4: "i32.store", 8: "i64.store" } as const;

function wat(ops: readonly Op[]): string {
  let v = 0;
  const body = ops.map((op) => {
    switch (op.t) {
      case "store": {
        const ptr =
          op.form === 0
            ? "(local.get $b)"
            : op.form === 1
              ? `(i32.add (local.get $b) (i32.const ${op.k}))`
              : `(i32.sub (local.get $b) (i32.const ${-op.k}))`;
        const value = op.width === 8 ? `(i64.const ${++v})` : `(i32.const ${++v})`;
        return `(${STORE[op.width]} offset=${op.off} ${ptr} ${value})`;
      }
      case "call":
        return "(drop (call $yield))";
      case "rebase":
        return `(local.set $b (i32.add (local.get $b) (i32.const ${op.delta})))`;
      case "load":
        return "(local.set $x (i32.add (local.get $x) (i32.load (local.get $b))))";
      default:
        return "(drop (memory.grow (i32.const 0)))"; // grow
    }
  });
  return `(module
 (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
 (memory (export "memory") 4 8)
 (func (export "_start"))
 (func (export "run") (param $b i32) (local $x i32)
  ${body.join("\n  ")}))`;
}

function build(ops: readonly Op[]): Uint8Array {
  const m = binaryen.parseText(wat(ops));
  m.setFeatures(binaryen.Features.MutableGlobals | binaryen.Features.BulkMemory);
  assert.ok(m.validate());
  const b = m.emitBinary();
  m.dispose();
  return transform(b, { asyncify: false, preempt: false }).bytes;
}

/**
 * Run `ops` with base `base`, harvesting (and checking against a shadow copy) at every call and
 * at the end. Returns the number of changed pages checked.
 */
function runChecked(ops: readonly Op[], base: number): number {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 8, shared: true });
  const control = new WebAssembly.Memory({
    initial: CTL_MEMORY_PAGES,
    maximum: CTL_MEMORY_PAGES,
    shared: true,
  });
  const map64 = new Float64Array(control.buffer, 0, CTL_STOP / 8);
  const ctl32 = new Int32Array(control.buffer);
  let shadow = new Uint8Array(memory.buffer).slice();
  let changed = 0;
  const check = () => {
    const mem = new Uint8Array(memory.buffer);
    const log = new Set(harvestMap(map64, ctl32, mem.length / PAGE_SIZE));
    for (let p = 0; p < shadow.length / PAGE_SIZE; p++) {
      const a = shadow.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      const b = mem.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
      if (Buffer.compare(a, b) !== 0) {
        changed++;
        assert.ok(log.has(p), `page ${p} changed but is not in the log`);
      }
    }
    shadow = mem.slice();
  };
  const inst = new WebAssembly.Instance(new WebAssembly.Module(build(ops)), {
    colo: { memory, dirty: control, preempt: () => {} },
    wasi_snapshot_preview1: {
      sched_yield: () => {
        check();
        return 0;
      },
    },
  });
  (inst.exports.run as (b: number) => void)(base);
  check();
  return changed;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("store" as const),
      width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
      form: fc.constantFrom(0 as const, 1 as const, 2 as const),
      k: fc.integer({ min: -6000, max: 6000 }),
      off: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 6000 })),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ t: "call" as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant("rebase" as const), delta: fc.integer({ min: -3000, max: 3000 }) }),
  },
  { weight: 1, arbitrary: fc.constant({ t: "load" as const }) },
  { weight: 1, arbitrary: fc.constant({ t: "grow" as const }) },
);

/** Keep every address in [0, 4 pages): form 0 ignores k; rebases add up to at most ±12000. */
function fits(ops: readonly Op[], base: number): boolean {
  let b = base;
  for (const op of ops) {
    if (op.t === "rebase") b += op.delta;
    if (op.t === "load" && (b < 0 || b + 4 > 4 * 65536)) return false;
    if (op.t === "store") {
      const a = b + (op.form === 0 ? 0 : op.k) + op.off;
      if (a < 0 || a + op.width > 4 * 65536) return false;
    }
  }
  return true;
}

test("runs of stores: every page changed between two harvests is logged, with harvests inside the block", () => {
  let changed = 0;
  fc.assert(
    fc.property(
      fc.array(opArb, { minLength: 1, maxLength: 30 }),
      fc.oneof(
        fc.integer({ min: 30000, max: 200000 }),
        fc
          .integer({ min: 8, max: 48 })
          .chain((p) => fc.integer({ min: p * PAGE_SIZE - 9, max: p * PAGE_SIZE + 1 })),
      ),
      (ops, base) => {
        fc.pre(fits(ops, base));
        changed += runChecked(ops, base);
      },
    ),
    { numRuns: 120, seed: 7 },
  );
  assert.ok(changed > 100, `too few changed pages (${changed}) for the test to mean anything`);
});

const st = (width: 1 | 2 | 4 | 8, k: number, off = 0): Op => ({ t: "store", width, form: 1, k, off });

test("a store after a call in the same block is still marked (the run ends at the call)", () => {
  // Stores 1 and 3 are 8 bytes apart off the same base; the call in between harvests.
  assert.ok(runChecked([st(8, 0), { t: "call" }, st(8, 8)], 40 * PAGE_SIZE) >= 2);
});

test("a run's marks cover the pages of its first and last byte, wherever the base falls", () => {
  for (const base of [40 * PAGE_SIZE - 4096, 40 * PAGE_SIZE - 3, 40 * PAGE_SIZE, 40 * PAGE_SIZE + 4093]) {
    // 4096-byte span (the largest run): both ends, and stores in between out of order.
    runChecked([st(1, 0), st(4, 2000), st(8, 4088), st(2, 100, 3)], base);
    // Negative constants (i32.sub form) and offsets together.
    runChecked([{ t: "store", width: 8, form: 2, k: -4000, off: 8 }, st(8, 0, 100), st(1, -4000)], base);
  }
  // 4098 bytes from the last byte of a page reach into a third page: that is not one run.
  runChecked([st(1, 0), st(1, 2048), st(1, 4097)], 40 * PAGE_SIZE - 1);
});

test("a run of four 8-byte stores off one base gets two marks, not eight", () => {
  const m = binaryen.readBinary(build([st(8, 0), st(8, 8), st(8, 16), st(8, 24)]));
  m.setFeatures(binaryen.Features.All);
  const text = m.emitText();
  m.dispose();
  // The control memory is the second imported memory; count byte stores into it.
  assert.equal(text.match(/i32\.store8 \$mimport\$1/g)?.length, 2);
});

test("a change of the base ends a run; a memory.grow between stores leaves them marked", () => {
  const base = 50 * PAGE_SIZE - 2;
  assert.ok(runChecked([st(4, 0), { t: "rebase", delta: 4096 }, st(4, 0), { t: "call" }], base) >= 2);
  assert.ok(runChecked([st(4, 0), { t: "grow" }, st(4, 8), { t: "call" }, st(4, 16)], base) >= 2);
});
