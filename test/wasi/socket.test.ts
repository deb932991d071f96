import assert from "node:assert/strict";
import { test } from "node:test";
import type { PortOutput } from "../../src/guest/port.ts";
import { E, FDFLAGS } from "../../src/guest/wasi/abi.ts";
import { StopRequested } from "../../src/guest/wasi/contract.ts";
import { WasiHostError } from "../../src/guest/wasi/errors.ts";
import { DRAIN_MIN_PEAK } from "../../src/guest/wasi/host.ts";
import { makeHost } from "./fake-env.ts";

const MEM = 65536;
const bytes = (s: string) => new TextEncoder().encode(s);

/** A host with connection `conn` accepted; returns its fd. */
function accepted(conn = 1) {
  const h = makeHost();
  h.env.inbox.push({ kind: "open", conn });
  assert.equal(h.call("sock_accept", 3, 0, 8), E.SUCCESS);
  return { ...h, fd: h.env.u32(8) };
}

/** sock_recv into [1000, 1000+len); returns [errno, text]. */
function recv(h: ReturnType<typeof accepted>, len: number, flags = 0): [number, string] {
  h.env.iovs(0, [[1000, len]]);
  const r = h.call("sock_recv", h.fd, 0, 1, flags, 16, 20);
  return [r, r === E.SUCCESS ? h.env.str(1000, h.env.u32(16)) : ""];
}

test("sock_accept returns connections in open order; non-blocking accept is EAGAIN", () => {
  const h = makeHost();
  assert.equal(h.call("fd_fdstat_set_flags", 3, FDFLAGS.NONBLOCK), E.SUCCESS);
  assert.equal(h.call("sock_accept", 3, 0, 8), E.AGAIN);
  h.env.inbox.push({ kind: "open", conn: 42 }, { kind: "open", conn: 7 });
  assert.equal(h.call("sock_accept", 3, 0, 8), E.SUCCESS);
  assert.equal(h.env.u32(8), 5);
  assert.equal(h.call("sock_accept", 3, FDFLAGS.NONBLOCK, 8), E.SUCCESS);
  assert.equal(h.env.u32(8), 6);
  assert.ok(h.env.covered(8, 4));
  assert.equal(h.call("sock_accept", 3, 0, 8), E.AGAIN);
  // fd 6 is non-blocking: recv with no data is EAGAIN
  h.env.iovs(0, [[1000, 10]]);
  assert.equal(h.call("sock_recv", 6, 0, 1, 0, 16, 20), E.AGAIN);
  // errors
  assert.equal(h.call("sock_accept", 1, 0, 8), E.NOTSOCK);
  assert.equal(h.call("sock_accept", 5, 0, 8), E.INVAL);
  assert.equal(h.call("sock_accept", 3, 0x100, 8), E.INVAL);
  assert.equal(h.call("sock_accept", 3, 0, MEM - 2), E.FAULT);
  assert.equal(h.call("sock_accept", 33, 0, 8), E.BADF);
});

test("sock_recv never returns bytes of two chunks, even with room for both", () => {
  const h = accepted();
  h.env.inbox.push(
    { kind: "data", conn: 1, offset: 0, bytes: bytes("hello") },
    { kind: "data", conn: 1, offset: 5, bytes: bytes("world!") },
    { kind: "eof", conn: 1 },
  );
  assert.deepEqual(recv(h, 100), [E.SUCCESS, "hello"]);
  assert.deepEqual(recv(h, 3), [E.SUCCESS, "wor"]);
  assert.deepEqual(recv(h, 2, 1), [E.SUCCESS, "ld"]); // peek
  assert.deepEqual(recv(h, 100), [E.SUCCESS, "ld!"]);
  assert.deepEqual(recv(h, 100), [E.SUCCESS, ""]); // EOF
  assert.deepEqual(recv(h, 100), [E.SUCCESS, ""]);
  assert.ok(h.env.covered(1000, 5) && h.env.covered(16, 4) && h.env.covered(20, 2));
});

