/** Modules the runtime cannot run are refused at load with a stable GuestError code. */
import assert from "node:assert/strict";
import { test } from "node:test";
import binaryen from "binaryen";
import { GuestError } from "../../src/guest/wasm/errors.ts";
import { transform } from "../../src/guest/wasm/transform.ts";

function wat(text: string, features = binaryen.Features.MutableGlobals): Uint8Array {
  const m = binaryen.parseText(text);
  m.setFeatures(features);
  const b = m.emitBinary();
  m.dispose();
  return b;
}

const START = `(func (export "_start"))`;
const cases: { name: string; bytes: () => Uint8Array; code: string }[] = [
  {
    name: "not a wasm binary",
    bytes: () => new TextEncoder().encode("#!/bin/sh\necho hi\n"),
    code: "not-wasm",
  },
  {
    name: "a shared memory of its own (threads)",
    bytes: () => wat(`(module (memory 1 2 shared) ${START})`, binaryen.Features.Atomics),
    code: "threads",
  },
  {
    name: "a 64-bit memory",
    bytes: () => wat(`(module (memory i64 1) ${START})`, binaryen.Features.Memory64),
    code: "memory64",
  },
  { name: "no memory", bytes: () => wat(`(module ${START})`), code: "no-memory" },
  {
    name: "an import from outside WASI",
    bytes: () => wat(`(module (import "env" "f" (func)) (memory 1) ${START})`),
    code: "unsupported-import",
  },
  {
    name: "a WASI name that does not exist",
    bytes: () => wat(`(module (import "wasi_snapshot_preview1" "fd_frobnicate" (func)) (memory 1) ${START})`),
    code: "unsupported-import",
  },
  {
    name: "an imported global",
    bytes: () => wat(`(module (import "env" "g" (global i32)) (memory 1) ${START})`),
    code: "unsupported-import",
  },
  {
    name: "no _start (a reactor or library)",
    bytes: () => wat(`(module (memory 1) (func (export "main")))`),
    code: "no-start",
  },
];

for (const c of cases) {
  test(`refuses ${c.name} with code ${c.code}`, () => {
    assert.throws(
      () => transform(c.bytes()),
      (e: unknown) => e instanceof GuestError && e.code === c.code,
    );
  });
}

test("accepts a minimal command module and makes its memory a shared import with a maximum", () => {
  const r = transform(wat(`(module (memory (export "memory") 2) ${START})`));
  const mod = new WebAssembly.Module(r.bytes);
  const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
  assert.deepEqual(imports.sort(), ["colo.dirty:memory", "colo.memory:memory", "colo.preempt:function"]);
  assert.deepEqual(r.memory, { initial: 2, maximum: 65536 });
  assert.match(r.version, /^colo-xform\/\d+ binaryen\/132 dirty\+asyncify\+preempt\/1024$/);
  assert.equal(r.hash.length, 32);
});
