import assert from "node:assert/strict";
import { test } from "node:test";
import { E, FILETYPE, R } from "../../src/guest/wasi/abi.ts";
import { ProcExit, StopRequested } from "../../src/guest/wasi/contract.ts";
import { makeHost } from "./fake-env.ts";

const MEM = 65536;

test("args and environ: sizes, contents, LISTEN_FDS=1 replaces any given value, dirty marks", () => {
  const { env, call } = makeHost();
  assert.equal(call("args_sizes_get", 0, 4), E.SUCCESS);
  assert.equal(env.u32(0), 2);
  assert.equal(env.u32(4), "prog\0a1\0".length);
  env.dirty = [];
  assert.equal(call("args_get", 100, 200), E.SUCCESS);
  assert.equal(env.u32(100), 200);
  assert.equal(env.u32(104), 205);
  assert.equal(env.str(200, 8), "prog\0a1\0");
  assert.ok(env.covered(100, 8) && env.covered(200, 8));

  assert.equal(call("environ_sizes_get", 0, 4), E.SUCCESS);
  assert.equal(env.u32(0), 2);
  assert.equal(call("environ_get", 300, 400), E.SUCCESS);
  const total = env.u32(4);
  assert.equal(env.str(400, total), "HOME=/\0LISTEN_FDS=1\0");
});

test("args and environ with out-of-bounds pointers: EFAULT, memory untouched", () => {
  const { env, call } = makeHost();
  const before = env.get(0, MEM);
  for (const [name, a, b] of [
    ["args_sizes_get", MEM - 2, 0],
    ["args_sizes_get", 0, -1],
    ["args_get", MEM - 4, 0],
    ["args_get", 0, MEM - 3],
    ["environ_get", -8, 0],
    ["environ_sizes_get", 0, MEM],
  ] as const) {
    assert.equal(call(name, a, b), E.FAULT, `${name}(${a}, ${b})`);
  }
  assert.deepEqual(env.get(0, MEM), before);
  assert.deepEqual(env.dirty, []);
});

test("clocks: resolution, realtime, monotonic, cputime, bad ids and pointers", () => {
  const { env, call } = makeHost();
  assert.equal(call("clock_res_get", 1, 8), E.SUCCESS);
  assert.equal(env.u64(8), 1000n);
  assert.equal(call("clock_time_get", 0, 0n, 16), E.SUCCESS);
  assert.equal(env.u64(16), env.real);
  assert.equal(call("clock_time_get", 1, 0n, 16), E.SUCCESS);
  assert.equal(env.u64(16), env.mono);
  env.mono += 500n;
  assert.equal(call("clock_time_get", 2, 0n, 16), E.SUCCESS);
  assert.equal(env.u64(16), 500n);
  assert.equal(call("clock_time_get", 4, 0n, 16), E.INVAL);
  assert.equal(call("clock_res_get", 9, 16), E.INVAL);
  assert.equal(call("clock_time_get", 1, 0n, MEM - 7), E.FAULT);
  assert.ok(env.covered(16, 8));
});

test("monotonic clock never goes back across suspend, capture and apply on a host whose raw clock is behind", () => {
  const a = makeHost();
  a.env.mono = 50_000_000_000n;
  a.call("clock_time_get", 1, 0n, 0);
  const t1 = a.env.u64(0);
  a.host.onSuspend();
  a.env.mono += 10_000_000_000n; // time passes while suspended: not seen by the guest
  const body = a.host.captureState({ kind: "all" });
  const b = makeHost();
  b.env.mono = 5n; // the other host's raw clock is far behind
  b.host.applyState(body);
  b.host.onResume();
  b.env.mono += 7n;
  b.call("clock_time_get", 1, 0n, 0);
  const t2 = b.env.u64(0);
  assert.ok(t2 >= t1, `${t2} < ${t1}`);
  assert.equal(t2, t1 + 7n);
  // the original also resumes where it stopped
  a.host.onResume();
  a.call("clock_time_get", 1, 0n, 0);
  assert.equal(a.env.u64(0), t1);
});

test("random_get fills the buffer, marks it dirty, and bounds-checks", () => {
  const { env, call } = makeHost();
  assert.equal(call("random_get", 1000, 100000), E.FAULT);
  assert.equal(call("random_get", 1000, 64), E.SUCCESS);
  assert.notDeepEqual(env.get(1000, 64), new Uint8Array(64));
  assert.ok(env.covered(1000, 64));
  assert.equal(call("random_get", MEM, 0), E.SUCCESS);
  assert.equal(call("random_get", MEM, 1), E.FAULT);
});

