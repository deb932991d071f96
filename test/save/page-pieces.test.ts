/**
 * Restore targets that write bytes at any alignment (Domain.writeBytes) take a page that the
 * stream split across two chunks as its two pieces (the decoder stages no page): the target ends
 * up byte-identical to the source in any chunking, pages sent twice (pre-copy rounds) land in
 * stream order, and a WasmDomain migrated over TLS on loopback matches the source's digest.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { PAGE_SIZE, writeBytesByPage } from "../../src/guest/domain.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import type { ByteSource } from "../../src/save/channel.ts";
import { channelSink, channelSource } from "../../src/save/channel.ts";
import { migrate, receiveMigration } from "../../src/save/migrate.ts";
import { restoreFromSource } from "../../src/save/restore.ts";
import { saveDomain } from "../../src/save/save.ts";
import { type Connection, dial, listen } from "../../src/transport/connect.ts";
import { newSessionId } from "../../src/transport/hello.ts";
import { openPair } from "../../src/transport/memory.ts";
import { CollectSink } from "./helpers/bytes.ts";
import { MemoryDomain, type MemoryDomainOptions } from "./helpers/memory-domain.ts";
import { channelEnds, startedGuest } from "./helpers/setup.ts";

/** A MemoryDomain with writeBytes (page by page underneath); it counts the unaligned writes. */
class BytesDomain extends MemoryDomain {
  bytesWritten = 0;
  unaligned = 0;

  writeBytes(offset: number, src: Uint8Array): void {
    if (offset % PAGE_SIZE !== 0 || src.length % PAGE_SIZE !== 0) this.unaligned++;
    writeBytesByPage(this, offset, src);
    this.bytesWritten += src.length;
  }
}

const bytesTargets = () => {
  const made: BytesDomain[] = [];
  return {
    made,
    createTarget: async () => {
      const d = new BytesDomain({ pages: 1 } as MemoryDomainOptions);
      made.push(d);
      return d;
    },
  };
};

/** The stream cut at `cuts`, each piece its own copy or (where `shared` says so) a view of one buffer. */
function splitSource(
  bytes: Uint8Array,
  cuts: number[],
  shared: boolean[],
): { source: ByteSource; whole: Uint8Array } {
  const whole = bytes.slice();
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const [i, p] of [...points, bytes.length].entries()) {
    if (p <= at) continue;
    pieces.push(shared[i % shared.length] ? whole.subarray(at, p) : bytes.slice(at, p));
    at = p;
  }
  return {
    whole,
    source: {
      async read() {
        return pieces.shift() ?? null;
      },
    },
  };
}

test("a writeBytes target restores byte-identical in any chunking, split pages written as pieces", async () => {
  const src = new MemoryDomain({ pages: 700, seed: 11 });
  src.fill(3);
  await src.start();
  src.step(50);
  const sink = new CollectSink();
  await saveDomain(src, sink);
  const bytes = sink.bytes();
  const want = src.memory();
  const wantCtx = await src.contextForTest();
  let unaligned = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 200 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
      async (cuts, shared) => {
        const { source } = splitSource(bytes, cuts, shared);
        const t = bytesTargets();
        const r = await restoreFromSource(source, t);
        const dst = r.domain as BytesDomain;
        assert.deepEqual(dst.memory(), want);
        assert.deepEqual(await dst.contextForTest(), wantCtx);
        assert.equal(dst.bytesWritten, 700 * PAGE_SIZE, "every page written once, through writeBytes");
        unaligned += dst.unaligned;
        await dst.destroy();
      },
    ),
    { numRuns: 40, seed: 4242 },
  );
  assert.ok(unaligned > 0, "some pages came in two pieces");
  await src.destroy();
});

test("live migration into a writeBytes target: pages sent in several rounds land in stream order", async () => {
  const src = await startedGuest(
    { pages: 3000, dirtyPerTick: 40, tickMs: 1, workingSet: 200, seed: 3 },
    { fill: 9, blob: "ctx", hostBlob: "host", fs: {} },
  );
  const [a, b] = openPair();
  const l = channelEnds(a, b);
  const t = bytesTargets();
  const [report, dst] = await Promise.all([
    migrate(src, l.source, { live: { downtimeTargetMs: 1, maxRounds: 6 } }),
    receiveMigration(l.target, t),
  ]);
  assert.ok(report.rounds >= 2, `${report.rounds} rounds`);
  await dst.suspend();
  assert.deepEqual((dst as BytesDomain).memory(), src.memory());
  assert.ok((dst as BytesDomain).bytesWritten > 3000 * PAGE_SIZE, "pages of later rounds were written too");
  await dst.destroy();
});

test("a WasmDomain migrated over TLS on loopback writes pages (and pieces) and matches the source", async () => {
  const module = readFileSync(new URL("../../guests/compute.wasm", import.meta.url));
  const host = (args: string[]) => ({ args, env: [], preopens: [], fsLimitBytes: 1 << 20 });
  const src = await WasmDomain.create(module, {
    host: host(["compute", "--mem-mib", "24", "--ws-mib", "8", "--pages-per-sec", "4000", "--sleep"]),
  });
  await src.start();
  await new Promise((r) => setTimeout(r, 200));
  const security = { mode: "psk" as const, key: Buffer.alloc(32, 7) };
  let pieces = 0;
  // the two states to compare: the source's once it is stopped and sent, the target's right
  // before it resumes (the compute guest dirties memory as soon as it runs)
  let srcDigest: Promise<Uint8Array> | undefined;
  let dstDigest: Uint8Array | undefined;
  const received = Promise.withResolvers<WasmDomain>();
  const listener = await listen(
    {
      port: 0,
      host: "127.0.0.1",
      security,
      role: "target",
      expect: { roles: ["source"], kinds: ["migration"] },
    },
    (c: Connection) => {
      receiveMigration(
        { source: channelSource(c.channel), back: channelSink(c.channel) },
        {
          createTarget: async (bytes) => {
            const d = await WasmDomain.createRestoreTarget(bytes, { host: host([]) });
            const w = d.writeBytes.bind(d);
            d.writeBytes = (offset, src) => {
              if (offset % PAGE_SIZE !== 0 || src.length % PAGE_SIZE !== 0) pieces++;
              w(offset, src);
            };
            const resume = d.resume.bind(d);
            d.resume = async () => {
              dstDigest = await d.digest();
              return resume();
            };
            return d;
          },
        },
      ).then((d) => received.resolve(d as WasmDomain), received.reject);
    },
  );
  let conn: Connection | undefined;
  let dst: WasmDomain | undefined;
  try {
    conn = await dial({
      port: listener.port,
      host: "127.0.0.1",
      security,
      hello: { role: "source", kind: "migration", session: newSessionId() },
    });
    // migrate destroys the source after GO: let the digest taken at the stop finish first
    const destroy = src.destroy.bind(src);
    src.destroy = async () => {
      await srcDigest?.catch(() => {});
      return destroy();
    };
    await migrate(
      src,
      { sink: channelSink(conn.channel), back: channelSource(conn.channel) },
      {
        live: { downtimeTargetMs: 20 },
        onProgress: (p) => {
          if (p.phase === "handshake") srcDigest ??= src.digest();
        },
      },
    );
    dst = await received.promise;
    assert.ok(srcDigest !== undefined && dstDigest !== undefined);
    assert.deepEqual(dstDigest, await srcDigest, "target digest before it ran = source digest at the stop");
    assert.ok(pieces > 100, `${pieces} unaligned writes`);
  } finally {
    await dst?.destroy();
    conn?.channel.destroy();
    await src.destroy().catch(() => {});
    await listener.close();
  }
});
