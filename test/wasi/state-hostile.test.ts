/**
 * Hostile WASI host-state bodies (a malicious primary sends them; the secondary decodes them in
 * hostSummary with no file-system cap). Each must decode or fail with a WasiHostError, in memory
 * and time proportional to the body, never to a size or depth the body merely claims.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { WasiHostError } from "../../src/guest/wasi/errors.ts";
import { STATE_MAGIC, STATE_VERSION } from "../../src/guest/wasi/state-codec.ts";
import { hostSummary } from "../../src/replication/tracked-domain.ts";

interface Dir {
  readonly ino: number;
  readonly parent: number;
  readonly entries: readonly [string, number][];
}
interface File {
  readonly ino: number;
  readonly nlink: number;
  readonly size: number;
}

/** A v2 body with no connections, fds or blocks: only roots and inodes (ascending ino). */
function body(roots: readonly number[], inodes: readonly (Dir | File)[], nextIno: number): Uint8Array {
  const bytes: number[] = [];
  const u8 = (v: number) => bytes.push(v & 0xff);
  const u32 = (v: number) => {
    for (let i = 0; i < 4; i++) u8(v >>> (8 * i));
  };
  const u64 = (v: number) => {
    u32(v % 2 ** 32);
    u32(Math.floor(v / 2 ** 32));
  };
  u32(STATE_MAGIC);
  u32(STATE_VERSION);
  for (let i = 0; i < 4; i++) u64(0); // mono, mono start, stdout, stderr
  u64(0); // stdin offset
  u64(0); // stdin peak
  u8(1); // stdin eof
  u32(0); // head pos
  u32(0); // nchunks
  u8(0); // no pending poll
  u32(0); // args
  u32(0); // env
  u32(0); // conns
  u32(0); // pending accepts
  u32(0); // fds
  u32(nextIno);
  u32(roots.length);
  for (const r of roots) u32(r);
  u32(inodes.length);
  for (const n of inodes) {
    u32(n.ino);
    if ("size" in n) {
      u8(1);
      for (let i = 0; i < 3; i++) u64(0);
      u32(n.nlink);
      u64(n.size);
    } else {
      u8(2);
      for (let i = 0; i < 3; i++) u64(0);
      u32(n.parent);
      u32(n.entries.length);
      for (const [name, ino] of n.entries) {
        u32(name.length);
        for (const c of name) u8(c.charCodeAt(0));
        u32(ino);
      }
    }
  }
  u8(0); // block mode "some"
  u32(0); // no blocks
  return Uint8Array.from(bytes);
}

test("a sparse file claiming 2^53-1 bytes costs nothing to decode (no RangeError)", () => {
  const b = body(
    [1],
    [
      { ino: 1, parent: 1, entries: [["f", 2]] },
      { ino: 2, nlink: 1, size: Number.MAX_SAFE_INTEGER },
    ],
    3,
  );
  const s = hostSummary(b);
  assert.equal(s.maxConn, -1);
});

test("many files each claiming 2^44 bytes decode without allocating per claimed block", () => {
  const files: File[] = [];
  const entries: [string, number][] = [];
  for (let i = 0; i < 64; i++) {
    files.push({ ino: 2 + i, nlink: 1, size: 2 ** 44 });
    entries.push([`f${String(i).padStart(2, "0")}`, 2 + i]);
  }
  const b = body([1], [{ ino: 1, parent: 1, entries }, ...files], 2 + files.length);
  assert.equal(hostSummary(b).maxConn, -1);
});

test("a 100k-deep directory chain is checked in linear time", () => {
  const depth = 100_000;
  const dirs: Dir[] = [];
  for (let i = 1; i <= depth; i++) {
    dirs.push({ ino: i, parent: i === 1 ? 1 : i - 1, entries: i < depth ? [["d", i + 1]] : [] });
  }
  assert.equal(hostSummary(body([1], dirs, depth + 1)).maxConn, -1);
  // The same chain detached from its root (a cycle at the top) is refused, typed.
  const cyc = dirs.map((d) => (d.ino === 1 ? { ...d, parent: depth } : d));
  const last = cyc[depth - 1]!;
  cyc[depth - 1] = { ...last, entries: [["d", 1]] };
  assert.throws(
    () => hostSummary(body([], cyc, depth + 1)),
    (e: unknown) => e instanceof WasiHostError && e.code === "state-invalid",
  );
});

test("a root listed 200k times beside 20k directories is checked in linear time", () => {
  const n = 20_000;
  const dirs: Dir[] = [{ ino: 1, parent: 1, entries: [] }];
  const top: [string, number][] = [];
  for (let i = 2; i <= n; i++) {
    dirs.push({ ino: i, parent: 1, entries: [] });
    top.push([`d${String(i).padStart(6, "0")}`, i]);
  }
  dirs[0] = { ino: 1, parent: 1, entries: top };
  const roots = new Array<number>(200_000).fill(1);
  assert.equal(hostSummary(body(roots, dirs, n + 1)).maxConn, -1);
});
