/**
 * Load and instrument a wasm32-wasi command module (issue 3, item 1).
 *
 * Steps, each switchable for benchmarks (TransformOptions):
 *  - validate: refuse what the runtime cannot run (GuestError codes in errors.ts);
 *  - memory: the guest's memory becomes an import "colo"."memory", shared, with a maximum, so the
 *    main thread can read pages while the guest's worker runs (always on);
 *  - dirty: after every store (any width, atomic, SIMD lane), RMW, cmpxchg, memory.fill/copy/init
 *    and memory.grow, set the byte of each touched 4 KiB page in the control memory's map. The
 *    mark comes AFTER the write: the harvester clears before it copies, so a racing store is
 *    never lost (ARCHITECTURE.md, Threads);
 *  - preempt: on every loop entry and then every `preemptInterval` iterations (strip-mined, see
 *    Walker#preemptible), an atomic load of the stop word; if set, call "colo"."preempt", which
 *    the worker makes unwind. Marks of runs of stores off one base are merged (Walker#block);
 *  - asyncify: binaryen's Asyncify with its stack in a secondary memory, the WASI imports and
 *    "colo"."preempt" as the async imports; every mutable global is exported so the worker can
 *    capture and restore it.
 *
 * The IR walk is our own (binaryen.js accessors); binaryen's instrument-memory helpers run
 * before the store and do not cover bulk memory or atomics.
 */
import { createHash } from "node:crypto";
import binaryen from "binaryen";
import { GuestError } from "./errors.ts";
import {
  ASYNCIFY_MEMORY_PAGES,
  CTL_MEMORY_PAGES,
  CTL_STOP,
  EXPORT_ASYNCIFY_MEMORY,
  EXPORT_GLOBAL_PREFIX,
  IMPORT_CONTROL,
  IMPORT_MEMORY,
  IMPORT_MODULE,
  IMPORT_PREEMPT,
  MAX_WASM_PAGES,
  PREEMPT_INTERVAL,
  TRANSFORM_FORMAT,
  WASI_FUNCTIONS,
  WASI_MODULE,
} from "./layout.ts";

export type GlobalType = "i32" | "i64" | "f32" | "f64";

export interface TransformOptions {
  /** Dirty-page logging. Default true. */
  readonly dirty?: boolean;
  /** Asyncify (needed for suspend/resume and context capture). Default true. */
  readonly asyncify?: boolean;
  /** Preemption checks at loop heads. Default true. */
  readonly preempt?: boolean;
  /**
   * Iterations of one loop between two stop checks (the check also runs on every loop entry).
   * Default PREEMPT_INTERVAL; 1 checks on every iteration. Part of the transform version.
   */
  readonly preemptInterval?: number;
}

export interface ResolvedTransformOptions {
  readonly dirty: boolean;
  readonly asyncify: boolean;
  readonly preempt: boolean;
  readonly preemptInterval: number;
}

export interface MemoryLimits {
  /** Declared initial size in wasm pages. */
  readonly initial: number;
  /** Maximum in wasm pages (the input's, or MAX_WASM_PAGES if it had none). */
  readonly maximum: number;
}

export interface Instrumented {
  /** The instrumented module bytes. */
  readonly bytes: Uint8Array;
  /** SHA-256 of `bytes`: the module's identity on the wire. */
  readonly hash: Uint8Array;
  /** Transform version (binaryen's version and the options included). */
  readonly version: string;
  readonly options: ResolvedTransformOptions;
  readonly memory: MemoryLimits;
  /** Types of the exported mutable globals `colo_g0` …, in order. */
  readonly globals: readonly GlobalType[];
}

export function resolveOptions(o: TransformOptions | undefined): ResolvedTransformOptions {
  const preemptInterval = o?.preemptInterval ?? PREEMPT_INTERVAL;
  if (!Number.isInteger(preemptInterval) || preemptInterval < 1 || preemptInterval > 0x7fffffff) {
    throw new GuestError("bad-options", `preemptInterval must be an integer in [1, 2^31)`, {
      preemptInterval,
    });
  }
  return {
    dirty: o?.dirty ?? true,
    asyncify: o?.asyncify ?? true,
    preempt: o?.preempt ?? true,
    preemptInterval,
  };
}

/** binaryen's version as reported by its package. */
export function binaryenVersion(): string {
  return BINARYEN_VERSION;
}
const BINARYEN_VERSION = "132";

/** The version string: format, binaryen, and which transforms are on. */
export function transformVersion(o: ResolvedTransformOptions): string {
  const on = [
    o.dirty ? "dirty" : "",
    o.asyncify ? "asyncify" : "",
    o.preempt ? `preempt/${o.preemptInterval}` : "",
  ]
    .filter((s) => s !== "")
    .join("+");
  return `${TRANSFORM_FORMAT} binaryen/${BINARYEN_VERSION} ${on === "" ? "none" : on}`;
}

// ---------------------------------------------------------------------------------------------
// Binary-level pre-pass: read the memory section, refuse what we cannot run, make it shared.

