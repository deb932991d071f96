// `colo run` as a real child process: flags, exit statuses, and the kv guest under redis-cli and
// redis-benchmark (Debian redis-tools) on a free loopback port.
import assert from "node:assert/strict";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ColoRun, GUESTS, hasTool, redisCli, runTool } from "./helpers.ts";

const KV = join(GUESTS, "kv.wasm");
const COMPUTE = join(GUESTS, "compute.wasm");
const COUNTER = join(GUESTS, "counter.wasm");
const LOOPBACK_ANY = "127.0.0.1:0";
const NEEDS_REDIS = "needs Debian package redis-tools";

async function finish(args: string[]) {
  const run = new ColoRun(args);
  const timer = setTimeout(() => run.child.kill("SIGKILL"), 60_000);
  const done = await run.finished;
  clearTimeout(timer);
  return done;
}

test("bad flags exit 2 with a message", async () => {
  const cases: [string[], RegExp][] = [
    [[], /missing GUEST\.wasm/],
    [["--bogus", KV], /--bogus/],
    [[KV, "extra"], /guest arguments go after '--'/],
    [[KV, "--service", "nope"], /--service 'nope' is not HOST:PORT/],
    [[KV, "--service", "127.0.0.1:99999"], /is not HOST:PORT/],
    [[KV, "--dir", "data=/tmp"], /--dir 'data=\/tmp'/],
    [[KV, "--dir", "/data"], /--dir '\/data'/],
    [[KV, "--env", "NOEQUALS"], /--env 'NOEQUALS' is not KEY=VALUE/],
    [[KV, "--name", "bad name"], /--name 'bad name'/],
  ];
  for (const [args, message] of cases) {
    const r = await finish(args);
    assert.equal(r.status, 2, `${args.join(" ")}: status`);
    assert.match(r.stderr, message, args.join(" "));
  }
});

test("--help exits 0 with the usage", async () => {
  const r = await finish(["--help"]);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /usage: colo run GUEST\.wasm/);
});

test("a missing or invalid module exits 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "colo-run-"));
  try {
    const bogus = join(dir, "bogus.wasm");
    writeFileSync(bogus, "this is not WebAssembly\n");
    const missing = await finish([join(dir, "missing.wasm")]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /cannot read/);
    const invalid = await finish([bogus, "--service", LOOPBACK_ANY]);
    assert.equal(invalid.status, 1);
    assert.match(invalid.stderr, /colo run: .*not-wasm/);
    const noDir = await finish([KV, "--dir", `/data=${join(dir, "nope")}`]);
    assert.equal(noDir.status, 1);
    assert.match(noDir.stderr, /not a directory/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** `colo run compute.wasm -- ARGS` to its end. */
const compute = (args: string) => finish([COMPUTE, "--service", LOOPBACK_ANY, "--", ...args.split(" ")]);

/** The compute guest's stdout under Node's own WASI implementation: an independent oracle. */
async function computeUnderNodeWasi(args: string): Promise<{ status: number; stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), "colo-oracle-"));
  const outPath = join(dir, "stdout");
  const fd = openSync(outPath, "w");
  try {
    process.removeAllListeners("warning"); // node:wasi's ExperimentalWarning
    const { WASI } = await import("node:wasi");
    const wasi = new WASI({
      version: "preview1",
      args: ["compute.wasm", ...args.split(" ")],
      stdout: fd,
      returnOnExit: true,
    });
    const instance = await WebAssembly.instantiate(
      await WebAssembly.compile(readFileSync(COMPUTE)),
      wasi.getImportObject() as WebAssembly.Imports,
    );
    const status = wasi.start(instance);
    return { status, stdout: readFileSync(outPath, "utf8") };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the compute guest's output and exit status pass through", async () => {
  const args = "--mem-mib 2 --ws-mib 1 --rounds 3 --exit-code 7";
  const r = await compute(args);
  assert.equal(r.status, 7, r.stderr);
  // π(2^20) = 82025: the sieve ran over the 1 MiB working set.
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines[0], "compute: mem 2 MiB, working set 1 MiB, sieve mode");
  assert.deepEqual(
    lines.slice(1).map((l) => l.replace(/ sum \d+$/, "")),
    ["round 1 primes 82025", "round 2 primes 82025", "round 3 primes 82025"],
  );
  const oracle = await computeUnderNodeWasi(args);
  assert.deepEqual({ status: r.status, stdout: r.stdout }, oracle, "same as under node:wasi");
  const bad = await compute("--bogus");
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /compute: unknown argument '--bogus'/);
});

