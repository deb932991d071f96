/**
 * Golden state vectors: a fixed host state, built by a fixed sequence of calls on the fake env,
 * must encode to the committed bytes (test/wasi/fixtures/state-v*.bin), and older versions'
 * bytes must still decode. Regenerate the current version's file only on a deliberate format
 * change: UPDATE_GOLDEN=1 node --test test/wasi/golden.test.ts
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { E, FDFLAGS, OFLAGS, RIGHTS_FILE } from "../../src/guest/wasi/abi.ts";
import { StopRequested } from "../../src/guest/wasi/contract.ts";
import { STATE_VERSION, utf8Length } from "../../src/guest/wasi/state-codec.ts";
import { makeHost } from "./fake-env.ts";

const fixture = (version: number) => new URL(`./fixtures/state-v${version}.bin`, import.meta.url);
const all = { kind: "all" } as const;

/** A state touching every section: connections (queued, partly read, eof, shut), a pending accept, fds of every kind, files with data and holes, directories. */
export function goldenHost(version = STATE_VERSION) {
  const h = makeHost({ args: ["golden", "x"], env: ["A=1"], stdin: version >= 2 ? "port" : "empty" });
  const { env, call, host } = h;
  const ok = (errno: number, what: string) => assert.equal(errno, E.SUCCESS, what);
  host.deliver({ kind: "open", conn: 7 });
  host.deliver({ kind: "data", conn: 7, offset: 0, bytes: new TextEncoder().encode("hello world") });
  host.deliver({ kind: "data", conn: 7, offset: 11, bytes: new Uint8Array([1, 2, 3]) });
  ok(call("sock_accept", 3, 0, 8), "accept");
  const c7 = env.u32(8);
  env.iovs(0, [[1000, 5]]);
  ok(call("sock_recv", c7, 0, 1, 0, 16, 20), "recv");
  env.put(1100, "pong");
  env.iovs(0, [[1100, 4]]);
  ok(call("sock_send", c7, 0, 1, 0, 16), "send");
  ok(call("sock_shutdown", c7, 2), "shutdown");
  host.deliver({ kind: "open", conn: 9 });
  host.deliver({ kind: "data", conn: 9, offset: 0, bytes: new Uint8Array(20000).fill(0x5a) });
  host.deliver({ kind: "eof", conn: 9 });
  env.put(1200, "out\n");
  env.iovs(0, [[1200, 4]]);
  ok(call("fd_write", 1, 0, 1, 16), "stdout");
  ok(call("fd_write", 2, 0, 1, 16), "stderr");
  env.mono += 123_456_789n;
  env.real += 987_654_321n;
  ok(call("path_create_directory", 4, 2000, env.put(2000, "d")), "mkdir");
  const name = env.put(2000, "d/file");
  ok(call("path_open", 4, 0, 2000, name, OFLAGS.CREAT, RIGHTS_FILE, RIGHTS_FILE, FDFLAGS.APPEND, 8), "open");
  const f = env.u32(8);
  env.u8().fill(0x42, 3000, 3000 + 5000);
  env.iovs(0, [[3000, 5000]]);
  ok(call("fd_pwrite", f, 0, 1, 9000n, 16), "pwrite"); // block 0 stays a hole
  ok(call("fd_seek", f, 17n, 0, 16), "seek");
  env.mono += 1000n;
  if (version >= 2) {
    // stdin with a partly read chunk, and a poll_oneoff stopped mid-wait.
    host.deliver({ kind: "stdin", offset: 0, bytes: new TextEncoder().encode("line one\n") });
    host.deliver({ kind: "stdin", offset: 9, bytes: new TextEncoder().encode("two") });
    env.iovs(0, [[1300, 4]]);
    ok(call("fd_read", 0, 0, 1, 16), "stdin read");
    ok(call("fd_read", 0, 0, 1, 16), "stdin read"); // "two" stays queued
    env.sub(4096, 5n, 0, 0, env.real + 3_000_000_000n, 1); // absolute realtime
    env.sub(4096 + 48, 6n, 0, 1, 250_000_000n); // relative monotonic
    env.stopOnWait = true;
    assert.throws(() => call("poll_oneoff", 4096, 8192, 2, 100), StopRequested);
    env.mono += 1000n;
  }
  host.onSuspend();
  return h;
}

test("golden vector: the current encoding of a fixed state is byte-for-byte the committed one", () => {
  const body = goldenHost().host.captureState(all);
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(fixture(STATE_VERSION), body);
  const want = new Uint8Array(readFileSync(fixture(STATE_VERSION)));
  assert.equal(body.length, want.length, "length");
  assert.deepEqual(body, want);
});

test("golden vectors of every version decode to the state they were made from", () => {
  for (let v = 1; v <= STATE_VERSION; v++) {
    const h = makeHost();
    h.host.applyState(new Uint8Array(readFileSync(fixture(v))));
    assert.deepEqual(h.host.captureState(all), goldenHost(v).host.captureState(all), `version ${v}`);
  }
});

test("utf8Length agrees with TextEncoder on any UTF-16 string, lone surrogates included", () => {
  const enc = new TextEncoder();
  fc.assert(
    fc.property(
      fc.string({ unit: "binary" }),
      fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }),
      (a, b) => {
        assert.equal(utf8Length(a), enc.encode(a).length);
        assert.equal(utf8Length(b), enc.encode(b).length);
      },
    ),
    { numRuns: 500 },
  );
  for (const s of ["", "a", "é", "€", "😀", "\ud800", "\udc00x", "\ud800\ud800\udc00"])
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
});