function readLeb(buf: Uint8Array, pos: number): [value: number, next: number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos];
    if (byte === undefined || shift > 28)
      throw new GuestError("not-wasm", "truncated LEB128", { offset: pos });
    result += (byte & 0x7f) * 2 ** shift;
    pos++;
    if ((byte & 0x80) === 0) return [result, pos];
    shift += 7;
  }
}

function writeLeb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

/**
 * Rewrite the (single, defined) memory's limits to shared with a maximum. Returns the new bytes
 * and the limits. Refuses shared or 64-bit memories and modules without a defined memory.
 */
function makeMemoryShared(
  input: Uint8Array,
  maxPagesDefault: number,
): { bytes: Uint8Array; limits: MemoryLimits } {
  if (input.length < 8 || input[0] !== 0 || input[1] !== 0x61 || input[2] !== 0x73 || input[3] !== 0x6d) {
    throw new GuestError("not-wasm", "not a WebAssembly binary (bad magic)");
  }
  if (input[4] !== 1 || input[5] !== 0 || input[6] !== 0 || input[7] !== 0) {
    throw new GuestError("not-wasm", "unsupported WebAssembly binary version (a component?)");
  }
  let pos = 8;
  while (pos < input.length) {
    const id = input[pos]!;
    const [size, body] = readLeb(input, pos + 1);
    const end = body + size;
    if (end > input.length) throw new GuestError("not-wasm", "section runs past the end", { offset: pos });
    if (id === 5) {
      const [count, p0] = readLeb(input, body);
      if (count === 0) throw new GuestError("no-memory", "the module defines no memory");
      if (count > 1) throw new GuestError("multi-memory", "the module defines more than one memory");
      const flags = input[p0]!;
      if (flags & 0x04) throw new GuestError("memory64", "64-bit memories are not supported");
      if (flags & 0x02) throw new GuestError("threads", "the module has a shared memory of its own");
      if (flags & ~0x07)
        throw new GuestError("unsupported-feature", "unknown memory limits flags", { flags });
      const [initial, p1] = readLeb(input, p0 + 1);
      let maximum = maxPagesDefault;
      let p2 = p1;
      if (flags & 0x01) [maximum, p2] = readLeb(input, p1);
      if (maximum < initial) maximum = initial;
      if (p2 !== end) throw new GuestError("not-wasm", "memory section has trailing bytes", { offset: p2 });
      // The guest's memory, now shared with a maximum, then our control memory (dirty map + words).
      const newBody = [
        2,
        0x03,
        ...writeLeb(initial),
        ...writeLeb(maximum),
        0x03,
        ...writeLeb(CTL_MEMORY_PAGES),
        ...writeLeb(CTL_MEMORY_PAGES),
      ];
      const out = new Uint8Array(
        input.length - (end - pos) + 1 + writeLeb(newBody.length).length + newBody.length,
      );
      out.set(input.subarray(0, pos), 0);
      let q = pos;
      out[q++] = 5;
      for (const b of writeLeb(newBody.length)) out[q++] = b;
      for (const b of newBody) out[q++] = b;
      out.set(input.subarray(end), q);
      return { bytes: out, limits: { initial, maximum } };
    }
    pos = end;
  }
  throw new GuestError("no-memory", "the module defines no memory");
}

function hasCustomSection(bytes: Uint8Array, name: string): boolean {
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos]!;
    const [size, body] = readLeb(bytes, pos + 1);
    if (id === 0) {
      const [len, p] = readLeb(bytes, body);
      if (Buffer.from(bytes.subarray(p, p + len)).toString("latin1") === name) return true;
    }
    pos = body + size;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// IR walk.

type Ref = number;
type Accessor = readonly [get: (e: Ref) => Ref, set: (e: Ref, c: Ref) => void];

// biome-ignore lint/suspicious/noExplicitAny: binaryen.js wrapper classes are untyped in index.d.ts
const B = binaryen as any;

function acc(cls: string, ...names: string[]): Accessor[] {
  return names.map((n) => [
    (e: Ref) => B[cls][`get${n}`](e) as Ref,
    (e: Ref, c: Ref) => B[cls][`set${n}`](e, c),
  ]);
}

const LEAVES = new Set<number>([
  binaryen.NopId,
  binaryen.ConstId,
  binaryen.LocalGetId,
  binaryen.GlobalGetId,
  binaryen.MemorySizeId,
  binaryen.UnreachableId,
  binaryen.PopId,
  binaryen.RefNullId,
  binaryen.RefFuncId,
  binaryen.DataDropId,
  binaryen.AtomicFenceId,
  binaryen.TableSizeId,
  binaryen.RethrowId,
]);

