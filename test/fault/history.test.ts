// The history checker and the RESP codec of the fault tests: hand-made histories that must pass
// and must fail, and properties (honest executions always pass; losing the last acknowledged
// write always fails).
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import fc from "fast-check";
import { checkHistory, HistoryError, type Write, type WriteOutcome } from "./history.ts";
import { encodeCommand, parseReply, RespConnection } from "./resp.ts";
import { readAll, Workload } from "./workload.ts";

let clock = 0;
function w(key: string, value: string, outcome: WriteOutcome): Write {
  clock += 10;
  return { key, value, invokedAt: clock, completedAt: clock + 5, outcome };
}

test("the latest acknowledged write passes", () => {
  const h = [w("a", "1", "ok"), w("a", "2", "ok"), w("b", "3", "ok")];
  const v = checkHistory(
    h,
    new Map([
      ["a", "2"],
      ["b", "3"],
    ]),
  );
  assert.equal(v.violations.length, 0);
  assert.equal(v.acknowledged, 3);
});

test("a later indeterminate write may or may not have taken effect", () => {
  const h = [w("a", "1", "ok"), w("a", "2", "indeterminate")];
  assert.equal(checkHistory(h, new Map([["a", "1"]])).violations.length, 0);
  const applied = checkHistory(h, new Map([["a", "2"]]));
  assert.equal(applied.violations.length, 0);
  assert.equal(applied.indeterminateApplied, 1);
});

test("an older value after an acknowledged write is a lost write (stale)", () => {
  const h = [w("a", "1", "ok"), w("a", "2", "ok")];
  const v = checkHistory(h, new Map([["a", "1"]]));
  assert.deepEqual(v.violations, [{ kind: "stale", key: "a", read: "1", expected: "2" }]);
});

test("an earlier indeterminate write does not excuse losing a later acknowledged one", () => {
  const h = [w("a", "1", "indeterminate"), w("a", "2", "ok")];
  const v = checkHistory(h, new Map([["a", "1"]]));
  assert.equal(v.violations[0]?.kind, "stale");
});

test("no value after an acknowledged write is a lost write (missing)", () => {
  const h = [w("a", "1", "ok"), w("a", "2", "indeterminate")];
  assert.equal(checkHistory(h, new Map([["a", null]])).violations[0]?.kind, "missing");
});

test("no value is fine when nothing was acknowledged", () => {
  const h = [w("a", "1", "indeterminate"), w("a", "2", "failed")];
  assert.equal(checkHistory(h, new Map([["a", null]])).violations.length, 0);
});

test("a value nobody wrote, or a failed write's value, is a phantom", () => {
  const h = [w("a", "1", "ok"), w("a", "2", "failed")];
  assert.equal(checkHistory(h, new Map([["a", "zz"]])).violations[0]?.kind, "phantom");
  assert.equal(checkHistory(h, new Map([["a", "2"]])).violations[0]?.kind, "phantom");
});

test("malformed histories are refused, not judged", () => {
  assert.throws(() => checkHistory([w("a", "1", "ok"), w("b", "1", "ok")], new Map()), HistoryError);
  assert.throws(() => checkHistory([w("a", "1", "ok")], new Map()), HistoryError);
  const overlapping: Write[] = [
    { key: "a", value: "1", invokedAt: 0, completedAt: 10, outcome: "ok" },
    { key: "a", value: "2", invokedAt: 5, completedAt: 12, outcome: "ok" },
  ];
  assert.throws(() => checkHistory(overlapping, new Map([["a", "2"]])), HistoryError);
});

/** A random per-key sequential history and an honest survivor: applied = acknowledged ∪ some indeterminate. */
const execution = fc
  .array(
    fc.record({
      key: fc.integer({ min: 0, max: 4 }),
      outcome: fc.constantFrom<WriteOutcome>("ok", "failed", "indeterminate"),
      appliedIfIndeterminate: fc.boolean(),
    }),
    { minLength: 1, maxLength: 60 },
  )
  .map((ops) => {
    const writes: Write[] = [];
    const state = new Map<string, string | null>();
    ops.forEach((op, i) => {
      const key = `k${op.key}`;
      writes.push({ key, value: `v${i}`, invokedAt: i * 10, completedAt: i * 10 + 5, outcome: op.outcome });
      if (!state.has(key)) state.set(key, null);
      if (op.outcome === "ok" || (op.outcome === "indeterminate" && op.appliedIfIndeterminate)) {
        state.set(key, `v${i}`);
      }
    });
    return { writes, state };
  });

