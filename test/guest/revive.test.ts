// A guest that exited gets a state applied (COLO restores a replica that ended alone from the
// other's checkpoint) and runs on from it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { connText, until } from "./helpers.ts";

const KV = readFileSync(join(import.meta.dirname, "../../guests/kv.wasm"));
const HOST = { args: ["kv.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 };

test("an exited guest restored from another's state runs on from it", async () => {
  const ended = await WasmDomain.create(KV, { host: HOST });
  const source = await WasmDomain.create(KV, { host: HOST });
  try {
    await ended.start();
    await source.start();
    ended.input({ kind: "open", conn: 0 });
    ended.input({ kind: "data", conn: 0, offset: 0, bytes: Buffer.from("SHUTDOWN NOSAVE\r\n") });
    await ended.whenStopped();
    assert.equal(ended.state, "exited");

    const out = connText(source, 1);
    source.input({ kind: "open", conn: 1 });
    source.input({ kind: "data", conn: 1, offset: 0, bytes: Buffer.from("SET k v\r\n") });
    await until(() => out().includes("+OK"), "SET's reply");
    await source.suspend();
    const ctx = await source.captureContext();
    const host = await source.captureHostState({ kind: "all" });
    if (ended.pageCount() !== source.pageCount()) await ended.resize(source.pageCount());
    const page = new Uint8Array(4096);
    for (let p = 0; p < source.pageCount(); p++) {
      source.readPage(p, page);
      ended.writePage(p, page);
    }
    await Promise.all([ended.applyContext(ctx), ended.applyHostState(host)]);
    assert.equal(ended.state, "suspended");
    assert.equal(ended.end, undefined);
    assert.deepEqual(await ended.digest(), await source.digest());

    const revived = connText(ended, 1);
    await ended.resume();
    ended.input({ kind: "data", conn: 1, offset: 9, bytes: Buffer.from("GET k\r\n") });
    await until(() => revived().includes("$1\r\nv\r\n"), "GET's reply from the restored guest");
  } finally {
    await ended.destroy();
    await source.destroy();
  }
});
