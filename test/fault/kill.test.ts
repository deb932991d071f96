// kill -9 under the write workload (short version; the long one is `npm run fault:long`):
// the primary killed at seeded random moments (checkpoints every 20 ms, so kills land
// mid-checkpoint too) → the secondary takes over with 0 lost writes; the secondary killed →
// the primary runs on unprotected with 0 lost writes. Prints runs, kills, acknowledged writes,
// lost writes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { addVerdict, formatTally, newTally } from "./history.ts";
import { killPrimaryRun, killSecondaryRun } from "./scenarios.ts";

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
