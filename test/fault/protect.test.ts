// Re-protection under a write workload: kill -9 of the secondary → the primary runs on
// unprotected (status and /metrics say so) → a new `colo secondary` → `colo protect NAME
// --secondary HOST:PORT` seeds it while the guest keeps serving → status protected again, new
// checkpoints all verified (--verify), and no acknowledged write lost through it all.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { COLO, ColoProc, coloRun, longestAckGap } from "./cluster.ts";
import { addVerdict, checkHistory, formatTally, newTally } from "./history.ts";
import { freePort, startPair, UNPROTECTED_RE } from "./scenarios.ts";
import { readAll, Workload } from "./workload.ts";

const ready = ["primary", "secondary", "protect"].every((n) => SUBCOMMANDS.some((c) => c.name === n));

function colo(env: NodeJS.ProcessEnv, ...args: string[]) {
  return spawnSync(process.execPath, [COLO, ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
}

async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(url)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m === null ? undefined : Number(m[1]);
}

test("colo protect: a new secondary joins the unprotected primary under load; 0 lost, all verified", {
  timeout: 120_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / secondary / protect are not registered yet");
  const pair = await startPair({ maxIntervalMs: 50, extraPrimary: ["--verify", "--metrics", "127.0.0.1:0"] });
  let second: ColoProc | undefined;
  const tally = newTally();
  try {
    const metricsUrl = (await pair.primary.waitFor(/metrics on (http:\S+)/))[1]!;
    const status = () => {
      const r = colo(pair.env, "status", pair.name, "--json");
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, unknown> & {
        totals: { checkpoints: number; verified: number; verifyFailures: number };
      };
    };
    assert.equal(status().protection, "protected");
    assert.equal(await metric(metricsUrl, "colo_protected"), 1);

    const wl = new Workload({
      addresses: () => [pair.primaryService],
      clients: 4,
      maxWrites: 50_000,
      maxMs: 60_000,
      pauseMs: 2,
      tag: "prot",
    }).start();
    assert.equal(await wl.progress(30, 15_000), true);
    await pair.secondary.kill9();
    tally.runs++;
    tally.kills++;
    await pair.primary.waitFor(UNPROTECTED_RE, 10_000);
    const lost = status();
    assert.equal(lost.protection, "unprotected");
    assert.match(String(lost.reason), /secondary lost/);
    assert.equal(await metric(metricsUrl, "colo_protected"), 0);
    assert.equal(await wl.progress(30, 15_000), true, "serves while unprotected");

    const rPort = await freePort();
    second = new ColoProc(
      "secondary2",
      [
        "secondary",
        "--listen",
        `127.0.0.1:${rPort}`,
        "--service",
        `127.0.0.1:${await freePort()}`,
        "--psk-file",
        String(pair.env.COLO_PSK_FILE),
      ],
      pair.env,
    );
    await second.waitFor(/listening on/);
    const checkpointsBefore = lost.totals.checkpoints;
    // Asynchronously, so that the workload keeps running (and measuring) through the seed.
    const from = wl.now();
    const r = await coloRun(pair.env, ["protect", pair.name, "--secondary", `127.0.0.1:${rPort}`, "--json"]);
    const to = wl.now();
    assert.equal(r.status, 0, `${r.stderr}\n${pair.primary.err}`);
    assert.equal(JSON.parse(r.stdout).protected, true);
    assert.equal(await wl.progress(30, 15_000), true, "serves while and after being protected again");
    // A few checkpoints after the new seed, all verified.
    const deadline = Date.now() + 15_000;
    let after = status();
    while (after.totals.checkpoints < checkpointsBefore + 5 && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 100));
      after = status();
    }
    assert.equal(after.protection, "protected", JSON.stringify(after));
    assert.ok(after.totals.checkpoints >= checkpointsBefore + 5, "checkpoints resume");
    assert.equal(after.totals.verifyFailures, 0);
    assert.equal(after.totals.verified, after.totals.checkpoints, "every checkpoint verified");
    assert.equal(await metric(metricsUrl, "colo_protected"), 1);
    assert.match(second.err, /seeded by/);
    await wl.stop();
    // The stall clients saw while `colo protect` ran (the seed): the longest pause between
    // acknowledged writes in that window, beside the longest one before it (the workload's own).
    const stall = longestAckGap(wl.writes, from, to);
    const usual = longestAckGap(wl.writes, 0, from - 100);

    const reads = await readAll(
      pair.primaryService,
      wl.writes.map((w) => w.key),
    );
    const verdict = checkHistory(wl.writes, reads);
    addVerdict(tally, verdict);
    console.log(
      `${formatTally("kill -9 secondary, colo protect", tally)}; checkpoints verified ${after.totals.verified}/${after.totals.checkpoints}; protect stall (longest ack gap while colo protect ran) ${stall.toFixed(1)} ms, before it ${usual.toFixed(1)} ms; colo protect took ${(to - from).toFixed(0)} ms`,
    );
    assert.deepEqual(verdict.violations, []);
  } finally {
    await second?.stop();
    await pair.stop();
  }
});