test("stdout and stderr writes become port data events with running offsets", () => {
  const { env, call } = makeHost();
  env.iovs(0, [
    [100, env.put(100, "ab")],
    [200, env.put(200, "cde")],
  ]);
  assert.equal(call("fd_write", 1, 0, 2, 50), E.SUCCESS);
  assert.equal(env.u32(50), 5);
  assert.equal(call("fd_write", 2, 0, 1, 50), E.SUCCESS);
  assert.equal(call("fd_write", 1, 0, 1, 50), E.SUCCESS);
  assert.deepEqual(
    env.out.map((o) => (o.kind === "data" ? [o.stream.kind, o.offset, Buffer.from(o.bytes).toString()] : o)),
    [
      ["stdout", 0, "abcde"],
      ["stderr", 0, "ab"],
      ["stdout", 5, "ab"],
    ],
  );
  // stdin reads EOF; writing to it or reading stdout is EBADF
  env.iovs(0, [[100, 10]]);
  assert.equal(call("fd_read", 0, 0, 1, 50), E.SUCCESS);
  assert.equal(env.u32(50), 0);
  assert.equal(call("fd_write", 0, 0, 1, 50), E.BADF);
  assert.equal(call("fd_read", 1, 0, 1, 50), E.BADF);
});

test("fd_write with hostile iovecs: EFAULT and nothing emitted", () => {
  const { env, call } = makeHost();
  env.iovs(0, [[MEM - 2, 4]]);
  assert.equal(call("fd_write", 1, 0, 1, 50), E.FAULT);
  env.iovs(0, [[0, 0xffffffff]]);
  assert.equal(call("fd_write", 1, 0, 1, 50), E.FAULT);
  assert.equal(call("fd_write", 1, MEM - 4, 1, 50), E.FAULT);
  assert.equal(call("fd_write", 1, 0, 0x20000000, 50), E.FAULT);
  env.iovs(0, [[100, 1]]);
  assert.equal(call("fd_write", 1, 0, 1, MEM), E.FAULT);
  assert.equal(call("fd_write", 99, 0, 1, 50), E.BADF);
  assert.equal(call("fd_write", -1, 0, 1, 50), E.BADF);
  assert.deepEqual(env.out, []);
});

test("fd_prestat_get: fd 3 answers success with a non-directory tag, fd 4 is the preopen, then EBADF", () => {
  const { env, call } = makeHost({
    preopens: [
      { guestPath: "/data", hostPath: undefined },
      { guestPath: "/tmp", hostPath: undefined },
    ],
  });
  assert.equal(call("fd_prestat_get", 3, 8), E.SUCCESS);
  assert.notEqual(env.get(8, 1)[0], 0);
  assert.equal(call("fd_prestat_get", 4, 8), E.SUCCESS);
  assert.equal(env.get(8, 1)[0], 0);
  assert.equal(env.u32(12), 5);
  assert.equal(call("fd_prestat_dir_name", 4, 100, 5), E.SUCCESS);
  assert.equal(env.str(100, 5), "/data");
  assert.equal(call("fd_prestat_dir_name", 4, 100, 4), E.NAMETOOLONG);
  assert.equal(call("fd_prestat_get", 5, 8), E.SUCCESS);
  assert.equal(call("fd_prestat_get", 6, 8), E.BADF);
  assert.equal(call("fd_prestat_get", 1, 8), E.BADF);
  assert.equal(call("fd_prestat_get", 3, MEM - 4), E.FAULT);
  assert.equal(call("fd_prestat_dir_name", 3, 100, 5), E.BADF);
});

test("fd_fdstat_get reports file types and rights; set_flags; set_rights only drops", () => {
  const { env, call } = makeHost();
  const ft = (fd: number) => {
    assert.equal(call("fd_fdstat_get", fd, 64), E.SUCCESS);
    return env.get(64, 1)[0];
  };
  assert.equal(ft(1), FILETYPE.CHARACTER_DEVICE);
  assert.equal(ft(3), FILETYPE.SOCKET_STREAM);
  assert.equal((env.u64(72) & R.SOCK_ACCEPT) !== 0n, true);
  assert.equal(ft(4), FILETYPE.DIRECTORY);
  assert.ok(env.covered(64, 24));
  assert.equal(call("fd_fdstat_get", 9, 64), E.BADF);
  assert.equal(call("fd_fdstat_get", 1, MEM - 8), E.FAULT);
  assert.equal(call("fd_fdstat_set_flags", 3, 4), E.SUCCESS);
  ft(3);
  assert.equal(env.dv().getUint16(66, true), 4);
  assert.equal(call("fd_fdstat_set_flags", 3, 0x100), E.INVAL);
  assert.equal(call("fd_fdstat_set_rights", 1, R.FD_WRITE, 0n), E.SUCCESS);
  assert.equal(call("fd_fdstat_set_rights", 1, R.FD_WRITE | R.FD_READ, 0n), E.NOTCAPABLE);
});

test("proc_exit throws ProcExit; proc_raise is ENOSYS; sched_yield succeeds", () => {
  const { call } = makeHost();
  assert.throws(
    () => call("proc_exit", 3),
    (e) => e instanceof ProcExit && e.code === 3,
  );
  assert.equal(call("proc_raise", 6), E.NOSYS);
  assert.equal(call("sched_yield"), E.SUCCESS);
});

