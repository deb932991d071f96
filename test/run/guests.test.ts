// The committed sample guests are what guests/Makefile produces from their sources.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

const GUESTS = join(import.meta.dirname, "../../guests");

function hasClang(): boolean {
  try {
    execFileSync("clang", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

test("committed .wasm files are the Makefile's build of the sources", (t) => {
  if (!hasClang()) return t.skip("needs Debian packages clang, lld, wasi-libc, libclang-rt-14-dev-wasm32");
  const dir = mkdtempSync(join(tmpdir(), "colo-guests-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of readdirSync(GUESTS)) {
    if (/\.(c|h)$/.test(f) || f === "Makefile") cpSync(join(GUESTS, f), join(dir, f));
  }
  execFileSync("make", ["-s", "-C", dir], { stdio: ["ignore", "ignore", "inherit"], timeout: 120_000 });
  const built = readdirSync(dir).filter((f) => f.endsWith(".wasm"));
  assert.deepEqual(built.sort(), ["compute.wasm", "counter.wasm", "kv.wasm"]);
  for (const f of built) {
    assert.ok(
      readFileSync(join(dir, f)).equals(readFileSync(join(GUESTS, f))),
      `${f} differs from a fresh build`,
    );
  }
});
