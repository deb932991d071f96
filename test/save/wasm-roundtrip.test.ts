/**
 * Save/restore through the real WebAssembly backend: a running compute guest is saved (pages,
 * context, host state) and restored into a fresh WasmDomain; the whole-state digest is equal
 * before and after, and the restored guest runs on. Also the connection-id shift of a restored
 * guest's service plug.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { highestConnId, shiftedPort } from "../../src/cli/control.ts";
import type { GuestPort, PortInput, PortOutput, StdinInput } from "../../src/guest/port.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { isRestoreError } from "../../src/save/errors.ts";
import { restoreFromSource } from "../../src/save/restore.ts";
import { saveDomain } from "../../src/save/save.ts";
import { decodeAll } from "../../src/stream/decoder.ts";
import { bytesSource, CollectSink } from "./helpers/bytes.ts";

const COMPUTE = readFileSync(new URL("../../guests/compute.wasm", import.meta.url));
const host = (args: string[]) => ({ args, env: [], preopens: [], fsLimitBytes: 1 << 20 });

test("WasmDomain: save then restore gives the same digest, and the guest runs on", {
  timeout: 60_000,
}, async () => {
  const src = await WasmDomain.create(COMPUTE, {
    host: host(["compute", "--mem-mib", "8", "--ws-mib", "4", "--pages-per-sec", "2000", "--sleep"]),
  });
  let out = "";
  src.onOutput((e) => {
    if (e.kind === "data" && e.stream.kind === "stdout") out += new TextDecoder().decode(e.bytes);
  });
  await src.start();
  for (let i = 0; i < 100 && !out.includes("dirty mode"); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 100));
  const sink = new CollectSink();
  const report = await saveDomain(src, sink);
  assert.equal(src.state, "suspended");
  const before = await src.digest();
  const hostState = await src.captureHostState({ kind: "all" });
  assert.equal(await highestConnId(hostState), 0, "a guest without connections holds none");

  const seed = await restoreFromSource(bytesSource(sink.bytes(), 7919), {
    createTarget: (bytes) => WasmDomain.createRestoreTarget(bytes, { host: host([]) }),
  });
  const dst = seed.domain as WasmDomain;
  try {
    assert.equal(dst.pageCount(), src.pageCount());
    assert.equal(report.memoryPages, src.pageCount());
    // pages, context and host state all go into the digest
    assert.deepEqual(Buffer.from(await dst.digest()), Buffer.from(before));
    const page = new Uint8Array(4096);
    const other = new Uint8Array(4096);
    for (let pfn = 0; pfn < src.pageCount(); pfn += 97) {
      src.readPage(pfn, page);
      dst.readPage(pfn, other);
      assert.deepEqual(other, page, `page ${pfn}`);
    }
    // the restored guest goes on dirtying pages
    await dst.resume();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(dst.state, "running");
    assert.ok(dst.harvestDirty().length > 0, "the restored guest runs");
  } finally {
    await dst.destroy();
    await src.destroy();
  }
});

test("shiftedPort: a new plug's connections land above the restored ones; old ids' outputs dropped", () => {
  const inputs: (PortInput | StdinInput)[] = [];
  let emit: (e: PortOutput) => void = () => {};
  const port: GuestPort = {
    input(e) {
      inputs.push(e);
      return 0;
    },
    onOutput(l) {
      emit = l;
      return () => {};
    },
  };
  const shifted = shiftedPort(port, 5);
  const seen: PortOutput[] = [];
  shifted.onOutput((e) => seen.push(e));
  shifted.input({ kind: "open", conn: 1 });
  shifted.input({ kind: "data", conn: 1, offset: 0, bytes: new Uint8Array([1]) });
  assert.deepEqual(
    inputs.map((e) => ("conn" in e ? e.conn : -1)),
    [6, 6],
  );
  emit({ kind: "data", stream: { kind: "conn", id: 6 }, offset: 0, bytes: new Uint8Array([2]) });
  emit({ kind: "data", stream: { kind: "conn", id: 3 }, offset: 9, bytes: new Uint8Array([3]) });
  emit({ kind: "close", conn: 2 });
  emit({ kind: "close", conn: 6 });
  emit({ kind: "data", stream: { kind: "stdout" }, offset: 0, bytes: new Uint8Array([4]) });
  assert.deepEqual(
    seen.map((e) =>
      e.kind === "data"
        ? `${e.kind}:${e.stream.kind === "conn" ? e.stream.id : e.stream.kind}`
        : `${e.kind}:${"conn" in e ? e.conn : ""}`,
    ),
    ["data:1", "close:1", "data:stdout"],
  );
  assert.equal(shiftedPort(port, 0), port);
});

test("WasmDomain restore target: resize maps memory without changing it or marking it; writePages writes runs", {
  timeout: 60_000,
}, async () => {
  const d = await WasmDomain.createRestoreTarget(COMPUTE, { host: host([]) });
  try {
    const before = d.pageCount();
    // data segments and the like in the initial memory survive the prefault unchanged
    const initial = new Uint8Array(before * 4096);
    initial.set(d.pageView(0, before));
    d.harvestDirty();
    await d.resize(before + 256); // +1 MiB, mapped by the worker before resize resolves
    assert.equal(d.pageCount(), before + 256);
    assert.deepEqual(d.pageView(0, before), initial, "old pages unchanged");
    assert.ok(
      d.pageView(before, 256).every((b) => b === 0),
      "new pages still zero",
    );
    assert.equal(d.harvestDirty().length, 0, "the prefault marks no page dirty");
    const run = new Uint8Array(3 * 4096).map((_, i) => (i * 7) & 0xff);
    d.writePages(before + 10, run);
    assert.deepEqual(d.pageView(before + 10, 3), run);
    assert.ok(
      d.pageView(before + 13, 1).every((b) => b === 0),
      "nothing past the run",
    );
    assert.throws(() => d.writePages(before + 255, run), RangeError);
    assert.throws(() => d.writePages(0, run.subarray(0, 100)), RangeError);
  } finally {
    await d.destroy();
  }
});

test("a host state the WebAssembly target refuses is a RestoreError 'domain' with the host's reason", {
  timeout: 60_000,
}, async () => {
  const src = await WasmDomain.create(COMPUTE, {
    host: host(["compute", "--mem-mib", "2", "--ws-mib", "1", "--pages-per-sec", "100", "--sleep"]),
  });
  await src.start();
  await new Promise((r) => setTimeout(r, 100));
  const sink = new CollectSink();
  await saveDomain(src, sink);
  await src.destroy();
  const bytes = sink.bytes();
  const emu = decodeAll(bytes).find((i) => i.kind === "record" && i.name === "EMULATOR_CONTEXT");
  assert.ok(emu !== undefined && emu.kind === "record");
  // EMULATOR_CONTEXT: 8-byte record header, 8-byte emulator header, then the WASI host state,
  // whose first bytes are its encoding's magic
  const bad = bytes.slice();
  bad[emu.offset + 16] = (bad[emu.offset + 16] ?? 0) ^ 0xff;
  let made: WasmDomain | undefined;
  await assert.rejects(
    restoreFromSource(bytesSource(bad, 7919), {
      createTarget: async (m) => (made = await WasmDomain.createRestoreTarget(m, { host: host([]) })),
    }),
    (e) => isRestoreError(e, "domain") && /WASI host state/.test(String((e as Error).cause)),
  );
  assert.equal(made?.state, "destroyed", "the half-restored target is destroyed");
});
