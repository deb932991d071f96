// Primary and secondary in two network namespaces joined by a veth pair the test makes (root
// only; skipped otherwise): protection across a real link with --verify, then kill -9 of the
// primary: the secondary takes over on its own address with every acknowledged write.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { type TwoHosts, twoHosts } from "../helpers/netns.ts";
import { hasTool } from "../run/helpers.ts";
import { ROOT } from "./helpers.ts";

const run = promisify(execFile);
const COLO = join(ROOT, "bin/colo.js");

function spawnIn(ns: string, args: string[]): { child: ChildProcess; log: () => string } {
  let log = "";
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, COLO, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d: Buffer) => (log += d));
  child.stderr!.on("data", (d: Buffer) => (log += d));
  return { child, log: () => log };
}

async function waitFor(
  p: { child: ChildProcess; log: () => string },
  re: RegExp,
  ms = 30_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(p.log())) {
    if (p.child.exitCode !== null || Date.now() > end) throw new Error(`no ${re} in:\n${p.log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("two network namespaces: COLO over a veth link, then kill -9 of the primary and takeover", async (t) => {
  if (process.getuid?.() !== 0 || !hasTool("ip")) return t.skip("needs root and iproute2 (ip netns)");
  if (!hasTool("redis-cli")) return t.skip("needs Debian package redis-tools");
  const id = (process.pid % 200) + 20;
  let hosts: TwoHosts;
  try {
    hosts = twoHosts(`r${process.pid}`, `10.231.${id}`);
  } catch {
    return t.skip("cannot create network namespaces here");
  }
  const { a: nsP, b: nsS, ipB: aS } = hosts;
  const dir = mkdtempSync(join(tmpdir(), "colo-ns-"));
  const psk = join(dir, "psk");
  writeFileSync(psk, `${"cd".repeat(32)}\n`, { mode: 0o600 });
  const procs: ChildProcess[] = [];
  try {
    const sec = spawnIn(nsS, [
      "secondary",
      "--listen",
      `${aS}:7001`,
      "--listen-any",
      "--service",
      `${aS}:6380`,
      "--psk-file",
      psk,
    ]);
    procs.push(sec.child);
    await waitFor(sec, /listening on/);
    const pri = spawnIn(nsP, [
      "primary",
      "guests/kv.wasm",
      "--service",
      "127.0.0.1:6379",
      "--secondary",
      `${aS}:7001`,
      "--psk-file",
      psk,
      "--verify",
      "--max-interval-ms",
      "100",
    ]);
    procs.push(pri.child);
    await waitFor(pri, /colo primary: protected \(/);
    const cli = async (ns: string, ...args: string[]): Promise<string> =>
      (await run("ip", ["netns", "exec", ns, "redis-cli", ...args])).stdout.trim();
    for (let i = 0; i < 10; i++) assert.equal(await cli(nsP, "-p", "6379", "SET", `k${i}`, `v${i}`), "OK");
    assert.match(await cli(nsP, "-p", "6379", "TIME"), /^\d+/);
    await new Promise((r) => setTimeout(r, 300)); // a few periodic checkpoints
    assert.doesNotMatch(pri.log(), /VERIFY FAILED|UNPROTECTED/);
    pri.child.kill("SIGKILL");
    await waitFor(sec, /took over; service on/, 10_000);
    for (let i = 0; i < 10; i++)
      assert.equal(await cli(nsS, "-h", aS, "-p", "6380", "GET", `k${i}`), `v${i}`);
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    hosts.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});
