// The fencing hook and the failover decisions, without processes of colo: the command and module
// hooks (won, lost, timeout, crash), the sample directory fence letting exactly one of two
// racing sides win, and each decision rule of src/replication/failover.ts.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  decideTakeover,
  decideUnprotected,
  FailoverConfigError,
  failoverConfig,
  failoverStatus,
  fencingNotice,
} from "../../src/replication/failover.ts";
import { commandFence, type Fence, fenceFromOptions, moduleFence } from "../../src/replication/fence.ts";

const ROOT = join(import.meta.dirname, "../..");
const FENCE_DIR_SH = join(ROOT, "scripts/fence-dir.sh");
const ctx = {
  role: "secondary",
  reason: "peer-lost",
  name: "g",
  peer: "127.0.0.1:1",
  session: "ab",
  seq: 3,
} as const;

function tmp(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), "colo-fence-"));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test("command fence: exit 0 wins, non-zero loses, and the context is in the environment", async (t) => {
  const d = tmp(t);
  const won = await commandFence(
    `echo "$COLO_FENCE_ROLE $COLO_FENCE_SEQ $COLO_FENCE_SESSION" > ${d}/ctx`,
    2000,
  ).attempt(ctx);
  assert.equal(won.won, true);
  const { readFileSync } = await import("node:fs");
  assert.equal(readFileSync(join(d, "ctx"), "utf8"), "secondary 3 ab\n");
  const lost = await commandFence("echo nope >&2; exit 3", 2000).attempt(ctx);
  assert.equal(lost.won, false);
  assert.match(lost.detail, /exit status 3: nope/);
});

test("command fence: silence past the timeout loses, and the hook is killed", async () => {
  const r = await commandFence("sleep 30", 150).attempt(ctx);
  assert.equal(r.won, false);
  assert.match(r.detail, /no answer within 150 ms/);
});

test("module fence: true wins; false, a throw, a missing export and a hang lose", async (t) => {
  const d = tmp(t);
  const mod = (name: string, body: string): string => {
    const p = join(d, `${name}.mjs`);
    writeFileSync(p, body);
    return p;
  };
  const yes = mod(
    "yes",
    "export async function fence(ctx) { return ctx.role === 'secondary' && ctx.seq === 3; }",
  );
  const no = mod("no", "export async function fence() { return false; }");
  const boom = mod("boom", "export async function fence() { throw new Error('storage down'); }");
  const none = mod("none", "export const x = 1;");
  const hang = mod("hang", "export function fence(ctx) { return new Promise(() => {}); }");
  assert.equal((await moduleFence(yes, 1000).attempt(ctx)).won, true);
  assert.equal((await moduleFence(no, 1000).attempt(ctx)).won, false);
  const b = await moduleFence(boom, 1000).attempt(ctx);
  assert.equal(b.won, false);
  assert.match(b.detail, /storage down/);
  assert.equal((await moduleFence(none, 1000).attempt(ctx)).won, false);
  assert.equal((await moduleFence(hang, 100).attempt(ctx)).won, false);
});

test("fence flags: none, one of each, both refused, bad timeout refused", async () => {
  assert.equal(await fenceFromOptions({}), undefined);
  assert.match((await fenceFromOptions({ command: "true" }))!.description, /^command: true$/);
  await assert.rejects(fenceFromOptions({ command: "true", module: "x.js" }), { code: "fence-config" });
  await assert.rejects(fenceFromOptions({ command: "true", timeoutMs: 0 }), { code: "fence-config" });
  await assert.rejects(
    failoverConfig({ "heartbeat-ms": "500", "heartbeat-timeout-ms": "100" }),
    FailoverConfigError,
  );
  await assert.rejects(failoverConfig({ "heartbeat-ms": "abc" }), FailoverConfigError);
  // Past Node's timer limit (2^31 − 1 ms) a delay silently becomes 1 ms: a 3e9 ms timeout would
  // declare the peer lost at once, so it is refused.
  await assert.rejects(failoverConfig({ "heartbeat-timeout-ms": "3000000000" }), FailoverConfigError);
  await assert.rejects(failoverConfig({ "fence-timeout-ms": "2147483648" }), FailoverConfigError);
  assert.equal(
    (await failoverConfig({ "heartbeat-timeout-ms": "2147483647" })).heartbeatTimeoutMs,
    2147483647,
  );
  const c = await failoverConfig({});
  assert.deepEqual([c.heartbeatMs, c.heartbeatTimeoutMs, c.fence], [100, 500, undefined]);
  assert.match(fencingNotice(c), /WARNING: .*cut link can leave both serving/);
  const s = failoverStatus(c, "protected");
  assert.equal(s.splitBrainRisk, true);
  assert.ok(s.warning);
  const f = await failoverConfig({ "fence-cmd": "true", "heartbeat-timeout-ms": "300" });
  assert.equal(failoverStatus(f, "protected").splitBrainRisk, false);
  assert.equal(f.heartbeatTimeoutMs, 300);
});

