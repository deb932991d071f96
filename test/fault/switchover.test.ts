// Planned switchover under the write workload: `colo switchover NAME` makes the secondary the
// primary (serving its own --service address) and the old primary its secondary (waiting on its
// --listen, then seeded by the new primary); clients reconnect to the new address; no
// acknowledged write is lost. Prints the gap clients saw (last reply from the old primary → first
// reply from the new one) beside the one the switchover reports (input paused → new primary
// serving).
import assert from "node:assert/strict";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { coloRun, longestAckGap } from "./cluster.ts";
import { addVerdict, checkHistory, formatTally, newTally } from "./history.ts";
import { freePort, startPair } from "./scenarios.ts";
import { readAll, Workload } from "./workload.ts";

const ready = ["primary", "secondary", "switchover"].every((n) => SUBCOMMANDS.some((c) => c.name === n));

test("colo switchover: roles swap under load, clients move to the new address, 0 lost writes", {
  timeout: 120_000,
}, async (t) => {
  if (!ready) return t.skip("colo primary / secondary / switchover are not registered yet");
  const listen = await freePort();
  const pair = await startPair({
    maxIntervalMs: 50,
    extraPrimary: ["--verify", "--listen", `127.0.0.1:${listen}`],
  });
  const tally = newTally();
  try {
    const wl = new Workload({
      addresses: () => [pair.primaryService, pair.secondaryService],
      clients: 4,
      maxWrites: 50_000,
      maxMs: 60_000,
      pauseMs: 2,
      tag: "sw",
    }).start();
    assert.equal(await wl.progress(50, 15_000), true);
    const r = await coloRun(pair.env, ["switchover", pair.name, "--json"]);
    assert.equal(r.status, 0, `${r.stderr}\n${pair.primary.err}\n${pair.secondary.err}`);
    const report = JSON.parse(r.stdout) as { gapMs: number; finalSeq: number; newPrimaryService: string };
    assert.equal(report.newPrimaryService, `${pair.secondaryService.host}:${pair.secondaryService.port}`);
    tally.runs++;
    // The new primary seeds the old one, which now runs as its secondary.
    await pair.secondary.waitFor(/protected again by/, 30_000);
    await pair.primary.waitFor(/seeded by/, 30_000);
    assert.equal(await wl.progress(50, 15_000), true, "clients write to the new primary");
    const st = await coloRun(pair.env, ["status", `${pair.name}-s`, "--json"]);
    const status = JSON.parse(st.stdout) as {
      role: string;
      protection: string;
      totals: { verifyFailures: number };
    };
    assert.equal(status.role, "primary");
    assert.equal(status.protection, "protected");
    assert.equal(status.totals.verifyFailures, 0);

    // And back: the taken-over secondary is a primary in full, so `colo switchover` works on it
    // too; the original primary's side (now a `colo secondary`) serves again, protected.
    const back = await coloRun(pair.env, ["switchover", `${pair.name}-s`, "--json"]);
    assert.equal(back.status, 0, `${back.stderr}\n${pair.primary.err}\n${pair.secondary.err}`);
    const backReport = JSON.parse(back.stdout) as { newPrimaryService: string };
    assert.equal(backReport.newPrimaryService, `${pair.primaryService.host}:${pair.primaryService.port}`);
    tally.runs++;
    await pair.primary.waitFor(/protected again by/, 30_000);
    assert.equal(await wl.progress(50, 15_000), true, "clients write to the original primary again");
    const st2 = await coloRun(pair.env, ["status", pair.name, "--json"]);
    const status2 = JSON.parse(st2.stdout) as typeof status;
    assert.equal(status2.role, "primary");
    assert.equal(status2.protection, "protected");
    assert.equal(status2.totals.verifyFailures, 0);
    await wl.stop();

    // The gap clients saw: the longest pause between acknowledged writes around the switchover.
    const gap = longestAckGap(wl.writes);

    const reads = await readAll(
      pair.primaryService,
      wl.writes.map((w) => w.key),
    );
    const verdict = checkHistory(wl.writes, reads);
    addVerdict(tally, verdict);
    console.log(
      `${formatTally("switchover", tally)}; reported gap (input paused → new primary serving) ${report.gapMs.toFixed(1)} ms; client-visible gap (last ack → first ack) ${gap.toFixed(1)} ms; final checkpoint ${report.finalSeq}`,
    );
    assert.deepEqual(verdict.violations, []);
    assert.ok(verdict.acknowledged > 0);
  } finally {
    await pair.stop();
  }
});
