/**
 * WasmDomain: the Domain (src/guest/domain.ts) and GuestPort (src/guest/port.ts) of a wasm32-wasi
 * guest run in its own worker thread (worker.ts) from a module instrumented by transform.ts.
 *
 * The main thread owns the two shared memories (the guest's linear memory and the control memory
 * with the dirty map), so it reads and writes pages and harvests the map directly, while the
 * guest runs or not. Everything else (context, host state) is a request to the worker, which the
 * worker serves only while the guest is unwound.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import {
  type Domain,
  DomainError,
  type DomainSnapshot,
  type DomainState,
  type FsBlockRef,
  type FsBlockSelection,
  type GuestEnd,
  type ModuleIdentity,
  PAGE_SHIFT,
  PAGE_SIZE,
  type ResumeOptions,
  type SnapshotOptions,
  type SuspendOptions,
  unionBlocks,
} from "../domain.ts";
import type { GuestPort, PortInput, PortOutput, StdinInput } from "../port.ts";
import type { WasiHostOptions } from "../wasi/contract.ts";
import { validateState } from "../wasi/state-codec.ts";
import { loadInstrumented } from "./cache.ts";
import { validateContext } from "./context.ts";
import { GuestError } from "./errors.ts";
import {
  ASYNCIFY_MEMORY_PAGES,
  ASYNCIFY_STACK_START,
  CTL_FS_PENDING,
  CTL_MEMORY_PAGES,
  CTL_PARKED,
  CTL_RUNNING,
  CTL_SIGNAL,
  CTL_SNAP_MAX,
  CTL_STOP,
  PAGES_PER_WASM_PAGE,
  WASM_PAGE,
} from "./layout.ts";
import {
  type BatchMessage,
  type Reply,
  type Request,
  type RequestMessage,
  type SerializedError,
  STDIN_QUEUE,
  STOP_CAPTURE,
  STOP_CAPTURE_ALL,
  STOP_PLAIN,
  STOP_SNAPSHOT,
  STOP_SNAPSHOT_DIGEST,
  type UnwindCapture,
  type WorkerEvent,
  type WorkerInit,
} from "./protocol.ts";
import { harvestMap, stateDigest } from "./state-tools.ts";
import type { Instrumented, TransformOptions } from "./transform.ts";

export interface WasmDomainOptions {
  /** Arguments, environment, preopens and file-system cap for the WASI host. */
  readonly host: WasiHostOptions;
  /** Which transforms to apply (all on by default; turning Asyncify off makes suspend unsupported). */
  readonly transform?: TransformOptions;
  /** Module exporting `createWasiHost` (default: src/guest/wasi/host.ts). Tests pass a stub. */
  readonly hostModule?: string | URL;
  /** Cache directory for instrumented modules; null disables the cache. Default cacheDir(). */
  readonly cacheDir?: string | null;
  /** Maximum memory in wasm pages for modules that declare none (default 65536 = 4 GiB). */
  readonly defaultMaxPages?: number;
  /** Write preopened directories back to the host when the guest exits (the active replica). */
  readonly writeBackOnExit?: boolean;
}

/** What a restore target must match: the source's instrumented module. */
export interface ExpectedIdentity {
  readonly instrumentedHash: Uint8Array;
  readonly transformVersion: string;
}

const DEFAULT_HOST_MODULE = new URL("../wasi/host.ts", import.meta.url).href;

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The longest resume handOffMs honoured (the main thread blocks meanwhile). */
const MAX_HAND_OFF_MS = 5;

