/**
 * End to end: a real C program (test/wasi/fixtures/probe.c, built here with Debian's clang for
 * wasm32-wasi) run through WasmDomain with this WASI host: files in a preopen seeded from and
 * written back to a host directory, clocks, randomness, LISTEN_FDS, and wasi-libc's preopen scan
 * getting past fd 3 to the directory at fd 4.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { PortOutput } from "../../src/guest/port.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";

const SOURCE = new URL("./fixtures/probe.c", import.meta.url).pathname;

function build(dir: string): string | undefined {
  const out = join(dir, "probe.wasm");
  try {
    // Compile and link apart: with -O at link time clang runs any wasm-opt on PATH (binaryen's).
    const target = ["--target=wasm32-wasi", "--sysroot=/usr"];
    const obj = join(dir, "probe.o");
    execFileSync("clang", [...target, "-O2", "-c", "-o", obj, SOURCE], { stdio: "ignore" });
    execFileSync("clang", [...target, "-o", out, obj], { stdio: "ignore" });
    return out;
  } catch {
    return undefined;
  }
}

test("a C program uses files, clocks and randomness through WasmDomain and this host", async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), "colo-wasi-e2e-"));
  try {
    const wasm = build(tmp);
    if (wasm === undefined)
      return t.skip("needs Debian packages clang, lld, wasi-libc, libclang-rt-14-dev-wasm32");
    const data = join(tmp, "data");
    execFileSync("mkdir", [data]);
    writeFileSync(join(data, "in.txt"), "seeded");
    writeFileSync(join(data, "gone.txt"), "to be removed");
    const d = await WasmDomain.create(new Uint8Array(readFileSync(wasm)), {
      host: {
        args: ["probe"],
        env: [],
        preopens: [{ guestPath: "/data", hostPath: data }],
        fsLimitBytes: 1 << 20,
      },
      cacheDir: join(tmp, "cache"),
      writeBackOnExit: true,
    });
    let stdout = "";
    d.onOutput((e: PortOutput) => {
      if (e.kind === "data" && e.stream.kind === "stdout") stdout += new TextDecoder().decode(e.bytes);
    });
    await d.start();
    await d.whenStopped();
    const end = d.end;
    await d.destroy();
    assert.deepEqual(end, { kind: "exit", code: 0 }, stdout);
    const expectedSize = Array.from({ length: 2000 }, (_, i) => `line ${i} seeded\n`).join("").length;
    assert.equal(
      stdout,
      [
        "listen_fds 1",
        "read 6 seeded",
        `size ${expectedSize}`,
        "escape refused",
        "entry in.txt",
        "entry sub",
        "slept ok",
        "realtime ok",
        "realtime_ns ok",
        "random ok",
        "",
      ].join("\n"),
    );
    // written back at exit
    assert.deepEqual(readdirSync(data).sort(), ["in.txt", "sub"]);
    const written = readFileSync(join(data, "sub", "out.txt"), "utf8");
    assert.equal(written.length, expectedSize);
    assert.ok(written.startsWith("line 0 seeded\nline 1 seeded\n"));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a guest whose poll_oneoff is stopped more often than its timeout still times out (counter, real runtime)", async () => {
  const wasm = new URL("../../guests/counter.wasm", import.meta.url).pathname;
  const d = await WasmDomain.create(new Uint8Array(readFileSync(wasm)), {
    host: {
      args: ["counter", "--interval-ms", "150", "--count", "3"],
      env: [],
      preopens: [],
      fsLimitBytes: 1 << 20,
    },
  });
  let stdout = "";
  d.onOutput((e: PortOutput) => {
    if (e.kind === "data" && e.stream.kind === "stdout") stdout += new TextDecoder().decode(e.bytes);
  });
  try {
    await d.start();
    // Stop and resume every ~40 ms, well inside the guest's 150 ms poll timeouts: a timeout that
    // restarted at each re-run of the call would never expire, and the counter would never tick.
    for (let i = 0; i < 200 && d.state !== "exited" && d.state !== "trapped"; i++) {
      await new Promise((r) => setTimeout(r, 40));
      if (d.state !== "running") continue;
      await d.suspend(); // resolves too if the guest ends instead
      if ((d.state as string) === "suspended") await d.resume(); // (suspend changed it)
    }
    assert.deepEqual(
      d.end,
      { kind: "exit", code: 0 },
      `still ${d.state} after 200 stops; stdout:\n${stdout}`,
    );
    assert.match(stdout, /count 3 /);
  } finally {
    await d.destroy();
  }
});
