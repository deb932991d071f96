import assert from "node:assert/strict";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { E, FILETYPE, OFLAGS, R, RIGHTS_ALL, RIGHTS_FILE } from "../../src/guest/wasi/abi.ts";
import { WasiHostError } from "../../src/guest/wasi/errors.ts";
import { makeHost } from "./fake-env.ts";

const MEM = 65536;
const PATH = 30000; // where path strings go

type H = ReturnType<typeof makeHost>;

function open(h: H, path: string, oflags = 0, dirfd = 4, rights = RIGHTS_FILE): number | string {
  const len = h.env.put(PATH, path);
  const r = h.call("path_open", dirfd, 0, PATH, len, oflags, rights, rights, 0, 8);
  return r === E.SUCCESS ? h.env.u32(8) : `errno ${r}`;
}

function write(h: H, fd: number, text: string | Uint8Array): number {
  const len = h.env.put(2000, text);
  h.env.iovs(0, [[2000, len]]);
  const r = h.call("fd_write", fd, 0, 1, 16);
  return r === E.SUCCESS ? h.env.u32(16) : -r;
}

function read(h: H, fd: number, len: number): string {
  h.env.iovs(0, [[2000, len]]);
  assert.equal(h.call("fd_read", fd, 0, 1, 16), E.SUCCESS);
  return h.env.str(2000, h.env.u32(16));
}

function pathCall(h: H, name: string, path: string, dirfd = 4): number {
  const len = h.env.put(PATH, path);
  return h.call(name, dirfd, PATH, len);
}

function names(h: H, dirfd = 4): string[] {
  assert.equal(h.call("fd_readdir", dirfd, 10000, 4096, 0n, 16), E.SUCCESS);
  const used = h.env.u32(16);
  const out: string[] = [];
  for (let p = 10000; p + 24 <= 10000 + used; ) {
    const n = h.env.u32(p + 16);
    out.push(h.env.str(p + 24, n));
    p += 24 + n;
  }
  return out;
}

test("create, write, seek, read back, stat", () => {
  const h = makeHost();
  const fd = open(h, "a.txt", OFLAGS.CREAT);
  assert.equal(typeof fd, "number");
  assert.equal(write(h, fd as number, "hello world"), 11);
  assert.equal(h.call("fd_seek", fd as number, 6n, 0, 24), E.SUCCESS);
  assert.equal(h.env.u64(24), 6n);
  assert.equal(read(h, fd as number, 100), "world");
  assert.equal(h.call("fd_tell", fd as number, 24), E.SUCCESS);
  assert.equal(h.env.u64(24), 11n);
  assert.equal(h.call("fd_seek", fd as number, -3n, 2, 24), E.SUCCESS);
  assert.equal(read(h, fd as number, 100), "rld");
  assert.equal(h.call("fd_seek", fd as number, -100n, 1, 24), E.INVAL);
  assert.equal(h.call("fd_filestat_get", fd as number, 64), E.SUCCESS);
  assert.equal(h.env.get(64 + 16, 1)[0], FILETYPE.REGULAR_FILE);
  assert.equal(h.env.u64(64 + 32), 11n);
  assert.ok(h.env.covered(64, 64));
  const len = h.env.put(PATH, "a.txt");
  assert.equal(h.call("path_filestat_get", 4, 0, PATH, len, 200), E.SUCCESS);
  assert.equal(h.env.u64(200 + 8), h.env.u64(64 + 8)); // same inode
  // pread/pwrite do not move the position
  h.env.iovs(0, [[2000, h.env.put(2000, "W")]]);
  assert.equal(h.call("fd_pwrite", fd as number, 0, 1, 6n, 16), E.SUCCESS);
  h.env.iovs(0, [[2000, 11]]);
  assert.equal(h.call("fd_pread", fd as number, 0, 1, 0n, 16), E.SUCCESS);
  assert.equal(h.env.str(2000, 11), "hello World");
  assert.equal(h.call("fd_close", fd as number), E.SUCCESS);
});