/** Fixed-arity children, by expression id. */
const FIXED = new Map<number, Accessor[]>([
  [binaryen.IfId, acc("If", "Condition", "IfTrue", "IfFalse")],
  [binaryen.LoopId, acc("Loop", "Body")],
  [binaryen.BreakId, acc("Break", "Value", "Condition")],
  [binaryen.SwitchId, acc("Switch", "Value", "Condition")],
  [binaryen.LocalSetId, acc("LocalSet", "Value")],
  [binaryen.GlobalSetId, acc("GlobalSet", "Value")],
  [binaryen.LoadId, acc("Load", "Ptr")],
  [binaryen.StoreId, acc("Store", "Ptr", "Value")],
  [binaryen.UnaryId, acc("Unary", "Value")],
  [binaryen.BinaryId, acc("Binary", "Left", "Right")],
  [binaryen.SelectId, acc("Select", "IfTrue", "IfFalse", "Condition")],
  [binaryen.DropId, acc("Drop", "Value")],
  [binaryen.ReturnId, acc("Return", "Value")],
  [binaryen.MemoryGrowId, acc("MemoryGrow", "Delta")],
  [binaryen.AtomicRMWId, acc("AtomicRMW", "Ptr", "Value")],
  [binaryen.AtomicCmpxchgId, acc("AtomicCmpxchg", "Ptr", "Expected", "Replacement")],
  [binaryen.AtomicWaitId, acc("AtomicWait", "Ptr", "Expected", "Timeout")],
  [binaryen.AtomicNotifyId, acc("AtomicNotify", "Ptr", "NotifyCount")],
  [binaryen.SIMDExtractId, acc("SIMDExtract", "Vec")],
  [binaryen.SIMDReplaceId, acc("SIMDReplace", "Vec", "Value")],
  [binaryen.SIMDShuffleId, acc("SIMDShuffle", "Left", "Right")],
  [binaryen.SIMDTernaryId, acc("SIMDTernary", "A", "B", "C")],
  [binaryen.SIMDShiftId, acc("SIMDShift", "Vec", "Shift")],
  [binaryen.SIMDLoadId, acc("SIMDLoad", "Ptr")],
  [binaryen.SIMDLoadStoreLaneId, acc("SIMDLoadStoreLane", "Ptr", "Vec")],
  [binaryen.MemoryInitId, acc("MemoryInit", "Dest", "Offset", "Size")],
  [binaryen.MemoryCopyId, acc("MemoryCopy", "Dest", "Source", "Size")],
  [binaryen.MemoryFillId, acc("MemoryFill", "Dest", "Value", "Size")],
  [binaryen.RefIsNullId, acc("RefIsNull", "Value")],
  [binaryen.RefAsId, acc("RefAs", "Value")],
  [binaryen.RefEqId, acc("RefEq", "Left", "Right")],
  [binaryen.TableGetId, acc("TableGet", "Index")],
  [binaryen.TupleExtractId, acc("TupleExtract", "Tuple")],
]);

/** Variable-arity children: [count, get(i), set(i, c)], plus fixed ones first. */
type ListAccessor = readonly [
  count: (e: Ref) => number,
  get: (e: Ref, i: number) => Ref,
  set: (e: Ref, i: number, c: Ref) => void,
];
function list(cls: string, what: string, plural = `${what}s`): ListAccessor {
  return [
    (e) => B[cls][`getNum${plural}`](e) as number,
    (e, i) => B[cls][`get${what}At`](e, i) as Ref,
    (e, i, c) => B[cls][`set${what}At`](e, i, c),
  ];
}
const LISTS = new Map<number, { fixed: Accessor[]; list: ListAccessor[] }>([
  [binaryen.BlockId, { fixed: [], list: [list("Block", "Child", "Children")] }],
  [binaryen.CallId, { fixed: [], list: [list("Call", "Operand")] }],
  [
    binaryen.CallIndirectId,
    { fixed: acc("CallIndirect", "Target"), list: [list("CallIndirect", "Operand")] },
  ],
  [binaryen.TupleMakeId, { fixed: [], list: [list("TupleMake", "Operand")] }],
  [binaryen.ThrowId, { fixed: [], list: [list("Throw", "Operand")] }],
  [binaryen.TryId, { fixed: acc("Try", "Body"), list: [list("Try", "CatchBody", "CatchBodies")] }],
]);

/** Store-lane SIMD ops (v128.storeN_lane). */
const STORE_LANE_BYTES = new Map<number, number>([
  [B.Store8LaneVec128 as number, 1],
  [B.Store16LaneVec128 as number, 2],
  [B.Store32LaneVec128 as number, 4],
  [B.Store64LaneVec128 as number, 8],
]);

