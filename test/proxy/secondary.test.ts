/** The mirror receiver: offsets continue exactly, stale input dropped by offset, protocol errors. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ProxyError } from "../../src/proxy/errors.ts";
import type { MirrorInput, MirrorOutput, SecondaryMirrorEnd } from "../../src/proxy/link.ts";
import { SecondaryProxy } from "../../src/proxy/secondary.ts";
import { FakeGuest, until } from "./helpers.ts";

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A hand-driven link end: `deliver` plays the primary. */
function manual() {
  const sent: MirrorOutput[] = [];
  let listener: ((m: MirrorInput) => void) | undefined;
  const end: SecondaryMirrorEnd = {
    send: (m) => {
      sent.push(m);
      return true;
    },
    onMessage: (l) => {
      listener = l;
      return () => {
        listener = undefined;
      };
    },
    onDrain: () => () => {},
  };
  return { end, sent, deliver: (m: MirrorInput) => listener?.(m) };
}

function setup(seq = 0) {
  const link = manual();
  const svm = new FakeGuest("svm");
  const proxy = new SecondaryProxy({ port: svm, link: link.end, seq });
  const errors: ProxyError[] = [];
  proxy.on("protocol-error", (e) => errors.push(e));
  return { link, svm, proxy, errors };
}

test("feeds mirrored input in order and sends every SVM output back with its offset and checkpoint", async () => {
  const { link, svm, proxy, errors } = setup();
  link.deliver({ kind: "open", seq: 0, conn: 0 });
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 0, bytes: b("ab") });
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 2, bytes: b("c") });
  link.deliver({ kind: "eof", seq: 0, conn: 0, offset: 3 });
  await until(() => link.sent.some((m) => m.kind === "close"), "close");
  assert.deepEqual(errors, []);
  assert.deepEqual(
    link.sent.map((m) =>
      m.kind === "data" ? [m.kind, m.seq, m.offset, Buffer.from(m.bytes).toString()] : [m.kind, m.seq],
    ),
    [
      ["data", 0, 0, "AB"],
      ["data", 0, 2, "C"],
      ["shutdown", 0],
      ["close", 0],
    ],
  );
  assert.equal(svm.inputs.length, 4);
  assert.equal(proxy.metrics().bytesFed, 3);
});

const bad: { name: string; messages: MirrorInput[]; detail: RegExp }[] = [
  {
    name: "a gap",
    messages: [
      { kind: "open", seq: 0, conn: 0 },
      { kind: "data", seq: 0, conn: 0, offset: 1, bytes: b("x") },
    ],
    detail: /gap/,
  },
  {
    name: "an overlap",
    messages: [
      { kind: "open", seq: 0, conn: 0 },
      { kind: "data", seq: 0, conn: 0, offset: 0, bytes: b("xy") },
      { kind: "data", seq: 0, conn: 0, offset: 1, bytes: b("y") },
    ],
    detail: /overlap/,
  },
  {
    name: "never opened",
    messages: [{ kind: "data", seq: 0, conn: 5, offset: 0, bytes: b("x") }],
    detail: /never opened/,
  },
  {
    name: "a reused id",
    messages: [
      { kind: "open", seq: 0, conn: 3 },
      { kind: "open", seq: 0, conn: 2 },
    ],
    detail: /already used/,
  },
  {
    name: "a checkpoint not applied yet",
    messages: [{ kind: "open", seq: 1, conn: 0 }],
    detail: /checkpoint 1/,
  },
  {
    name: "an eof at the wrong offset",
    messages: [
      { kind: "open", seq: 0, conn: 0 },
      { kind: "eof", seq: 0, conn: 0, offset: 4 },
    ],
    detail: /eof after 4/,
  },
];

for (const c of bad) {
  test(`protocol error: ${c.name}; the secondary stops feeding`, () => {
    const { link, svm, proxy, errors } = setup();
    for (const m of c.messages) link.deliver(m);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, "protocol");
    assert.match(errors[0]!.message, c.detail);
    assert.equal(proxy.state, "stopped");
    const fed = svm.inputs.length;
    link.deliver({ kind: "open", seq: 0, conn: 100 });
    assert.equal(svm.inputs.length, fed);
  });
}

test("after a checkpoint: input it contains is dropped by offset, new input fed, input past it refused", () => {
  const { link, svm, proxy, errors } = setup();
  link.deliver({ kind: "open", seq: 0, conn: 0 });
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 0, bytes: b("abc") });
  proxy.pauseForCheckpoint();
  // In flight when the checkpoint began; the checkpoint (input offset 5) contains it.
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 3, bytes: b("de") });
  const before = svm.inputs.length;
  proxy.checkpointApplied(1, new Map([[0, 5]]));
  assert.equal(svm.inputs.length, before, "nothing fed: the checkpoint holds it");
  assert.equal(proxy.metrics().bytesDropped, 2);
  link.deliver({ kind: "data", seq: 1, conn: 0, offset: 5, bytes: b("f") });
  assert.equal(svm.inputs.at(-1)?.kind, "data");
  assert.equal(errors.length, 0);
  // A message from before checkpoint 1 that the checkpoint does not contain: protocol error.
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 5, bytes: b("zz") });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /past the applied state/);
});

test("a mirror flood during a checkpoint beyond the buffer cap is an overflow", () => {
  const link = manual();
  const proxy = new SecondaryProxy({ port: new FakeGuest("svm"), link: link.end, bufferCap: 100 });
  const errors: ProxyError[] = [];
  proxy.on("protocol-error", (e) => errors.push(e));
  link.deliver({ kind: "open", seq: 0, conn: 0 });
  proxy.pauseForCheckpoint();
  link.deliver({ kind: "data", seq: 0, conn: 0, offset: 0, bytes: new Uint8Array(200) });
  assert.equal(errors[0]?.code, "overflow");
});

test("an open the checkpoint already holds still uses its id: later input for it, closed by the guest, is not a protocol error", () => {
  const { link, svm, proxy, errors } = setup();
  proxy.pauseForCheckpoint();
  // In flight when checkpoint 1 began; the PVM accepted and closed connection 0 before it, so
  // the checkpoint's host state no longer holds it.
  link.deliver({ kind: "open", seq: 0, conn: 0 });
  proxy.checkpointApplied(1, new Map());
  // Client input queued on the primary during the pause, fed (and mirrored) after it.
  link.deliver({ kind: "data", seq: 1, conn: 0, offset: 0, bytes: b("late") });
  link.deliver({ kind: "eof", seq: 1, conn: 0, offset: 4 });
  assert.equal(errors.length, 0, errors[0]?.message);
  assert.equal(svm.inputs.length, 0, "a connection the SVM no longer has gets nothing");
  // Its id stays used.
  link.deliver({ kind: "open", seq: 1, conn: 0 });
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /already used/);
});
