/**
 * The domain interface: what the save/restore engine, the proxy and the replication controller
 * may do to a guest, without knowing it runs WebAssembly (Xen's per-guest-type ops table).
 *
 * Units: a page is 4 KiB; a pfn is a byte address >> 12 in the guest's linear memory.
 *
 * Lifecycle (every implementation follows it; `test/guest/domain-conformance.ts` checks it):
 *
 *   created ──start()──▶ running ──suspend()──▶ suspended ──resume()──▶ running
 *      │                    │                      │
 *      │                    └──guest exits/traps──▶ exited | trapped   (terminal; readable)
 *      └──(restore target: apply*() then resume())
 *   any state ──destroy()──▶ destroyed (terminal; every later call throws DomainError "destroyed")
 *
 * Ownership: buffers passed in are borrowed for the duration of the call only; buffers returned
 * belong to the caller. Nothing is retained across calls unless a method says so.
 */

/** Page size in bytes: the pfn unit everywhere in colo. */
export const PAGE_SIZE = 4096;
export const PAGE_SHIFT = 12;

export type DomainState = "created" | "running" | "suspended" | "exited" | "trapped" | "destroyed";

/**
 * Errors of the Domain contract. Codes: "bad-state" (method called in a state its contract does
 * not allow; nothing changed), "destroyed" (any call after destroy()), "unsupported" (this domain
 * cannot do it, e.g. suspend of a module built without Asyncify).
 */
export type DomainErrorCode = "bad-state" | "destroyed" | "unsupported";

export class DomainError extends Error {
  override readonly name = "DomainError";
  readonly code: DomainErrorCode;
  /** The domain's state when the call was refused. */
  readonly state: DomainState;
  constructor(code: DomainErrorCode, message: string, state: DomainState, options?: ErrorOptions) {
    super(`${code}: ${message}`, options);
    this.code = code;
    this.state = state;
  }
}

/** Why a guest stopped on its own. */
export type GuestEnd =
  | { readonly kind: "exit"; readonly code: number }
  | { readonly kind: "trap"; readonly message: string };

/** Identity of the instrumented module, carried by the seeding migration (architecture: item 1). */
export interface ModuleIdentity {
  /** The original (uninstrumented) module bytes, as the user supplied them. */
  readonly moduleBytes: Uint8Array;
  /** SHA-256 of the instrumented module bytes. Two replicas run byte-identical code iff equal. */
  readonly instrumentedHash: Uint8Array;
  /** Transform version string, binaryen's version included, e.g. "colo-xform/1 binaryen/132". */
  readonly transformVersion: string;
}

/** One 4 KiB block of one file in the guest's virtual file system. */
export interface FsBlockRef {
  /** Stable file id (inode number) inside the virtual file system; same on both replicas. */
  readonly ino: number;
  /** Block index within the file: byte offset >> 12. */
  readonly block: number;
}

/** Which file-system data blocks a host-state capture carries. Metadata is always whole. */
export type FsBlockSelection =
  | { readonly kind: "all" }
  | { readonly kind: "some"; readonly blocks: readonly FsBlockRef[] };

/** Hints for resume(); a domain may ignore them. */
export interface ResumeOptions {
  /**
   * Block the calling thread up to this many ms, right after asking, until the guest runs again:
   * on a busy host the guest's thread, woken on the caller's core, may otherwise wait behind the
   * caller's next work (a primary encrypting the checkpoint it just resumed from).
   */
  readonly handOffMs?: number;
}

/** Hints for suspend(); a domain may ignore them (the results are the same, only slower). */
export interface SuspendOptions {
  /**
   * The caller will capture the guest context and the host state with the changed file blocks
   * of this stop (captureHostState({ kind: "some", blocks }) with what harvestFsDirty() returns
   * next), or with every block ("all": captureHostState({ kind: "all" })): take them in the same
   * step as the stop, so that those calls answer at once (a COLO checkpoint asks for both while
   * the guest is stopped).
   */
  readonly capture?: boolean | "all";
}

/** Options of Domain.snapshot(). */
export interface SnapshotOptions {
  /**
   * Copy at most this many dirty pages: with more, the domain stops as suspend({ capture: true })
   * would (it stays suspended, nothing is harvested) and snapshot() answers `{ kind: "stopped" }`.
   */
  readonly maxPages: number;
  /** Also compute digest() of the state at the snapshot (costly: the whole memory and every file). */
  readonly digest?: boolean;
  /**
   * Called synchronously the moment the caller's thread learns of the snapshot, before it learns
   * of any output the guest produced after it (a proxy marks its cut there).
   */
  readonly onTaken?: () => void;
}

/**
 * One instant of a running guest, taken by the guest's own thread in one step with no round
 * trip: its dirty pages (harvested, so the dirty log restarts there) with copies of them, the
 * guest context, the host state with the file blocks changed since the last harvest (also
 * harvested). The guest runs on right after.
 */
