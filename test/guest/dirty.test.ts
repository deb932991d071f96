/**
 * Dirty-log completeness: the instrumented module runs in this thread (no worker) on the same
 * shared memories a domain uses; a WAT interpreter executes random store programs; every page
 * whose bytes changed between two harvests must be in the log (checked against a shadow copy).
 * False positives (marked, unchanged: a store of the same bytes) are allowed and reported.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import binaryen from "binaryen";
import fc from "fast-check";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import { CTL_MEMORY_PAGES, CTL_STOP } from "../../src/guest/wasm/layout.ts";
import { harvestMap } from "../../src/guest/wasm/state-tools.ts";
import { transform } from "../../src/guest/wasm/transform.ts";

/** Ops: [kind, addr, val, len] records of 16 bytes at PROG; run(n) executes n of them. */
const OPS = [
  "store8",
  "store16",
  "store32",
  "store64",
  "f64store",
  "fill",
  "copy",
  "rmw",
  "cmpxchg",
  "atomicstore",
  "init",
  "grow",
  "v128",
] as const;
const PROG = 0;
const PROG_BYTES = 64 * 1024;
const WAT = `(module
 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
 (memory (export "memory") 4 64)
 (data $seg "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
 (func (export "_start"))
 (func (export "run") (param $n i32) (local $i i32) (local $p i32) (local $a i32) (local $v i32) (local $l i32)
  (block $done (loop $next
   (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
   (local.set $p (i32.add (i32.const ${PROG}) (i32.shl (local.get $i) (i32.const 4))))
   (local.set $a (i32.load offset=4 (local.get $p)))
   (local.set $v (i32.load offset=8 (local.get $p)))
   (local.set $l (i32.load offset=12 (local.get $p)))
   (block $end (block $b12 (block $b11 (block $b10 (block $b9 (block $b8 (block $b7 (block $b6 (block $b5 (block $b4 (block $b3 (block $b2 (block $b1 (block $b0
     (br_table $b0 $b1 $b2 $b3 $b4 $b5 $b6 $b7 $b8 $b9 $b10 $b11 $b12 (i32.load (local.get $p))))
     (i32.store8 (local.get $a) (local.get $v)) (br $end))
     (i32.store16 offset=0 (local.get $a) (local.get $v)) (br $end))
     (i32.store (local.get $a) (local.get $v)) (br $end))
     (i64.store offset=3 (local.get $a) (i64.extend_i32_u (local.get $v))) (br $end))
     (f64.store (local.get $a) (f64.convert_i32_u (local.get $v))) (br $end))
     (memory.fill (local.get $a) (local.get $v) (local.get $l)) (br $end))
     (memory.copy (local.get $a) (local.get $v) (local.get $l)) (br $end))
     (drop (i32.atomic.rmw.add (i32.and (local.get $a) (i32.const -4)) (local.get $v))) (br $end))
     (drop (i32.atomic.rmw.cmpxchg (i32.and (local.get $a) (i32.const -4)) (i32.const 0) (local.get $v))) (br $end))
     (i64.atomic.store (i32.and (local.get $a) (i32.const -8)) (i64.extend_i32_u (local.get $v))) (br $end))
     (memory.init $seg (local.get $a) (i32.and (local.get $v) (i32.const 31)) (i32.and (local.get $l) (i32.const 31))) (br $end))
     (drop (memory.grow (i32.const 1))) (br $end))
   (v128.store offset=5 (local.get $a) (i32x4.splat (local.get $v))))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br $next))))
)`;

function buildModule(): Uint8Array {
  const m = binaryen.parseText(WAT);
  // Atomics on an unshared memory are valid; a module of its own with a shared memory is refused.
  m.setFeatures(
    binaryen.Features.MutableGlobals |
      binaryen.Features.BulkMemory |
      binaryen.Features.BulkMemoryOpt |
      binaryen.Features.Atomics |
      binaryen.Features.SIMD128 |
      binaryen.Features.SignExt,
  );
  assert.ok(m.validate());
  const b = m.emitBinary();
  m.dispose();
  return b;
}

const instrumented = transform(buildModule(), { asyncify: false, preempt: false });

/** The instrumented module on fresh shared memories, in this thread. */
function instantiate(): {
  memory: WebAssembly.Memory;
  control: WebAssembly.Memory;
  inst: WebAssembly.Instance;
} {
  const memory = new WebAssembly.Memory({ initial: 4, maximum: 64, shared: true });
  const control = new WebAssembly.Memory({
    initial: CTL_MEMORY_PAGES,
    maximum: CTL_MEMORY_PAGES,
    shared: true,
  });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(instrumented.bytes), {
    colo: { memory, dirty: control, preempt: () => {} },
    wasi_snapshot_preview1: { proc_exit: () => {} },
  });
  return { memory, control, inst };
}

interface Op {
  readonly kind: number;
  readonly addr: number;
  readonly val: number;
  readonly len: number;
}

const opArb = (memBytes: number): fc.Arbitrary<Op> =>
  fc.record({
    kind: fc.integer({ min: 0, max: OPS.length - 1 }),
    // Near page boundaries half the time, so stores straddle pages.
    addr: fc.oneof(
      fc.integer({ min: PROG_BYTES, max: memBytes - 64 }),
      fc
        .integer({ min: PROG_BYTES / PAGE_SIZE + 1, max: memBytes / PAGE_SIZE - 1 })
        .chain((p) => fc.integer({ min: p * PAGE_SIZE - 12, max: p * PAGE_SIZE + 3 })),
    ),
    val: fc.integer({ min: 0, max: 0xffffffff }),
    len: fc.integer({ min: 0, max: 3 * PAGE_SIZE }),
  });

