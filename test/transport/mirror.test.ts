import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  connectedPair,
  decodeMirror,
  encodeMirror,
  type Message,
  MessageChannel,
  type MirrorMessage,
  sendMirror,
  TransportError,
} from "../../src/transport/index.ts";

function wire(m: MirrorMessage): Message {
  const { type, body } = encodeMirror(m);
  return { type, body: new Uint8Array(Buffer.concat(body)) };
}

test("input message layout pinned (24-byte header, then the bytes)", () => {
  const w = wire({
    kind: "input",
    checkpoint: 3,
    conn: 7,
    offset: 0x1_0000_0001,
    bytes: Uint8Array.of(0xaa),
  });
  assert.equal(w.type, 0x0101);
  assert.equal(
    Buffer.from(w.body).toString("hex"),
    "0300000000000000" + "00000000" + "07000000" + "0100000001000000" + "aa",
  );
});

test("stderr output layout pinned", () => {
  const w = wire({
    kind: "output",
    checkpoint: 1,
    stream: { kind: "stderr" },
    offset: 2,
    bytes: new Uint8Array(0),
  });
  assert.equal(w.type, 0x0104);
  assert.equal(
    Buffer.from(w.body).toString("hex"),
    "0100000000000000" + "02000000" + "00000000" + "0200000000000000",
  );
});

test("end message layouts pinned (exit: status in the offset; trap: conn 1 and the message)", () => {
  const exit = wire({ kind: "end", checkpoint: 4, end: { kind: "exit", code: 3 } });
  assert.equal(exit.type, 0x0107);
  assert.equal(
    Buffer.from(exit.body).toString("hex"),
    "0400000000000000" + "00000000" + "00000000" + "0300000000000000",
  );
  const trap = wire({ kind: "end", checkpoint: 4, end: { kind: "trap", message: "oops" } });
  assert.equal(trap.type, 0x0107);
  assert.equal(
    Buffer.from(trap.body).toString("hex"),
    "0400000000000000" + "00000000" + "01000000" + "0000000000000000" + "6f6f7073",
  );
});

test("an end's trap message is cut at 1 KiB on a character boundary", () => {
  const m = decodeMirror(
    wire({ kind: "end", checkpoint: 1, end: { kind: "trap", message: "é".repeat(600) } }),
  );
  assert.equal(m.kind, "end");
  assert.ok(m.kind === "end" && m.end.kind === "trap");
  assert.equal(m.end.message, "é".repeat(512));
});

const safe = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const conn = fc.integer({ min: 0, max: 0xffff_ffff });
const mirrorArb: fc.Arbitrary<MirrorMessage> = fc.oneof(
  fc.record({ kind: fc.constant("open" as const), checkpoint: safe, conn }),
  fc.record({
    kind: fc.constant("input" as const),
    checkpoint: safe,
    conn,
    offset: safe,
    bytes: fc.uint8Array(),
  }),
  fc.record({ kind: fc.constant("eof" as const), checkpoint: safe, conn, offset: safe }),
  fc.record({ kind: fc.constant("shutdown" as const), checkpoint: safe, conn, offset: safe }),
  fc.record({ kind: fc.constant("close" as const), checkpoint: safe, conn, offset: safe }),
  fc.record({
    kind: fc.constant("output" as const),
    checkpoint: safe,
    stream: fc.oneof(
      fc.record({ kind: fc.constant("conn" as const), id: conn }),
      fc.constant({ kind: "stdout" as const }),
      fc.constant({ kind: "stderr" as const }),
    ),
    offset: safe,
    bytes: fc.uint8Array(),
  }),
  fc.record({
    kind: fc.constant("end" as const),
    checkpoint: safe,
    end: fc.oneof(
      fc.record({ kind: fc.constant("exit" as const), code: conn }),
      fc.record({ kind: fc.constant("trap" as const), message: fc.string({ maxLength: 200 }) }),
    ),
  }),
);

