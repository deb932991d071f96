// A stop asked of a guest that waits in a host call takes effect at once (WasmDomain.harvestStopped):
// its dirty pages are final before it unwinds, unless it holds changed file blocks; a guest busy
// in its own code has to unwind first. What the unwind then reports agrees.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { connText, until } from "./helpers.ts";

const KV = readFileSync(join(import.meta.dirname, "../../guests/kv.wasm"));
const COMPUTE = readFileSync(join(import.meta.dirname, "../../guests/compute.wasm"));
const HOST = {
  args: ["kv.wasm", "--dump", "/data/kv.dump"],
  env: [],
  preopens: [{ guestPath: "/data", hostPath: undefined }],
  fsLimitBytes: 1 << 20,
};

test("a guest waiting for input has stopped as soon as the stop is asked; one with changed file blocks has not", async () => {
  const d = await WasmDomain.create(KV, { host: HOST });
  try {
    await d.start();
    const out = connText(d, 0);
    d.input({ kind: "open", conn: 0 });
    const set = Buffer.from("SET k v\r\n");
    d.input({ kind: "data", conn: 0, offset: 0, bytes: set });
    await until(() => out().includes("+OK"), "SET answered");

    // Parked (back in its poll: on a loaded machine it may take a moment to get there): the pages
    // it wrote are final before it unwinds, and the unwind adds none.
    let early: Uint32Array | undefined;
    for (let i = 0; i < 20 && early === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const stopped = d.suspend({ capture: true });
      early = d.harvestStopped();
      if (early !== undefined) assert.equal(d.state, "running", "taken before the unwind");
      await stopped;
      assert.equal(d.state, "suspended");
      if (early === undefined) await d.resume();
    }
    assert.ok(early !== undefined && early.length > 0, "dirty pages taken at the stop");
    assert.equal(d.harvestDirty().length, 0, "nothing dirtied between the stop and the unwind");
    assert.deepEqual(await d.harvestFsDirty(), []);
    assert.equal(d.harvestStopped(), undefined, "not while suspended");
    await d.resume();

    // SAVE writes the dump file: its changed blocks are held, so the stop must wait for the unwind.
    const save = Buffer.from("SAVE\r\n");
    d.input({ kind: "data", conn: 0, offset: set.length, bytes: save });
    await until(() => out().split("+OK").length === 3, "SAVE answered");
    await new Promise((r) => setTimeout(r, 50));
    const stopped2 = d.suspend();
    assert.equal(d.harvestStopped(), undefined, "changed file blocks pending");
    await stopped2;
    assert.ok(d.harvestDirty().length > 0);
    assert.ok((await d.harvestFsDirty()).length > 0, "the dump's blocks come with the unwind");
    await d.resume();

    // Nothing written since: parked and clean again.
    let again: Uint32Array | undefined;
    for (let i = 0; i < 20 && again === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const stopped3 = d.suspend();
      again = d.harvestStopped();
      await stopped3;
      assert.deepEqual(await d.harvestFsDirty(), []);
      if (again === undefined) await d.resume();
    }
    assert.ok(again !== undefined, "a parked guest with no changed blocks");
  } finally {
    await d.destroy();
  }
});

test("a guest running its own code has not stopped until it unwinds", async () => {
  const d = await WasmDomain.create(COMPUTE, {
    host: { args: ["compute.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 },
  });
  try {
    await d.start();
    await new Promise((r) => setTimeout(r, 20));
    if (d.state !== "running") return; // finished already: nothing to stop
    const stopped = d.suspend();
    assert.equal(d.harvestStopped(), undefined);
    await stopped;
    assert.equal(d.state, "suspended");
  } finally {
    await d.destroy();
  }
});

test("a stop with capture 'all' hands over the host state with every file block, as captureHostState({ kind: 'all' })", async () => {
  const d = await WasmDomain.create(KV, { host: HOST });
  try {
    await d.start();
    const out = connText(d, 0);
    d.input({ kind: "open", conn: 0 });
    const cmds = Buffer.from(`SET k ${"v".repeat(9000)}\r\nSAVE\r\n`);
    d.input({ kind: "data", conn: 0, offset: 0, bytes: cmds });
    await until(() => out().split("+OK").length === 3, "SET and SAVE answered");
    // Take the dump's changed blocks away: the next stops change no block.
    await d.suspend();
    assert.ok((await d.harvestFsDirty()).length > 0);
    await d.resume();
    const sizes: Record<string, number> = {};
    for (const capture of [true, "all"] as const) {
      await new Promise((r) => setTimeout(r, 20));
      await d.suspend({ capture });
      assert.deepEqual(await d.harvestFsDirty(), []);
      const state =
        capture === "all"
          ? await d.captureHostState({ kind: "all" })
          : await d.captureHostState({ kind: "some", blocks: [] });
      sizes[String(capture)] = state.byteLength;
      await d.resume();
    }
    assert.ok(sizes.all! > 9000, `the dump's blocks are in the 'all' capture (${sizes.all} bytes)`);
    assert.ok(sizes.true! < 9000, `no blocks in the capture of this stop's changes (${sizes.true} bytes)`);
  } finally {
    await d.destroy();
  }
});