test("StopRequested from wait leaves the host unchanged and the call can be re-run", () => {
  const { env, call, host } = makeHost();
  env.stopOnWait = true;
  const before = host.captureState({ kind: "all" });
  const mem = env.get(0, MEM);
  assert.throws(() => call("sock_accept", 3, 0, 8), StopRequested);
  assert.deepEqual(host.captureState({ kind: "all" }), before);
  assert.deepEqual(env.get(0, MEM), mem);
  env.stopOnWait = false;
  env.inbox.push({ kind: "open", conn: 7 });
  assert.equal(call("sock_accept", 3, 0, 8), E.SUCCESS);
  assert.equal(env.u32(8), 5);
});

test("fd_close and fd_renumber", () => {
  const { env, call } = makeHost();
  assert.equal(call("fd_renumber", 4, 2), E.SUCCESS); // stderr replaced by the preopen dir
  assert.equal(call("fd_fdstat_get", 2, 64), E.SUCCESS);
  assert.equal(env.get(64, 1)[0], FILETYPE.DIRECTORY);
  assert.equal(call("fd_fdstat_get", 4, 64), E.BADF);
  assert.equal(call("fd_renumber", 4, 2), E.BADF);
  assert.equal(call("fd_renumber", 2, 40), E.BADF);
  assert.equal(call("fd_close", 2), E.SUCCESS);
  assert.equal(call("fd_close", 2), E.BADF);
  assert.equal(call("fd_close", 0xffffffff), E.BADF);
});

/** Parameter kinds of each import ("i" i32, "I" i64), from wasi_snapshot_preview1.witx. */
const SIGNATURES: Record<string, string> = {
  args_get: "ii",
  args_sizes_get: "ii",
  environ_get: "ii",
  environ_sizes_get: "ii",
  clock_res_get: "ii",
  clock_time_get: "iIi",
  fd_advise: "iIIi",
  fd_allocate: "iII",
  fd_close: "i",
  fd_datasync: "i",
  fd_fdstat_get: "ii",
  fd_fdstat_set_flags: "ii",
  fd_fdstat_set_rights: "iII",
  fd_filestat_get: "ii",
  fd_filestat_set_size: "iI",
  fd_filestat_set_times: "iIIi",
  fd_pread: "iiiIi",
  fd_prestat_get: "ii",
  fd_prestat_dir_name: "iii",
  fd_pwrite: "iiiIi",
  fd_read: "iiii",
  fd_readdir: "iiiIi",
  fd_renumber: "ii",
  fd_seek: "iIii",
  fd_sync: "i",
  fd_tell: "ii",
  fd_write: "iiii",
  path_create_directory: "iii",
  path_filestat_get: "iiiii",
  path_filestat_set_times: "iiiiIIi",
  path_link: "iiiiiii",
  path_open: "iiiiiIIii",
  path_readlink: "iiiiii",
  path_remove_directory: "iii",
  path_rename: "iiiiii",
  path_symlink: "iiiii",
  path_unlink_file: "iii",
  poll_oneoff: "iiii",
  proc_exit: "i",
  proc_raise: "i",
  sched_yield: "",
  random_get: "ii",
  sock_accept: "iii",
  sock_recv: "iiiiii",
  sock_send: "iiiii",
  sock_shutdown: "ii",
};

test("the import object is exactly wasi_snapshot_preview1", () => {
  const { imports } = makeHost();
  assert.deepEqual(Object.keys(imports).sort(), Object.keys(SIGNATURES).sort());
});

test("every import survives garbage arguments without throwing or hitting a host bug", () => {
  const { env, imports } = makeHost();
  // some state to poke at: a connection with data, a file
  env.inbox.push({ kind: "open", conn: 1 }, { kind: "data", conn: 1, offset: 0, bytes: new Uint8Array(10) });
  env.pump();
  const i32s = [0, 1, 3, 4, 5, 6, -1, 0x7fffffff, -0x80000000, MEM - 1, MEM, 8, 24, 100];
  const i64s = [0n, 1n, -1n, 0x7fffffffffffffffn, -0x8000000000000000n, 4096n, 1n << 53n];
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 8;
  };
  for (const [name, sig] of Object.entries(SIGNATURES)) {
    if (name === "proc_exit") continue;
    const fn = imports[name] as (...a: Array<number | bigint>) => unknown;
    for (let i = 0; i < 300; i++) {
      // fill memory with junk now and then, so pointers lead to garbage structures
      if (i % 50 === 0) for (let k = 0; k < 512; k++) env.u8()[rnd() % 256] = rnd() & 0xff;
      const args = [...sig].map((k) => (k === "I" ? i64s[rnd() % i64s.length]! : i32s[rnd() % i32s.length]!));
      try {
        const r = fn(...args);
        assert.ok(typeof r === "number", `${name} returned ${String(r)}`);
        // EIO is what the host answers when its own code threw: a bug, never a guest's doing
        assert.notEqual(r, E.IO, `${name}(${args.join(", ")}) hit a host bug`);
      } catch (e) {
        assert.ok(e instanceof StopRequested, `${name}: ${String(e)}`);
      }
    }
  }
});
