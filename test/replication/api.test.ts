// Pins the replication layer's public runtime API: a removed or renamed export fails here.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as api from "../../src/replication/index.ts";

test("public API of src/replication", () => {
  assert.deepEqual(Object.keys(api).sort(), [
    "DEFAULT_SETTINGS",
    "MODES",
    "PrimaryController",
    "REPLICATION_ERROR_CODES",
    "ReplicationError",
    "RespClient",
    "RespError",
    "STRATEGIES",
    "SecondaryController",
    "TrackedDomain",
    "capabilitiesOf",
    "codeOf",
    "describeError",
    "dialSecondary",
    "hostSummary",
    "isReplicationError",
    "listenForPrimary",
    "memoryLinks",
    "primaryLinksOf",
    "replicationRegistry",
    "secondaryLinksOf",
    "serveMetrics",
    "settings",
    "settingsFromCapabilities",
  ]);
});

test("settings travel as capability bits and come back the same", () => {
  for (const mode of api.MODES)
    for (const strategy of api.STRATEGIES)
      for (const verify of [false, true]) {
        const back = api.settingsFromCapabilities(api.capabilitiesOf({ mode, strategy, verify }));
        assert.equal(back.mode, mode);
        assert.equal(back.verify, verify);
        if (mode === "colo") assert.equal(back.strategy, strategy);
      }
  assert.throws(
    () => api.settings({ minIntervalMs: 10, maxIntervalMs: 5 }),
    (e) => api.isReplicationError(e, "config"),
  );
});
