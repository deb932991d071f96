/**
 * Guest context record body (our own, versioned; opaque to the engine). Little-endian:
 *
 *   0   4  magic "CCTX"
 *   4   4  u32 format version (1)
 *   8   4  u32 global count G
 *   12  G × 12: u32 type (0 i32, 1 i64, 2 f32, 3 f64), u64 value bits
 *   …   4  u32 Asyncify stack length L
 *   …   L  the Asyncify stack bytes (from ASYNCIFY_STACK_START)
 *
 * Tables: modules that change their tables are refused at load (TODO), so none are carried.
 */
import { GuestError } from "./errors.ts";
import type { GlobalType } from "./transform.ts";

const MAGIC = 0x58544343; // "CCTX" read as u32 LE
const VERSION = 1;
const TYPE_CODES: Record<GlobalType, number> = { i32: 0, i64: 1, f32: 2, f64: 3 };
const CODE_TYPES: readonly GlobalType[] = ["i32", "i64", "f32", "f64"];

export interface GuestContext {
  /** Raw bits of each exported mutable global, in export order. */
  readonly globals: readonly { readonly type: GlobalType; readonly bits: bigint }[];
  readonly stack: Uint8Array;
}

export function encodeContext(c: GuestContext): Uint8Array {
  const out = new Uint8Array(12 + c.globals.length * 12 + 4 + c.stack.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint32(4, VERSION, true);
  v.setUint32(8, c.globals.length, true);
  let p = 12;
  for (const g of c.globals) {
    v.setUint32(p, TYPE_CODES[g.type], true);
    v.setBigUint64(p + 4, g.bits, true);
    p += 12;
  }
  v.setUint32(p, c.stack.length, true);
  out.set(c.stack, p + 4);
  return out;
}

/** Decode and check against the module's global types and the Asyncify stack capacity. */
export function decodeContext(
  body: Uint8Array,
  types: readonly GlobalType[],
  maxStack: number,
): GuestContext {
  const { globals, stackAt } = readContext(body, types, maxStack);
  return { globals, stack: body.slice(stackAt) };
}

/**
 * The checks of decodeContext alone: throws the GuestError "bad-context" decodeContext would,
 * copies nothing. Cost: a few reads per global (the checkpoint path runs it inside the pause).
 */
export function validateContext(body: Uint8Array, types: readonly GlobalType[], maxStack: number): void {
  readContext(body, types, maxStack);
}

function readContext(
  body: Uint8Array,
  types: readonly GlobalType[],
  maxStack: number,
): { globals: { type: GlobalType; bits: bigint }[]; stackAt: number } {
  const bad = (why: string, offset: number) => new GuestError("bad-context", why, { offset });
  if (body.length < 16) throw bad("context record too short", 0);
  const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (v.getUint32(0, true) !== MAGIC) throw bad("bad context magic", 0);
  if (v.getUint32(4, true) !== VERSION) throw bad(`unknown context version ${v.getUint32(4, true)}`, 4);
  const n = v.getUint32(8, true);
  if (n !== types.length) throw bad(`context has ${n} globals, module has ${types.length}`, 8);
  if (body.length < 12 + n * 12 + 4) throw bad("context record truncated in globals", body.length);
  const globals: { type: GlobalType; bits: bigint }[] = [];
  let p = 12;
  for (let i = 0; i < n; i++) {
    const type = CODE_TYPES[v.getUint32(p, true)];
    if (type === undefined || type !== types[i]) throw bad(`global ${i} has the wrong type`, p);
    globals.push({ type, bits: v.getBigUint64(p + 4, true) });
    p += 12;
  }
  const len = v.getUint32(p, true);
  if (len > maxStack) throw bad(`Asyncify stack of ${len} bytes exceeds ${maxStack}`, p);
  if (p + 4 + len !== body.length) throw bad("context record length mismatch", p);
  return { globals, stackAt: p + 4 };
}

const scratch = new DataView(new ArrayBuffer(8));

/** A global's value as raw bits (exact for floats, NaN payloads included where JS keeps them). */
export function globalToBits(type: GlobalType, value: number | bigint): bigint {
  switch (type) {
    case "i32":
      return BigInt((value as number) >>> 0);
    case "i64":
      return BigInt.asUintN(64, value as bigint);
    case "f32":
      scratch.setFloat32(0, value as number, true);
      return BigInt(scratch.getUint32(0, true));
    case "f64":
      scratch.setFloat64(0, value as number, true);
      return scratch.getBigUint64(0, true);
  }
}

export function bitsToGlobal(type: GlobalType, bits: bigint): number | bigint {
  switch (type) {
    case "i32":
      return Number(BigInt.asIntN(32, bits));
    case "i64":
      return BigInt.asIntN(64, bits);
    case "f32":
      scratch.setUint32(0, Number(bits & 0xffffffffn), true);
      return scratch.getFloat32(0, true);
    case "f64":
      scratch.setBigUint64(0, bits, true);
      return scratch.getFloat64(0, true);
  }
}
