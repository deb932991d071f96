import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { makeSampleStream } from "../../samples/make-sample.ts";
import { StreamError } from "../../src/stream/errors.ts";
import { type VerifyOptions, verifyBytes } from "../../src/stream/verify.ts";
import { FIXTURES } from "../fixtures/make-fixtures.ts";

const root = new URL("../../", import.meta.url).pathname;

function optionsOf(flags: readonly string[]): VerifyOptions {
  const i = flags.indexOf("--mode");
  return {
    ...(flags.includes("--checkpointed") ? { checkpointed: true } : {}),
    ...(flags.includes("--plain") ? { checkpointed: false } : {}),
    backChannel: flags.includes("--back-channel"),
    ...(i >= 0 ? { mode: flags[i + 1] as VerifyOptions["mode"] } : {}),
  };
}

for (const f of FIXTURES) {
  test(`golden ${f.file} ${f.flags.join(" ")}: ${f.error ? f.error.code : "valid"}`, () => {
    const bytes = new Uint8Array(readFileSync(`${root}test/fixtures/${f.file}`));
    assert.deepEqual(bytes, f.make(), "committed fixture differs from make-fixtures.ts output");
    if (f.error === undefined) {
      verifyBytes(bytes, optionsOf(f.flags));
    } else {
      assert.throws(
        () => verifyBytes(bytes, optionsOf(f.flags)),
        (e: unknown) => e instanceof StreamError && e.code === f.error!.code && e.offset === f.error!.offset,
      );
    }
  });
}

test("the shipped sample equals its generator's output and verifies", () => {
  const bytes = new Uint8Array(readFileSync(`${root}samples/colo-checkpointed.stream`));
  assert.deepEqual(bytes, makeSampleStream());
  verifyBytes(bytes, { mode: "colo" });
});

test("colo stream CLI: exit 0 valid, 1 invalid with offset and type, 2 usage", () => {
  const colo = (...args: string[]) =>
    spawnSync(process.execPath, [`${root}bin/colo.js`, "stream", ...args], {
      encoding: "utf8",
      timeout: 30_000,
    });
  const ok = colo("verify", `${root}test/fixtures/xl-wasm-2cp.stream`);
  assert.equal(ok.status, 0, ok.stderr);
  const bad = colo("verify", `${root}test/fixtures/reserved-pfn-bits.stream`);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /offset 128 libxc 0x00000001 PAGE_DATA/);
  assert.equal(colo("verify").status, 2);
  assert.equal(colo("verify", "x", "--mode", "nope").status, 2);
  const inspect = colo("inspect", "--json", `${root}samples/colo-checkpointed.stream`);
  assert.equal(inspect.status, 0, inspect.stderr);
  const lines = inspect.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(lines.filter((l) => l.name === "CHECKPOINT").length, 2);
  assert.equal(lines[0].header, "libxl");
});