test("a trapping guest exits 1 with a message", async () => {
  const r = await compute("--mem-mib 1 --ws-mib 1 --rounds 1 --trap");
  assert.equal(r.status, 1);
  assert.match(r.stderr, /colo run: guest trapped/);
  assert.match(r.stdout, /round 1 primes/);
});

test("the counter counts up on a monotonic clock and serves its value on fd 3", async (t) => {
  const run = new ColoRun([COUNTER, "--service", LOOPBACK_ANY, "--", "--interval-ms", "20", "--count", "50"]);
  t.after(() => run.stop());
  const port = await run.servicePort();
  await run.until(() => /count 2 /.test(run.stdout), "two ticks");
  const served = await new Promise<string>((resolve, reject) => {
    import("node:net").then(({ connect }) => {
      const s = connect({ host: "127.0.0.1", port });
      let text = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => {
        text += d;
      });
      s.on("end", () => resolve(text));
      s.on("error", reject);
    }, reject);
  });
  assert.match(served, /^count \d+ mono_ms \d+\n$/);
  const r = await run.finished;
  assert.equal(r.status, 0, r.stderr);
  const ticks = r.stdout
    .trim()
    .split("\n")
    .map((l) => /^count (\d+) mono_ms (\d+)$/.exec(l))
    .map((m) => [Number(m![1]), Number(m![2])] as const);
  assert.equal(ticks.length, 50);
  for (let i = 1; i < ticks.length; i++) {
    assert.equal(ticks[i]![0], ticks[i - 1]![0] + 1);
    assert.ok(ticks[i]![1] >= ticks[i - 1]![1], "monotonic clock went back");
  }
});

test("kv answers redis-cli", async (t) => {
  if (!hasTool("redis-cli")) return t.skip(NEEDS_REDIS);
  const run = new ColoRun([KV, "--service", LOOPBACK_ANY]);
  t.after(() => run.stop());
  const port = await run.servicePort();
  const cli = (...args: string[]) => redisCli(port, ...args);
  assert.equal(await cli("PING"), "PONG\n");
  assert.equal(await cli("ECHO", "hello world"), "hello world\n");
  assert.equal(await cli("SET", "k", "v1"), "OK\n");
  assert.equal(await cli("GET", "k"), "v1\n");
  assert.equal(await cli("GET", "missing"), "\n");
  assert.equal(await cli("SET", "n", "41"), "OK\n");
  assert.equal(await cli("INCR", "n"), "42\n");
  assert.equal(await cli("INCRBY", "n", "-50"), "-8\n");
  assert.equal(await cli("DECR", "n"), "-9\n");
  assert.match(await cli("INCR", "k"), /ERR value is not an integer/);
  assert.equal(await cli("LPUSH", "l", "a", "b", "c"), "3\n");
  assert.equal(await cli("RPUSH", "l", "z"), "4\n");
  assert.equal(await cli("LRANGE", "l", "0", "-1"), "c\nb\na\nz\n");
  assert.equal(await cli("LPOP", "l"), "c\n");
  assert.equal(await cli("RPOP", "l"), "z\n");
  assert.equal(await cli("LLEN", "l"), "2\n");
  assert.match(await cli("GET", "l"), /WRONGTYPE/);
  assert.equal(await cli("MSET", "a", "1", "b", "2"), "OK\n");
  assert.equal(await cli("MGET", "a", "b", "nope"), "1\n2\n\n");
  assert.equal(await cli("EXISTS", "a", "b", "nope"), "2\n");
  assert.equal(await cli("DEL", "a", "nope"), "1\n");
  assert.equal(await cli("DBSIZE"), "4\n");
  assert.equal((await cli("KEYS", "*")).split("\n").filter(Boolean).sort().join(","), "b,k,l,n");
  const keys = new Set(["b", "k", "l", "n"]);
  assert.ok(keys.has((await cli("RANDOMKEY")).trim()));
  const [secs, usecs] = (await cli("TIME")).trim().split("\n").map(Number);
  assert.ok(Math.abs(secs! - Date.now() / 1000) < 300, `TIME seconds ${secs}`);
  assert.ok(usecs! >= 0 && usecs! < 1_000_000);
  assert.equal(await cli("FLUSHALL"), "OK\n");
  assert.equal(await cli("DBSIZE"), "0\n");
  assert.equal(await cli("RANDOMKEY"), "\n");
  assert.match(await cli("NOSUCHCMD"), /ERR unknown command/);
});