test("property: mirror messages round-trip", () => {
  fc.assert(
    fc.property(mirrorArb, (m) => {
      assert.deepEqual(decodeMirror(wire(m)), structuredClone(m));
    }),
    { numRuns: 500 },
  );
});

const bad = [
  { name: "short body", type: 0x0101, hex: "00" },
  {
    name: "reserved byte",
    type: 0x0101,
    hex: "0000000000000000" + "00010000" + "00000000" + "0000000000000000",
  },
  {
    name: "stream on input",
    type: 0x0101,
    hex: "0000000000000000" + "01000000" + "00000000" + "0000000000000000",
  },
  {
    name: "trailing bytes on eof",
    type: 0x0103,
    hex: "0000000000000000" + "00000000" + "00000000" + "0000000000000000ff",
  },
  {
    name: "offset above 2^53",
    type: 0x0103,
    hex: "0000000000000000" + "00000000" + "00000000" + "ffffffffffffffff",
  },
  {
    name: "unknown stream",
    type: 0x0104,
    hex: "0000000000000000" + "03000000" + "00000000" + "0000000000000000",
  },
  {
    name: "stdout with a conn id",
    type: 0x0104,
    hex: "0000000000000000" + "01000000" + "01000000" + "0000000000000000",
  },
  {
    name: "end of an unknown kind",
    type: 0x0107,
    hex: "0000000000000000" + "00000000" + "02000000" + "0000000000000000",
  },
  {
    name: "exit with trailing bytes",
    type: 0x0107,
    hex: "0000000000000000" + "00000000" + "00000000" + "0000000000000000ff",
  },
  {
    name: "exit status above u32",
    type: 0x0107,
    hex: "0000000000000000" + "00000000" + "00000000" + "0000000001000000",
  },
  {
    name: "trap with a status",
    type: 0x0107,
    hex: "0000000000000000" + "00000000" + "01000000" + "0100000000000000",
  },
  {
    name: "trap message not UTF-8",
    type: 0x0107,
    hex: "0000000000000000" + "00000000" + "01000000" + "0000000000000000ff",
  },
  {
    name: "end on the stdout stream",
    type: 0x0107,
    hex: "0000000000000000" + "01000000" + "00000000" + "0000000000000000",
  },
  {
    name: "not a mirror type",
    type: 0x0201,
    hex: "0000000000000000" + "00000000" + "00000000" + "0000000000000000",
  },
] as const;

for (const c of bad) {
  test(`malformed mirror message: ${c.name}`, () => {
    assert.throws(
      () => decodeMirror({ type: c.type, body: Buffer.from(c.hex, "hex") }),
      (e: unknown) => e instanceof TransportError && e.code === "message-malformed",
    );
  });
}

test("mirror messages over an in-memory connection, in order", async () => {
  const [p, s] = await connectedPair({ kind: "mirror" });
  const tx = new MessageChannel(p.channel);
  const rx = new MessageChannel(s.channel);
  const sent: MirrorMessage[] = [
    { kind: "open", checkpoint: 1, conn: 1 },
    { kind: "input", checkpoint: 1, conn: 1, offset: 0, bytes: new TextEncoder().encode("SET a 1\r\n") },
    { kind: "eof", checkpoint: 2, conn: 1, offset: 9 },
  ];
  const got: MirrorMessage[] = [];
  const done = new Promise<void>((resolve) => rx.on("end", () => resolve()));
  rx.onMessage((m) => got.push(decodeMirror(m)));
  for (const m of sent) sendMirror(tx, m);
  tx.end();
  await done;
  assert.deepEqual(
    got.map((m) => ({ ...m, ...("bytes" in m ? { bytes: [...m.bytes] } : {}) })),
    sent.map((m) => ({ ...m, ...("bytes" in m ? { bytes: [...m.bytes] } : {}) })),
  );
  rx.end();
});
