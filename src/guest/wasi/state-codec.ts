/**
 * Canonical binary encoding of the WASI host state (the EMULATOR_CONTEXT body). Same state, same
 * bytes: maps are written in ascending key order, directory entries by name, all-zero blocks as
 * holes. All integers little-endian. Layout (version 2; docs/wasi.md has the diagram):
 *
 *   magic "CWHS" · u32 version
 *   u64 guest monotonic ns at capture · u64 guest monotonic ns at start
 *   u64 stdout offset · u64 stderr offset
 *   stdin (v2): u64 in offset · u64 peak · u8 flags (1 eof) · u32 head pos · u32 nchunks, each u32 len + bytes
 *   pending poll (v2): u8 present · [u32 in ptr · u32 out ptr · u32 nsubs · u64 start · nsubs × 48 bytes]
 *   strings args · strings env                       (strings = u32 count, each u32 len + UTF-8)
 *   u32 nconns, each (ascending id):
 *     u32 id · u64 in offset · u64 out offset · u64 peak · u8 flags (1 eof, 2 wr-shut, 4 rd-shut)
 *     u32 head pos · u32 nchunks, each u32 len + bytes
 *   u32 npending, each u32 conn id (accept order)
 *   u32 nfds, each (ascending fd):
 *     u32 fd · u8 kind · u16 fdflags · u64 rights base · u64 rights inheriting · then by kind:
 *     conn: u32 conn id; file: u32 ino · u64 pos; dir: u32 ino · u8 preopen? · [u32 len + UTF-8]
 *   u32 next ino · u32 nroots, each u32 ino
 *   u32 ninodes, each (ascending ino): u32 ino · u8 kind (1 file, 2 dir) · u64 atim, mtim, ctim
 *     file: u32 nlink · u64 size
 *     dir:  u32 parent · u32 nentries, each (ascending name) u32 len + UTF-8 name · u32 ino
 *   u8 block mode (0 some: uncarried blocks keep their contents; 1 all: uncarried blocks are zero)
 *   u32 nblocks, each (ascending ino, block): u32 ino · u32 block · u8 kind (0 zero, 1 data) · [4096 bytes]
 *
 * decodeState validates everything (lengths against the remaining bytes before allocating,
 * ordering, references between fds, connections and inodes) and builds a new state object; the
 * caller swaps it in only on success, so a bad body changes nothing.
 */
import type { FsBlockSelection } from "../domain.ts";
import { SIZE } from "./abi.ts";
import { WasiHostError } from "./errors.ts";
import {
  BLOCK_SIZE,
  type Conn,
  type DirNode,
  type FdEntry,
  type FileNode,
  type HostState,
  type Inode,
  type InputQueue,
  type PendingPoll,
} from "./state.ts";

export const STATE_MAGIC = 0x53485743; // "CWHS" read as u32 LE
/** Version written. Version 1 (no stdin, no pending poll) is still read: stdin at EOF, no pending poll. */
export const STATE_VERSION = 2;
/** Longest string (arg, env entry, preopen path, name) accepted in a body. */
export const MAX_STRING_BYTES = 1 << 20;
/** Most fds in a body. */
export const MAX_FDS_IN_STATE = 1024;

const FD_KINDS = ["stdin", "stdout", "stderr", "listen", "conn", "file", "dir"] as const;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

// ---------------------------------------------------------------- writer

/**
 * Where the encoder's fields go. The encoder runs twice over the same plan: once into a Sizer,
 * which only counts, then into a Writer over a buffer of exactly that size, so the body is
 * allocated once and sizing cannot disagree with writing.
 */
interface Sink {
  u8(v: number): void;
  u16(v: number): void;
  u32(v: number): void;
  u64(v: bigint | number): void;
  bytes(b: Uint8Array): void;
  /** u32 length + UTF-8 bytes. */
  str(s: string): void;
}

