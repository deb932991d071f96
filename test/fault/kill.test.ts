// kill -9 under the write workload (short version; the long one is `npm run fault:long`):
// the primary killed at seeded random moments (checkpoints every 20 ms, so kills land
// mid-checkpoint too) → the secondary takes over with 0 lost writes; the secondary killed →
// the primary runs on unprotected with 0 lost writes. Prints runs, kills, acknowledged writes,
// lost writes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { addVerdict, formatTally, newTally } from "./history.ts";
import { killPrimaryRun, killSecondaryRun, startPair } from "./scenarios.ts";

const ready =
  SUBCOMMANDS.some((c) => c.name === "primary") && SUBCOMMANDS.some((c) => c.name === "secondary");
const SEED = Number(process.env.COLO_FAULT_SEED ?? 1);

test("kill -9 of the primary at seeded random moments: failover, 0 lost writes", {
  timeout: 120_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const tally = newTally();
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await killPrimaryRun(SEED * 1000 + i);
    tally.runs++;
    tally.kills++;
    addVerdict(tally, r.verdict);
    if (r.failoverMs !== undefined) times.push(r.failoverMs);
    assert.deepEqual(r.verdict.violations, [], `run ${i} (kill after ${r.killAfterMs} ms)`);
    assert.ok(r.verdict.acknowledged > 0);
  }
  console.log(
    `${formatTally("kill -9 primary", tally)}; failover ms: ${times.map((x) => x.toFixed(0)).join(", ")}`,
  );
  assert.equal(tally.lost, 0);
});

test("a hung primary (SIGSTOP, sockets still open): the secondary takes over on the heartbeat timeout, 0 lost writes", {
  timeout: 90_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const r = await killPrimaryRun(SEED * 3000, { loss: "hang" });
  console.log(
    `SIGSTOP primary: acknowledged ${r.verdict.acknowledged}, lost ${r.verdict.violations.length}, failover ${r.failoverMs?.toFixed(0)} ms (timeout 500 ms)`,
  );
  assert.deepEqual(r.verdict.violations, []);
  assert.ok(r.verdict.acknowledged > 0);
  // Nothing but the heartbeat's silence can reveal a stopped process: a takeover sooner than
  // the timeout would mean the secondary acted on something else.
  assert.ok(r.failoverMs !== undefined && r.failoverMs >= 300, `failover after ${r.failoverMs} ms`);
});

test("kill -9 of the secondary: the primary runs on unprotected, 0 lost writes", {
  timeout: 90_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const tally = newTally();
  for (let i = 0; i < 2; i++) {
    const r = await killSecondaryRun(SEED * 2000 + i);
    tally.runs++;
    tally.kills++;
    addVerdict(tally, r.verdict);
    assert.deepEqual(r.verdict.violations, [], `run ${i}`);
  }
  console.log(formatTally("kill -9 secondary", tally));
  assert.equal(tally.lost, 0);
});

test("colo failover NAME: the secondary takes over at once; a losing fencing hook makes it stand down", {
  timeout: 90_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const { spawnSync } = await import("node:child_process");
  const { COLO } = await import("./cluster.ts");
  const { waitForPong } = await import("./resp.ts");
  const failover = (env: NodeJS.ProcessEnv, name: string) =>
    spawnSync(process.execPath, [COLO, "failover", name, "--json"], {
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 30_000,
    });

  const won = await startPair({ extraSecondary: ["--fence-cmd", "true"] });
  try {
    assert.match(won.secondary.err, /fencing hook: command: true/);
    const r = failover(won.env, `${won.name}-s`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).action, "take-over");
    assert.equal(await waitForPong(won.secondaryService.host, won.secondaryService.port, 10_000), true);
  } finally {
    await won.stop();
  }

  const lost = await startPair({ extraSecondary: ["--fence-cmd", "exit 1"] });
  try {
    const r = failover(lost.env, `${lost.name}-s`);
    assert.equal(r.status, 1);
    assert.equal(JSON.parse(r.stdout).action, "stand-down");
    assert.equal(
      await waitForPong(lost.secondaryService.host, lost.secondaryService.port, 1500),
      false,
      "a secondary that lost the fence never serves",
    );
  } finally {
    await lost.stop();
  }
});

test("without a fencing hook the secondary warns at start that a cut link can leave both serving", {
  timeout: 60_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const p = await startPair();
  try {
    assert.match(p.secondary.err, /WARNING: no fencing hook.*cut link can leave both serving/);
  } finally {
    await p.stop();
  }
});

test("a primary that loses its fencing hook after losing the secondary stops serving (exit 4)", {
  timeout: 60_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / colo secondary are not registered yet");
  const { waitForPong } = await import("./resp.ts");
  const p = await startPair({ extraPrimary: ["--fence-cmd", "echo held elsewhere >&2; exit 1"] });
  try {
    assert.match(p.primary.err, /fencing hook: command:/);
    assert.doesNotMatch(p.primary.err, /WARNING: no fencing hook/);
    assert.equal(await waitForPong(p.primaryService.host, p.primaryService.port, 5000), true);
    await p.secondary.kill9();
    await p.primary.waitFor(/FENCED OUT/, 10_000);
    assert.match(p.primary.err, /outputs held, asking the fencing hook/);
    assert.doesNotMatch(p.primary.err, /running UNPROTECTED/);
    assert.equal((await p.primary.finished).status, 4);
    assert.equal(await waitForPong(p.primaryService.host, p.primaryService.port, 1000), false);
  } finally {
    await p.stop();
  }
});
