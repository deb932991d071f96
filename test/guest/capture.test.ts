/**
 * Capture at seeded random host calls and continue in a fresh instance (same process) and in a
 * fresh process: the guest's output must be identical to an uninterrupted run.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import fc from "fast-check";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { CACHE_DIR, encodeSnapshot, FIXTURES, restore, Stdout, snapshot, stubOptions } from "./helpers.ts";

const CALLS_WASM = new URL("calls.wasm", FIXTURES);
const bytes = new Uint8Array(readFileSync(CALLS_WASM));
const ARGS = ["calls", "30"];

async function uninterrupted(): Promise<{ text: string; code: number | undefined }> {
  const d = await WasmDomain.create(bytes, stubOptions(ARGS));
  const out = new Stdout();
  out.attach(d);
  await d.start();
  await d.whenStopped();
  const end = d.end;
  await d.destroy();
  return { text: out.text, code: end?.kind === "exit" ? end.code : undefined };
}

test("capture at seeded random host calls, continue in a fresh instance: same output", async () => {
  const plain = await uninterrupted();
  assert.equal(plain.code, 7);
  assert.match(plain.text, /^step 0 acc/);
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.integer({ min: 0, max: 80 }), { minLength: 1, maxLength: 4 }),
      async (stops) => {
        const options = stubOptions(ARGS, [`STUB_STOP_AT=${stops.join(",")}`]);
        const out = new Stdout();
        let d = await WasmDomain.create(bytes, options);
        try {
          out.attach(d);
          await d.start();
          let moves = 0;
          for (;;) {
            await d.whenStopped();
            if (d.state !== "suspended") break;
            const s = await snapshot(d);
            await d.destroy();
            d = await restore(bytes, options, s);
            out.attach(d);
            await d.resume();
            moves++;
          }
          assert.deepEqual(d.end, { kind: "exit", code: 7 });
          assert.equal(moves, stops.length);
          assert.equal(out.text, plain.text);
        } finally {
          await d.destroy();
        }
      },
    ),
    { numRuns: 6, seed: 0x5eed },
  );
});

test("capture, then continue in a fresh process: same output", async () => {
  const plain = await uninterrupted();
  const options = stubOptions(ARGS, ["STUB_STOP_AT=57"]);
  const d = await WasmDomain.create(bytes, options);
  const out = new Stdout();
  const snapPath = join(CACHE_DIR, "snapshot.bin");
  try {
    out.attach(d);
    await d.start();
    await d.whenStopped();
    assert.equal(d.state, "suspended");
    writeFileSync(snapPath, encodeSnapshot(await snapshot(d)));
  } finally {
    await d.destroy();
  }
  const child = new URL("restore-child.ts", import.meta.url).pathname;
  const r = await promisify(execFile)(process.execPath, [child, CALLS_WASM.pathname, snapPath, ...ARGS], {
    env: { ...process.env, COLO_CACHE_DIR: CACHE_DIR },
    timeout: 60_000,
  }).catch((e: { code: number; stdout: string; stderr: string }) => e);
  assert.equal(r.stderr, "");
  assert.equal((r as { code?: number }).code, 7, "child exits with the guest's code");
  assert.equal(out.text + r.stdout, plain.text);
});