/** Per-function scratch locals, one per (nesting depth, type). */
class Scratch {
  readonly #func: Ref;
  readonly #locals = new Map<string, number>();
  constructor(func: Ref) {
    this.#func = func;
  }
  /** A new local of its own (not shared with any other use). */
  fresh(type: number): number {
    return B._BinaryenFunctionAddVar(this.#func, type) as number;
  }
  local(depth: number, type: number, slot: number): number {
    const key = `${depth}:${type}:${slot}`;
    let idx = this.#locals.get(key);
    if (idx === undefined) {
      idx = B._BinaryenFunctionAddVar(this.#func, type) as number;
      this.#locals.set(key, idx);
    }
    return idx;
  }
}

interface WalkContext {
  readonly m: binaryen.Module;
  readonly memName: string;
  readonly ctlName: string;
  readonly dirty: boolean;
  readonly preempt: boolean;
  readonly preemptInterval: number;
  readonly growFn: string;
  readonly markRangeFn: string;
}

class Walker {
  readonly #c: WalkContext;
  readonly #s: Scratch;
  #loops = 0;
  constructor(c: WalkContext, func: Ref) {
    this.#c = c;
    this.#s = new Scratch(func);
  }

  /** Mark the page of (addr + off) and of (addr + off + bytes - 1). */
  #markStore(addrLocal: number, off: number, bytes: number): Ref[] {
    const m = this.#c.m;
    const page = (delta: number) =>
      m.i32.shr_u(
        delta === 0
          ? m.local.get(addrLocal, binaryen.i32)
          : m.i32.add(m.local.get(addrLocal, binaryen.i32), m.i32.const(delta | 0)),
        m.i32.const(12),
      );
    const one = (delta: number) => m.i32.store8(0, 1, page(delta), m.i32.const(1), this.#c.ctlName);
    const first = off;
    const last = off + bytes - 1;
    return bytes === 1 ? [one(first)] : [one(first), one(last)];
  }

  visit(e: Ref, depth: number): Ref {
    if (e === 0) return 0;
    const id = binaryen.getExpressionId(e);
    if (LEAVES.has(id)) return e;
    const c = this.#c;
    const m = c.m;

    // Memory writers: children at depth + 1 so their own scratch locals never clash with ours.
    if (c.dirty) {
      switch (id) {
        case binaryen.StoreId:
          return this.#store(e, depth);
        case binaryen.AtomicRMWId:
        case binaryen.AtomicCmpxchgId:
          return this.#rmw(e, id, depth);
        case binaryen.SIMDLoadStoreLaneId: {
          const bytes = STORE_LANE_BYTES.get(B.SIMDLoadStoreLane.getOp(e) as number);
          if (bytes !== undefined) return this.#storeLane(e, bytes, depth);
          break;
        }
        case binaryen.MemoryFillId:
        case binaryen.MemoryCopyId:
        case binaryen.MemoryInitId:
          return this.#bulk(e, id, depth);
        case binaryen.MemoryGrowId: {
          const delta = this.visit(B.MemoryGrow.getDelta(e) as Ref, depth + 1);
          return m.call(c.growFn, [delta], binaryen.i32);
        }
        case binaryen.BlockId:
          this.#block(e, depth);
          return e;
      }
    }

    const fixed = FIXED.get(id);
    if (fixed !== undefined) {
      this.#children(e, fixed, depth);
    } else {
      const l = LISTS.get(id);
      if (l === undefined) {
        throw new GuestError("unsupported-feature", `cannot instrument expression id ${id}`, {
          expressionId: id,
        });
      }
      this.#children(e, l.fixed, depth);
      for (const [count, get, set] of l.list) {
        const n = count(e);
        for (let i = 0; i < n; i++) {
          const child = get(e, i);
          const v = this.visit(child, depth);
          if (v !== child) set(e, i, v);
        }
      }
    }
    if (id === binaryen.LoopId && c.preempt) return this.#preemptible(e);
    return e;
  }

  /**
   * Strip-mine a loop so that its stop check runs on entry and then once every
   * `preemptInterval` iterations, outside the loop proper:
   *
   *   (loop $colo$pN                          ;; entered first, and re-entered every N iterations
   *     (if (atomic.load8_u stop) (call $preempt))
   *     (local.set $c (i32.const N))
   *     (loop $L                              ;; the original loop; its own branches unchanged
   *       (br_if $colo$pN (i32.eqz (local.tee $c (i32.sub (local.get $c) (i32.const 1)))))
   *       body))
   *
   * The only call is in the outer loop, so Asyncify leaves a call-free inner loop alone (one
   * skip-guard around the whole loop rather than guards on every iteration); the inner loop pays
   * a decrement and a branch on a local. Every loop entry checks, so nested loops across calls
   * stay bounded: between two checks run at most N iterations of one loop body.
   */
  #preemptible(e: Ref): Ref {
    const c = this.#c;
    const m = c.m;
    const counter = this.#s.fresh(binaryen.i32);
    const label = `colo$p${this.#loops++}`;
    const body = B.Loop.getBody(e) as Ref;
    const tick = m.br(
      label,
      m.i32.eqz(
        m.local.tee(counter, m.i32.sub(m.local.get(counter, binaryen.i32), m.i32.const(1)), binaryen.i32),
      ),
    );
    B.Loop.setBody(e, m.block(null, [tick, body], binaryen.getExpressionType(body)));
    const type = binaryen.getExpressionType(e);
    const check = m.if(
      m.i32.atomic.load8_u(0, m.i32.const(CTL_STOP), c.ctlName),
      m.call(IMPORT_PREEMPT_FN, [], binaryen.none),
    );
    return m.loop(
      label,
      m.block(null, [check, m.local.set(counter, m.i32.const(c.preemptInterval)), e], type),
    );
  }

  #children(e: Ref, accessors: readonly Accessor[], depth: number): void {
    for (const [get, set] of accessors) {
      const child = get(e);
      if (child === 0) continue;
      const v = this.visit(child, depth);
      if (v !== child) set(e, v);
    }
  }

