// The kv guest driven through its GuestPort (no sockets): two fresh guests fed the same chunks
// write the same bytes (what COLO's output comparison relies on), and requests split at any
// point across chunks, or pipelined many per chunk, get the same replies.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import type { PortOutput } from "../../src/guest/port.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { GUESTS } from "./helpers.ts";

const KV_BYTES = readFileSync(join(GUESTS, "kv.wasm"));

async function startKv(): Promise<WasmDomain> {
  const d = await WasmDomain.create(KV_BYTES, {
    host: { args: ["kv.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 },
  });
  await d.start();
  return d;
}

/**
 * Open connection `conn`, feed `chunks`, then eof; resolve with every byte the guest wrote on
 * that connection once it closes it (every session below ends with QUIT or eof).
 */
function session(d: WasmDomain, conn: number, chunks: readonly Uint8Array[]): Promise<Buffer> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let expected = 0;
    const off = d.onOutput((ev: PortOutput) => {
      if (ev.kind === "data" && ev.stream.kind === "conn" && ev.stream.id === conn) {
        assert.equal(ev.offset, expected, "output offsets are contiguous");
        expected += ev.bytes.byteLength;
        out.push(Buffer.from(ev.bytes));
      } else if (ev.kind === "close" && ev.conn === conn) {
        off();
        resolve(Buffer.concat(out));
      }
    });
    d.input({ kind: "open", conn });
    let offset = 0;
    for (const bytes of chunks) {
      d.input({ kind: "data", conn, offset, bytes });
      offset += bytes.byteLength;
    }
    d.input({ kind: "eof", conn });
  });
}

function resp(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
}

/** A deterministic workload: every command but TIME and RANDOMKEY, mixed inline and RESP. */
function workload(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) {
    s += resp("SET", `key:${i % 37}`, `value ${i}`);
    s += resp("INCR", `counter:${i % 5}`);
    s += resp("LPUSH", "list", `item ${i}`);
    if (i % 3 === 0) s += resp("RPOP", "list");
    if (i % 7 === 0) s += `GET key:${i % 11}\r\n`;
    if (i % 13 === 0) s += resp("MSET", "a", String(i), "b", String(i * 2));
    if (i % 17 === 0) s += resp("MGET", "a", "b", "nope");
  }
  s += resp("KEYS", "*") + resp("SCAN", "0", "COUNT", "1000") + resp("LRANGE", "list", "0", "-1");
  s += resp("DBSIZE") + resp("QUIT");
  return s;
}

function split(bytes: Buffer, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    if (p > from) chunks.push(bytes.subarray(from, p));
    from = p;
  }
  return chunks;
}

test("two kv guests fed the same chunks write the same bytes", async (t) => {
  const a = await startKv();
  const b = await startKv();
  t.after(async () => {
    await a.destroy();
    await b.destroy();
  });
  const input = Buffer.from(workload(300));
  const chunks = split(
    input,
    Array.from({ length: 40 }, (_, i) => (i * 7919) % input.length),
  );
  const [outA, outB] = await Promise.all([session(a, 1, chunks), session(b, 1, chunks)]);
  assert.ok(outA.length > 10_000);
  assert.ok(outA.equals(outB), "replicas diverged on a deterministic workload");
  assert.match(outA.toString(), /\+OK\r\n$/, "QUIT answered last");
});

test("replies do not depend on how requests are split into chunks (property)", async (t) => {
  const d = await startKv();
  t.after(() => d.destroy());
  const input = Buffer.from(resp("FLUSHALL") + workload(40));
  // The reference: the whole pipeline as one chunk.
  let conn = 1;
  const reference = await session(d, conn++, [input]);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.nat(), { maxLength: 30 }), async (cuts) => {
      const out = await session(d, conn++, split(input, cuts));
      assert.ok(out.equals(reference), `split at ${cuts.join(",")}`);
    }),
    { numRuns: 25, seed: 20240603 },
  );
});

test("TIME and RANDOMKEY are the commands whose replies depend on the host", async (t) => {
  const d = await startKv();
  t.after(() => d.destroy());
  const out = await session(d, 1, [
    Buffer.from(resp("SET", "only", "1") + resp("RANDOMKEY") + resp("TIME") + resp("QUIT")),
  ]);
  const m = /^\+OK\r\n\$4\r\nonly\r\n\*2\r\n\$\d+\r\n(\d+)\r\n\$\d+\r\n(\d+)\r\n\+OK\r\n$/.exec(
    out.toString(),
  );
  assert.ok(m, JSON.stringify(out.toString()));
  assert.ok(Math.abs(Number(m[1]) - Date.now() / 1000) < 300);
});