test("property: every honest execution passes", () => {
  fc.assert(
    fc.property(execution, ({ writes, state }) => {
      const v = checkHistory(writes, state);
      assert.deepEqual(v.violations, []);
      assert.equal(v.writes, writes.length);
    }),
  );
});

test("property: losing a key's last acknowledged write always fails", () => {
  fc.assert(
    fc.property(execution, fc.nat(), ({ writes, state }, pick) => {
      const keys = [...new Set(writes.filter((x) => x.outcome === "ok").map((x) => x.key))];
      fc.pre(keys.length > 0);
      const key = keys[pick % keys.length]!;
      const ofKey = writes.filter((x) => x.key === key);
      const lastAck = ofKey.findLastIndex((x) => x.outcome === "ok");
      // The survivor rolled back to just before the last acknowledged write of `key`.
      let before: string | null = null;
      for (let i = 0; i < lastAck; i++) if (ofKey[i]!.outcome === "ok") before = ofKey[i]!.value;
      const reads = new Map(state);
      reads.set(key, before);
      const v = checkHistory(writes, reads);
      assert.equal(v.violations.length >= 1, true);
      assert.equal(
        v.violations.some((x) => x.key === key),
        true,
      );
    }),
  );
});

test("RESP replies parse the same however the bytes are split", () => {
  const wire = Buffer.from("+OK\r\n$5\r\nhello\r\n$-1\r\n:42\r\n-ERR no\r\n*2\r\n$1\r\na\r\n:1\r\n");
  const whole: unknown[] = [];
  for (let at = 0; at < wire.length; ) {
    const r = parseReply(wire, at);
    assert.ok(r);
    whole.push(r.value);
    at = r.end;
  }
  assert.equal(whole.length, 6);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: wire.length }), (cut) => {
      const head = wire.subarray(0, cut);
      const got: unknown[] = [];
      let at = 0;
      for (;;) {
        const r = parseReply(head, at);
        if (r === undefined) break;
        got.push(r.value);
        at = r.end;
      }
      assert.deepEqual(got, whole.slice(0, got.length));
    }),
  );
  assert.equal(encodeCommand(["SET", "k", "é"]).toString(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\né\r\n");
});

test("workload against a fake server that drops every 7th write: acknowledged, indeterminate, checked", async (t) => {
  // A tiny in-process RESP store on loopback; every 7th SET is applied but its connection is
  // reset before the reply (an indeterminate write that took effect).
  const store = new Map<string, string>();
  let sets = 0;
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on("error", () => {});
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = parseReply(buf);
        if (r === undefined || r.value.type !== "array" || r.value.value === null) break;
        buf = buf.subarray(r.end);
        const args = r.value.value.map((x) => (x.type === "bulk" ? x.value : ""));
        if (args[0] === "SET") {
          store.set(args[1]!, args[2]!);
          if (++sets % 7 === 0) {
            sock.resetAndDestroy();
            return;
          }
          sock.write("+OK\r\n");
        } else if (args[0] === "GET") {
          const v = store.get(args[1]!);
          sock.write(v === undefined ? "$-1\r\n" : `$${Buffer.byteLength(v)}\r\n${v}\r\n`);
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const wl = new Workload({ addresses: () => [{ host: "127.0.0.1", port }], maxWrites: 200, maxMs: 10_000 });
  await wl.start().finished;
  const reads = await readAll(
    { host: "127.0.0.1", port },
    wl.writes.map((x) => x.key),
  );
  const v = checkHistory(wl.writes, reads);
  assert.equal(v.writes, 200);
  assert.ok(v.indeterminate > 0 && v.acknowledged > 0);
  assert.deepEqual(v.violations, []);
  // Losing one acknowledged write is caught.
  const lastOk = wl.writes.findLast((x) => x.outcome === "ok")!;
  const lastOfKey = wl.writes.findLast((x) => x.key === lastOk.key)!;
  if (lastOfKey === lastOk) {
    reads.set(lastOk.key, null);
    assert.equal(checkHistory(wl.writes, reads).violations.length, 1);
  }
  const c = await RespConnection.connect("127.0.0.1", port);
  c.close();
});