test("path_open flags: EXCL, TRUNC, DIRECTORY, missing files, directories", () => {
  const h = makeHost();
  const fd = open(h, "f", OFLAGS.CREAT) as number;
  write(h, fd, "data");
  assert.equal(open(h, "f", OFLAGS.CREAT | OFLAGS.EXCL), `errno ${E.EXIST}`);
  assert.equal(open(h, "missing"), `errno ${E.NOENT}`);
  assert.equal(open(h, "f", OFLAGS.DIRECTORY), `errno ${E.NOTDIR}`);
  const fd2 = open(h, "f", OFLAGS.TRUNC) as number;
  assert.equal(h.call("fd_filestat_get", fd2, 64), E.SUCCESS);
  assert.equal(h.env.u64(64 + 32), 0n);
  assert.equal(pathCall(h, "path_create_directory", "d"), E.SUCCESS);
  assert.equal(pathCall(h, "path_create_directory", "d"), E.EXIST);
  assert.equal(open(h, "d", OFLAGS.TRUNC), `errno ${E.ISDIR}`);
  const dfd = open(h, "d", OFLAGS.DIRECTORY, 4, RIGHTS_ALL & ~R.FD_WRITE) as number; // as wasi-libc asks for O_RDONLY
  assert.equal(typeof dfd, "number");
  assert.equal(typeof open(h, "inner", OFLAGS.CREAT, dfd), "number");
  assert.deepEqual(names(h, dfd), [".", "..", "inner"]);
  assert.deepEqual(names(h), [".", "..", "d", "f"]);
  // reads and writes on a directory fd
  h.env.iovs(0, [[2000, 4]]);
  assert.equal(h.call("fd_read", dfd, 0, 1, 16), E.ISDIR);
  assert.equal(h.call("fd_write", dfd, 0, 1, 16), E.BADF);
});

test("paths cannot leave the preopen", () => {
  const h = makeHost();
  assert.equal(pathCall(h, "path_create_directory", "sub"), E.SUCCESS);
  for (const p of ["../x", "/etc/passwd", "sub/../../x", "sub/../..", "..", "./../x"]) {
    assert.equal(open(h, p, OFLAGS.CREAT), `errno ${E.NOTCAPABLE}`, p);
  }
  // inside is fine
  assert.equal(typeof open(h, "sub/../sub/./x", OFLAGS.CREAT), "number");
  assert.deepEqual(names(h), [".", "..", "sub"]);
  // a directory fd opened below the root cannot climb above itself either
  const sub = open(h, "sub", OFLAGS.DIRECTORY, 4, RIGHTS_ALL & ~R.FD_WRITE) as number;
  assert.equal(typeof open(h, "y", OFLAGS.CREAT, sub), "number");
  assert.equal(open(h, "../sub/y", 0, sub), `errno ${E.NOTCAPABLE}`);
  // hostile path pointers, lengths, encodings
  assert.equal(h.call("path_open", 4, 0, MEM - 2, 10, 0, 0n, 0n, 0, 8), E.FAULT);
  assert.equal(h.call("path_open", 4, 0, 0, -1, 0, 0n, 0n, 0, 8), E.FAULT);
  h.env.put(PATH, new Uint8Array([0xff, 0xfe]));
  assert.equal(h.call("path_open", 4, 0, PATH, 2, 1, 0n, 0n, 0, 8), E.ILSEQ);
  assert.equal(open(h, "x".repeat(300), OFLAGS.CREAT), `errno ${E.NAMETOOLONG}`);
  assert.equal(open(h, "a\0b", OFLAGS.CREAT), `errno ${E.INVAL}`);
  assert.equal(open(h, "", OFLAGS.CREAT), `errno ${E.NOENT}`);
  assert.equal(open(h, "x", OFLAGS.CREAT, 1), `errno ${E.NOTDIR}`);
  assert.equal(open(h, "x", OFLAGS.CREAT, 99), `errno ${E.BADF}`);
});