export interface DomainSnapshot {
  readonly kind: "snapshot";
  /** The harvested dirty pages, ascending. */
  readonly pfns: Uint32Array;
  /** Their contents at the snapshot, page i of `pfns` at byte i × PAGE_SIZE. */
  readonly pages: Uint8Array;
  /** The memory size at the snapshot, in pages. */
  readonly memoryPages: number;
  /** The file blocks changed since the last harvest (harvested), carried by `hostState`. */
  readonly fsBlocks: readonly FsBlockRef[];
  readonly context: Uint8Array;
  readonly hostState: Uint8Array;
  /** digest() of the state at the snapshot, when asked. */
  readonly digest: Uint8Array | undefined;
  /** performance.now() (the caller's clock) when the guest ran on: the end of its pause. */
  readonly resumedAt: number;
  /** How long the guest was stopped, by its own thread's clock (ms). */
  readonly stoppedMs: number;
}

/** `a` ∪ `b` (file blocks), sorted by (ino, block) as a host's harvest is; `a` itself when `b` is empty. */
export function unionBlocks(a: readonly FsBlockRef[], b: readonly FsBlockRef[]): FsBlockRef[] {
  if (b.length === 0) return a as FsBlockRef[];
  if (a.length === 0) return b as FsBlockRef[];
  const seen = new Map<string, FsBlockRef>();
  for (const r of [...a, ...b]) seen.set(`${r.ino}:${r.block}`, r);
  return [...seen.values()].sort((x, y) => x.ino - y.ino || x.block - y.block);
}

/**
 * Copy pages `pfns` of `memory` (a whole guest memory) into `dst`, page i at byte i × PAGE_SIZE,
 * one copy per run of consecutive pfns.
 */
export function copyPageRuns(memory: Uint8Array, pfns: ArrayLike<number>, dst: Uint8Array): void {
  for (let i = 0; i < pfns.length; ) {
    let j = i + 1;
    while (j < pfns.length && pfns[j] === (pfns[j - 1] as number) + 1) j++;
    const first = pfns[i] as number;
    dst.set(memory.subarray(first * PAGE_SIZE, ((pfns[j - 1] as number) + 1) * PAGE_SIZE), i * PAGE_SIZE);
    i = j;
  }
}

/**
 * `Domain.writeBytes` for a domain that only writes whole pages: read each page the bytes touch,
 * patch it, write it back.
 */
export function writeBytesByPage(
  d: Pick<Domain, "readPage" | "writePage">,
  offset: number,
  src: Uint8Array,
): void {
  const page = new Uint8Array(PAGE_SIZE);
  for (let pos = 0; pos < src.length; ) {
    const pfn = Math.floor((offset + pos) / PAGE_SIZE);
    const off = (offset + pos) % PAGE_SIZE;
    const n = Math.min(PAGE_SIZE - off, src.length - pos);
    d.readPage(pfn, page);
    page.set(src.subarray(pos, pos + n), off);
    d.writePage(pfn, page);
    pos += n;
  }
}

/**
 * The ops contract. Every method documents when it may be called; calling it in another state
 * throws a DomainError with code "bad-state" and changes nothing.
 */
export interface Domain {
  /** Current state. */
  readonly state: DomainState;

  /** How the guest ended, once state is exited or trapped; otherwise undefined. */
  readonly end: GuestEnd | undefined;

  /** Identity of the instrumented module this domain runs. Any state but destroyed. */
  readonly identity: ModuleIdentity;

  /** Linear memory size in pages. May grow while running (memory.grow); read it again after. */
  pageCount(): number;

  /**
   * Make the linear memory exactly `pages` pages. Only while suspended or created.
   * Growing is memory.grow. Shrinking re-creates the instance at the smaller size by a local
   * copy of the first `pages` pages (wasm memories cannot shrink); context and host state carry
   * over unchanged. Pages beyond the old size read as zero and are not marked dirty.
   */
  resize(pages: number): Promise<void>;

  /**
   * Copy page `pfn` into `dst` (exactly PAGE_SIZE bytes). Any state but destroyed; safe while
   * running: a copy torn by a racing store is harmless because that store marks the page again
   * after it lands, so the next harvest returns it. Throws RangeError if pfn >= pageCount().
   */
  readPage(pfn: number, dst: Uint8Array): void;

  /**
   * Optional: a view of `count` pages from `pfn` in the domain's memory itself, no copy. Any state
   * but destroyed; never write through it. The view shows later stores, so a reader that holds it
   * past the call (an asynchronous write) must be one for which a torn page is harmless (live
   * pre-copy: the racing store marks the page again) or keep the domain suspended until done.
   * Throws RangeError past pageCount().
   */
  pageView?(pfn: number, count: number): Uint8Array;