export class WasmDomain implements Domain, GuestPort {
  #state: DomainState = "created";
  #end: GuestEnd | undefined;
  #applied = false;
  readonly #identity: ModuleIdentity;
  readonly #instrumented: Instrumented;
  #memory: WebAssembly.Memory;
  #view: Uint8Array;
  readonly #control: WebAssembly.Memory;
  readonly #ctl32: Int32Array;
  readonly #map: Uint8Array;
  readonly #map64: Float64Array;
  readonly #worker: Worker;
  readonly #input: MessageChannel;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(e: PortOutput) => void>();
  /** Backpressure estimate per input queue (connection id, or STDIN_QUEUE): see input(). */
  readonly #queued = new Map<number, QueueEstimate>();
  /** Waiters for the guest to stop running (suspended, exited or trapped). */
  #stopWaiters: (() => void)[] = [];
  /** The snapshot asked for and not yet taken (snapshot()). */
  #snap:
    | {
        readonly opts: SnapshotOptions;
        readonly resolve: (s: DomainSnapshot | { readonly kind: "stopped" }) => void;
        readonly reject: (e: Error) => void;
        readonly done: Promise<unknown>;
      }
    | undefined;
  #failure: Error | undefined;
  /**
   * Changed file blocks the worker harvested when the guest unwound (sent with "suspended") and
   * nobody took yet: harvestFsDirty() answers from here without a round trip. While the guest is
   * unwound nothing else marks blocks (applyHostState keeps the dirty record).
   */
  #fsDirty: FsBlockRef[] = [];
  /**
   * The file-system cap the worker's host decodes host state against, when that host is the
   * default one (src/guest/wasi/host.ts, whose codec validateHostState runs here); undefined for
   * a host module given in the options, whose encoding is its own (nothing checked here).
   */
  readonly #hostStateCap: number | undefined;