test("unlink, rmdir, rename, link; unlinked open files stay readable", () => {
  const h = makeHost();
  const fd = open(h, "a", OFLAGS.CREAT) as number;
  write(h, fd, "A");
  assert.equal(pathCall(h, "path_create_directory", "d"), E.SUCCESS);
  const l1 = h.env.put(PATH, "a");
  h.env.put(PATH + 100, "d/b");
  assert.equal(h.call("path_link", 4, 0, PATH, l1, 4, PATH + 100, 3), E.SUCCESS);
  assert.equal(h.call("path_filestat_get", 4, 0, PATH + 100, 3, 200), E.SUCCESS);
  assert.equal(h.env.u64(200 + 24), 2n); // nlink
  assert.equal(pathCall(h, "path_remove_directory", "d"), E.NOTEMPTY);
  assert.equal(pathCall(h, "path_unlink_file", "d"), E.ISDIR);
  assert.equal(pathCall(h, "path_remove_directory", "a"), E.NOTDIR);
  // rename a over d/b (same inode: no-op), then a → c
  h.env.put(PATH + 100, "c");
  assert.equal(h.call("path_rename", 4, PATH, l1, 4, PATH + 100, 1), E.SUCCESS);
  assert.deepEqual(names(h), [".", "..", "c", "d"]);
  // directory into itself
  h.env.put(PATH, "d");
  h.env.put(PATH + 100, "d/e");
  assert.equal(h.call("path_rename", 4, PATH, 1, 4, PATH + 100, 3), E.INVAL);
  assert.equal(pathCall(h, "path_unlink_file", "c"), E.SUCCESS);
  assert.equal(pathCall(h, "path_unlink_file", "d/b"), E.SUCCESS);
  assert.equal(pathCall(h, "path_unlink_file", "c"), E.NOENT);
  // still readable through the open fd
  assert.equal(h.call("fd_seek", fd, 0n, 0, 24), E.SUCCESS);
  assert.equal(read(h, fd, 10), "A");
  assert.equal(h.call("fd_close", fd), E.SUCCESS);
  assert.equal(pathCall(h, "path_remove_directory", "d"), E.SUCCESS);
  assert.equal(pathCall(h, "path_remove_directory", "."), E.INVAL);
  assert.deepEqual(names(h), [".", ".."]);
  // symlinks are not supported; readlink of a regular file is EINVAL
  h.env.put(PATH, "t");
  h.env.put(PATH + 100, "l");
  assert.equal(h.call("path_symlink", PATH, 1, 4, PATH + 100, 1), E.NOTSUP);
  assert.equal(pathCall(h, "path_create_directory", "x"), E.SUCCESS);
  h.env.put(PATH, "x");
  assert.equal(h.call("path_readlink", 4, PATH, 1, 500, 10, 16), E.INVAL);
});

test("file-system cap: ENOSPC beyond fsLimitBytes, nothing written", () => {
  const h = makeHost({ fsLimitBytes: 10000 });
  const fd = open(h, "a", OFLAGS.CREAT) as number;
  assert.equal(write(h, fd, new Uint8Array(8000)), 8000);
  assert.equal(write(h, fd, new Uint8Array(3000)), -E.NOSPC);
  assert.equal(h.call("fd_filestat_set_size", fd, 20000n), E.NOSPC);
  assert.equal(h.call("fd_allocate", fd, 0n, 20000n), E.NOSPC);
  assert.equal(h.call("fd_filestat_set_size", fd, 1n << 60n), E.FBIG);
  assert.equal(h.call("fd_filestat_get", fd, 64), E.SUCCESS);
  assert.equal(h.env.u64(64 + 32), 8000n);
  // overwriting inside the file costs nothing; freeing space allows more
  assert.equal(h.call("fd_seek", fd, 0n, 0, 24), E.SUCCESS);
  assert.equal(write(h, fd, new Uint8Array(2000)), 2000);
  assert.equal(h.call("fd_filestat_set_size", fd, 0n), E.SUCCESS);
  const fd2 = open(h, "b", OFLAGS.CREAT) as number;
  assert.equal(write(h, fd2, new Uint8Array(9000)), 9000);
});

