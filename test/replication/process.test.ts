// Two real processes on loopback: `colo secondary` and `colo primary` with TLS-PSK and --verify,
// driven by redis-cli and redis-benchmark; `colo status` read back through the control socket;
// `colo demo --json` end to end.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { startPair } from "../../src/cli/child.ts";
import { hasTool } from "../run/helpers.ts";
import { ROOT } from "./helpers.ts";

const run = promisify(execFile);
const COLO = join(ROOT, "bin/colo.js");

async function pair(mode: string[], tag: string) {
  const p = await startPair({
    guest: "guests/kv.wasm",
    secondaryName: `${tag}-s`,
    primaryName: `${tag}-p`,
    primaryArgs: ["--verify", ...mode],
  });
  return { ...p, sec: p.sec!, port: String(p.port) };
}

async function cli(port: string, ...args: string[]): Promise<string> {
  return (await run("redis-cli", ["-p", port, ...args])).stdout.trim();
}

async function status(name: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(process.execPath, [COLO, "status", name, "--json"], { cwd: ROOT });
  return JSON.parse(stdout);
}

test("two processes, COLO back-channel: redis-benchmark and redis-cli through the primary, every checkpoint verified", async (t) => {
  if (!hasTool("redis-cli") || !hasTool("redis-benchmark")) return t.skip("needs Debian package redis-tools");
  const p = await pair(["--max-interval-ms", "200", "--metrics", "127.0.0.1:0"], `t${process.pid}a`);
  try {
    assert.equal(await cli(p.port, "SET", "greeting", "hello"), "OK");
    // forced divergences: the replicas' clocks and random choices differ
    for (let i = 0; i < 3; i++) assert.match(await cli(p.port, "TIME"), /^\d+\n\d+$/);
    assert.notEqual(await cli(p.port, "RANDOMKEY"), "");
    await run(
      "redis-benchmark",
      ["-p", p.port, "-n", "2000", "-c", "10", "-r", "1000", "-t", "set,get,incr", "-q"],
      {
        timeout: 60_000,
      },
    );
    assert.equal(await cli(p.port, "GET", "greeting"), "hello");
    assert.equal(await cli(p.port, "INCR", "mine"), "1");
    const s = await status(`t${process.pid}a-p`);
    assert.equal(s.state === "protected" || s.state === "checkpointing", true, JSON.stringify(s));
    assert.equal(s.pvmResume, "snapshot", "the default resume point is reported");
    const totals = s.totals as Record<string, number>;
    assert.ok((totals.checkpoints ?? 0) >= 3, `checkpoints: ${totals.checkpoints}`);
    assert.equal(totals.verifyFailures, 0);
    assert.equal(totals.verified, totals.checkpoints, "every checkpoint verified");
    assert.ok((s.divergences as number) >= 1);
    const metricsUrl = await p.pri.line(/metrics on (\S+)/);
    const text = await (await fetch(metricsUrl)).text();
    assert.match(text, /^colo_checkpoints_total \d+/m);
    assert.match(text, /^colo_protected 1/m);
    assert.match(text, /^colo_verify_failures_total 0/m);
    assert.match(text, /^colo_pages_d_total \d+/m);
    const ss = await status(`t${process.pid}a-s`);
    assert.equal(ss.role, "secondary");
    // Protected and in step: running, or inside one of the periodic checkpoints (every 200 ms).
    assert.ok(
      ["running", "suspended", "buffering", "applying"].includes(String(ss.state)),
      `secondary ${ss.state}`,
    );
  } finally {
    const code = await p.close();
    assert.notEqual(code, 3, "no verify failure");
  }
});

test("two processes, Remus: replies only after the covering checkpoint, values kept", async (t) => {
  if (!hasTool("redis-cli")) return t.skip("needs Debian package redis-tools");
  const p = await pair(["--mode", "remus", "--epoch-ms", "25"], `t${process.pid}b`);
  try {
    for (let i = 0; i < 10; i++) assert.equal(await cli(p.port, "SET", `k${i}`, `v${i}`), "OK");
    for (let i = 0; i < 10; i++) assert.equal(await cli(p.port, "GET", `k${i}`), `v${i}`);
    const s = await status(`t${process.pid}b-p`);
    const totals = s.totals as Record<string, number>;
    assert.equal(s.mode, "remus");
    assert.ok((totals.checkpoints ?? 0) >= 5);
    assert.equal(totals.verified, totals.checkpoints);
    // A Remus secondary never runs its replica: between epochs it stands by, and a status taken
    // during one of the 25 ms epochs' checkpoints may find it buffering or applying.
    const secondaryState = (await status(`t${process.pid}b-s`)).state;
    assert.ok(
      ["standby", "buffering", "applying"].includes(String(secondaryState)),
      `Remus secondary state ${secondaryState}`,
    );
  } finally {
    await p.close();
  }
});

test("colo demo --json: finishes, every checkpoint verified, no wrong reply", async () => {
  const { stdout } = await run(process.execPath, [COLO, "demo", "--json"], { cwd: ROOT, timeout: 60_000 });
  const s = JSON.parse(stdout);
  assert.equal(s.ok, true);
  assert.equal(s.allVerified, true);
  assert.equal(s.wrongReplies, 0);
  assert.ok(s.checkpoints >= 2);
  assert.ok(
    s.perCheckpoint.slice(1).some((r: { b: number }) => r.b > 0),
    "B travelled on the back channel",
  );
});