test("fd_read on a connection is recv; scatter over several iovecs within one chunk", () => {
  const h = accepted();
  h.env.inbox.push(
    { kind: "data", conn: 1, offset: 0, bytes: bytes("abcdef") },
    { kind: "data", conn: 1, offset: 6, bytes: bytes("XY") },
  );
  h.env.iovs(0, [
    [1000, 2],
    [2000, 10],
  ]);
  assert.equal(h.call("fd_read", h.fd, 0, 2, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 6);
  assert.equal(h.env.str(1000, 2), "ab");
  assert.equal(h.env.str(2000, 4), "cdef");
  assert.equal(h.call("fd_read", h.fd, 0, 2, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 2);
});

test("blocking recv waits for input, and a stop while waiting changes nothing", () => {
  const h = accepted();
  h.env.stopOnWait = true;
  const before = h.host.captureState({ kind: "all" });
  h.env.dirty = [];
  h.env.iovs(0, [[1000, 10]]);
  assert.throws(() => h.call("sock_recv", h.fd, 0, 1, 0, 16, 20), StopRequested);
  assert.deepEqual(h.host.captureState({ kind: "all" }), before);
  assert.deepEqual(h.env.dirty, []);
  h.env.stopOnWait = false;
  h.env.inbox.push({ kind: "data", conn: 1, offset: 0, bytes: bytes("late") });
  assert.deepEqual(recv(h, 10), [E.SUCCESS, "late"]);
  assert.equal(h.env.waits, 1); // the stopped wait only: the re-run found the input on its first pump
});

test("sock_send and fd_write emit data with the connection's output offset; shutdown and close", () => {
  const h = accepted(9);
  h.env.iovs(0, [[1000, h.env.put(1000, "+OK\r\n")]]);
  assert.equal(h.call("sock_send", h.fd, 0, 1, 0, 16), E.SUCCESS);
  assert.equal(h.env.u32(16), 5);
  assert.equal(h.call("fd_write", h.fd, 0, 1, 16), E.SUCCESS);
  assert.equal(h.call("sock_shutdown", h.fd, 2), E.SUCCESS);
  assert.equal(h.call("sock_send", h.fd, 0, 1, 0, 16), E.PIPE);
  assert.equal(h.call("sock_shutdown", h.fd, 7), E.INVAL);
  assert.equal(h.call("fd_close", h.fd), E.SUCCESS);
  const summary = h.env.out.map((o: PortOutput) =>
    o.kind === "data" && o.stream.kind === "conn"
      ? ["data", o.stream.id, o.offset, o.bytes.length]
      : [o.kind],
  );
  assert.deepEqual(summary, [["data", 9, 0, 5], ["data", 9, 5, 5], ["shutdown"], ["close"]]);
  // after close, late input for the connection is dropped
  assert.equal(h.host.deliver({ kind: "data", conn: 9, offset: 0, bytes: bytes("x") }), 0);
});

test("closing a connection without shutdown emits shutdown then close", () => {
  const h = accepted(4);
  assert.equal(h.call("fd_close", h.fd), E.SUCCESS);
  assert.deepEqual(
    h.env.out.map((o) => o.kind),
    ["shutdown", "close"],
  );
});

test("socket calls on the wrong kind of fd", () => {
  const h = accepted();
  h.env.iovs(0, [[1000, 4]]);
  assert.equal(h.call("sock_recv", 3, 0, 1, 0, 16, 20), E.NOTCONN);
  assert.equal(h.call("sock_recv", 1, 0, 1, 0, 16, 20), E.NOTSOCK);
  assert.equal(h.call("sock_send", 4, 0, 1, 0, 16), E.NOTSOCK);
  assert.equal(h.call("sock_shutdown", 0, 2), E.NOTSOCK);
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0x10, 16, 20), E.INVAL);
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, MEM - 1, 20), E.FAULT);
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, 16, MEM - 1), E.FAULT);
  assert.equal(h.call("fd_seek", h.fd, 0n, 0, 16), E.SPIPE);
});

test("deliver: offsets checked with a typed error, queued bytes returned, empty chunks not queued", () => {
  const h = makeHost();
  assert.equal(h.host.deliver({ kind: "open", conn: 1 }), 0);
  assert.throws(
    () => h.host.deliver({ kind: "open", conn: 1 }),
    (e) => e instanceof WasiHostError && e.code === "input-order",
  );
  assert.equal(h.host.deliver({ kind: "data", conn: 1, offset: 0, bytes: bytes("abc") }), 3);
  assert.equal(h.host.deliver({ kind: "data", conn: 1, offset: 3, bytes: new Uint8Array(0) }), 3);
  assert.throws(
    () => h.host.deliver({ kind: "data", conn: 1, offset: 2, bytes: bytes("d") }),
    (e) =>
      e instanceof WasiHostError &&
      e.code === "input-offset" &&
      e.details.expected === 3 &&
      e.details.actual === 2,
  );
  assert.equal(h.host.deliver({ kind: "data", conn: 1, offset: 3, bytes: bytes("de") }), 5);
  assert.equal(h.host.deliver({ kind: "eof", conn: 1 }), 5);
  assert.throws(
    () => h.host.deliver({ kind: "data", conn: 1, offset: 5, bytes: bytes("x") }),
    (e) => e instanceof WasiHostError && e.code === "input-order",
  );
});

test("drained is emitted when a large queue empties", () => {
  const h = accepted();
  const big = new Uint8Array(DRAIN_MIN_PEAK);
  h.host.deliver({ kind: "data", conn: 1, offset: 0, bytes: big });
  h.host.deliver({ kind: "data", conn: 1, offset: big.length, bytes: bytes("z") });
  h.env.iovs(0, [[1000, 60000]]);
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, 16, 20), E.SUCCESS);
  assert.deepEqual(h.env.out, []);
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, 16, 20), E.SUCCESS);
  assert.deepEqual(h.env.out, [{ kind: "drained", conn: 1 }]);
  // small traffic does not emit drained
  h.host.deliver({ kind: "data", conn: 1, offset: big.length + 1, bytes: bytes("q") });
  assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, 16, 20), E.SUCCESS);
  assert.equal(h.env.out.length, 1);
});

