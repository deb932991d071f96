import assert from "node:assert/strict";
import { test } from "node:test";
import { CONTROL, memoryLinks } from "../../src/replication/links.ts";

test("control bodies that are JSON but not an object (null, arrays, numbers) reach listeners as {}", async () => {
  const { primary, secondary } = await memoryLinks({ capabilities: 0n });
  try {
    primary.heartbeat.start();
    secondary.heartbeat.start();
    const got: Record<string, unknown>[] = [];
    const done = new Promise<void>((resolve) => {
      secondary.onControl((_type, body) => {
        // A listener reads fields straight away, as the switchover handlers do.
        got.push({ ...body });
        if (body.seq === 1) resolve();
      });
    });
    for (const hostile of [null, [1, 2], 5, "x"]) {
      primary.sendControl(CONTROL.switchoverTakeOver, hostile as unknown as Record<string, unknown>);
    }
    primary.sendControl(CONTROL.switchoverTakeOver, { seq: 1 });
    await done;
    assert.deepEqual(got, [{}, {}, {}, {}, { seq: 1 }]);
  } finally {
    primary.close(false);
    secondary.close(false);
  }
});
