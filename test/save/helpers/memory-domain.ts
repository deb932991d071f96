/**
 * An in-memory Domain for engine tests: pages in an ArrayBuffer, a per-page dirty map, opaque
 * context and host-state blobs, a tiny file system of 4 KiB blocks, and a "run" that dirties pages
 * on a timer (or by hand, with `step()`). It follows the lifecycle and ownership rules of
 * src/guest/domain.ts, so the engine cannot tell it from the WebAssembly domain.
 *
 * Context body: u64 LE tick counter, then the user blob. Host-state body: JSON header line
 * (blob as hex, fs blocks carried) — canonical because keys and blocks are written sorted.
 */
import { createHash } from "node:crypto";
import {
  type Domain,
  type DomainState,
  type FsBlockRef,
  type FsBlockSelection,
  type GuestEnd,
  type ModuleIdentity,
  PAGE_SIZE,
} from "../../../src/guest/domain.ts";

export interface MemoryDomainOptions {
  readonly pages: number;
  readonly identity?: ModuleIdentity;
  /** Pages dirtied per timer tick while running (default 0: the guest idles). */
  readonly dirtyPerTick?: number;
  /** Timer period in ms (default 1). */
  readonly tickMs?: number;
  /** Pages [0, workingSet) are the ones the run dirties (default: all). */
  readonly workingSet?: number;
  /** PRNG seed for the run. */
  readonly seed?: number;
}

export function testIdentity(tag = "test"): ModuleIdentity {
  const moduleBytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...new TextEncoder().encode(tag)]);
  return {
    moduleBytes,
    instrumentedHash: createHash("sha256").update(moduleBytes).update("xform").digest(),
    transformVersion: "memory-domain/1",
  };
}

const MAX_PAGES = 65536;