class Sizer implements Sink {
  len = 0;
  u8(): void {
    this.len += 1;
  }
  u16(): void {
    this.len += 2;
  }
  u32(): void {
    this.len += 4;
  }
  u64(): void {
    this.len += 8;
  }
  bytes(b: Uint8Array): void {
    this.len += b.length;
  }
  str(s: string): void {
    this.len += 4 + utf8Length(s);
  }
}

class Writer implements Sink {
  readonly buf: Uint8Array;
  private readonly dv: DataView;
  len = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
    this.dv = new DataView(this.buf.buffer);
  }
  u8(v: number): void {
    this.dv.setUint8(this.len, v);
    this.len += 1;
  }
  u16(v: number): void {
    this.dv.setUint16(this.len, v, true);
    this.len += 2;
  }
  u32(v: number): void {
    this.dv.setUint32(this.len, v, true);
    this.len += 4;
  }
  u64(v: bigint | number): void {
    this.dv.setBigUint64(this.len, BigInt.asUintN(64, BigInt(v)), true);
    this.len += 8;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  str(s: string): void {
    // Encode straight into the buffer after the length field; the Sizer counted utf8Length(s).
    const { written } = utf8.encodeInto(s, this.buf.subarray(this.len + 4));
    this.u32(written);
    this.len += written;
  }
}

/** Bytes of `s` in UTF-8 as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const byNum = (a: number, b: number) => a - b;

/** What to encode, with every ordering and block choice made once, before sizing. */
interface Plan {
  readonly state: HostState;
  readonly mono: bigint;
  readonly connIds: readonly number[];
  readonly fds: readonly number[];
  readonly inos: readonly number[];
  /** Sorted entry names of each directory inode. */
  readonly names: ReadonlyMap<number, readonly string[]>;
  readonly allBlocks: boolean;
  /** Carried blocks in ascending (ino, block); data undefined for an all-zero block. */
  readonly carried: ReadonlyArray<{ ino: number; block: number; data: Uint8Array | undefined }>;
}