test("sample directory fence: of two sides racing for one session, exactly one wins; re-asking is idempotent", async (t) => {
  const d = tmp(t);
  const cmd = `COLO_FENCE_DIR=${d} sh ${FENCE_DIR_SH}`;
  const fence = commandFence(cmd, 5000);
  for (let round = 0; round < 5; round++) {
    const session = `s${round}`;
    const [p, s] = await Promise.all([
      fence.attempt({ ...ctx, role: "primary", session }),
      fence.attempt({ ...ctx, role: "secondary", session }),
    ]);
    assert.equal(Number(p.won) + Number(s.won), 1, `round ${round}: ${p.detail} / ${s.detail}`);
    const winner = p.won ? "primary" : "secondary";
    const loser = p.won ? "secondary" : "primary";
    assert.equal((await fence.attempt({ ...ctx, role: winner, session })).won, true);
    assert.equal((await fence.attempt({ ...ctx, role: loser, session })).won, false);
  }
  // Misconfigured (no directory): a loss, never a win.
  assert.equal((await commandFence(`sh ${FENCE_DIR_SH}`, 5000).attempt(ctx)).won, false);
});

const winning: Fence = {
  description: "test: win",
  timeoutMs: 1000,
  attempt: async () => ({ won: true, detail: "yes", elapsedMs: 0 }),
};
const losing: Fence = {
  description: "test: lose",
  timeoutMs: 1000,
  attempt: async () => ({ won: false, detail: "no", elapsedMs: 0 }),
};
function counting(inner: Fence): Fence & { calls: number } {
  const f = {
    ...inner,
    calls: 0,
    attempt: (c: Parameters<Fence["attempt"]>[0]) => {
      f.calls++;
      return inner.attempt(c);
    },
  };
  return f;
}

test("secondary: heartbeat loss takes over without a fence, with a won fence; stands down on a lost one", async () => {
  const st = { appliedSeq: 4 };
  assert.equal((await decideTakeover("heartbeat-lost", st, undefined)).action, "take-over");
  assert.match((await decideTakeover("heartbeat-lost", st, undefined)).detail, /both sides now serve/);
  assert.equal((await decideTakeover("heartbeat-lost", st, winning)).action, "take-over");
  assert.equal((await decideTakeover("heartbeat-lost", st, losing)).action, "stand-down");
  assert.equal((await decideTakeover("manual", st, losing)).action, "stand-down");
  assert.equal((await decideTakeover("manual", st, undefined)).action, "take-over");
});

test("secondary: a protocol error never takes over and never asks the fence; a stream end waits", async () => {
  const f = counting(winning);
  assert.equal((await decideTakeover("protocol-error", { appliedSeq: 9 }, f)).action, "stand-down");
  assert.equal((await decideTakeover("link-ended", { appliedSeq: 9 }, f)).action, "wait");
  assert.equal(f.calls, 0);
});

test("secondary: nothing to take over before the seed is applied", async () => {
  const f = counting(winning);
  assert.equal((await decideTakeover("heartbeat-lost", { appliedSeq: 0 }, f)).action, "stand-down");
  assert.equal(f.calls, 0);
});

test("primary: runs unprotected without a fence or with a won one; stops serving on a lost one", async () => {
  const st = { seq: 7 };
  for (const cause of ["heartbeat-lost", "link-ended", "protocol-error"] as const) {
    assert.equal((await decideUnprotected(cause, st, undefined)).action, "run-unprotected");
    assert.equal((await decideUnprotected(cause, st, winning)).action, "run-unprotected");
    assert.equal((await decideUnprotected(cause, st, losing)).action, "stop-serving");
  }
});