  /** Overwrite page `pfn` with `src` (PAGE_SIZE bytes). Only while suspended or created. Does not mark it dirty. */
  writePage(pfn: number, src: Uint8Array): void;

  /**
   * Optional: overwrite the `src.length / PAGE_SIZE` consecutive pages from `firstPfn` with `src`
   * (a whole number of pages), as writePage does for each, in one call. Same states and rules.
   */
  writePages?(firstPfn: number, src: Uint8Array): void;

  /**
   * Optional: overwrite `src.length` bytes of memory from byte `offset`, any alignment (the two
   * pieces of a page that a stream split across two chunks). Same states and rules as writePage.
   * Throws RangeError past the memory's end.
   */
  writeBytes?(offset: number, src: Uint8Array): void;

  /**
   * Return the pfns written since the previous harvest (by the guest or by the host on the
   * guest's behalf), ascending, and clear their marks, each mark cleared before the caller can
   * copy the page. Safe while running. The first harvest after start returns the pages written
   * since start (not all pages: a full send uses pageCount()).
   */
  harvestDirty(): Uint32Array;

  /** Start the guest's entry point (`_start`). Only in state created, and not after apply*(). */
  start(): Promise<void>;

  /**
   * Stop the guest at its next safe point (a host call or a loop head) and unwind its stack.
   * Only while running; resolves once state is suspended (or exited/trapped if it ended first).
   */
  suspend(opts?: SuspendOptions): Promise<void>;

  /**
   * Optional: with a stop asked by suspend() and not yet settled, if the stop has taken effect
   * already (the guest can change neither its memory, its dirty log nor its files before it
   * unwinds, e.g. it waits in a host call) and it has no changed file blocks, harvest the dirty
   * pages now (as harvestDirty() would after suspend()) and return them; the stop's unwind then
   * reports no changed blocks. Otherwise undefined (wait for suspend()).
   */
  harvestStopped?(): Uint32Array | undefined;

  /**
   * Optional: take a DomainSnapshot at the guest's next safe point and let it run on. Only while
   * running; the state stays running throughout. When the guest has more than `maxPages` dirty
   * pages, or the domain holds changed file blocks of an earlier stop that were not harvested, it
   * is suspended instead (`{ kind: "stopped" }`, as suspend({ capture: true }) leaves it). Rejects, leaving the domain as it is, if the guest ends first; suspend() asked while a
   * snapshot is pending takes effect after it.
   */
  snapshot?(opts: SnapshotOptions): Promise<DomainSnapshot | { readonly kind: "stopped" }>;

  /** Continue a suspended (or freshly applied) guest. Only while suspended, or created after apply*(). */
  resume(opts?: ResumeOptions): Promise<void>;

  /**
   * Optional: performance.now() (the caller's clock) at which the guest last started or resumed
   * running: where a pause really ends, which the caller may hear of later (a worker thread).
   */
  readonly resumedAt?: number | undefined;

  /**
   * The guest context record body: mutable globals, tables the guest changed, and the Asyncify
   * stack. Only while suspended. Opaque to the engine; the same bytes for the same state.
   */
  captureContext(): Promise<Uint8Array>;

  /** Install a guest context captured by captureContext() (any process, same identity). Only while suspended or created. */
  applyContext(body: Uint8Array): Promise<void>;

  /**
   * WASI host state in its canonical encoding (the EMULATOR_CONTEXT body after the emulator
   * sub-header). Only while suspended. File-system data blocks are limited to `fs`; metadata
   * and every other part of the host state are always whole.
   */
  captureHostState(fs: FsBlockSelection): Promise<Uint8Array>;

  /**
   * Install host state captured by captureHostState(). Blocks not carried keep their current
   * contents. Only while suspended or created. Validates fully before changing anything.
   */
  applyHostState(body: Uint8Array): Promise<void>;

  /**
   * Optional: check a guest context body as applyContext(body) would, changing nothing; throws
   * the error applyContext would throw for it. Any state but destroyed. Synchronous and cheap (no
   * round trip to a worker): the checkpoint receiver calls it inside the pause, before its first
   * change to the domain, so a checkpoint the domain refuses leaves it as it was. A body this
   * accepts is refused by applyContext only for reasons not the body's (a dead worker, a state).
   */
  validateContext?(body: Uint8Array): void;

  /** Optional: the same for applyHostState(body). */
  validateHostState?(body: Uint8Array): void;

  /** File-system blocks changed since the previous call, and clear the record. Only while suspended. */
  harvestFsDirty(): Promise<FsBlockRef[]>;

  /**
   * SHA-256 over the canonical encoding of the whole state: memory, context, host state, files.
   * Host-local things (real sockets, host paths, clock bases) are left out, so two replicas in
   * the same state give the same digest. Only while suspended, exited or trapped.
   */
  digest(): Promise<Uint8Array>;

  /** Stop everything and free the worker. Idempotent. */
  destroy(): Promise<void>;
}
