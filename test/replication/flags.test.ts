// Bad numbers on `colo primary` / `colo secondary` are usage errors (exit 2) before anything
// starts: a millisecond flag past Node's timer limit (2^31 − 1) would silently become 1 ms. So
// are unknown choices (--strategy, --pvm-resume).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const COLO = fileURLToPath(new URL("../../bin/colo.js", import.meta.url));
const KV = fileURLToPath(new URL("../../guests/kv.wasm", import.meta.url));

function colo(...args: string[]) {
  return spawnSync(process.execPath, [COLO, ...args], { encoding: "utf8", timeout: 60_000 });
}

test("millisecond flags: negative, not a number, or past the timer limit exit 2 and name the flag", () => {
  const primary = ["primary", KV, "--service", "127.0.0.1:0", "--secondary", "127.0.0.1:1"];
  const secondary = ["secondary", "--listen", "127.0.0.1:0", "--service", "127.0.0.1:0"];
  const cases: [string[], RegExp][] = [
    [[...primary, "--max-interval-ms", "3e9"], /--max-interval-ms/],
    [[...primary, "--min-interval-ms", "-1"], /--min-interval-ms/],
    [[...primary, "--epoch-ms", "soon"], /--epoch-ms/],
    [[...primary, "--heartbeat-timeout-ms", "3000000000"], /--heartbeat-timeout-ms/],
    [[...secondary, "--heartbeat-timeout-ms", "3000000000"], /--heartbeat-timeout-ms/],
    [[...secondary, "--heartbeat-timeout-ms", "Infinity"], /--heartbeat-timeout-ms/],
    [[...secondary, "--fence-timeout-ms", "2147483648"], /--fence-timeout-ms/],
    [[...primary, "--pvm-resume", "later"], /--pvm-resume later: snapshot or copied or ready/],
    [[...primary, "--strategy", "some"], /--strategy some/],
  ];
  for (const [args, message] of cases) {
    const r = colo(...args);
    assert.equal(r.status, 2, `${args.join(" ")}: status ${r.status}, stderr ${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
  }
});