  /**
   * A block's children, with runs of stores off one base local marked once per run: stores
   * `base ± k` (offset o) in the same block, with nothing between or inside them that can call,
   * branch, write memory, grow it or change `base` (see simpleFor), touching together a span of at
   * most one page, are followed, after the last of them, by marks of the pages of the span's first
   * and last byte, instead of two marks after each store. A span of at most 4096 bytes lies in
   * those two pages (or one), also when the address arithmetic wraps, since every store of the
   * run computes its address as (base + k + o) mod 2^32.
   *
   * The deferred marks still come after every store of the run and before any point where the
   * guest can stop or call out, so the harvester's clear-then-copy still never loses a store. A
   * mark is never dropped because an earlier store marked the same page: the harvester may clear
   * it between the two stores. If a store or load of the run traps, the earlier stores of the run
   * are left unmarked; a trapped guest never runs again and its memory is not state anyone resumes.
   */
  #block(e: Ref, depth: number): void {
    const n = B.Block.getNumChildren(e) as number;
    for (let i = 0; i < n; ) {
      const run = storeRun(e, i, n);
      if (run !== undefined) {
        const m = this.#c.m;
        const last = B.Block.getChildAt(e, run.last) as Ref;
        const mark = (d: number) =>
          m.i32.store8(
            0,
            1,
            m.i32.shr_u(m.i32.add(m.local.get(run.base, binaryen.i32), m.i32.const(d | 0)), m.i32.const(12)),
            m.i32.const(1),
            this.#c.ctlName,
          );
        const marks = run.lo === run.hi ? [mark(run.lo)] : [mark(run.lo), mark(run.hi)];
        B.Block.setChildAt(e, run.last, this.#c.m.block(null, [last, ...marks], binaryen.none));
        i = run.last + 1;
        continue;
      }
      const child = B.Block.getChildAt(e, i) as Ref;
      const v = this.visit(child, depth);
      if (v !== child) B.Block.setChildAt(e, i, v);
      i++;
    }
  }

