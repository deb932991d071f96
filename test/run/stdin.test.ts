// stdin passthrough of `colo run`, end to end with a C guest (test/wasi/fixtures/upcase.c) that echoes its
// stdin upper-cased, run as a child process with piped stdin.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { test } from "node:test";
import { ColoRun, GUESTS, ROOT } from "./helpers.ts";

const UPCASE = join(ROOT, "test/wasi/fixtures/upcase.wasm");

test("colo run: stdin reaches the guest chunk by chunk, and its EOF ends the guest", async () => {
  const run = new ColoRun([UPCASE, "--service", "127.0.0.1:0"]);
  try {
    run.child.stdin.write("hello ");
    // Output before stdin ends: the guest got the first chunk on its own.
    await run.until(() => run.stdout === "HELLO ", "the first chunk upper-cased");
    run.child.stdin.end("world\n");
    const end = await run.finished;
    assert.equal(end.status, 0, end.stderr);
    assert.equal(end.stdout, "HELLO WORLD\n");
    assert.match(end.stderr, /upcase: 12 bytes/);
  } finally {
    await run.stop();
  }
});

test("colo run: 3 MiB through stdin (past the plug's high-water mark) arrive whole and in order", async () => {
  const size = 3 << 20;
  const text = Buffer.alloc(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    text[i] = i % 64 === 63 ? 10 : 97 + ((x >>> 16) % 26);
  }
  const want = createHash("sha256").update(text.toString("latin1").toUpperCase(), "latin1").digest("hex");
  const run = new ColoRun([UPCASE, "--service", "127.0.0.1:0"]);
  try {
    run.child.stdin.end(text);
    const end = await run.finished;
    assert.equal(end.status, 0, end.stderr);
    assert.equal(end.stdout.length, size);
    assert.equal(createHash("sha256").update(end.stdout, "latin1").digest("hex"), want);
    assert.match(end.stderr, new RegExp(`upcase: ${size} bytes`));
  } finally {
    await run.stop();
  }
});

test("colo run: a guest that never reads stdin ends normally while stdin stays open", async () => {
  const run = new ColoRun([
    join(GUESTS, "counter.wasm"),
    "--service",
    "127.0.0.1:0",
    "--",
    "--count",
    "2",
    "--interval-ms",
    "5",
  ]);
  try {
    run.child.stdin.write("never read\n"); // and never ended
    const end = await run.finished;
    assert.equal(end.status, 0, end.stderr);
    assert.match(end.stdout, /count 2 /);
  } finally {
    await run.stop();
  }
});