test("dirty blocks: each 4 KiB block a write touches, harvested once", () => {
  const h = makeHost();
  h.host.harvestFsDirty();
  const fd = open(h, "a", OFLAGS.CREAT) as number;
  h.env.iovs(0, [[2000, 2]]);
  assert.equal(h.call("fd_pwrite", fd, 0, 1, 4095n, 16), E.SUCCESS); // crosses blocks 0 and 1
  assert.equal(h.call("fd_pwrite", fd, 0, 1, 5n * 4096n, 16), E.SUCCESS); // hole in 2..4
  const ino = (() => {
    h.call("fd_filestat_get", fd, 64);
    return Number(h.env.u64(64 + 8));
  })();
  assert.deepEqual(
    h.host.harvestFsDirty(),
    [0, 1, 2, 3, 4, 5].map((block) => ({ ino, block })),
  );
  assert.deepEqual(h.host.harvestFsDirty(), []);
  assert.equal(h.call("fd_pwrite", fd, 0, 1, 8192n, 16), E.SUCCESS);
  assert.deepEqual(h.host.harvestFsDirty(), [{ ino, block: 2 }]);
  assert.equal(h.call("fd_filestat_set_size", fd, 4096n), E.SUCCESS);
  assert.deepEqual(
    h.host.harvestFsDirty(),
    [1, 2, 3, 4, 5].map((block) => ({ ino, block })),
  );
});

test("readdir cookies resume, small buffers truncate, hostile pointers fault", () => {
  const h = makeHost();
  for (const n of ["b", "a", "c"]) open(h, n, OFLAGS.CREAT);
  assert.deepEqual(names(h), [".", "..", "a", "b", "c"]);
  assert.equal(h.call("fd_readdir", 4, 10000, 4096, 3n, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 2 * 25);
  assert.equal(h.env.str(10000 + 24, 1), "b");
  assert.equal(h.call("fd_readdir", 4, 10000, 30, 0n, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 30);
  assert.equal(h.call("fd_readdir", 4, 10000, 4096, 99n, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 0);
  assert.equal(h.call("fd_readdir", 4, MEM - 10, 4096, 0n, 16), E.FAULT);
  assert.equal(h.call("fd_readdir", 1, 10000, 4096, 0n, 16), E.NOTDIR);
});

test("seed from a host directory and write back: files replaced, removed files removed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "colo-wasi-"));
  try {
    writeFileSync(join(dir, "keep.txt"), "keep");
    writeFileSync(join(dir, "gone.txt"), "gone");
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "sub", "big.bin"), new Uint8Array(10000).fill(7));
    symlinkSync("/etc/passwd", join(dir, "link")); // never followed
    const h = makeHost({ preopens: [{ guestPath: "/data", hostPath: dir }] });
    assert.deepEqual(names(h), [".", "..", "gone.txt", "keep.txt", "sub"]);
    const big = open(h, "sub/big.bin") as number;
    assert.equal(h.call("fd_seek", big, 9998n, 0, 24), E.SUCCESS);
    h.env.iovs(0, [[2000, 10]]);
    assert.equal(h.call("fd_read", big, 0, 1, 16), E.SUCCESS);
    assert.deepEqual(h.env.get(2000, h.env.u32(16)), new Uint8Array([7, 7]));
    assert.deepEqual(h.host.harvestFsDirty(), []); // seeding is not a change
    const k = open(h, "keep.txt", OFLAGS.TRUNC) as number;
    write(h, k, "changed");
    assert.equal(pathCall(h, "path_unlink_file", "gone.txt"), E.SUCCESS);
    assert.equal(pathCall(h, "path_create_directory", "new"), E.SUCCESS);
    write(h, open(h, "new/n.txt", OFLAGS.CREAT) as number, "n");
    await h.host.writeBack();
    assert.deepEqual(readdirSync(dir).sort(), ["keep.txt", "new", "sub"]);
    assert.equal(readFileSync(join(dir, "keep.txt"), "utf8"), "changed");
    assert.equal(readFileSync(join(dir, "new", "n.txt"), "utf8"), "n");
    assert.deepEqual(
      new Uint8Array(readFileSync(join(dir, "sub", "big.bin"))),
      new Uint8Array(10000).fill(7),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("seeding past the cap fails with a typed error", () => {
  const dir = mkdtempSync(join(tmpdir(), "colo-wasi-"));
  try {
    writeFileSync(join(dir, "big"), new Uint8Array(5000));
    assert.throws(
      () => makeHost({ preopens: [{ guestPath: "/d", hostPath: dir }], fsLimitBytes: 4000 }),
      (e) => e instanceof WasiHostError && e.code === "seed-failed",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