test("drained counts bytes delivered since the last one, not the queue's size: small chunks read as they land add up", () => {
  // A plug whose estimate also counts bytes in flight may stop feeding when the host's queue has
  // never been large (the guest read each small chunk as it arrived); it must still hear drained.
  const h = accepted();
  const chunk = 1000;
  const n = Math.ceil(DRAIN_MIN_PEAK / chunk);
  h.env.iovs(0, [[1000, chunk]]);
  for (let i = 0; i < n; i++) {
    assert.equal(
      h.host.deliver({ kind: "data", conn: 1, offset: i * chunk, bytes: new Uint8Array(chunk) }),
      chunk,
    );
    assert.equal(h.call("sock_recv", h.fd, 0, 1, 0, 16, 20), E.SUCCESS);
    assert.equal(h.env.u32(16), chunk);
    assert.deepEqual(h.env.out, i < n - 1 ? [] : [{ kind: "drained", conn: 1 }], `after chunk ${i}`);
  }
});

test("poll_oneoff: fd readiness, clock timeouts (relative and absolute), bad subscriptions", () => {
  const h = accepted();
  const sub = (i: number, userdata: bigint, tag: number, a: number, timeout = 0n, flags = 0) => {
    const p = 4096 + i * 48;
    h.env.u8().fill(0, p, p + 48);
    h.env.dv().setBigUint64(p, userdata, true);
    h.env.dv().setUint8(p + 8, tag);
    h.env.dv().setUint32(p + 16, a, true);
    h.env.dv().setBigUint64(p + 24, timeout, true);
    h.env.dv().setUint16(p + 40, flags, true);
  };
  const events = (n: number) =>
    Array.from({ length: n }, (_, i) => {
      const p = 8192 + i * 32;
      return [h.env.u64(p), h.env.dv().getUint16(p + 8, true), h.env.dv().getUint8(p + 10)];
    });
  // read on the connection (not ready) + relative monotonic timeout 1 ms
  sub(0, 11n, 1, h.fd);
  sub(1, 22n, 0, 1, 1_000_000n);
  const t0 = h.env.mono;
  assert.equal(h.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
  assert.equal(h.env.u32(100), 1);
  assert.deepEqual(events(1), [[22n, 0, 0]]);
  assert.equal(h.env.mono - t0, 1_000_000n);
  // data arrives: read ready with nbytes
  h.env.inbox.push({ kind: "data", conn: 1, offset: 0, bytes: bytes("abcd") });
  assert.equal(h.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
  assert.deepEqual(events(1), [[11n, 0, 1]]);
  assert.equal(h.env.u64(8192 + 16), 4n);
  // write readiness on stdout, bad fd gives an event with EBADF
  sub(0, 1n, 2, 1);
  sub(1, 2n, 1, 77);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
  assert.deepEqual(events(2), [
    [1n, 0, 2],
    [2n, E.BADF, 1],
  ]);
  // absolute monotonic deadline in the past fires at once; absolute realtime in the future waits
  sub(0, 5n, 0, 1, 1n, 1);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(events(1), [[5n, 0, 0]]);
  const before = h.env.mono;
  sub(0, 6n, 0, 0, h.env.real + 2000n, 1);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.equal(h.env.mono - before, 2000n);
  // listen fd ready when a connection is pending
  sub(0, 9n, 1, 3);
  sub(1, 10n, 0, 1, 0n);
  h.env.inbox.push({ kind: "open", conn: 2 });
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(events(1), [[9n, 0, 1]]);
  // hostile
  assert.equal(h.call("poll_oneoff", 4096, 8192, 0, 100), E.INVAL);
  assert.equal(h.call("poll_oneoff", MEM - 40, 8192, 1, 100), E.FAULT);
  assert.equal(h.call("poll_oneoff", 4096, MEM - 16, 1, 100), E.FAULT);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 0x10000000, 100), E.FAULT);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, MEM), E.FAULT);
  sub(0, 1n, 9, 0);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.INVAL);
  sub(0, 1n, 0, 17, 0n);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(events(1), [[1n, E.INVAL, 0]]);
});

test("poll_oneoff with only a blocked fd subscription waits and a stop changes nothing", () => {
  const h = accepted();
  const p = 4096;
  h.env.dv().setBigUint64(p, 1n, true);
  h.env.dv().setUint8(p + 8, 1);
  h.env.dv().setUint32(p + 16, h.fd, true);
  h.env.dirty = [];
  h.env.stopOnWait = true;
  assert.throws(() => h.call("poll_oneoff", 4096, 8192, 1, 100), StopRequested);
  assert.deepEqual(h.env.dirty, []);
});
