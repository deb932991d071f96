import assert from "node:assert/strict";
import { test } from "node:test";
import { StreamError } from "../../src/stream/errors.ts";
import { type VerifyOptions, verifyBytes } from "../../src/stream/verify.ts";
import { backChannel, coloHvm, plainHvm, xlWasm } from "../fixtures/make-fixtures.ts";
import { bytes, dhdr, ihdr, libxlHdr, pageDataBody, rec, u32le, u64le } from "./oracle.ts";

const fails = (b: Uint8Array, code: string, options: VerifyOptions = {}, offset?: number) =>
  assert.throws(
    () => verifyBytes(b, options),
    (e: unknown) =>
      e instanceof StreamError && e.code === code && (offset === undefined || e.offset === offset),
  );

const prefix = (version = 3, domain = 2) => [libxlHdr(), rec(1), ihdr(version), dhdr(domain)];

test("Xen rules: v2 forbids STATIC_DATA_END; v3 needs it before memory; once only", () => {
  fails(bytes(...prefix(2), rec(0x10)), "bad-version");
  fails(bytes(...prefix(3), rec(0x01, pageDataBody([[0, 0xf]], []))), "order", {}, 64);
  fails(bytes(...prefix(3), rec(0x10), rec(0x10)), "order");
  fails(bytes(...prefix(3), rec(0x10), rec(0x11, new Array(24).fill(0))), "order");
  // v2: no STATIC_DATA_END needed
  verifyBytes(bytes(...prefix(2), rec(0x01, pageDataBody([[0, 0xf]], [])), rec(0), rec(0)));
});

test("Xen rules: TOOLSTACK deprecated, dirty pfn list not on the main channel, PV records in HVM", () => {
  fails(bytes(...prefix(), rec(0x10), rec(0x0b, [1])), "deprecated");
  fails(bytes(...prefix(), rec(0x10), rec(0x0f, [])), "order");
  fails(bytes(...prefix(), rec(0x10), rec(0x07, new Array(4096).fill(0))), "order");
  // PV chain: P2M frames need X86_PV_INFO first
  fails(bytes(...prefix(3, 1), rec(0x10), rec(0x03, [...u32le(0), ...u32le(0), ...u64le(1)])), "order");
  verifyBytes(
    bytes(
      ...prefix(3, 1),
      rec(0x02, [8, 4, 0, 0, 0, 0, 0, 0]),
      rec(0x10),
      rec(0x03, [...u32le(0), ...u32le(511), ...u64le(1)]),
      rec(0),
      rec(0),
    ),
  );
  fails(
    bytes(
      ...prefix(3, 1),
      rec(0x02, [8, 4, 0, 0, 0, 0, 0, 0]),
      rec(0x10),
      rec(0x03, [...u32le(0), ...u32le(512), ...u64le(1)]),
    ),
    "bad-length",
  );
});

test("checkpointed form: forced plain rejects CHECKPOINT; remus rejects CHECKPOINT_STATE; colo requires NEW", () => {
  fails(coloHvm(), "order", { checkpointed: false });
  // remus: type 5 after CHECKPOINT_END is libxc's X86_PV_VCPU_EXTENDED (as in Xen), wrong length
  fails(coloHvm(), "bad-length", { mode: "remus" }, 8448);
  verifyBytes(coloHvm(), { mode: "colo" });
  fails(plainHvm(), "order", { checkpointed: true });
  // drop the NEW record (16 bytes) from the COLO stream: colo mode wants it
  const b = coloHvm();
  const at = 8448; // CHECKPOINT_STATE NEW offset in colo-hvm-2cp
  assert.equal(b[at], 5);
  const without = new Uint8Array([...b.subarray(0, at), ...b.subarray(at + 16)]);
  fails(without, "order", { mode: "colo" });
  verifyBytes(without, { mode: "remus" });
});

test("wasm32 rules: sequence numbers must advance by one; pfns inside the memory size", () => {
  verifyBytes(xlWasm());
  const b = xlWasm();
  // CHECKPOINT_SEQ after NEW says 8; patch it to 9
  const text = Buffer.from(b);
  const seqAt = text.indexOf(Buffer.from([0x23, 0x4c, 0x4f, 0x43, 8, 0, 0, 0]));
  assert.ok(seqAt > 0);
  const bad = b.slice();
  bad[seqAt + 8] = 9;
  fails(bad, "bad-sequence", {}, seqAt);
});

test("back channel: COLO order, modes, sequence numbers", () => {
  verifyBytes(backChannel(), { backChannel: true });
  // the same sequence is not a cache-mode sequence (dirty list present)
  fails(backChannel(), "order", { backChannel: true, mode: "cache" });
  const st = (id: number) => rec(5, u32le(id));
  // COLO: first checkpoint has no SVM_SUSPENDED
  fails(bytes(st(1)), "order", { backChannel: true });
  // a dirty list before SVM_SUSPENDED
  fails(bytes(st(2), st(3), rec(0x0f, [])), "order", { backChannel: true });
  // cache mode: no dirty list, stop anywhere
  verifyBytes(bytes(st(2), st(3), st(1), st(2), st(3), st(1)), { backChannel: true, mode: "cache" });
  // remus: READY acks only
  verifyBytes(bytes(st(2), st(2), st(2)), { backChannel: true, mode: "remus" });
  fails(bytes(st(2), st(3)), "order", { backChannel: true, mode: "remus" });
  // plain: TARGET_READY, RECEIVED, RESUMED, exactly in this order, nothing after
  const [ready, received, resumed] = [rec(0x434f4c25), rec(0x434f4c20), rec(0x434f4c22)];
  const plain = { backChannel: true, mode: "plain" } as const;
  verifyBytes(bytes(ready, received, resumed), plain);
  verifyBytes(bytes(ready, received), plain); // a back channel may stop at a record boundary
  fails(bytes(rec(0x434f4c22)), "order", plain);
  fails(bytes(received, resumed), "order", plain, 0); // READY missing
  fails(bytes(ready, resumed), "order", plain, 8); // RECEIVED missing
  fails(bytes(ready, ready, received, resumed), "order", plain, 8);
  fails(bytes(received, ready, resumed), "order", plain, 0);
  fails(bytes(ready, received, resumed, resumed), "order", plain, 24);
  // the number before it was given one in our range (0xC34F4C25, optional) is no longer READY
  fails(bytes(rec(0xc34f4c25), received, resumed), "order", plain, 8);
  // checkpointed modes: one optional TARGET_READY first (the seed's target), never later
  verifyBytes(bytes(ready, st(2), st(3), st(1)), { backChannel: true });
  verifyBytes(bytes(ready, st(2), st(2)), { backChannel: true, mode: "remus" });
  fails(bytes(st(2), ready), "order", { backChannel: true });
  fails(bytes(ready, ready, st(2)), "order", { backChannel: true });
  // SEQ all or none: the first state uses it, the second omits it
  fails(bytes(st(2), rec(0x434f4c23, u64le(1)), st(3), st(1)), "order", { backChannel: true });
  // a digest for the wrong checkpoint
  fails(
    bytes(st(2), rec(0x434f4c23, u64le(1)), rec(0x434f4c24, [...u64le(2), ...new Array(32).fill(0)])),
    "bad-sequence",
    {
      backChannel: true,
    },
  );
});
