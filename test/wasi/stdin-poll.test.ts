/**
 * fd 0 fed through the port (host option stdin "port"), and poll_oneoff deadlines that survive
 * a stop (state.pendingPoll).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { E, EVENTRW_HANGUP, FDFLAGS } from "../../src/guest/wasi/abi.ts";
import { StopRequested } from "../../src/guest/wasi/contract.ts";
import { WasiHostError } from "../../src/guest/wasi/errors.ts";
import { DRAIN_MIN_PEAK } from "../../src/guest/wasi/host.ts";
import { makeHost } from "./fake-env.ts";

const all = { kind: "all" } as const;
const bytes = (s: string) => new TextEncoder().encode(s);
const MS = 1_000_000n;

type H = ReturnType<typeof makeHost>;

/** fd_read(0) into one buffer of `len` bytes at 1000; returns [errno, text read]. */
function read0(h: H, len: number): [number, string] {
  h.env.iovs(0, [[1000, len]]);
  const errno = h.call("fd_read", 0, 0, 1, 16);
  return [errno, errno === E.SUCCESS ? h.env.str(1000, h.env.u32(16)) : ""];
}

test("stdin by default: EOF at once, ready with HANGUP in poll, and stdin input is refused", () => {
  const h = makeHost();
  assert.deepEqual(read0(h, 10), [E.SUCCESS, ""]);
  h.env.sub(4096, 1n, 1, 0);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(h.env.events(8192, 1), [[1n, 0, 1, 0n, EVENTRW_HANGUP]]);
  assert.throws(
    () => h.host.deliver({ kind: "stdin", offset: 0, bytes: bytes("x") }),
    (e) => e instanceof WasiHostError && e.code === "input-order",
  );
});

test('stdin "port": reads block until a chunk arrives, return one chunk at most, then EOF after stdin-eof', () => {
  const h = makeHost({ stdin: "port" });
  // Nothing yet: the read blocks (the fake env stops it), touching no guest memory.
  h.env.dirty = [];
  assert.throws(() => read0(h, 10), StopRequested);
  assert.deepEqual(h.env.dirty, []);
  assert.equal(h.host.deliver({ kind: "stdin", offset: 0, bytes: bytes("ab") }), 2);
  assert.equal(h.host.deliver({ kind: "stdin", offset: 2, bytes: bytes("cdef") }), 6);
  assert.deepEqual(read0(h, 10), [E.SUCCESS, "ab"]); // never bytes of two chunks
  assert.deepEqual(read0(h, 3), [E.SUCCESS, "cde"]);
  assert.ok(h.env.covered(1000, 3));
  assert.deepEqual(read0(h, 3), [E.SUCCESS, "f"]);
  // A chunk that arrives while the guest is blocked wakes it.
  h.env.inbox.push({ kind: "stdin", offset: 6, bytes: bytes("gh") });
  assert.deepEqual(read0(h, 10), [E.SUCCESS, "gh"]);
  // Offsets are checked.
  assert.throws(
    () => h.host.deliver({ kind: "stdin", offset: 7, bytes: bytes("x") }),
    (e) => e instanceof WasiHostError && e.code === "input-offset" && e.details.expected === 8,
  );
  // Non-blocking fd 0: EAGAIN instead of waiting.
  assert.equal(h.call("fd_fdstat_set_flags", 0, FDFLAGS.NONBLOCK), E.SUCCESS);
  assert.deepEqual(read0(h, 10), [E.AGAIN, ""]);
  assert.equal(h.call("fd_fdstat_set_flags", 0, 0), E.SUCCESS);
  h.host.deliver({ kind: "stdin", offset: 8, bytes: bytes("end") });
  h.host.deliver({ kind: "stdin-eof" });
  assert.deepEqual(read0(h, 10), [E.SUCCESS, "end"]);
  assert.deepEqual(read0(h, 10), [E.SUCCESS, ""]);
  assert.deepEqual(read0(h, 10), [E.SUCCESS, ""]);
  assert.throws(
    () => h.host.deliver({ kind: "stdin", offset: 11, bytes: bytes("late") }),
    (e) => e instanceof WasiHostError && e.code === "input-order",
  );
});

test('stdin "port": poll_oneoff readiness of fd 0 (waits, nbytes, HANGUP at EOF)', () => {
  const h = makeHost({ stdin: "port" });
  h.env.sub(4096, 7n, 1, 0);
  assert.throws(() => h.call("poll_oneoff", 4096, 8192, 1, 100), StopRequested); // not ready: waits
  h.env.inbox.push({ kind: "stdin", offset: 0, bytes: bytes("hello") });
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(h.env.events(8192, 1), [[7n, 0, 1, 5n, 0]]);
  read0(h, 10);
  h.host.deliver({ kind: "stdin-eof" });
  assert.equal(h.call("poll_oneoff", 4096, 8192, 1, 100), E.SUCCESS);
  assert.deepEqual(h.env.events(8192, 1), [[7n, 0, 1, 0n, EVENTRW_HANGUP]]);
});

