/**
 * The verbs with real processes: `colo run --name` + `colo save` + `colo restore` checked through
 * redis-cli; `colo migrate` to `colo receive` under load from a client that records every
 * acknowledged write (each one present afterwards); a peer with the wrong key refused.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { canNetns, twoHosts } from "../helpers/netns.ts";
import { Colo, colo, KV, Resp } from "./helpers/proc.ts";

let dir: string;
let env: NodeJS.ProcessEnv;
const children: Colo[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), "colo-save-proc-"));
  env = { ...process.env, XDG_RUNTIME_DIR: dir };
  delete env.COLO_PSK;
  delete env.COLO_PSK_FILE;
  writeFileSync(join(dir, "psk"), "11".repeat(32), { mode: 0o600 });
  writeFileSync(join(dir, "other-psk"), "22".repeat(32), { mode: 0o600 });
});
after(() => {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
});

function start(args: string[]): Colo {
  const c = new Colo(args, env);
  children.push(c);
  return c;
}

function hasRedisCli(): boolean {
  try {
    execFileSync("sh", ["-c", "command -v redis-cli"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function cli(port: number, ...args: string[]): string {
  return execFileSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8" }).trim();
}

test("save and restore across processes: the KV guest keeps its data and goes on counting", async (t) => {
  if (!hasRedisCli()) return t.skip("needs Debian package redis-tools");
  const run = start(["run", KV, "--name", "kv-save", "--service", "127.0.0.1:0"]);
  const port = Number((await run.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
  await run.waitFor(/kv: ready/);
  assert.equal(cli(port, "set", "greeting", "hello"), "OK");
  cli(port, "incr", "counter");
  cli(port, "incr", "counter");
  const file = join(dir, "kv.save");
  const saved = await colo(["save", "kv-save", file], env);
  assert.equal(saved.status, 0, saved.err);
  assert.equal(await run.finished, 0, "the saved guest's process exits 0");
  // nothing written over an existing file without --force
  const again = await colo(["save", "kv-save", file], env);
  assert.equal(again.status, 1);
  const verify = await colo(["stream", "verify", file], env);
  assert.equal(verify.status, 0, verify.out + verify.err);

  const restored = start(["restore", file, "--name", "kv-restored", "--service", "127.0.0.1:0"]);
  const port2 = Number((await restored.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
  assert.equal(cli(port2, "get", "greeting"), "hello");
  assert.equal(cli(port2, "incr", "counter"), "3");
  const list = await colo(["list", "--json"], env);
  assert.deepEqual(
    (JSON.parse(list.out) as { name: string }[]).map((g) => g.name),
    ["kv-restored"],
  );
  restored.kill();
  await restored.finished;
});

test("a truncated save file is refused and nothing runs", async () => {
  const run = start(["run", KV, "--name", "kv-trunc", "--service", "127.0.0.1:0"]);
  await run.waitFor(/kv: ready/);
  const file = join(dir, "trunc.save");
  assert.equal((await colo(["save", "kv-trunc", file], env)).status, 0);
  await run.finished;
  execFileSync("truncate", ["-s", "5000", file]);
  const r = await colo(["restore", file, "--service", "127.0.0.1:0"], env);
  assert.equal(r.status, 1);
  assert.match(r.err, /truncated/);
});

test("live migration under load: every acknowledged write is on the target", async () => {
  const psk = join(dir, "psk");
  const src = start(["run", KV, "--name", "kv-mig", "--service", "127.0.0.1:0"]);
  const srcPort = Number((await src.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
  await src.waitFor(/kv: ready/);
  const dst = start([
    "receive",
    "--listen",
    "127.0.0.1:0",
    "--service",
    "127.0.0.1:0",
    "--name",
    "kv-mig-2",
    "--psk-file",
    psk,
  ]);
  const migPort = Number((await dst.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);

  // a stranger (wrong key) is refused, and the guest stays where it is
  const stranger = await colo(
    ["migrate", "kv-mig", `127.0.0.1:${migPort}`, "--psk-file", join(dir, "other-psk")],
    env,
  );
  assert.equal(stranger.status, 1, stranger.out);
  const probe = await Resp.open(srcPort);
  assert.equal(await probe.command("PING"), "PONG");
  probe.close();

  // load: one client writes k0, k1, … and records each acknowledged write
  const acked: number[] = [];
  let stop = false;
  const load = (async () => {
    const c = await Resp.open(srcPort);
    try {
      for (let i = 0; !stop && i < 100_000; i++) {
        if ((await c.command("SET", `k${i}`, `v${i}`)) === "OK") acked.push(i);
      }
    } catch {
      // the source went away at the switch-over: unacknowledged writes are indeterminate
    } finally {
      c.close();
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const mig = await colo(["migrate", "kv-mig", `127.0.0.1:${migPort}`, "--psk-file", psk], env);
  stop = true;
  await load;
  assert.equal(mig.status, 0, mig.err);
  assert.match(mig.out, /downtime/);
  assert.equal(await src.finished, 0);
  const dstPort = Number((await dst.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
  assert.ok(acked.length > 0, "the client wrote something before the migration");
  const c = await Resp.open(dstPort);
  for (const i of acked) assert.equal(await c.command("GET", `k${i}`), `v${i}`, `acknowledged write k${i}`);
  c.close();
  dst.kill();
  await dst.finished;
});

test("migration between two network namespaces (two hosts over a veth link)", {
  timeout: 120_000,
}, async (t) => {
  const why = canNetns() ?? (hasRedisCli() ? undefined : "needs Debian package redis-tools");
  if (why !== undefined) return t.skip(why);
  const id = Math.floor(Math.random() * 0xffff).toString(16);
  const octet = 1 + Math.floor(Math.random() * 250);
  const hosts = twoHosts(`m${id}`, `10.97.${octet}`);
  const { ipB } = hosts;
  const inA = hosts.exec(hosts.a);
  const inB = hosts.exec(hosts.b);
  const cliIn = (ns: string[], port: number, ...args: string[]): string =>
    execFileSync(ns[0] as string, [...ns.slice(1), "redis-cli", "-p", String(port), ...args], {
      encoding: "utf8",
      timeout: 10_000,
    }).trim();
  const mine: Colo[] = [];
  try {
    const psk = join(dir, "psk");
    const src = new Colo(["run", KV, "--name", "kv-ns", "--service", "127.0.0.1:0"], env, inA);
    mine.push(src);
    const srcPort = Number((await src.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
    await src.waitFor(/kv: ready/);
    assert.equal(cliIn(inA, srcPort, "set", "where", "host-a"), "OK");
    const dst = new Colo(
      [
        "receive",
        "--listen",
        `${ipB}:0`,
        "--listen-any",
        "--service",
        "127.0.0.1:0",
        "--name",
        "kv-ns-2",
        "--psk-file",
        psk,
      ],
      env,
      inB,
    );
    mine.push(dst);
    const migPort = Number((await dst.waitFor(/listening on [0-9.]+:(\d+)/))[1]);
    // the target's address exists only inside its namespace: the source reaches it over the veth
    const mig = await colo(["migrate", "kv-ns", `${ipB}:${migPort}`, "--psk-file", psk], env, inA);
    assert.equal(mig.status, 0, mig.err);
    assert.match(mig.out, /downtime/);
    assert.equal(await src.finished, 0);
    const dstPort = Number((await dst.waitFor(/service on 127\.0\.0\.1:(\d+)/))[1]);
    assert.equal(cliIn(inB, dstPort, "get", "where"), "host-a");
  } finally {
    for (const c of mine) c.kill();
    await Promise.all(mine.map((c) => c.finished));
    hosts.remove();
  }
});