  private constructor(
    moduleBytes: Uint8Array,
    inst: Instrumented,
    module: WebAssembly.Module,
    options: WasmDomainOptions,
  ) {
    this.#instrumented = inst;
    this.#hostStateCap = options.hostModule === undefined ? options.host.fsLimitBytes : undefined;
    this.#identity = {
      moduleBytes: moduleBytes.slice(),
      instrumentedHash: inst.hash,
      transformVersion: inst.version,
    };
    this.#memory = new WebAssembly.Memory({
      initial: inst.memory.initial,
      maximum: inst.memory.maximum,
      shared: true,
    });
    this.#view = new Uint8Array(this.#memory.buffer);
    this.#control = new WebAssembly.Memory({
      initial: CTL_MEMORY_PAGES,
      maximum: CTL_MEMORY_PAGES,
      shared: true,
    });
    this.#ctl32 = new Int32Array(this.#control.buffer);
    this.#map = new Uint8Array(this.#control.buffer, 0, CTL_STOP);
    this.#map64 = new Float64Array(this.#control.buffer, 0, CTL_STOP / 8);
    this.#input = new MessageChannel();
    const init: WorkerInit = {
      module,
      memory: this.#memory,
      control: this.#control,
      input: this.#input.port2,
      hostModule: String(options.hostModule ?? DEFAULT_HOST_MODULE),
      host: options.host,
      globals: inst.globals,
      asyncify: inst.options.asyncify,
      writeBackOnExit: options.writeBackOnExit ?? false,
    };
    this.#worker = new Worker(new URL("./worker.ts", import.meta.url), {
      workerData: init,
      transferList: [this.#input.port2],
    });
    this.#worker.on("message", (e: WorkerEvent) => this.#onEvent(e));
    this.#worker.on("error", (e: Error) => this.#fail(e));
    this.#worker.on("exit", (code) => {
      if (this.#state !== "destroyed") this.#fail(new Error(`guest worker exited with code ${code}`));
    });
  }

  /**
   * Load (instrument, or take from the cache) and instantiate a guest in a new worker, without
   * running it. State "created": call start(), or apply*() then resume() as a restore target.
   */
  static async create(moduleBytes: Uint8Array, options: WasmDomainOptions): Promise<WasmDomain> {
    const inst = await loadInstrumented(
      moduleBytes,
      options.transform,
      { defaultMaxPages: options.defaultMaxPages },
      options.cacheDir,
    );
    const module = await WebAssembly.compile(inst.bytes);
    const d = new WasmDomain(moduleBytes, inst, module, options);
    await d.#ready();
    return d;
  }

  /**
   * A restore target: like create(), and refuses (GuestError "identity-mismatch") a module whose
   * instrumented hash or transform version differs from the source's. Does not run `_start`;
   * apply the stream (applyContext, applyHostState, resize, writePage), then resume().
   */
  static async createRestoreTarget(
    moduleBytes: Uint8Array,
    options: WasmDomainOptions,
    expected?: ExpectedIdentity,
  ): Promise<WasmDomain> {
    const d = await WasmDomain.create(moduleBytes, options);
    if (
      expected !== undefined &&
      (expected.transformVersion !== d.#identity.transformVersion ||
        Buffer.compare(Buffer.from(expected.instrumentedHash), Buffer.from(d.#identity.instrumentedHash)) !==
          0)
    ) {
      await d.destroy();
      throw new GuestError("identity-mismatch", "the source runs a different instrumented module", {
        expected: expected.transformVersion,
        actual: d.#identity.transformVersion,
      });
    }
    return d;
  }

  #readyWaiter: Pending | undefined;
  #ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#readyWaiter = { resolve: () => resolve(), reject };
    });
  }

  get state(): DomainState {
    return this.#state;
  }
  get end(): GuestEnd | undefined {
    return this.#end;
  }
  get identity(): ModuleIdentity {
    this.#check("identity");
    return this.#identity;
  }
  /** The transform result this domain runs (options, limits, version). */
  get instrumented(): Instrumented {
    return this.#instrumented;
  }

  // --- events from the worker --------------------------------------------------------------

  #onEvent(e: WorkerEvent): void {
    switch (e.t) {
      case "ready":
        this.#readyWaiter?.resolve(undefined);
        this.#readyWaiter = undefined;
        return;
      case "reply":
        this.#settle(e);
        return;
      case "replies":
        for (const r of e.replies) this.#settle(r);
        return;
      case "suspended": {
        this.#captured = e.captured === undefined ? undefined : { ...e.captured, blocks: e.fsDirty };
        this.#fsDirty = unionBlocks(this.#fsDirty, e.fsDirty);
        if (this.#state === "running") this.#state = "suspended";
        // A snapshot that became a stop (too many pages): the domain is suspended.
        const snap = this.#snap;
        this.#snap = undefined;
        snap?.resolve({ kind: "stopped" });
        this.#wakeStopWaiters();
        return;
      }
      case "snapshot": {
        const snap = this.#snap;
        this.#snap = undefined;
        if (snap === undefined) return;
        // Before any output the guest produced after it reaches the listeners (next events).
        try {
          snap.opts.onTaken?.();
        } catch (err) {
          snap.reject(err instanceof Error ? err : new Error(String(err)));
          return;
        }
        const w = e.snap;
        const resumedAt = this.#fromWorkerClock(w.resumedAt);
        this.#resumedAt = resumedAt;
        snap.resolve({
          kind: "snapshot",
          pfns: w.pfns,
          pages: w.pages,
          memoryPages: w.memoryPages,
          fsBlocks: w.fsBlocks,
          context: w.context,
          hostState: w.hostState,
          digest: w.digest,
          resumedAt,
          stoppedMs: w.resumedAt - w.stoppedAt,
        });
        return;
      }
      case "exited":
        this.#ended({ kind: "exit", code: e.code }, "exited");
        return;
      case "trapped":
        if (this.#readyWaiter !== undefined) {
          this.#readyWaiter.reject(new GuestError("worker-failed", e.message, { message: e.message }));
          this.#readyWaiter = undefined;
        }
        this.#ended({ kind: "trap", message: e.message }, "trapped");
        return;
      case "output": {
        // A drained queue was empty after every delivery reported so far: only what is still in
        // flight counts now. Done before the listeners run, so a plug resuming on it sees that.
        const ev = e.event;
        const key = ev.kind === "drained" ? ev.conn : ev.kind === "stdin-drained" ? STDIN_QUEUE : undefined;
        const est = key === undefined ? undefined : this.#queued.get(key);
        if (est !== undefined) est.reported = 0;
        for (const l of this.#listeners) l(ev);
        return;
      }
      case "queued": {
        const est = this.#queued.get(e.conn);
        if (est === undefined) return;
        est.inFlight -= est.sent.shift() ?? 0;
        est.reported = e.bytes;
        return;
      }
    }
  }

  #ended(end: GuestEnd, state: "exited" | "trapped"): void {
    if (this.#state === "destroyed") return;
    this.#end = end;
    this.#state = state;
    this.#failSnapshot(new DomainError("bad-state", `the guest ${state} before the snapshot`, state));
    this.#wakeStopWaiters();
  }

  #failSnapshot(e: Error): void {
    const snap = this.#snap;
    this.#snap = undefined;
    snap?.reject(e);
  }

  #wakeStopWaiters(): void {
    const w = this.#stopWaiters;
    this.#stopWaiters = [];
    for (const f of w) f();
  }

  #fail(e: Error): void {
    if (this.#state === "destroyed") return;
    const err = new GuestError("worker-failed", e.message, { message: e.message }, { cause: e });
    this.#failure = err;
    this.#readyWaiter?.reject(err);
    this.#readyWaiter = undefined;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#failSnapshot(err);
    if (this.#state === "running" || this.#state === "created" || this.#state === "suspended") {
      this.#ended({ kind: "trap", message: e.message }, "trapped");
    }
  }

  #settle(r: Reply): void {
    const p = this.#pending.get(r.id);
    if (p === undefined) return;
    this.#pending.delete(r.id);
    if (r.ok) p.resolve(r.value);
    else p.reject(deserialize(r.error));
  }

  /**
   * Post a request to the worker. `batched` (captures and applies): held until the end of this
   * synchronous turn (a microtask) and posted with the others asked for in it, as one message
   * that wakes the worker once and gets one answer; any other request posts them first.
   */
  #request<T>(req: Request, batched = false): Promise<T> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      const msg: RequestMessage = { ...req, id };
      if (batched) {
        if (this.#batch.push(msg) === 1) queueMicrotask(() => this.#postBatch());
        return;
      }
      this.#postBatch();
      this.#worker.postMessage(msg);
    });
  }

  #batch: RequestMessage[] = [];

  #postBatch(): void {
    const requests = this.#batch;
    if (requests.length === 0) return;
    this.#batch = [];
    if (this.#state === "destroyed") return;
    const batch: BatchMessage = { op: "batch", requests };
    this.#worker.postMessage(requests.length === 1 ? requests[0] : batch);
  }

  /**
   * What the worker captured as the guest unwound (suspend({ capture: true })): valid until
   * anything can change the context or the host state (resume, an apply, input, a resize).
   */
  #captured: (UnwindCapture & { readonly blocks: readonly FsBlockRef[] }) | undefined;

  // --- state checks ------------------------------------------------------------------------

  #check(op: string, ...allowed: DomainState[]): void {
    if (this.#state === "destroyed")
      throw new DomainError("destroyed", `${op}: domain destroyed`, this.#state);
    if (allowed.length > 0 && !allowed.includes(this.#state)) {
      throw new DomainError("bad-state", `${op} not allowed in state ${this.#state}`, this.#state);
    }
  }

  async #checkAsync(op: string, ...allowed: DomainState[]): Promise<void> {
    this.#check(op, ...allowed);
  }

  // --- memory ------------------------------------------------------------------------------

  #refreshView(): Uint8Array {
    const buf = this.#memory.buffer;
    if (buf.byteLength !== this.#view.byteLength) this.#view = new Uint8Array(buf);
    return this.#view;
  }

  pageCount(): number {
    this.#check("pageCount");
    return this.#refreshView().byteLength >>> PAGE_SHIFT;
  }

  async resize(pages: number): Promise<void> {
    await this.#checkAsync("resize", "created", "suspended", "exited", "trapped");
    if (!Number.isInteger(pages) || pages % PAGES_PER_WASM_PAGE !== 0 || pages < 0) {
      throw new RangeError(`resize: ${pages} is not a whole number of 64 KiB wasm pages`);
    }
    const wasmPages = pages / PAGES_PER_WASM_PAGE;
    this.#captured = undefined;
    const { initial, maximum } = this.#instrumented.memory;
    if (wasmPages > maximum || wasmPages < initial) {
      throw new RangeError(`resize: ${wasmPages} wasm pages outside [${initial}, ${maximum}]`);
    }
    const cur = this.#refreshView().byteLength / 65536;
    if (wasmPages > cur) {
      this.#memory.grow(wasmPages - cur);
      this.#refreshView();
      // A restore target is about to receive every page: have its worker (idle until the guest
      // runs; the main thread stays free) map the new pages now, as Xen populates a domain's
      // memory before the stream, so the restore's page writes take no first-touch faults
      // (~3 µs per 4 KiB page, most of a restore's CPU time) while the stream is flowing.
      if (this.#state === "created") {
        await this.#request({ op: "prefault", from: 0, to: pages });
      }
    } else if (wasmPages < cur) {
      const mem = new WebAssembly.Memory({ initial: wasmPages, maximum, shared: true });
      await this.#request({ op: "reinstantiate", memory: mem, copyPages: pages });
      this.#memory = mem;
      this.#view = new Uint8Array(mem.buffer);
      this.#map.fill(0, pages);
    }
  }

  readPage(pfn: number, dst: Uint8Array): void {
    this.#check("readPage");
    const v = this.#pageView(pfn, dst);
    dst.set(v.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE));
  }

  pageView(pfn: number, count: number): Uint8Array {
    this.#check("pageView");
    let v = this.#view;
    const end = (pfn + count) * PAGE_SIZE;
    if (!Number.isInteger(pfn) || !Number.isInteger(count) || pfn < 0 || count < 0 || end > v.byteLength) {
      v = this.#refreshView();
      if (!Number.isInteger(pfn) || !Number.isInteger(count) || pfn < 0 || count < 0 || end > v.byteLength) {
        throw new RangeError(`pages ${pfn}+${count} out of range (${v.byteLength >>> PAGE_SHIFT} pages)`);
      }
    }
    return v.subarray(pfn * PAGE_SIZE, end);
  }

  writePage(pfn: number, src: Uint8Array): void {
    this.#check("writePage", "created", "suspended", "exited", "trapped");
    const v = this.#pageView(pfn, src);
    v.set(src, pfn * PAGE_SIZE);
  }

  writePages(firstPfn: number, src: Uint8Array): void {
    this.#check("writePages", "created", "suspended", "exited", "trapped");
    if (src.length % PAGE_SIZE !== 0)
      throw new RangeError(`writePages: ${src.length} bytes is not a whole number of pages`);
    this.pageView(firstPfn, src.length / PAGE_SIZE).set(src);
  }

  /**
   * Overwrite `src.length` bytes of guest memory from byte `offset` (any alignment: the pieces
   * of a page split across two chunks of a stream). Same states and rules as writePage.
   */
  writeBytes(offset: number, src: Uint8Array): void {
    this.#check("writeBytes", "created", "suspended", "exited", "trapped");
    let v = this.#view;
    const end = offset + src.length;
    if (!Number.isInteger(offset) || offset < 0 || end > v.byteLength) {
      v = this.#refreshView();
      if (!Number.isInteger(offset) || offset < 0 || end > v.byteLength)
        throw new RangeError(`bytes ${offset}+${src.length} out of range (${v.byteLength} bytes)`);
    }
    v.set(src, offset);
  }

  #pageView(pfn: number, buf: Uint8Array): Uint8Array {
    if (buf.length !== PAGE_SIZE)
      throw new RangeError(`page buffer is ${buf.length} bytes, not ${PAGE_SIZE}`);
    let v = this.#view;
    if (!Number.isInteger(pfn) || pfn < 0 || (pfn + 1) * PAGE_SIZE > v.byteLength) {
      v = this.#refreshView();
      if (!Number.isInteger(pfn) || pfn < 0 || (pfn + 1) * PAGE_SIZE > v.byteLength) {
        throw new RangeError(`pfn ${pfn} out of range (${v.byteLength >>> PAGE_SHIFT} pages)`);
      }
    }
    return v;
  }

  /**
   * With a stop asked (suspend() not yet settled): when it has taken effect already, because the
   * guest waits in a host call (it unwinds on waking, before running any code of its own) and
   * holds no changed file blocks, harvest the dirty pages now and return them: they are final
   * until resume() (the unwind reports no changed blocks). Otherwise undefined: wait for suspend().
   */
  harvestStopped(): Uint32Array | undefined {
    if (this.#state !== "running" || this.#snap !== undefined) return undefined;
    if (Atomics.load(this.#ctl32, CTL_STOP >> 2) === 0) return undefined;
    if (Atomics.compareExchange(this.#ctl32, CTL_PARKED >> 2, 1, 2) !== 1) return undefined;
    if (Atomics.load(this.#ctl32, CTL_FS_PENDING >> 2) !== 0) return undefined;
    return this.harvestDirty();
  }

  harvestDirty(): Uint32Array {
    this.#check("harvestDirty");
    const pages = this.#refreshView().byteLength >>> PAGE_SHIFT;
    return harvestMap(this.#map64, this.#ctl32, pages);
  }

  // --- run control -------------------------------------------------------------------------

  async start(): Promise<void> {
    await this.#checkAsync("start", "created");
    if (this.#applied) throw new DomainError("bad-state", "start after apply*(): use resume()", this.#state);
    Atomics.store(this.#ctl32, CTL_STOP >> 2, 0);
    this.#state = "running";
    this.#resumedAt = this.#fromWorkerClock(await this.#request<number>({ op: "start" }));
  }

  /**
   * The stop is requested (the worker woken) before suspend() returns, so a caller may go on
   * synchronously while the guest unwinds; resolves once it has.
   */
  suspend(opts?: SuspendOptions): Promise<void> {
    try {
      this.#check("suspend", "running");
      if (!this.#instrumented.options.asyncify) {
        throw new DomainError("unsupported", "suspend needs the Asyncify transform", this.#state);
      }
    } catch (e) {
      return Promise.reject(e);
    }
    // A snapshot in flight is taken first; the stop follows it.
    const pending = this.#snap;
    if (pending !== undefined)
      return pending.done.then(() => (this.#state === "running" ? this.suspend(opts) : this.whenStopped()));
    const stopped = new Promise<void>((resolve) => this.#stopWaiters.push(resolve));
    this.#captured = undefined;
    const how =
      opts?.capture === "all" ? STOP_CAPTURE_ALL : opts?.capture === true ? STOP_CAPTURE : STOP_PLAIN;
    Atomics.store(this.#ctl32, CTL_STOP >> 2, how);
    this.#signal();
    return stopped;
  }

  /**
   * The guest's worker takes the snapshot as the guest unwinds at its next safe point, posts it
   * and rewinds at once: the guest's pause is the worker's own work (copying the dirty pages,
   * capturing), with no wake-up of this thread in it. See Domain.snapshot.
   */
  snapshot(opts: SnapshotOptions): Promise<DomainSnapshot | { readonly kind: "stopped" }> {
    try {
      this.#check("snapshot", "running");
      if (!this.#instrumented.options.asyncify)
        throw new DomainError("unsupported", "snapshot needs the Asyncify transform", this.#state);
      if (this.#snap !== undefined || Atomics.load(this.#ctl32, CTL_STOP >> 2) !== 0)
        throw new DomainError("bad-state", "a stop or a snapshot is already asked for", this.#state);
      if (!Number.isInteger(opts.maxPages) || opts.maxPages < 0)
        throw new RangeError(`maxPages must be a non-negative integer, got ${opts.maxPages}`);
    } catch (e) {
      return Promise.reject(e);
    }
    // Changed blocks an earlier stop reported and nobody harvested: the worker no longer has them,
    // so its host state could not carry them. A plain stop instead (harvestFsDirty returns them).
    if (this.#fsDirty.length > 0) return this.suspend({ capture: true }).then(() => ({ kind: "stopped" }));
    let resolve!: (s: DomainSnapshot | { readonly kind: "stopped" }) => void;
    let reject!: (e: Error) => void;
    const taken = new Promise<DomainSnapshot | { readonly kind: "stopped" }>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const done = taken.then(
      () => {},
      () => {},
    );
    this.#snap = { opts, resolve, reject, done };
    this.#captured = undefined;
    Atomics.store(this.#ctl32, CTL_SNAP_MAX >> 2, Math.min(opts.maxPages, 0x7fffffff));
    Atomics.store(this.#ctl32, CTL_STOP >> 2, opts.digest === true ? STOP_SNAPSHOT_DIGEST : STOP_SNAPSHOT);
    this.#signal();
    return taken;
  }

  /**
   * performance.now() (this thread's clock) at which the worker last started or resumed the
   * guest: where a pause really ends. This thread hears of it a wake-up later.
   */
  get resumedAt(): number | undefined {
    return this.#resumedAt;
  }
  #resumedAt: number | undefined;

  /** The worker's monotonic time (ms, process.hrtime) on this thread's performance.now() clock. */
  #fromWorkerClock(ms: number): number {
    return performance.now() - (Number(process.hrtime.bigint()) / 1e6 - ms);
  }

  /** The resume request is posted before resume() returns (callers may go on synchronously). */
  async resume(opts?: ResumeOptions): Promise<void> {
    this.#check("resume", "suspended", "created");
    if (this.#state === "created" && !this.#applied) {
      throw new DomainError(
        "bad-state",
        "resume of a created domain needs apply*() first (or start())",
        this.#state,
      );
    }
    Atomics.store(this.#ctl32, CTL_STOP >> 2, 0);
    this.#state = "running";
    this.#captured = undefined;
    const reply = this.#request<number>({ op: "resume" });
    const ms = opts?.handOffMs;
    if (ms !== undefined && ms > 0)
      Atomics.wait(this.#ctl32, CTL_RUNNING >> 2, 0, Math.min(ms, MAX_HAND_OFF_MS));
    this.#resumedAt = this.#fromWorkerClock(await reply);
  }

  /** Wait until the guest stops running (suspended, exited or trapped). Resolves at once if not running. */
  whenStopped(): Promise<void> {
    if (this.#state !== "running") return Promise.resolve();
    return new Promise((resolve) => this.#stopWaiters.push(resolve));
  }

  #signal(): void {
    Atomics.add(this.#ctl32, CTL_SIGNAL >> 2, 1);
    Atomics.notify(this.#ctl32, CTL_SIGNAL >> 2);
  }

  // --- context and host state --------------------------------------------------------------

  async captureContext(): Promise<Uint8Array> {
    await this.#checkAsync("captureContext", "suspended");
    if (this.#captured !== undefined) return this.#captured.context.slice();
    return this.#request<Uint8Array>({ op: "captureContext" }, true);
  }

  async applyContext(body: Uint8Array): Promise<void> {
    await this.#checkAsync("applyContext", "suspended", "created", "exited", "trapped");
    this.#captured = undefined;
    await this.#request({ op: "applyContext", body: body.slice() }, true);
    this.#applied = true;
    this.#revived();
  }

  /** The worker's checks of applyContext, on this thread (Domain.validateContext). */
  validateContext(body: Uint8Array): void {
    this.#check("validateContext");
    if (!this.#instrumented.options.asyncify)
      throw new GuestError("bad-context", "this module was built without Asyncify");
    // The worker checks against its Asyncify memory's size, which the transform fixes.
    validateContext(
      body,
      this.#instrumented.globals,
      ASYNCIFY_MEMORY_PAGES * WASM_PAGE - ASYNCIFY_STACK_START,
    );
  }

  /** The default WASI host's checks of applyHostState, on this thread (Domain.validateHostState). */
  validateHostState(body: Uint8Array): void {
    this.#check("validateHostState");
    if (this.#hostStateCap !== undefined) validateState(body, this.#hostStateCap);
  }

  /** A state applied to a guest that had exited or trapped: it is a suspended guest again. */
  #revived(): void {
    if (this.#state !== "exited" && this.#state !== "trapped") return;
    this.#state = "suspended";
    this.#end = undefined;
  }

  async captureHostState(fs: FsBlockSelection): Promise<Uint8Array> {
    await this.#checkAsync("captureHostState", "suspended");
    const c = this.#captured;
    if (
      c !== undefined &&
      (c.allBlocks ? fs.kind === "all" : fs.kind === "some" && sameBlocks(fs.blocks, c.blocks))
    )
      return c.hostState.slice();
    return this.#request<Uint8Array>({ op: "captureHost", fs }, true);
  }

  async applyHostState(body: Uint8Array): Promise<void> {
    await this.#checkAsync("applyHostState", "suspended", "created", "exited", "trapped");
    this.#captured = undefined;
    await this.#request({ op: "applyHost", body: body.slice() }, true);
    // The host's queues are now the applied state's: reports from before say nothing about them.
    for (const est of this.#queued.values()) est.reported = 0;
    this.#applied = true;
    this.#revived();
  }

  async harvestFsDirty(): Promise<FsBlockRef[]> {
    await this.#checkAsync("harvestFsDirty", "suspended", "exited", "trapped");
    // An ended guest did not send its blocks with an event: ask its worker.
    if (this.#state !== "suspended")
      return unionBlocks(this.#fsDirty.splice(0), await this.#request<FsBlockRef[]>({ op: "harvestFs" }));
    const held = this.#fsDirty;
    this.#fsDirty = [];
    return held;
  }

  async digest(): Promise<Uint8Array> {
    // A restore target that holds an applied state but never ran (a Remus secondary, a seed not
    // yet resumed) has a whole state too: digest it like a suspended domain.
    if (this.#state === "created" && this.#applied) return this.#digestSuspended();
    await this.#checkAsync("digest", "suspended", "exited", "trapped");
    return this.#digestSuspended();
  }

  async #digestSuspended(): Promise<Uint8Array> {
    const ended = this.#state === "exited" || this.#state === "trapped";
    // Both requests in flight at once (one wake-up of the worker).
    const [ctx, hostState] = ended
      ? [new Uint8Array(0), new Uint8Array(0)]
      : await Promise.all([
          this.#request<Uint8Array>({ op: "captureContext" }, true),
          this.#request<Uint8Array>({ op: "captureHost", fs: { kind: "all" } }, true),
        ]);
    return stateDigest(this.#refreshView(), ctx, hostState);
  }

  async destroy(): Promise<void> {
    if (this.#state === "destroyed") return;
    this.#state = "destroyed";
    const err = new DomainError("destroyed", "domain destroyed", "destroyed");
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#failSnapshot(err);
    this.#wakeStopWaiters();
    this.#input.port1.close();
    await this.#worker.terminate();
  }

  // --- GuestPort ---------------------------------------------------------------------------

  input(event: PortInput | StdinInput): number {
    this.#check("input");
    this.#captured = undefined; // the host state takes this input at its next capture
    // Copy the bytes: the caller's buffer is only borrowed for this call.
    this.#input.port1.postMessage("bytes" in event ? { ...event, bytes: event.bytes.slice() } : event);
    this.#signal();
    // Bytes queued per connection (stdin's under STDIN_QUEUE): the worker's report after the
    // last delivery it made (0 once a "drained" for it came after that report), plus the bytes
    // sent and not yet delivered. Never counting bytes the guest read before the host's last
    // "drained" is what keeps the port's promise: a plug that stops feeding above its bound
    // (≥ DRAIN_MIN_PEAK) hears "drained" once the guest has read what is queued.
    const key = "conn" in event ? event.conn : STDIN_QUEUE;
    let est = this.#queued.get(key);
    if (!("bytes" in event)) return est === undefined ? 0 : est.reported + est.inFlight;
    if (est === undefined) {
      est = { reported: 0, sent: [], inFlight: 0 };
      this.#queued.set(key, est);
    }
    est.sent.push(event.bytes.length);
    est.inFlight += event.bytes.length;
    return est.reported + est.inFlight;
  }

  onOutput(listener: (event: PortOutput) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** See WasmDomain.input(). */
interface QueueEstimate {
  /** Bytes queued in the host after the last delivery the worker reported; 0 after a "drained". */
  reported: number;
  /** Lengths of the chunks sent and not yet reported, oldest first (one "queued" report each). */
  readonly sent: number[];
  /** Their sum. */
  inFlight: number;
}

/** The same blocks in the same order. */
function sameBlocks(a: readonly FsBlockRef[], b: readonly FsBlockRef[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.ino !== b[i]!.ino || a[i]!.block !== b[i]!.block) return false;
  return true;
}

function deserialize(e: SerializedError): Error {
  const err = new Error(e.message);
  err.name = e.name;
  if (e.code !== undefined) (err as Error & { code: string }).code = e.code;
  return err;
}
