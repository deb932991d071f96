// The inter-host link cut between two network namespaces (root and iproute2 only), with the
// sample directory fence (scripts/fence-dir.sh) configured on BOTH sides, under the write
// workload: after the cut, and again after the link is restored, exactly one side acknowledges
// writes on its service address, and no acknowledged write is lost.
//
// Topology (all made and removed by the test):
//   nsP ── veth "inter-host link" (10.98.N.1 ↔ 10.98.N.2) ── nsS      replication, mirror, heartbeat
//   root ── veth 10.96.N.1 ↔ 10.96.N.2 (nsP)                           clients → primary's service
//   root ── veth 10.95.N.1 ↔ 10.95.N.2 (nsS)                           clients → secondary's service
// The cut is `ip link set <inter-host end in nsS> down` (then up): the client networks stay up,
// so the workload (in the test process, root namespace) sees which side serves.
//
// The arbiter both sides consult is a directory on this machine's file system: `ip netns exec`
// changes the network namespace only, so both processes see the same /tmp. It stands for what
// real hosts would share (a lock on shared storage, a quorum service; docs/failover.md).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { canNetns, ip, twoHosts } from "../helpers/netns.ts";
import { ROOT } from "./cluster.ts";
import { addVerdict, checkHistory, formatTally, newTally } from "./history.ts";
import { RespConnection } from "./resp.ts";
import { type Pair, startPair } from "./scenarios.ts";
import { type Address, readAll, sleep, Workload } from "./workload.ts";

const ready =
  SUBCOMMANDS.some((c) => c.name === "primary") && SUBCOMMANDS.some((c) => c.name === "secondary");

/** One SET to `addr`: true if acknowledged within the timeout. */
async function serves(addr: Address, value: string): Promise<boolean> {
  try {
    const c = await RespConnection.connect(addr.host, addr.port, 1500);
    const r = await c.command(["SET", "probe", value], 1500);
    c.close();
    return r.kind === "reply" && r.reply.type === "simple" && r.reply.value === "OK";
  } catch {
    return false;
  }
}

test("a cut link with a fencing hook on both sides leaves exactly one side serving writes, 0 lost", {
  timeout: 120_000,
}, async (t) => {
  const why = canNetns() ?? (ready ? undefined : "colo primary / colo secondary are not registered yet");
  if (why !== undefined) return t.skip(why);
  const id = Math.floor(Math.random() * 0xffff).toString(16);
  const n = 1 + Math.floor(Math.random() * 250);
  const [cliP, cliPn, cliS, cliSn] = [`cc${id}p`, `cc${id}pn`, `cc${id}s`, `cc${id}sn`];
  // the inter-host link
  const hosts = twoHosts(`f${id}`, `10.98.${n}`);
  const { a: nsP, b: nsS, devB: devS, ipA: ipP, ipB: ipS } = hosts;
  const fenceDir = mkdtempSync(join(tmpdir(), "colo-fence-"));
  const fenceCmd = `COLO_FENCE_DIR=${fenceDir} sh ${join(ROOT, "scripts/fence-dir.sh")}`;
  let pair: Pair | undefined;
  const tally = newTally();
  try {
    // the client networks, from the root namespace
    for (const [ns, outer, inner, net] of [
      [nsP, cliP, cliPn, `10.96.${n}`],
      [nsS, cliS, cliSn, `10.95.${n}`],
    ] as const) {
      ip("link", "add", outer, "type", "veth", "peer", "name", inner);
      ip("link", "set", inner, "netns", ns);
      ip("addr", "add", `${net}.1/24`, "dev", outer);
      ip("-n", ns, "addr", "add", `${net}.2/24`, "dev", inner);
      ip("link", "set", outer, "up");
      ip("-n", ns, "link", "set", inner, "up");
    }

    pair = await startPair({
      primaryPrefix: hosts.exec(nsP),
      secondaryPrefix: hosts.exec(nsS),
      primaryHost: ipP,
      secondaryHost: ipS,
      primaryServiceHost: `10.96.${n}.2`,
      secondaryServiceHost: `10.95.${n}.2`,
      fenceCmd,
      maxIntervalMs: 50,
    });
    const p = pair;
    assert.match(p.primary.err, /fencing hook: command:/);
    assert.equal(await serves(p.primaryService, "before"), true, "the primary serves before the cut");
    assert.equal(await serves(p.secondaryService, "before"), false, "the secondary does not serve yet");

    const wl = new Workload({
      addresses: () => [p.primaryService, p.secondaryService],
      clients: 4,
      maxMs: 40_000,
      replyTimeoutMs: 2000,
      maxWrites: 50_000,
      pauseMs: 5,
      tag: `cut${id}`,
    }).start();
    assert.equal(await wl.progress(50, 15_000), true, "workload runs before the cut");

    ip("-n", nsS, "link", "set", devS, "down");
    tally.runs++;
    tally.kills++;
    // heartbeat timeout (500 ms) + the hook + a margin
    await sleep(2500);
    const progressed = await wl.progress(50, 15_000);
    const afterCut = [await serves(p.primaryService, "cut-p"), await serves(p.secondaryService, "cut-s")];
    assert.equal(afterCut.filter(Boolean).length, 1, `exactly one side serves after the cut: ${afterCut}`);
    assert.equal(progressed, true, "the workload goes on against the side that serves");

    ip("-n", nsS, "link", "set", devS, "up");
    await sleep(1500);
    const afterRestore = [
      await serves(p.primaryService, "back-p"),
      await serves(p.secondaryService, "back-s"),
    ];
    assert.deepEqual(afterRestore, afterCut, "the same single side serves after the link is restored");
    await wl.stop();

    const survivor = afterCut[0] ? p.primaryService : p.secondaryService;
    const reads = await readAll(
      survivor,
      wl.writes.map((w) => w.key),
    );
    const verdict = checkHistory(wl.writes, reads);
    addVerdict(tally, verdict);
    console.log(
      `${formatTally("link cut with fencing", tally)}; serving after cut: ${afterCut[0] ? "primary" : "secondary"}`,
    );
    assert.deepEqual(verdict.violations, []);
    assert.ok(verdict.acknowledged > 0);
    if (afterCut[0]) assert.match(p.secondary.err, /fence lost/);
    else {
      await p.primary.waitFor(/FENCED OUT/, 5000);
      assert.equal((await p.primary.finished).status, 4, "a primary that lost the fence exits 4");
    }
  } finally {
    await pair?.stop();
    hosts.remove();
    for (const dev of [cliP, cliS]) {
      try {
        ip("link", "del", dev);
      } catch {
        // gone with its namespace
      }
    }
    rmSync(fenceDir, { recursive: true, force: true });
  }
});