  #store(e: Ref, depth: number): Ref {
    const m = this.#c.m;
    const ptr = this.visit(B.Store.getPtr(e) as Ref, depth + 1);
    const val = this.visit(B.Store.getValue(e) as Ref, depth + 1);
    B.Store.setValue(e, val);
    const a = this.#s.local(depth, binaryen.i32, 0);
    B.Store.setPtr(e, m.local.get(a, binaryen.i32));
    const off = B.Store.getOffset(e) as number;
    const bytes = B.Store.getBytes(e) as number;
    return m.block(null, [m.local.set(a, ptr), e, ...this.#markStore(a, off, bytes)], binaryen.none);
  }

  #storeLane(e: Ref, bytes: number, depth: number): Ref {
    const m = this.#c.m;
    const ptr = this.visit(B.SIMDLoadStoreLane.getPtr(e) as Ref, depth + 1);
    const vec = this.visit(B.SIMDLoadStoreLane.getVec(e) as Ref, depth + 1);
    B.SIMDLoadStoreLane.setVec(e, vec);
    const a = this.#s.local(depth, binaryen.i32, 0);
    B.SIMDLoadStoreLane.setPtr(e, m.local.get(a, binaryen.i32));
    const off = B.SIMDLoadStoreLane.getOffset(e) as number;
    return m.block(null, [m.local.set(a, ptr), e, ...this.#markStore(a, off, bytes)], binaryen.none);
  }

  #rmw(e: Ref, id: number, depth: number): Ref {
    const m = this.#c.m;
    const cls = id === binaryen.AtomicRMWId ? "AtomicRMW" : "AtomicCmpxchg";
    const ptr = this.visit(B[cls].getPtr(e) as Ref, depth + 1);
    const others = id === binaryen.AtomicRMWId ? acc(cls, "Value") : acc(cls, "Expected", "Replacement");
    this.#children(e, others, depth + 1);
    const type = binaryen.getExpressionType(e);
    const a = this.#s.local(depth, binaryen.i32, 0);
    const r = this.#s.local(depth, type, 1);
    B[cls].setPtr(e, m.local.get(a, binaryen.i32));
    const off = B[cls].getOffset(e) as number;
    const bytes = B[cls].getBytes(e) as number;
    return m.block(
      null,
      [m.local.set(a, ptr), m.local.set(r, e), ...this.#markStore(a, off, bytes), m.local.get(r, type)],
      type,
    );
  }

  #bulk(e: Ref, id: number, depth: number): Ref {
    const m = this.#c.m;
    const cls =
      id === binaryen.MemoryFillId
        ? "MemoryFill"
        : id === binaryen.MemoryCopyId
          ? "MemoryCopy"
          : "MemoryInit";
    const mid = id === binaryen.MemoryFillId ? "Value" : id === binaryen.MemoryCopyId ? "Source" : "Offset";
    // Evaluate dest, mid, size in order into scratch locals, then do the op, then mark [dest, dest+size).
    const dest = this.visit(B[cls].getDest(e) as Ref, depth + 1);
    const midE = this.visit(B[cls][`get${mid}`](e) as Ref, depth + 1);
    const size = this.visit(B[cls].getSize(e) as Ref, depth + 1);
    const d = this.#s.local(depth, binaryen.i32, 0);
    const v = this.#s.local(depth, binaryen.i32, 1);
    const s = this.#s.local(depth, binaryen.i32, 2);
    B[cls].setDest(e, m.local.get(d, binaryen.i32));
    B[cls][`set${mid}`](e, m.local.get(v, binaryen.i32));
    B[cls].setSize(e, m.local.get(s, binaryen.i32));
    return m.block(
      null,
      [
        m.local.set(d, dest),
        m.local.set(v, midE),
        m.local.set(s, size),
        e,
        m.call(
          this.#c.markRangeFn,
          [m.local.get(d, binaryen.i32), m.local.get(s, binaryen.i32)],
          binaryen.none,
        ),
      ],
      binaryen.none,
    );
  }
}

/** A store whose address is `local.get base` plus a constant: the base and the byte range. */
interface BasedStore {
  readonly base: number;
  /** First and last byte touched, relative to the base's value. */
  readonly lo: number;
  readonly hi: number;
}

function basedStore(e: Ref): BasedStore | undefined {
  if (binaryen.getExpressionId(e) !== binaryen.StoreId) return undefined;
  const ptr = B.Store.getPtr(e) as Ref;
  let base: number;
  let k = 0;
  const pid = binaryen.getExpressionId(ptr);
  if (pid === binaryen.LocalGetId) {
    base = B.LocalGet.getIndex(ptr) as number;
  } else if (pid === binaryen.BinaryId) {
    const op = B.Binary.getOp(ptr) as number;
    const l = B.Binary.getLeft(ptr) as Ref;
    const r = B.Binary.getRight(ptr) as Ref;
    const isGet = (x: Ref) => binaryen.getExpressionId(x) === binaryen.LocalGetId;
    const isConst = (x: Ref) => binaryen.getExpressionId(x) === binaryen.ConstId;
    if (op === binaryen.AddInt32 && isGet(l) && isConst(r)) {
      base = B.LocalGet.getIndex(l) as number;
      k = B.Const.getValueI32(r) as number;
    } else if (op === binaryen.AddInt32 && isConst(l) && isGet(r)) {
      base = B.LocalGet.getIndex(r) as number;
      k = B.Const.getValueI32(l) as number;
    } else if (op === binaryen.SubInt32 && isGet(l) && isConst(r)) {
      base = B.LocalGet.getIndex(l) as number;
      k = -(B.Const.getValueI32(r) as number);
    } else return undefined;
  } else return undefined;
  if (!simpleFor(B.Store.getValue(e) as Ref, base)) return undefined;
  const lo = k + (B.Store.getOffset(e) as number);
  return { base, lo, hi: lo + (B.Store.getBytes(e) as number) - 1 };
}

/** Expressions that may sit inside a run of stores: straight-line, no call, no memory write. */
const SIMPLE = new Map<number, Accessor[]>(
  [
    binaryen.UnaryId,
    binaryen.BinaryId,
    binaryen.SelectId,
    binaryen.DropId,
    binaryen.LoadId,
    binaryen.GlobalSetId,
    binaryen.SIMDExtractId,
    binaryen.SIMDReplaceId,
    binaryen.SIMDShuffleId,
    binaryen.SIMDTernaryId,
    binaryen.SIMDShiftId,
    binaryen.SIMDLoadId,
  ].map((id) => [id, FIXED.get(id) ?? []]),
);
const SIMPLE_LEAVES = new Set<number>([
  binaryen.NopId,
  binaryen.ConstId,
  binaryen.LocalGetId,
  binaryen.GlobalGetId,
  binaryen.MemorySizeId,
]);

/**
 * True if `e` cannot call, branch, stop, write or grow memory, or change local `base`: it may
 * sit between two stores of a run without moving a mark past a point the guest can stop at.
 */
function simpleFor(e: Ref, base: number): boolean {
  const id = binaryen.getExpressionId(e);
  if (SIMPLE_LEAVES.has(id)) return true;
  if (id === binaryen.LocalSetId) {
    return (B.LocalSet.getIndex(e) as number) !== base && simpleFor(B.LocalSet.getValue(e) as Ref, base);
  }
  const kids = SIMPLE.get(id);
  if (kids === undefined) return false;
  for (const [get] of kids) {
    const c = get(e);
    if (c !== 0 && !simpleFor(c, base)) return false;
  }
  return true;
}

/** Stores in a run span at most this many bytes, so that their bytes lie in at most two pages. */
const RUN_SPAN = 4096;

/**
 * The run of stores off one base starting at child `i` of `block`: at least two stores, the last
 * at index `last`, bytes [base + lo, base + hi]. undefined if child `i` starts no such run.
 */
function storeRun(
  block: Ref,
  i: number,
  n: number,
): { base: number; lo: number; hi: number; last: number } | undefined {
  const first = basedStore(B.Block.getChildAt(block, i) as Ref);
  if (first === undefined) return undefined;
  let { lo, hi } = first;
  let last = i;
  for (let j = i + 1; j < n; j++) {
    const child = B.Block.getChildAt(block, j) as Ref;
    const s = basedStore(child);
    if (s !== undefined && s.base === first.base) {
      const nlo = Math.min(lo, s.lo);
      const nhi = Math.max(hi, s.hi);
      if (nhi - nlo >= RUN_SPAN) break;
      lo = nlo;
      hi = nhi;
      last = j;
    } else if (!simpleFor(child, first.base)) break;
  }
  return last === i ? undefined : { base: first.base, lo, hi, last };
}

const GLOBAL_TYPES = new Map<number, GlobalType>([
  [binaryen.i32, "i32"],
  [binaryen.i64, "i64"],
  [binaryen.f32, "f32"],
  [binaryen.f64, "f64"],
]);

const IMPORT_PREEMPT_FN = "colo$preempt";
const GROW_FN = "colo$grow";
const MARK_RANGE_FN = "colo$mark_range";
const CTL_MEMORY = "1";

/** Helpers: memory.grow that marks the new pages, and range marking for bulk ops. */
function addHelpers(m: binaryen.Module, memName: string): void {
  const i32 = binaryen.i32;
  // (func $grow (param $delta i32) (result i32) (local $old i32))
  m.addFunction(
    GROW_FN,
    binaryen.createType([i32]),
    i32,
    [i32],
    m.block(
      null,
      [
        m.local.set(1, m.memory.grow(m.local.get(0, i32), memName)),
        m.if(
          m.i32.ne(m.local.get(1, i32), m.i32.const(-1)),
          m.memory.fill(
            m.i32.shl(m.local.get(1, i32), m.i32.const(4)),
            m.i32.const(1),
            m.i32.shl(m.local.get(0, i32), m.i32.const(4)),
            CTL_MEMORY,
          ),
        ),
        m.local.get(1, i32),
      ],
      i32,
    ),
  );
  // (func $mark_range (param $dest i32) (param $size i32)): marks pages dest>>12 .. (dest+size-1)>>12.
  m.addFunction(
    MARK_RANGE_FN,
    binaryen.createType([i32, i32]),
    binaryen.none,
    [],
    m.if(
      m.local.get(1, i32),
      m.memory.fill(
        m.i32.shr_u(m.local.get(0, i32), m.i32.const(12)),
        m.i32.const(1),
        m.i32.add(
          m.i32.sub(
            m.i32.shr_u(
              m.i32.sub(m.i32.add(m.local.get(0, i32), m.local.get(1, i32)), m.i32.const(1)),
              m.i32.const(12),
            ),
            m.i32.shr_u(m.local.get(0, i32), m.i32.const(12)),
          ),
          m.i32.const(1),
        ),
        CTL_MEMORY,
      ),
    ),
  );
}

/** Features we can emit that V8 in Node 24 accepts; an input using anything else is refused. */
const EMITTABLE =
  binaryen.Features.MutableGlobals |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.SIMD128 |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.SignExt |
  binaryen.Features.ReferenceTypes |
  binaryen.Features.Multivalue |
  binaryen.Features.TailCall |
  binaryen.Features.ExtendedConst |
  binaryen.Features.CallIndirectOverlong |
  binaryen.Features.Atomics |
  binaryen.Features.MultiMemory;

/** What the transform itself needs on top of the input's features. */
const NEEDED =
  binaryen.Features.Atomics |
  binaryen.Features.MultiMemory |
  binaryen.Features.MutableGlobals |
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt;

function validateImportsAndExports(m: binaryen.Module): void {
  const supported = new Set(WASI_FUNCTIONS);
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const info = binaryen.getFunctionInfo(m.getFunctionByIndex(i));
    if (info.module === "" || info.module === undefined || info.module === null) continue;
    if (info.module !== WASI_MODULE || !supported.has(info.base ?? "")) {
      throw new GuestError("unsupported-import", `unsupported import ${info.module}.${info.base}`, {
        import: `${info.module}.${info.base}`,
      });
    }
  }
  for (let i = 0; i < m.getNumGlobals(); i++) {
    const info = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
    if (info.module) {
      throw new GuestError("unsupported-import", `unsupported global import ${info.module}.${info.base}`, {
        import: `${info.module}.${info.base}`,
      });
    }
  }
  for (let i = 0; i < m.getNumTables(); i++) {
    const info = binaryen.getTableInfo(m.getTableByIndex(i));
    if (info.module) {
      throw new GuestError("unsupported-import", `unsupported table import ${info.module}.${info.base}`, {
        import: `${info.module}.${info.base}`,
      });
    }
  }
  let hasStart = false;
  for (let i = 0; i < m.getNumExports(); i++) {
    const info = binaryen.getExportInfo(m.getExportByIndex(i));
    if (info.name === "_start" && info.kind === binaryen.ExternalFunction) hasStart = true;
  }
  if (!hasStart) throw new GuestError("no-start", "no `_start` export: not a WASI command module");
}

