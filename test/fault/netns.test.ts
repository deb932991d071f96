// The inter-host link cut between two network namespaces (root and iproute2 only), with the
// sample directory fence configured on both sides: after the cut, and again after the link is
// restored, exactly one side acknowledges writes on its service address.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SUBCOMMANDS } from "../../src/cli/main.ts";
import { ROOT } from "./cluster.ts";
import { formatTally, newTally } from "./history.ts";
import { startPair } from "./scenarios.ts";
import { sleep } from "./workload.ts";

const PROBE = join(import.meta.dirname, "fixtures", "probe.ts");
const ready =
  SUBCOMMANDS.some((c) => c.name === "primary") && SUBCOMMANDS.some((c) => c.name === "secondary");

function canNetns(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (ip netns)";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "needs Debian package iproute2";
  }
  return undefined;
}

/** One SET from inside `ns` to its own side's service address. */
function probe(ns: string, host: string, value: string): boolean {
  const r = spawnSync("ip", ["netns", "exec", ns, process.execPath, PROBE, host, "6379", value, "1500"], {
    encoding: "utf8",
    timeout: 10_000,
  });
  try {
    return (JSON.parse(r.stdout.trim()) as { ok: boolean }).ok;
  } catch {
    return false;
  }
}

test("a cut link with a fencing hook leaves exactly one side serving writes", {
  timeout: 120_000,
  // TODO(issue 6): colo primary does not take --fence-cmd yet (it must hold outputs until it
  // wins, and stop serving if it loses: decideUnprotected() in src/replication/failover.ts).
  // Until then only the secondary is fenced and a cut link leaves both serving.
  todo: "primary-side fencing not wired into colo primary yet",
}, async (t) => {
  const why = canNetns() ?? (ready ? undefined : "colo primary / colo secondary are not registered yet");
  if (why !== undefined) return t.skip(why);
  const id = Math.floor(Math.random() * 0xffff).toString(16);
  const octet = 1 + Math.floor(Math.random() * 250);
  const nsP = `colo-f-${id}-p`;
  const nsS = `colo-f-${id}-s`;
  const [devP, devS] = [`cf${id}p`, `cf${id}s`];
  const [ipP, ipS] = [`10.98.${octet}.1`, `10.98.${octet}.2`];
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "ignore" });
  const fenceDir = mkdtempSync(join(tmpdir(), "colo-fence-"));
  const fenceCmd = `COLO_FENCE_DIR=${fenceDir} sh ${join(ROOT, "scripts/fence-dir.sh")}`;
  let pair: Awaited<ReturnType<typeof startPair>> | undefined;
  const tally = newTally();
  try {
    ip("netns", "add", nsP);
    ip("netns", "add", nsS);
    ip("link", "add", devP, "type", "veth", "peer", "name", devS);
    ip("link", "set", devP, "netns", nsP);
    ip("link", "set", devS, "netns", nsS);
    ip("-n", nsP, "addr", "add", `${ipP}/24`, "dev", devP);
    ip("-n", nsS, "addr", "add", `${ipS}/24`, "dev", devS);
    for (const [ns, dev] of [
      [nsP, devP],
      [nsS, devS],
    ] as const) {
      ip("-n", ns, "link", "set", dev, "up");
      ip("-n", ns, "link", "set", "lo", "up");
    }
    pair = await startPair({
      primaryPrefix: ["ip", "netns", "exec", nsP],
      secondaryPrefix: ["ip", "netns", "exec", nsS],
      primaryHost: ipP,
      secondaryHost: ipS,
      extraSecondary: ["--fence-cmd", fenceCmd],
    });
    assert.equal(probe(nsP, ipP, "before"), true, "the primary serves before the cut");
    assert.equal(probe(nsS, ipS, "before"), false, "the secondary does not serve before the cut");

    ip("-n", nsS, "link", "set", devS, "down");
    tally.runs++;
    tally.kills++;
    // heartbeat timeout + the hook + a margin
    await sleep(2500);
    const afterCut = [probe(nsP, ipP, "cut-p"), probe(nsS, ipS, "cut-s")];
    assert.equal(afterCut.filter(Boolean).length, 1, `exactly one side serves after the cut: ${afterCut}`);

    ip("-n", nsS, "link", "set", devS, "up");
    await sleep(1500);
    const afterRestore = [probe(nsP, ipP, "back-p"), probe(nsS, ipS, "back-s")];
    assert.deepEqual(afterRestore, afterCut, "the same single side serves after the link is restored");
    console.log(
      `${formatTally("link cut with fencing", tally)}; serving after cut: ${afterCut[0] ? "primary" : "secondary"}`,
    );
  } finally {
    await pair?.stop();
    for (const ns of [nsP, nsS]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // not created
      }
    }
    rmSync(fenceDir, { recursive: true, force: true });
  }
});