test("kv passes redis-benchmark, plain and pipelined with 50 clients", async (t) => {
  if (!hasTool("redis-benchmark")) return t.skip(NEEDS_REDIS);
  const run = new ColoRun([KV, "--service", LOOPBACK_ANY]);
  t.after(() => run.stop());
  const port = await run.servicePort();
  const tests = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "LPOP", "MSET"];
  // One request at a time from 10 clients, then 50 clients pipelining 16 requests each.
  for (const extra of [
    ["-c", "10"],
    ["-c", "50", "-P", "16"],
  ]) {
    const args = ["-h", "127.0.0.1", "-p", String(port), "-t", "ping,set,get,incr,lpush,lpop,mset"];
    const r = await runTool("redis-benchmark", [...args, "-n", "2000", "-q", ...extra], 120_000);
    assert.equal(r.status, 0, `redis-benchmark ${extra.join(" ")}: ${r.stderr}`);
    const out = r.stdout.replace(/\r/g, "\n");
    for (const name of tests)
      assert.match(out, new RegExp(`${name}[^:]*: [\\d.]+ requests per second`), name);
    assert.doesNotMatch(out + r.stderr, /error|Could not fetch server CONFIG/i);
  }
  // LPUSH and LPOP ran the same number of times on "mylist": it is empty again.
  assert.equal(await redisCli(port, "LLEN", "mylist"), "0\n");
  assert.equal(await redisCli(port, "GET", "counter:__rand_int__"), "4000\n");
});

test("kv SHUTDOWN SAVE ends the guest with 0 and --dir writes the dump back to the host", async (t) => {
  if (!hasTool("redis-cli")) return t.skip(NEEDS_REDIS);
  const dir = mkdtempSync(join(tmpdir(), "colo-run-dir-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const args = [KV, "--service", LOOPBACK_ANY, "--dir", `/data=${dir}`, "--", "--dump", "/data/kv.dump"];
  const first = new ColoRun(args);
  t.after(() => first.stop());
  const port1 = await first.servicePort();
  assert.equal(await redisCli(port1, "RPUSH", "list", "x", "y"), "2\n");
  assert.equal(await redisCli(port1, "SET", "s", "kept"), "OK\n");
  await redisCli(port1, "SHUTDOWN", "SAVE").catch(() => "");
  const r1 = await first.finished;
  assert.equal(r1.status, 0, r1.stderr);
  assert.equal(readFileSync(join(dir, "kv.dump")).subarray(0, 8).toString(), "COLOKV01");

  const second = new ColoRun(args);
  t.after(() => second.stop());
  const port2 = await second.servicePort();
  assert.equal(await redisCli(port2, "GET", "s"), "kept\n");
  assert.equal(await redisCli(port2, "LRANGE", "list", "0", "-1"), "x\ny\n");
});

test("SIGTERM stops the guest with status 143", async (t) => {
  const run = new ColoRun([COUNTER, "--service", LOOPBACK_ANY, "--", "--interval-ms", "10"]);
  t.after(() => run.stop());
  await run.until(() => /count 1 /.test(run.stdout), "a tick");
  run.child.kill("SIGTERM");
  const r = await run.finished;
  assert.equal(r.status, 143, r.stderr);
});
