/** Pins the proxy layer's public API: the controller and the CLI build on these names. */
import assert from "node:assert/strict";
import { test } from "node:test";
import * as proxy from "../../src/proxy/index.ts";

test("src/proxy/index.ts exports exactly the documented runtime names", () => {
  assert.deepEqual(Object.keys(proxy).sort(), [
    "ChunkQueue",
    "DEFAULTS",
    "DIVERGENCE_KINDS",
    "MemoryMirrorLink",
    "PrimaryProxy",
    "ProxyError",
    "SecondaryProxy",
    "StreamCompare",
    "messageWeight",
    "primaryMirrorChannel",
    "secondaryMirrorChannel",
    "streamText",
  ]);
  assert.deepEqual([...proxy.DIVERGENCE_KINDS], ["output", "close-mismatch", "end-mismatch", "svm-timeout"]);
  const methods = Object.getOwnPropertyNames(proxy.PrimaryProxy.prototype).sort();
  for (const m of [
    "checkpointDone",
    "close",
    "listen",
    "metrics",
    "pauseForCheckpoint",
    "releaseUpTo",
    "replicaEnded",
    "setMode",
  ]) {
    assert.ok(methods.includes(m), m);
  }
  const smethods = Object.getOwnPropertyNames(proxy.SecondaryProxy.prototype);
  for (const m of ["checkpointApplied", "close", "metrics", "pauseForCheckpoint", "takeover"]) {
    assert.ok(smethods.includes(m), m);
  }
});
