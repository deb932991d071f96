/**
 * Stream codec throughput: pages of a source memory encoded as PAGE_DATA records of 1,024 pages
 * (gather lists), the wire bytes cut into chunks at random points, decoded, and each page written
 * into a destination memory. Baseline in the same run: Buffer.copy of the same number of bytes.
 *
 *   node bench/stream.bench.ts            # 64 MiB, 5 rounds
 *   STREAM_BENCH_MIB=256 STREAM_BENCH_ROUNDS=10 node bench/stream.bench.ts
 *
 * Goal: ≥ 50 % of memcpy.
 */

import type { PageData } from "../src/stream/index.ts";
import {
  concat,
  encodePageData,
  forEachPageRun,
  MAX_BATCH_SIZE,
  PAGE_SIZE,
  StreamDecoder,
} from "../src/stream/index.ts";

const MIB = Number(process.env.STREAM_BENCH_MIB ?? 64);
const ROUNDS = Number(process.env.STREAM_BENCH_ROUNDS ?? 5);
const bytes = MIB * 1024 * 1024;
const pages = bytes / PAGE_SIZE;

const src = Buffer.alloc(bytes);
for (let i = 0; i < bytes; i += 4096) src.writeUInt32LE(i >>> 12, i);
const dst = Buffer.alloc(bytes);

// Wire chunks: random sizes 1 B … 256 KiB, as a socket might deliver them.
let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};

function encodeAll(): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let first = 0; first < pages; first += MAX_BATCH_SIZE) {
    const n = Math.min(MAX_BATCH_SIZE, pages - first);
    const entries = new Array(n);
    const views = new Array<Uint8Array>(n);
    for (let i = 0; i < n; i++) {
      entries[i] = { pfn: first + i };
      views[i] = src.subarray((first + i) * PAGE_SIZE, (first + i + 1) * PAGE_SIZE);
    }
    parts.push(...encodePageData(entries, views));
  }
  return parts;
}

function chunksOf(wire: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < wire.length; ) {
    const n = 1 + Math.floor(rand() * 256 * 1024);
    out.push(wire.subarray(i, i + n));
    i += n;
  }
  return out;
}

function decodeInto(chunks: Uint8Array[]): number {
  const d = new StreamDecoder({ start: "back-channel", reuseBuffer: true });
  d.expect([{ layer: "libxc", type: 1 }]);
  let applied = 0;
  for (const c of chunks) {
    d.write(c);
    for (let item = d.next(); item !== undefined; item = d.next()) {
      if (item.kind !== "record") continue;
      const v = item.value as PageData;
      forEachPageRun(v, (pfn, run) => dst.set(run, pfn * PAGE_SIZE));
      applied += v.pageCount;
    }
  }
  d.end();
  return applied;
}

const time = (f: () => void) => {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
};

// One encode pass for the wire image (measured separately: encoding is header-only work).
let parts: Uint8Array[] = [];
const tEncode = time(() => {
  parts = encodeAll();
});
const wire = concat(parts);
const chunks = chunksOf(wire);

let best = { copy: Infinity, codec: Infinity, encode: tEncode };
for (let r = 0; r < ROUNDS; r++) {
  const tCopy = time(() => {
    src.copy(dst, 0, 0, bytes);
  });
  dst.fill(0);
  let applied = 0;
  const tCodec = time(() => {
    parts = encodeAll();
    applied = decodeInto(chunks);
  });
  if (applied !== pages || !dst.equals(src)) throw new Error("destination memory differs from source");
  const tEnc = time(() => {
    parts = encodeAll();
  });
  best = {
    copy: Math.min(best.copy, tCopy),
    codec: Math.min(best.codec, tCodec),
    encode: Math.min(best.encode, tEnc),
  };
}

const mbs = (t: number) => bytes / 1e6 / t;
const rows = [
  ["Buffer.copy (baseline)", mbs(best.copy)],
  ["encode + decode + apply", mbs(best.codec)],
  ["encode only (gather list)", mbs(best.encode)],
] as const;
process.stdout.write(
  `stream codec, ${MIB} MiB of pages, PAGE_DATA × ${MAX_BATCH_SIZE}, random chunks ≤ 256 KiB, best of ${ROUNDS}\n`,
);
for (const [name, v] of rows) process.stdout.write(`  ${name.padEnd(28)} ${v.toFixed(0).padStart(8)} MB/s\n`);
const ratio = best.copy / best.codec;
process.stdout.write(
  `  ratio codec / memcpy: ${(ratio * 100).toFixed(1)} % (goal ≥ 50 %) ${ratio >= 0.5 ? "ok" : "BELOW GOAL"}\n`,
);