function plan(state: HostState, mono: bigint, fs: FsBlockSelection): Plan {
  const inos = [...state.inodes.keys()].sort(byNum);
  const names = new Map<number, string[]>();
  for (const ino of inos) {
    const n = state.inodes.get(ino)!;
    if (n.kind === "dir") names.set(ino, [...n.entries.keys()].sort());
  }
  const carried: Array<{ ino: number; block: number; data: Uint8Array | undefined }> = [];
  const blockOf = (f: FileNode, b: number): Uint8Array | undefined => {
    const d = f.blocks[b];
    return d === undefined || isZero(d) ? undefined : d;
  };
  if (fs.kind === "all") {
    for (const ino of inos) {
      const f = state.inodes.get(ino)!;
      if (f.kind !== "file") continue;
      const count = Math.ceil(f.size / BLOCK_SIZE);
      for (let b = 0; b < count; b++) {
        const d = blockOf(f, b);
        if (d !== undefined) carried.push({ ino, block: b, data: d });
      }
    }
  } else {
    const seen = new Set<string>();
    const sel = [...fs.blocks].sort((a, b) => a.ino - b.ino || a.block - b.block);
    for (const { ino, block } of sel) {
      const key = `${ino}:${block}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const f = state.inodes.get(ino);
      if (f === undefined || f.kind !== "file" || block >= Math.ceil(f.size / BLOCK_SIZE)) continue;
      carried.push({ ino, block, data: blockOf(f, block) });
    }
  }
  return {
    state,
    mono,
    connIds: [...state.conns.keys()].sort(byNum),
    fds: [...state.fds.keys()].sort(byNum),
    inos,
    names,
    allBlocks: fs.kind === "all",
    carried,
  };
}

function strings(w: Sink, list: readonly string[]): void {
  w.u32(list.length);
  for (const s of list) w.str(s);
}

/** u32 head pos · u32 nchunks, each u32 len + bytes. */
function writeChunks(w: Sink, q: InputQueue): void {
  w.u32(q.headPos);
  w.u32(q.chunks.length);
  for (const ch of q.chunks) {
    w.u32(ch.length);
    w.bytes(ch);
  }
}

function writeBody(w: Sink, p: Plan): void {
  const { state } = p;
  w.u32(STATE_MAGIC);
  w.u32(STATE_VERSION);
  w.u64(p.mono);
  w.u64(state.monoStart);
  w.u64(state.stdoutOffset);
  w.u64(state.stderrOffset);
  const stdin = state.stdin;
  w.u64(stdin.inOffset);
  w.u64(stdin.peak);
  w.u8(stdin.eof ? 1 : 0);
  writeChunks(w, stdin);
  const pp = state.pendingPoll;
  w.u8(pp === undefined ? 0 : 1);
  if (pp !== undefined) {
    w.u32(pp.inPtr);
    w.u32(pp.outPtr);
    w.u32(pp.nsubs);
    w.u64(pp.start);
    w.bytes(pp.subs);
  }
  strings(w, state.args);
  strings(w, state.env);

  w.u32(p.connIds.length);
  for (const id of p.connIds) {
    const c = state.conns.get(id)!;
    w.u32(id);
    w.u64(c.inOffset);
    w.u64(c.outOffset);
    w.u64(c.peak);
    w.u8((c.eof ? 1 : 0) | (c.wrShut ? 2 : 0) | (c.rdShut ? 4 : 0));
    writeChunks(w, c);
  }
  w.u32(state.pendingAccepts.length);
  for (const id of state.pendingAccepts) w.u32(id);

  w.u32(p.fds.length);
  for (const fd of p.fds) {
    const e = state.fds.get(fd)!;
    w.u32(fd);
    w.u8(FD_KINDS.indexOf(e.kind));
    w.u16(e.flags);
    w.u64(e.rightsBase);
    w.u64(e.rightsInheriting);
    if (e.kind === "conn") w.u32(e.conn);
    else if (e.kind === "file") {
      w.u32(e.ino);
      w.u64(e.pos);
    } else if (e.kind === "dir") {
      w.u32(e.ino);
      w.u8(e.preopen === undefined ? 0 : 1);
      if (e.preopen !== undefined) w.str(e.preopen);
    }
  }

  w.u32(state.nextIno);
  w.u32(state.roots.length);
  for (const r of state.roots) w.u32(r);
  w.u32(p.inos.length);
  for (const ino of p.inos) {
    const n = state.inodes.get(ino)!;
    w.u32(ino);
    w.u8(n.kind === "file" ? 1 : 2);
    w.u64(n.atim);
    w.u64(n.mtim);
    w.u64(n.ctim);
    if (n.kind === "file") {
      w.u32(n.nlink);
      w.u64(n.size);
    } else {
      w.u32(n.parent);
      const names = p.names.get(ino)!;
      w.u32(names.length);
      for (const name of names) {
        w.str(name);
        w.u32(n.entries.get(name)!);
      }
    }
  }

  w.u8(p.allBlocks ? 1 : 0);
  w.u32(p.carried.length);
  for (const c of p.carried) {
    w.u32(c.ino);
    w.u32(c.block);
    w.u8(c.data === undefined ? 0 : 1);
    if (c.data !== undefined) w.bytes(c.data);
  }
}

export function encodeState(state: HostState, mono: bigint, fs: FsBlockSelection): Uint8Array {
  const p = plan(state, mono, fs);
  const sizer = new Sizer();
  writeBody(sizer, p);
  const w = new Writer(sizer.len);
  writeBody(w, p);
  if (w.len !== sizer.len) throw new Error(`state encoder wrote ${w.len} bytes, sized ${sizer.len}`);
  return w.buf;
}

// ---------------------------------------------------------------- reader

class Reader {
  private readonly dv: DataView;
  readonly body: Uint8Array;
  /** Byte strings are copied out of the body (false: views into it, for a check that keeps nothing). */
  readonly copy: boolean;
  at = 0;
  constructor(body: Uint8Array, copy: boolean) {
    this.body = body;
    this.copy = copy;
    this.dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  }
  /** The next `n` bytes (checked by the caller), copied or viewed as `copy` says. */
  take(n: number): Uint8Array {
    const b = this.copy ? this.body.slice(this.at, this.at + n) : this.body.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  fail(field: string, why: string, offset = this.at): never {
    throw new WasiHostError("state-invalid", `WASI host state: ${field} at offset ${offset}: ${why}`, {
      offset,
      field,
    });
  }
  need(n: number, field: string): void {
    if (n > this.body.length - this.at)
      this.fail(field, `needs ${n} bytes, ${this.body.length - this.at} left`);
  }
  u8(field: string): number {
    this.need(1, field);
    return this.dv.getUint8(this.at++);
  }
  u16(field: string): number {
    this.need(2, field);
    const v = this.dv.getUint16(this.at, true);
    this.at += 2;
    return v;
  }
  u32(field: string): number {
    this.need(4, field);
    const v = this.dv.getUint32(this.at, true);
    this.at += 4;
    return v;
  }
  u64(field: string): bigint {
    this.need(8, field);
    const v = this.dv.getBigUint64(this.at, true);
    this.at += 8;
    return v;
  }
  /** A u64 that must fit in a JS safe integer. */
  safe(field: string): number {
    const at = this.at;
    const v = this.u64(field);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(field, `${v} exceeds 2^53-1`, at);
    return Number(v);
  }
  /** A count of items each at least `minBytes` long: checked against what is left before any allocation. */
  count(field: string, minBytes: number): number {
    const at = this.at;
    const n = this.u32(field);
    if (n * minBytes > this.body.length - this.at)
      this.fail(field, `count ${n} cannot fit in the bytes left`, at);
    return n;
  }
  blob(field: string, max: number): Uint8Array {
    const at = this.at;
    const n = this.u32(field);
    if (n > max) this.fail(field, `length ${n} exceeds ${max}`, at);
    this.need(n, field);
    return this.take(n);
  }
  str(field: string): string {
    const at = this.at;
    const b = this.blob(field, MAX_STRING_BYTES);
    try {
      return utf8Strict.decode(b);
    } catch {
      return this.fail(field, "invalid UTF-8", at);
    }
  }
  strings(field: string): string[] {
    const n = this.count(field, 4);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.str(field));
    return out;
  }
}

/**
 * The chunk list of an input queue (see writeChunks), checked against its input offset (at
 * `offsetAt`) and its drain count `peak` (at `offsetAt` + `peakDelta`): bytes delivered since the
 * last drained, so never fewer than the bytes queued, nor more than all delivered.
 */
function readChunks(
  r: Reader,
  inOffset: number,
  offsetAt: number,
  peak: number,
  peakDelta: number,
): { headPos: number; chunks: Uint8Array[] } {
  const headAt = r.at;
  const headPos = r.u32("head pos");
  const nchunks = r.count("chunks", 4);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (let k = 0; k < nchunks; k++) {
    const cAt = r.at;
    const ch = r.blob("chunk", 0xffff_ffff);
    if (ch.length === 0) r.fail("chunk", "empty chunk", cAt);
    total += ch.length;
    chunks.push(ch);
  }
  if (nchunks === 0 ? headPos !== 0 : headPos >= chunks[0]!.length)
    r.fail("head pos", "outside the first chunk", headAt);
  if (total - headPos > inOffset) r.fail("input offset", "fewer bytes delivered than queued", offsetAt);
  if (peak < total - headPos || peak > inOffset)
    r.fail(
      "peak",
      `${peak} bytes since the last drained, with ${total - headPos} queued of ${inOffset}`,
      offsetAt + peakDelta,
    );
  return { headPos, chunks };
}

/**
 * Decode and validate a body; file sizes may add up to at most `fsLimitBytes` (the host's cap,
 * which also bounds what is allocated for file data). `current` supplies the contents of blocks the body does not carry
 * (block mode "some"); it is not modified. Returns a fresh state and the guest monotonic time.
 */
export function decodeState(
  body: Uint8Array,
  current: HostState,
  fsLimitBytes: number,
): { state: HostState; mono: bigint } {
  const { state, mono, mode, carried } = parseState(new Reader(body, true), fsLimitBytes);
  buildFileData(state, mode, carried, current);
  return { state, mono };
}

/**
 * Every check decodeState makes (it refuses exactly the bodies decodeState refuses, with the same
 * WasiHostError "state-invalid"), without building a state: nothing is copied out of the body and
 * no host's current state is needed. Main-thread cost for a checkpoint: one pass over the body.
 */
export function validateState(body: Uint8Array, fsLimitBytes: number): void {
  parseState(new Reader(body, false), fsLimitBytes);
}

/** File blocks a body carries: per inode, per block index, the data (undefined: a zero block). */
type Carried = Map<number, Map<number, Uint8Array | undefined>>;

/** Parse and check a whole body; files come out without data (see buildFileData). */
function parseState(
  r: Reader,
  fsLimitBytes: number,
): { state: HostState; mono: bigint; mode: number; carried: Carried } {
  const body = r.body;
  if (r.u32("magic") !== STATE_MAGIC) r.fail("magic", "not a WASI host state", 0);
  const version = r.u32("version");
  if (version !== 1 && version !== STATE_VERSION) r.fail("version", `unsupported version ${version}`, 4);
  const mono = r.u64("monotonic");
  const monoStart = r.u64("monotonic start");
  if (monoStart > mono) r.fail("monotonic start", "after the capture time", 16);
  const stdoutOffset = r.safe("stdout offset");
  const stderrOffset = r.safe("stderr offset");
  let stdin: InputQueue = { inOffset: 0, chunks: [], headPos: 0, eof: true, peak: 0 };
  let pendingPoll: PendingPoll | undefined;
  if (version >= 2) {
    const at = r.at;
    const inOffset = r.safe("stdin offset");
    const peak = r.safe("stdin peak");
    const flagsAt = r.at;
    const flags = r.u8("stdin flags");
    if ((flags & ~1) !== 0) r.fail("stdin flags", `unknown bits ${flags}`, flagsAt);
    stdin = { inOffset, peak, eof: flags === 1, ...readChunks(r, inOffset, at, peak, 8) };
    const ppAt = r.at;
    const hasPoll = r.u8("pending poll flag");
    if (hasPoll > 1) r.fail("pending poll flag", "not 0 or 1", ppAt);
    if (hasPoll === 1) {
      const inPtr = r.u32("pending poll in ptr");
      const outPtr = r.u32("pending poll out ptr");
      const nsubsAt = r.at;
      const nsubs = r.count("pending poll subscriptions", SIZE.SUBSCRIPTION);
      if (nsubs === 0) r.fail("pending poll subscriptions", "none", nsubsAt);
      const startAt = r.at;
      const start = r.u64("pending poll start");
      if (start > mono) r.fail("pending poll start", "after the capture time", startAt);
      r.need(nsubs * SIZE.SUBSCRIPTION, "pending poll subscriptions");
      const subs = r.take(nsubs * SIZE.SUBSCRIPTION);
      pendingPoll = { inPtr, outPtr, nsubs, subs, start };
    }
  }
  const args = r.strings("args");
  const env = r.strings("env");

  const conns = new Map<number, Conn>();
  const nconns = r.count("connections", 37);
  let prevId = -1;
  for (let i = 0; i < nconns; i++) {
    const at = r.at;
    const id = r.u32("connection id");
    if (id <= prevId) r.fail("connection id", "not in ascending order", at);
    prevId = id;
    const inOffset = r.safe("input offset");
    const outOffset = r.safe("output offset");
    const peak = r.safe("peak");
    const flagsAt = r.at;
    const flags = r.u8("connection flags");
    if ((flags & ~7) !== 0) r.fail("connection flags", `unknown bits ${flags}`, flagsAt);
    const { headPos, chunks } = readChunks(r, inOffset, at + 4, peak, 16);
    conns.set(id, {
      id,
      inOffset,
      outOffset,
      peak,
      eof: (flags & 1) !== 0,
      wrShut: (flags & 2) !== 0,
      rdShut: (flags & 4) !== 0,
      headPos,
      chunks,
    });
  }
  const owner = new Map<number, string>();
  const pendingAccepts: number[] = [];
  const npending = r.count("pending accepts", 4);
  for (let i = 0; i < npending; i++) {
    const at = r.at;
    const id = r.u32("pending accept");
    if (!conns.has(id)) r.fail("pending accept", `unknown connection ${id}`, at);
    if (owner.has(id)) r.fail("pending accept", `connection ${id} listed twice`, at);
    owner.set(id, "pending");
    pendingAccepts.push(id);
  }

  const fds = new Map<number, FdEntry>();
  const fileRefs: Array<{ ino: number; kind: "file" | "dir"; at: number }> = [];
  const nfds = r.count("fds", 23);
  if (nfds > MAX_FDS_IN_STATE) r.fail("fds", `${nfds} fds exceed ${MAX_FDS_IN_STATE}`);
  let prevFd = -1;
  for (let i = 0; i < nfds; i++) {
    const at = r.at;
    const fd = r.u32("fd");
    if (fd <= prevFd || fd >= MAX_FDS_IN_STATE) r.fail("fd", `fd ${fd} out of order or range`, at);
    prevFd = fd;
    const kindAt = r.at;
    const kind = FD_KINDS[r.u8("fd kind")];
    if (kind === undefined) r.fail("fd kind", "unknown kind", kindAt);
    const flags = r.u16("fd flags");
    if ((flags & ~0x1f) !== 0) r.fail("fd flags", `unknown bits ${flags}`, kindAt + 1);
    const rightsBase = r.u64("rights base");
    const rightsInheriting = r.u64("rights inheriting");
    if (kind === "conn") {
      const cAt = r.at;
      const conn = r.u32("fd connection");
      if (!conns.has(conn)) r.fail("fd connection", `unknown connection ${conn}`, cAt);
      if (owner.has(conn)) r.fail("fd connection", `connection ${conn} owned twice`, cAt);
      owner.set(conn, "fd");
      fds.set(fd, { kind, conn, flags, rightsBase, rightsInheriting });
    } else if (kind === "file") {
      const iAt = r.at;
      const ino = r.u32("fd inode");
      const pos = r.safe("fd position");
      fileRefs.push({ ino, kind: "file", at: iAt });
      fds.set(fd, { kind, ino, pos, flags, rightsBase, rightsInheriting });
    } else if (kind === "dir") {
      const iAt = r.at;
      const ino = r.u32("fd inode");
      const hasPreopen = r.u8("preopen flag");
      if (hasPreopen > 1) r.fail("preopen flag", "not 0 or 1", iAt + 4);
      const preopen = hasPreopen === 1 ? r.str("preopen path") : undefined;
      fileRefs.push({ ino, kind: "dir", at: iAt });
      fds.set(fd, { kind, ino, preopen, flags, rightsBase, rightsInheriting });
    } else {
      fds.set(fd, { kind, flags, rightsBase, rightsInheriting });
    }
  }
  for (const id of conns.keys())
    if (!owner.has(id)) r.fail("connections", `connection ${id} has no fd and no accept`);

  const nextIno = r.u32("next inode");
  const roots: number[] = [];
  const nroots = r.count("roots", 4);
  for (let i = 0; i < nroots; i++) roots.push(r.u32("root"));
  // Membership by set: a body may list a root many times, and a list scan per inode is quadratic.
  const rootSet = new Set(roots);
  const inodes = new Map<number, Inode>();
  const ninodes = r.count("inodes", 29);
  let prevIno = 0;
  let fileBytes = 0;
  const entryAt = new Map<number, number>();
  for (let i = 0; i < ninodes; i++) {
    const at = r.at;
    const ino = r.u32("inode");
    if (ino <= prevIno || ino >= nextIno)
      r.fail("inode", `inode ${ino} out of order or not below next inode`, at);
    prevIno = ino;
    const kAt = r.at;
    const k = r.u8("inode kind");
    const atim = r.u64("atim");
    const mtim = r.u64("mtim");
    const ctim = r.u64("ctim");
    if (k === 1) {
      const nlink = r.u32("nlink");
      const sizeAt = r.at;
      const size = r.safe("size");
      fileBytes += size;
      if (fileBytes > fsLimitBytes)
        r.fail("size", `file sizes add up to more than the file-system cap ${fsLimitBytes}`, sizeAt);
      inodes.set(ino, { kind: "file", ino, nlink, size, blocks: [], atim, mtim, ctim });
    } else if (k === 2) {
      const parent = r.u32("parent");
      const n = r.count("entries", 8);
      const entries = new Map<string, number>();
      let prevName: string | undefined;
      for (let e = 0; e < n; e++) {
        const nAt = r.at;
        const name = r.str("entry name");
        if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
          r.fail("entry name", `invalid name ${JSON.stringify(name)}`, nAt);
        }
        if (utf8.encode(name).length > 255) r.fail("entry name", "longer than 255 bytes", nAt);
        if (prevName !== undefined && !(prevName < name)) r.fail("entry name", "not in ascending order", nAt);
        prevName = name;
        const target = r.u32("entry inode");
        entries.set(name, target);
        entryAt.set(ino, nAt);
      }
      inodes.set(ino, { kind: "dir", ino, parent, entries, atim, mtim, ctim });
    } else r.fail("inode kind", `unknown kind ${k}`, kAt);
  }
  // References between inodes.
  const links = new Map<number, number>();
  const dirParent = new Map<number, number>();
  for (const n of inodes.values()) {
    if (n.kind !== "dir") continue;
    for (const [name, target] of n.entries) {
      const t = inodes.get(target);
      if (t === undefined) r.fail("entry inode", `${name} names missing inode ${target}`, entryAt.get(n.ino));
      links.set(target, (links.get(target) ?? 0) + 1);
      if (t.kind === "dir") {
        if (dirParent.has(target))
          r.fail("entry inode", `directory ${target} linked twice`, entryAt.get(n.ino));
        dirParent.set(target, n.ino);
      }
    }
  }
  const referencedByFd = new Set<number>();
  for (const ref of fileRefs) {
    const n = inodes.get(ref.ino);
    if (n === undefined || n.kind !== ref.kind)
      r.fail("fd inode", `inode ${ref.ino} is not a ${ref.kind}`, ref.at);
    referencedByFd.add(ref.ino);
  }
  for (const root of roots) {
    const n = inodes.get(root);
    if (n === undefined || n.kind !== "dir" || n.parent !== root || dirParent.has(root)) {
      r.fail("root", `inode ${root} is not a root directory`);
    }
  }
  for (const n of inodes.values()) {
    if (n.kind === "file") {
      const l = links.get(n.ino) ?? 0;
      if (l !== n.nlink) r.fail("nlink", `inode ${n.ino} has nlink ${n.nlink} but ${l} names`);
      if (l === 0 && !referencedByFd.has(n.ino)) r.fail("nlink", `inode ${n.ino} is unreachable`);
    } else if (!rootSet.has(n.ino)) {
      if (dirParent.get(n.ino) !== n.parent) r.fail("parent", `directory ${n.ino} has a wrong parent`);
    }
  }
  // Every directory must reach a root through parents (no detached cycles). Directories found to
  // reach one are remembered, so each parent link is walked once: O(inodes) steps, not O(depth²).
  const reachesRoot = new Set<number>();
  for (const n of inodes.values()) {
    if (n.kind !== "dir") continue;
    let d: DirNode = n;
    const walked: number[] = [];
    for (let steps = 0; !reachesRoot.has(d.ino); steps++) {
      if (steps > inodes.size) r.fail("parent", `directory ${n.ino} does not reach a root`);
      walked.push(d.ino);
      if (d.parent === d.ino) {
        if (!rootSet.has(d.ino)) r.fail("parent", `directory ${n.ino} does not reach a root`);
        break;
      }
      const p = inodes.get(d.parent);
      if (p === undefined || p.kind !== "dir") r.fail("parent", `directory ${d.ino} has no parent directory`);
      d = p;
    }
    for (const ino of walked) reachesRoot.add(ino);
  }

  // Blocks.
  const modeAt = r.at;
  const mode = r.u8("block mode");
  if (mode > 1) r.fail("block mode", `unknown mode ${mode}`, modeAt);
  const carried: Carried = new Map();
  const nblocks = r.count("blocks", 9);
  let prevKey = -1n;
  for (let i = 0; i < nblocks; i++) {
    const at = r.at;
    const ino = r.u32("block inode");
    const block = r.u32("block index");
    const key = (BigInt(ino) << 32n) | BigInt(block);
    if (key <= prevKey) r.fail("block", "not in ascending order", at);
    prevKey = key;
    const f = inodes.get(ino);
    if (f === undefined || f.kind !== "file") r.fail("block inode", `inode ${ino} is not a file`, at);
    if (block >= Math.ceil(f.size / BLOCK_SIZE))
      r.fail("block index", `block ${block} past the end of inode ${ino}`, at + 4);
    const kAt = r.at;
    const k = r.u8("block kind");
    if (k > 1) r.fail("block kind", `unknown kind ${k}`, kAt);
    let data: Uint8Array | undefined;
    if (k === 1) {
      r.need(BLOCK_SIZE, "block data");
      data = r.take(BLOCK_SIZE);
      const tail = f.size - block * BLOCK_SIZE;
      if (tail < BLOCK_SIZE && !isZero(data.subarray(tail)))
        r.fail("block data", "bytes past the end of file", kAt + 1);
    }
    let m = carried.get(ino);
    if (m === undefined) {
      m = new Map();
      carried.set(ino, m);
    }
    m.set(block, data);
  }
  if (r.at !== body.length) r.fail("end", `${body.length - r.at} trailing bytes`);

  const state: HostState = {
    args,
    env,
    fds,
    conns,
    pendingAccepts,
    stdoutOffset,
    stderrOffset,
    stdin,
    pendingPoll,
    monoStart,
    inodes,
    nextIno,
    roots,
  };
  return { state, mono, mode, carried };
}

/** File data: carried blocks, else (mode 0, "some") the current contents of the same inode. */
function buildFileData(state: HostState, mode: number, carried: Carried, current: HostState): void {
  for (const f of state.inodes.values()) {
    if (f.kind !== "file") continue;
    const count = Math.ceil(f.size / BLOCK_SIZE);
    const mine = carried.get(f.ino);
    const cur = mode === 0 ? current.inodes.get(f.ino) : undefined;
    // The array ends at the last block that can hold data (a shorter array reads as holes), so a
    // sparse file costs entries for the blocks the body carries or this host already holds, never
    // for the size it claims (up to 2^53-1 bytes when the caller passes no file-system cap).
    let length = cur !== undefined && cur.kind === "file" ? Math.min(count, cur.blocks.length) : 0;
    if (mine !== undefined)
      for (const [b, data] of mine) if (data !== undefined) length = Math.max(length, b + 1);
    const blocks: Array<Uint8Array | undefined> = new Array(length).fill(undefined);
    for (let b = 0; b < length; b++) {
      if (mine?.has(b)) blocks[b] = mine.get(b);
      else if (cur !== undefined && cur.kind === "file") {
        const src = cur.blocks[b];
        if (src !== undefined) {
          // The current state is discarded once this one is installed, so its blocks are shared,
          // except a last partial block, whose bytes past the new end must read as zero.
          const tail = f.size - b * BLOCK_SIZE;
          blocks[b] = tail < BLOCK_SIZE ? src.slice().fill(0, tail) : src;
        }
      }
    }
    f.blocks = blocks;
  }
}