function memoryName(m: binaryen.Module): string {
  for (let i = 0; i < m.getNumExports(); i++) {
    const info = binaryen.getExportInfo(m.getExportByIndex(i));
    if (info.kind === binaryen.ExternalMemory && info.value !== null) return info.value;
  }
  return "0";
}

export interface TransformSettings {
  /** Maximum memory in wasm pages for a module that declares none. Default MAX_WASM_PAGES (4 GiB). */
  readonly defaultMaxPages?: number;
}

/** Instrument `input` (no cache; see cache.ts for the cached entry point). Pure and deterministic. */
export function transform(
  input: Uint8Array,
  options?: TransformOptions,
  settings?: TransformSettings,
): Instrumented {
  const o = resolveOptions(options);
  const { bytes: shared, limits } = makeMemoryShared(input, settings?.defaultMaxPages ?? MAX_WASM_PAGES);
  let m: binaryen.Module;
  try {
    m = binaryen.readBinary(shared);
  } catch (cause) {
    throw new GuestError("not-wasm", "binaryen could not read the module", {}, { cause });
  }
  try {
    // Without a target_features section binaryen assumes MVP; assume what V8 runs instead.
    const inputFeatures = hasCustomSection(shared, "target_features") ? m.getFeatures() : EMITTABLE;
    if ((inputFeatures & ~EMITTABLE & ~binaryen.Features.MVP) !== 0) {
      throw new GuestError("unsupported-feature", `unsupported feature set 0x${inputFeatures.toString(16)}`, {
        feature: inputFeatures & ~EMITTABLE,
      });
    }
    m.setFeatures(inputFeatures | NEEDED);
    validateImportsAndExports(m);

    const memName = memoryName(m);
    m.addMemoryImport(memName, IMPORT_MODULE, IMPORT_MEMORY, true);
    // makeMemoryShared appended the control memory as memory index 1; binaryen names it "1".
    const ctl = m.getMemoryInfo(CTL_MEMORY);
    if (ctl.initial !== CTL_MEMORY_PAGES || !ctl.shared) {
      throw new GuestError("transform-failed", "control memory not found after the memory rewrite");
    }
    m.addMemoryImport(CTL_MEMORY, IMPORT_MODULE, IMPORT_CONTROL, true);
    m.addFunctionImport(IMPORT_PREEMPT_FN, IMPORT_MODULE, IMPORT_PREEMPT, binaryen.none, binaryen.none);

    const userFunctions: Ref[] = [];
    for (let i = 0; i < m.getNumFunctions(); i++) {
      const f = m.getFunctionByIndex(i);
      if (binaryen.getFunctionInfo(f).body !== 0) userFunctions.push(f);
    }
    addHelpers(m, memName);
    if (o.dirty || o.preempt) {
      const c: WalkContext = {
        m,
        memName,
        ctlName: CTL_MEMORY,
        dirty: o.dirty,
        preempt: o.preempt,
        preemptInterval: o.preemptInterval,
        growFn: GROW_FN,
        markRangeFn: MARK_RANGE_FN,
      };
      for (const f of userFunctions) {
        const body = binaryen.getFunctionInfo(f).body;
        const w = new Walker(c, f);
        const nb = w.visit(body, 0);
        if (nb !== body) B.Function.setBody(f, nb);
      }
    }
    binaryen.setOptimizeLevel(2);
    binaryen.setShrinkLevel(0);
    if (o.asyncify) {
      const asyncImports = [
        ...WASI_FUNCTIONS.map((f) => `${WASI_MODULE}.${f}`),
        `${IMPORT_MODULE}.${IMPORT_PREEMPT}`,
      ];
      binaryen.setPassArgument("asyncify-imports", asyncImports.join(","));
      binaryen.setPassArgument("asyncify-in-secondary-memory", "true");
      binaryen.setPassArgument("asyncify-secondary-memory-size", String(ASYNCIFY_MEMORY_PAGES));
      m.runPasses(["asyncify"]);
      binaryen.clearPassArguments();
      m.addMemoryExport("asyncify_memory", EXPORT_ASYNCIFY_MEMORY);
    }
    m.runPasses(["inlining-optimizing"]);
    const globals: GlobalType[] = [];
    for (let i = 0; i < m.getNumGlobals(); i++) {
      const info = binaryen.getGlobalInfo(m.getGlobalByIndex(i));
      if (!info.mutable) continue;
      const t = GLOBAL_TYPES.get(info.type);
      if (t === undefined)
        throw new GuestError("unsupported-feature", `mutable global ${info.name} of a reference type`);
      m.addGlobalExport(info.name, `${EXPORT_GLOBAL_PREFIX}${globals.length}`);
      globals.push(t);
    }
    if (!m.validate()) throw new GuestError("transform-failed", "binaryen produced an invalid module");
    const bytes = m.emitBinary();
    const hash = new Uint8Array(createHash("sha256").update(bytes).digest());
    return { bytes, hash, version: transformVersion(o), options: o, memory: limits, globals };
  } finally {
    m.dispose();
  }
}
