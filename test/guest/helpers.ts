/** Shared helpers for the runtime's tests: stub-host options, output capture, snapshot/restore. */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PAGE_SIZE } from "../../src/guest/domain.ts";
import type { PortOutput } from "../../src/guest/port.ts";
import { WasmDomain, type WasmDomainOptions } from "../../src/guest/wasm/wasm-domain.ts";

export const STUB_HOST = new URL("./stub-host.ts", import.meta.url).href;
export const FIXTURES = new URL("./fixtures/", import.meta.url);
export const GUESTS = new URL("../../guests/", import.meta.url);

/** One cache directory per test process, so tests never depend on the user's cache. */
export const CACHE_DIR = mkdtempSync(join(tmpdir(), "colo-test-cache-"));

export function stubOptions(args: string[], env: string[] = []): WasmDomainOptions {
  return {
    host: { args, env, preopens: [], fsLimitBytes: 1 << 20 },
    hostModule: STUB_HOST,
    cacheDir: CACHE_DIR,
  };
}

/**
 * Collects stdout as text, checking that output offsets are contiguous across domains. `from`:
 * the expected offset of the first byte, or null to take whatever comes first.
 */
export class Stdout {
  text = "";
  #bytes: number | null;
  constructor(from: number | null = 0) {
    this.#bytes = from;
  }
  attach(d: WasmDomain): void {
    d.onOutput((e: PortOutput) => {
      if (e.kind !== "data" || e.stream.kind !== "stdout") return;
      this.#bytes ??= e.offset;
      if (e.offset !== this.#bytes) throw new Error(`stdout offset ${e.offset}, expected ${this.#bytes}`);
      this.#bytes += e.bytes.length;
      this.text += new TextDecoder().decode(e.bytes);
    });
  }
}

export interface Snapshot {
  readonly pages: number;
  readonly memory: Uint8Array;
  readonly context: Uint8Array;
  readonly host: Uint8Array;
}

/** Everything a suspended domain's state is made of (what a full checkpoint carries). */
export async function snapshot(d: WasmDomain): Promise<Snapshot> {
  const pages = d.pageCount();
  const memory = new Uint8Array(pages * PAGE_SIZE);
  for (let p = 0; p < pages; p++) d.readPage(p, memory.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
  return {
    pages,
    memory,
    context: await d.captureContext(),
    host: await d.captureHostState({ kind: "all" }),
  };
}

/** A fresh restore-target domain holding `s`, ready for resume(). */
export async function restore(
  bytes: Uint8Array,
  options: WasmDomainOptions,
  s: Snapshot,
): Promise<WasmDomain> {
  const d = await WasmDomain.createRestoreTarget(bytes, options);
  await d.resize(s.pages);
  for (let p = 0; p < s.pages; p++) d.writePage(p, s.memory.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
  await d.applyContext(s.context);
  await d.applyHostState(s.host);
  return d;
}

export function encodeSnapshot(s: Snapshot): Uint8Array {
  const head = new DataView(new ArrayBuffer(16));
  head.setUint32(0, s.pages, true);
  head.setUint32(4, s.memory.length, true);
  head.setUint32(8, s.context.length, true);
  head.setUint32(12, s.host.length, true);
  return Buffer.concat([new Uint8Array(head.buffer), s.memory, s.context, s.host]);
}

export function decodeSnapshot(b: Uint8Array): Snapshot {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const [pages, m, c, h] = [0, 4, 8, 12].map((o) => v.getUint32(o, true)) as [number, number, number, number];
  let p = 16;
  const take = (n: number) => {
    p += n;
    return b.slice(p - n, p);
  };
  return { pages, memory: take(m), context: take(c), host: take(h) };
}

/** Everything the domain sends on connection `conn`, as text so far. */
export function connText(d: WasmDomain, conn: number): () => string {
  let text = "";
  d.onOutput((e: PortOutput) => {
    if (e.kind === "data" && e.stream.kind === "conn" && e.stream.id === conn)
      text += Buffer.from(e.bytes).toString();
  });
  return () => text;
}

/** Poll `pred` every 5 ms for up to 5 s. */
export async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !pred(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!pred()) throw new Error(`timed out waiting for ${what}`);
}