test("dirty log: every page changed between two harvests is in the log (random store programs)", () => {
  let falsePositives = 0;
  let changed = 0;
  fc.assert(
    fc.property(
      fc.array(fc.array(opArb(4 * 65536), { maxLength: 40 }), { minLength: 1, maxLength: 4 }),
      (rounds) => {
        const { memory, control, inst } = instantiate();
        const run = inst.exports.run as (n: number) => void;
        const map64 = new Float64Array(control.buffer, 0, CTL_STOP / 8);
        const ctl32 = new Int32Array(control.buffer);
        for (const ops of rounds) {
          let mem = new Uint8Array(memory.buffer);
          // Bounds: keep every op inside the memory as it is now, sources too (copy).
          const prog = new DataView(mem.buffer, PROG, PROG_BYTES);
          ops.forEach((op, i) => {
            const len = Math.min(op.len, mem.length - op.addr - 16);
            const val = op.kind === 6 ? PROG_BYTES + (op.val % (mem.length - PROG_BYTES - len)) : op.val;
            prog.setUint32(i * 16, op.kind, true);
            prog.setUint32(i * 16 + 4, Math.min(op.addr, mem.length - 24), true);
            prog.setUint32(i * 16 + 8, val, true);
            prog.setUint32(i * 16 + 12, len, true);
          });
          harvestMap(map64, ctl32, mem.length / PAGE_SIZE); // clear marks made by writing the program
          const shadow = mem.slice();
          run(ops.length);
          mem = new Uint8Array(memory.buffer);
          const log = new Set(harvestMap(map64, ctl32, mem.length / PAGE_SIZE));
          for (let p = PROG_BYTES / PAGE_SIZE; p < mem.length / PAGE_SIZE; p++) {
            const before =
              p * PAGE_SIZE < shadow.length ? shadow.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE) : undefined;
            const after = mem.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
            const differs =
              before === undefined ? after.some((b) => b !== 0) : Buffer.compare(before, after) !== 0;
            if (differs) {
              changed++;
              assert.ok(log.has(p), `page ${p} changed but is not in the log`);
            } else if (log.has(p) && before !== undefined) falsePositives++;
          }
        }
      },
    ),
    { numRuns: 60, seed: 42 },
  );
  console.log(
    `# dirty log: ${changed} changed pages all logged; ${falsePositives} false positives (unchanged pages logged)`,
  );
});

function runOne(ops: Op[]): { log: number[]; memory: WebAssembly.Memory } {
  const { memory, control, inst } = instantiate();
  const prog = new DataView(memory.buffer, PROG, PROG_BYTES);
  ops.forEach((op, i) => {
    prog.setUint32(i * 16, op.kind, true);
    prog.setUint32(i * 16 + 4, op.addr, true);
    prog.setUint32(i * 16 + 8, op.val, true);
    prog.setUint32(i * 16 + 12, op.len, true);
  });
  const map64 = new Float64Array(control.buffer, 0, CTL_STOP / 8);
  const ctl32 = new Int32Array(control.buffer);
  harvestMap(map64, ctl32, 64);
  (inst.exports.run as (n: number) => void)(ops.length);
  return { log: [...harvestMap(map64, ctl32, new Uint8Array(memory.buffer).length / PAGE_SIZE)], memory };
}

test("a store crossing a page boundary marks both pages", () => {
  const P = 20 * PAGE_SIZE;
  assert.deepEqual(runOne([{ kind: 2, addr: P - 2, val: 0xffffffff, len: 0 }]).log, [19, 20]);
  assert.deepEqual(runOne([{ kind: 3, addr: P - 4, val: 1, len: 0 }]).log, [19, 20]); // i64 at offset=3
  assert.deepEqual(runOne([{ kind: 12, addr: P - 8, val: 1, len: 0 }]).log, [19, 20]); // v128 offset=5
  assert.deepEqual(runOne([{ kind: 0, addr: P - 1, val: 1, len: 0 }]).log, [19]);
});

test("memory.fill, memory.copy and memory.init mark every page of their range", () => {
  assert.deepEqual(
    runOne([{ kind: 5, addr: 20 * PAGE_SIZE + 5, val: 7, len: 3 * PAGE_SIZE }]).log,
    [20, 21, 22, 23],
  );
  assert.deepEqual(
    runOne([{ kind: 6, addr: 30 * PAGE_SIZE, val: 17 * PAGE_SIZE, len: 2 * PAGE_SIZE }]).log,
    [30, 31],
  );
  assert.deepEqual(runOne([{ kind: 10, addr: 40 * PAGE_SIZE - 3, val: 0, len: 20 }]).log, [39, 40]);
  assert.deepEqual(runOne([{ kind: 5, addr: 20 * PAGE_SIZE, val: 7, len: 0 }]).log, []);
});

test("atomic RMW, cmpxchg and atomic stores mark their page", () => {
  assert.deepEqual(runOne([{ kind: 7, addr: 25 * PAGE_SIZE + 8, val: 1, len: 0 }]).log, [25]);
  assert.deepEqual(runOne([{ kind: 8, addr: 26 * PAGE_SIZE + 8, val: 1, len: 0 }]).log, [26]);
  assert.deepEqual(runOne([{ kind: 9, addr: 27 * PAGE_SIZE + 8, val: 1, len: 0 }]).log, [27]);
});

test("memory.grow marks the new pages", () => {
  const { log, memory } = runOne([{ kind: 11, addr: 0, val: 0, len: 0 }]);
  assert.equal(new Uint8Array(memory.buffer).length, 5 * 65536);
  assert.deepEqual(
    log,
    Array.from({ length: 16 }, (_, i) => 64 + i),
  );
});