test('stdin "port": stdin-drained after a large queue empties; queued stdin travels with the state', () => {
  const a = makeHost({ stdin: "port" });
  const chunk = 4096;
  const n = Math.ceil(DRAIN_MIN_PEAK / chunk) + 1;
  for (let i = 0; i < n; i++)
    a.host.deliver({ kind: "stdin", offset: i * chunk, bytes: new Uint8Array(chunk).fill(65 + i) });
  read0(a, 100); // part of the first chunk
  a.host.onSuspend();
  const b = makeHost(); // created with an empty stdin: the applied state decides
  b.host.applyState(a.host.captureState(all));
  assert.deepEqual(b.host.captureState(all), a.host.captureState(all));
  assert.deepEqual(read0(b, chunk), [E.SUCCESS, "A".repeat(chunk - 100)]);
  for (let i = 1; i < n; i++)
    assert.deepEqual(read0(b, chunk), [E.SUCCESS, String.fromCharCode(65 + i).repeat(chunk)]);
  assert.deepEqual(b.env.out, [{ kind: "stdin-drained" }]);
  // the plug goes on at the offset the host expects
  assert.equal(b.host.deliver({ kind: "stdin", offset: n * chunk, bytes: bytes("z") }), 1);
});

/** A host blocked in poll_oneoff on an idle connection with a relative monotonic timeout of 1 s. */
function pollingHost() {
  const h = makeHost();
  h.host.deliver({ kind: "open", conn: 1 });
  assert.equal(h.call("sock_accept", 3, 0, 8), E.SUCCESS);
  h.env.sub(4096, 1n, 1, h.env.u32(8)); // read on the idle connection
  h.env.sub(4096 + 48, 2n, 0, 1, 1000n * MS); // 1 s relative
  return h;
}

/** The guest's monotonic clock now. */
function guestNow(h: H): bigint {
  assert.equal(h.call("clock_time_get", 1, 0n, 200), E.SUCCESS);
  return h.env.u64(200);
}

test("poll_oneoff: a stop mid-wait does not restart a relative timeout (same host, and after capture/apply)", () => {
  for (const restore of [false, true]) {
    const h = pollingHost();
    const t0 = guestNow(h);
    h.env.stopOnWait = true;
    assert.throws(() => h.call("poll_oneoff", 4096, 8192, 2, 100), StopRequested);
    h.env.mono += 600n * MS; // the guest waited 600 ms before the stop request came
    h.host.onSuspend();
    h.env.mono += 5000n * MS; // suspended: guest time stands still
    let g = h;
    if (restore) {
      g = makeHost();
      g.env.mono = 42n; // another host's raw clock
      g.host.applyState(h.host.captureState(all));
      g.env.u8().set(h.env.u8()); // guest memory travels with the checkpoint too
    }
    g.host.onResume();
    // The runtime re-runs the same call; it times out 400 ms later, 1 s after it first began.
    g.env.stopOnWait = false;
    assert.equal(g.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
    assert.deepEqual(g.env.events(8192, 1), [[2n, 0, 0, 0n, 0]]);
    assert.equal(guestNow(g) - t0, 1000n * MS, restore ? "after apply" : "same host");
    // A new poll with the same arguments after that one returned gets its full timeout.
    const t1 = guestNow(g);
    assert.equal(g.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
    assert.equal(guestNow(g) - t1, 1000n * MS);
  }
});

test("poll_oneoff: the recorded start applies only to the same call (arguments and subscriptions)", () => {
  const h = pollingHost();
  h.env.stopOnWait = true;
  assert.throws(() => h.call("poll_oneoff", 4096, 8192, 2, 100), StopRequested);
  h.env.mono += 600n * MS;
  h.env.stopOnWait = false;
  // Same pointers, different timeout: a different call, so its timeout counts from now.
  h.env.sub(4096 + 48, 2n, 0, 1, 2000n * MS);
  let t = guestNow(h);
  assert.equal(h.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
  assert.equal(guestNow(h) - t, 2000n * MS);
  // Any other host call between a stop and the re-run forgets the recorded start.
  h.env.sub(4096 + 48, 2n, 0, 1, 1000n * MS);
  h.env.stopOnWait = true;
  assert.throws(() => h.call("poll_oneoff", 4096, 8192, 2, 100), StopRequested);
  h.env.mono += 600n * MS;
  h.env.stopOnWait = false;
  t = guestNow(h); // clock_time_get is another call
  assert.equal(h.call("poll_oneoff", 4096, 8192, 2, 100), E.SUCCESS);
  assert.equal(guestNow(h) - t, 1000n * MS);
});