/** Stand-in for the runtime's DomainError (same code strings: "bad-state", "destroyed", …). */
export class DomainError extends Error {
  override readonly name = "DomainError";
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export class MemoryDomain implements Domain {
  #state: DomainState = "created";
  #applied = false;
  #mem: Uint8Array;
  #dirty: Uint8Array;
  #ticks = 0n;
  #blob: Uint8Array = new Uint8Array(0);
  #hostBlob: Uint8Array = new Uint8Array(0);
  #fs = new Map<string, Uint8Array>();
  #fsDirty = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #seed: number;
  readonly identity: ModuleIdentity;
  readonly options: MemoryDomainOptions;
  /** Calls made, in order, for lifecycle assertions. */
  readonly calls: string[] = [];

  constructor(options: MemoryDomainOptions) {
    this.options = options;
    this.identity = options.identity ?? testIdentity();
    this.#mem = new Uint8Array(options.pages * PAGE_SIZE);
    this.#dirty = new Uint8Array(options.pages);
    this.#seed = options.seed ?? 1;
  }

  get state(): DomainState {
    return this.#state;
  }
  get end(): GuestEnd | undefined {
    return undefined;
  }

  #need(op: string, ...states: DomainState[]): void {
    this.calls.push(op);
    if (this.#state === "destroyed") throw new DomainError("destroyed", `${op}: domain destroyed`);
    if (states.length > 0 && !states.includes(this.#state)) {
      throw new DomainError("bad-state", `${op} in state ${this.#state}`);
    }
  }

  pageCount(): number {
    if (this.#state === "destroyed") throw new DomainError("destroyed", "pageCount: destroyed");
    return this.#dirty.length;
  }

  async resize(pages: number): Promise<void> {
    this.#need("resize", "suspended", "created");
    if (!Number.isInteger(pages) || pages < 0 || pages > MAX_PAGES) throw new RangeError(`bad size ${pages}`);
    const mem = new Uint8Array(pages * PAGE_SIZE);
    mem.set(this.#mem.subarray(0, Math.min(mem.length, this.#mem.length)));
    const dirty = new Uint8Array(pages);
    dirty.set(this.#dirty.subarray(0, Math.min(pages, this.#dirty.length)));
    this.#mem = mem;
    this.#dirty = dirty;
  }

  readPage(pfn: number, dst: Uint8Array): void {
    if (this.#state === "destroyed") throw new DomainError("destroyed", "readPage: destroyed");
    if (pfn >= this.#dirty.length) throw new RangeError(`pfn ${pfn} >= ${this.#dirty.length}`);
    dst.set(this.#mem.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE));
  }

  writePage(pfn: number, src: Uint8Array): void {
    this.#need("writePage", "suspended", "created");
    if (pfn >= this.#dirty.length) throw new RangeError(`pfn ${pfn} >= ${this.#dirty.length}`);
    this.#mem.set(src.subarray(0, PAGE_SIZE), pfn * PAGE_SIZE);
  }

  /** Calls of writePages so far (tests check that runs are written whole). */
  writePagesCalls = 0;

  writePages(firstPfn: number, src: Uint8Array): void {
    this.#need("writePages", "suspended", "created");
    const n = src.length / PAGE_SIZE;
    if (!Number.isInteger(n) || firstPfn + n > this.#dirty.length)
      throw new RangeError(`pages ${firstPfn}+${n} past ${this.#dirty.length}`);
    this.#mem.set(src, firstPfn * PAGE_SIZE);
    this.writePagesCalls++;
  }

  harvestDirty(): Uint32Array {
    if (this.#state === "destroyed") throw new DomainError("destroyed", "harvestDirty: destroyed");
    const out: number[] = [];
    for (let i = 0; i < this.#dirty.length; i++) {
      if (this.#dirty[i] !== 0) {
        this.#dirty[i] = 0;
        out.push(i);
      }
    }
    return Uint32Array.from(out);
  }

  async start(): Promise<void> {
    this.#need("start", "created");
    if (this.#applied) throw new DomainError("bad-state", "start after apply");
    this.#run();
  }

  async suspend(): Promise<void> {
    this.#need("suspend", "running");
    this.#stop();
    this.#state = "suspended";
  }

  async resume(): Promise<void> {
    this.#need("resume", "suspended", "created");
    if (this.#state === "created" && !this.#applied)
      throw new DomainError("bad-state", "resume before apply");
    this.#run();
  }

  async captureContext(): Promise<Uint8Array> {
    this.#need("captureContext", "suspended");
    const out = new Uint8Array(8 + this.#blob.length);
    new DataView(out.buffer).setBigUint64(0, this.#ticks, true);
    out.set(this.#blob, 8);
    return out;
  }

  validateContext(body: Uint8Array): void {
    this.#need("validateContext");
    checkContext(body);
  }

  async applyContext(body: Uint8Array): Promise<void> {
    this.#need("applyContext", "suspended", "created");
    checkContext(body);
    this.#ticks = new DataView(body.buffer, body.byteOffset, body.byteLength).getBigUint64(0, true);
    this.#blob = body.slice(8);
    this.#applied = true;
  }

  async captureHostState(fs: FsBlockSelection): Promise<Uint8Array> {
    this.#need("captureHostState", "suspended");
    const keys = fs.kind === "all" ? [...this.#fs.keys()] : fs.blocks.map((b) => `${b.ino}:${b.block}`);
    const blocks: Record<string, string> = {};
    for (const k of [...new Set(keys)].sort()) {
      const data = this.#fs.get(k);
      if (data !== undefined) blocks[k] = Buffer.from(data).toString("hex");
    }
    return new TextEncoder().encode(
      JSON.stringify({ blob: Buffer.from(this.#hostBlob).toString("hex"), blocks }),
    );
  }

  validateHostState(body: Uint8Array): void {
    this.#need("validateHostState");
    parseHostState(body);
  }

  async applyHostState(body: Uint8Array): Promise<void> {
    this.#need("applyHostState", "suspended", "created");
    const parsed = parseHostState(body);
    this.#hostBlob = Buffer.from(parsed.blob, "hex");
    for (const [k, v] of Object.entries(parsed.blocks)) this.#fs.set(k, Buffer.from(v, "hex"));
    this.#applied = true;
  }

  async harvestFsDirty(): Promise<FsBlockRef[]> {
    this.#need("harvestFsDirty", "suspended");
    const out = [...this.#fsDirty].sort().map((k) => {
      const [ino, block] = k.split(":").map(Number);
      return { ino: ino ?? 0, block: block ?? 0 };
    });
    this.#fsDirty.clear();
    return out;
  }

  async digest(): Promise<Uint8Array> {
    this.#need("digest", "suspended", "exited", "trapped", "created");
    const h = createHash("sha256");
    h.update(this.#mem);
    h.update(await this.#contextBytes());
    h.update(await this.#hostBytes());
    return h.digest();
  }

  async destroy(): Promise<void> {
    this.calls.push("destroy");
    this.#stop();
    this.#state = "destroyed";
  }

  // ---- test controls -------------------------------------------------------------------------

  /** Dirty `n` pages as the guest would (while running or, for setup, in any live state); ticks++. */
  step(n: number): void {
    if (this.#state === "destroyed") throw new DomainError("destroyed", "step: destroyed");
    const ws = Math.min(this.options.workingSet ?? this.#dirty.length, this.#dirty.length);
    if (ws === 0) return;
    for (let i = 0; i < n; i++) {
      const pfn = this.#rand() % ws;
      const at = pfn * PAGE_SIZE + (this.#rand() % (PAGE_SIZE - 8));
      new DataView(this.#mem.buffer).setUint32(at, this.#rand(), true);
      this.#dirty[pfn] = 1;
    }
    this.#ticks++;
  }

  /** Set the opaque context blob, host blob and fs blocks (test setup). */
  setState(parts: { blob?: Uint8Array; hostBlob?: Uint8Array; fs?: Record<string, Uint8Array> }): void {
    if (parts.blob !== undefined) this.#blob = parts.blob.slice();
    if (parts.hostBlob !== undefined) this.#hostBlob = parts.hostBlob.slice();
    for (const [k, v] of Object.entries(parts.fs ?? {})) {
      this.#fs.set(k, v.slice());
      this.#fsDirty.add(k);
    }
  }

  /** Fill every page with seeded bytes (marks nothing dirty). */
  fill(seed: number): void {
    let x = seed >>> 0 || 1;
    const view = new DataView(this.#mem.buffer);
    for (let i = 0; i + 4 <= this.#mem.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      view.setUint32(i, x >>> 0, true);
    }
  }

  get ticks(): bigint {
    return this.#ticks;
  }

  /** The whole memory (a copy). */
  memory(): Uint8Array {
    return this.#mem.slice();
  }

  /** The context body in any state (test inspection). */
  async contextForTest(): Promise<Uint8Array> {
    return this.#contextBytes();
  }

  async #contextBytes(): Promise<Uint8Array> {
    const out = new Uint8Array(8 + this.#blob.length);
    new DataView(out.buffer).setBigUint64(0, this.#ticks, true);
    out.set(this.#blob, 8);
    return out;
  }

  async #hostBytes(): Promise<Uint8Array> {
    const keys = [...this.#fs.keys()].sort();
    const h = createHash("sha256").update(this.#hostBlob);
    for (const k of keys) h.update(k).update(this.#fs.get(k) ?? new Uint8Array(0));
    return h.digest();
  }

  #rand(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0 || 1;
    return this.#seed;
  }

  #run(): void {
    this.#state = "running";
    const n = this.options.dirtyPerTick ?? 0;
    if (n > 0) {
      this.#timer = setInterval(() => this.step(n), this.options.tickMs ?? 1);
      this.#timer.unref();
    }
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** The context body's checks (applyContext and validateContext). */
function checkContext(body: Uint8Array): void {
  if (body.length < 8) throw new DomainError("bad-context", "context too short");
}

/** The host-state body's parse and checks (applyHostState and validateHostState). */
function parseHostState(body: Uint8Array): { blob: string; blocks: Record<string, string> } {
  let parsed: { blob: string; blocks: Record<string, string> };
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new DomainError("bad-host-state", "host state does not parse", { cause: e });
  }
  if (typeof parsed?.blob !== "string" || typeof parsed.blocks !== "object" || parsed.blocks === null) {
    throw new DomainError("bad-host-state", "host state has the wrong shape");
  }
  return parsed;
}
