/**
 * The guest's worker thread: instantiates the instrumented module against the shared memories,
 * hosts the WASI implementation, runs `_start`, unwinds on a stop request and rewinds on resume.
 *
 * Stop protocol: the main thread sets the control word CTL_STOP and bumps CTL_SIGNAL. The guest
 * sees it at its next loop head (the transform's check calls "colo"."preempt") or host call (the
 * wrappers below), or a blocked HostEnv.wait throws StopRequested. We then start an Asyncify
 * unwind; `_start` returns; we stop the unwind and report "suspended". Resume starts a rewind
 * and calls `_start` again; the import that unwound is called again, stops the rewind, and (for
 * a WASI call) runs the host function from the start.
 */
import { randomFillSync } from "node:crypto";
import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { copyPageRuns, type FsBlockRef, PAGE_SIZE, unionBlocks } from "../domain.ts";
import type { PortInput, PortOutput, StdinInput } from "../port.ts";
import { createRealtimeClock } from "../wasi/clocks.ts";
import {
  type CreateWasiHost,
  type HostEnv,
  ProcExit,
  StopRequested,
  type WasiHost,
} from "../wasi/contract.ts";
import { bitsToGlobal, decodeContext, encodeContext, globalToBits } from "./context.ts";
import { GuestError } from "./errors.ts";
import {
  ASYNCIFY_DATA_PTR,
  ASYNCIFY_STACK_START,
  CTL_FS_PENDING,
  CTL_PARKED,
  CTL_RUNNING,
  CTL_SIGNAL,
  CTL_SNAP_MAX,
  CTL_STOP,
  DIRTY_MAP_BYTES,
  EXPORT_ASYNCIFY_MEMORY,
  EXPORT_GLOBAL_PREFIX,
  IMPORT_CONTROL,
  IMPORT_MEMORY,
  IMPORT_MODULE,
  IMPORT_PREEMPT,
  WASI_FUNCTIONS,
  WASI_MODULE,
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
import { countMap, harvestMap, stateDigest } from "./state-tools.ts";

const ENOSYS = 52;
const ASYNCIFY_UNWINDING = 1;

interface AsyncifyExports {
  _start(): void;
  asyncify_start_unwind(p: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(p: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
}

const init = workerData as WorkerInit;
const port = parentPort!;
const post = (e: WorkerEvent): void => port.postMessage(e);
const ctl32 = new Int32Array(init.control.buffer);
const STOP = CTL_STOP >> 2;
const SIGNAL = CTL_SIGNAL >> 2;
const PARKED = CTL_PARKED >> 2;
const FS_PENDING = CTL_FS_PENDING >> 2;
const RUNNING = CTL_RUNNING >> 2;
const SNAP_MAX = CTL_SNAP_MAX >> 2;
const ctlBytes = new Uint8Array(init.control.buffer);
const map64 = new Float64Array(init.control.buffer, 0, DIRTY_MAP_BYTES / 8);
const inputPort: MessagePort = init.input;

let memory = init.memory;
let instance: WebAssembly.Instance;
let exports: AsyncifyExports;
/** True from asyncify_start_rewind until the import that unwound stops the rewind. */
let rewinding = false;
/** The guest is unwound (suspended) or has a context applied: the next run must rewind. */
let unwound = false;
let ended = false;

const env: HostEnv = {
  memory: () => new Uint8Array(memory.buffer),
  markDirty(ptr: number, len: number): void {
    if (len <= 0) return;
    ctlBytes.fill(1, ptr >>> 12, ((ptr + len - 1) >>> 12) + 1);
  },
  pump(): void {
    pump();
  },
  wait(deadlineNs: bigint | undefined): "event" | "timeout" {
    for (;;) {
      const seq = Atomics.load(ctl32, SIGNAL);
      const delivered = pump();
      // A stop goes before input (which stays queued in the host): once parked, the guest runs
      // no code of its own before it has seen a stop asked meanwhile (see parkHere).
      if (Atomics.load(ctl32, STOP) !== 0) throw new StopRequested("stop requested");
      if (delivered > 0) return "event";
      let timeoutMs = Number.POSITIVE_INFINITY;
      if (deadlineNs !== undefined) {
        const now = process.hrtime.bigint();
        if (now >= deadlineNs) return "timeout";
        timeoutMs = Math.max(0, Number(deadlineNs - now) / 1e6);
      }
      parkHere();
      Atomics.wait(ctl32, SIGNAL, seq, timeoutMs);
      Atomics.store(ctl32, PARKED, 0);
    }
  },
  emit(event: PortOutput): void {
    post({ t: "output", event });
  },
  monotonicNs: () => process.hrtime.bigint(),
  realtimeNs: createRealtimeClock(),
  randomFill(buf: Uint8Array): void {
    randomFillSync(buf);
  },
};

/** Changed file blocks taken from the host before it parked, not yet reported (see parkHere). */
let pendingFs: FsBlockRef[] = [];

/**
 * About to wait in a host call: take the host's changed file blocks (reported with the next
 * unwind), say whether any are held (CTL_FS_PENDING), then CTL_PARKED = 1. Until it is cleared on
 * waking, nothing changes the guest's memory, dirty log or files, and waking it, the worker sees
 * a stop asked meanwhile before any guest code runs: so a main thread that asks for a stop and
 * then turns CTL_PARKED from 1 to 2 may take the dirty log (and, with CTL_FS_PENDING 0, no changed
 * blocks) as final at once, while the guest unwinds (WasmDomain.harvestStopped).
 */
function parkHere(): void {
  const fs = host.harvestFsDirty();
  if (fs.length > 0) pendingFs = pendingFs.length === 0 ? fs : unionBlocks(pendingFs, fs);
  Atomics.store(ctl32, FS_PENDING, pendingFs.length > 0 ? 1 : 0);
  Atomics.store(ctl32, PARKED, 1);
}

/** The changed file blocks since the last call (the host's and those taken at parking), sorted. */
function takeFsDirty(): FsBlockRef[] {
  const fs = host.harvestFsDirty();
  const out = pendingFs.length === 0 ? fs : unionBlocks(pendingFs, fs);
  pendingFs = [];
  Atomics.store(ctl32, FS_PENDING, 0);
  return out;
}

function pump(): number {
  let n = 0;
  for (;;) {
    const m = receiveMessageOnPort(inputPort);
    if (m === undefined) return n;
    const event = m.message as PortInput | StdinInput;
    const queued = host.deliver(event);
    if (event.kind === "data") post({ t: "queued", conn: event.conn, bytes: queued });
    else if (event.kind === "stdin") post({ t: "queued", conn: STDIN_QUEUE, bytes: queued });
    n++;
  }
}

const { createWasiHost } = (await import(init.hostModule)) as { createWasiHost: CreateWasiHost };
const host: WasiHost = createWasiHost(init.host, env);

function unwind(): void {
  const asyncMem = new DataView((instance.exports[EXPORT_ASYNCIFY_MEMORY] as WebAssembly.Memory).buffer);
  asyncMem.setUint32(ASYNCIFY_DATA_PTR, ASYNCIFY_STACK_START, true);
  asyncMem.setUint32(ASYNCIFY_DATA_PTR + 4, asyncMem.byteLength, true);
  exports.asyncify_start_unwind(ASYNCIFY_DATA_PTR);
}

function stopPending(): boolean {
  return init.asyncify && Atomics.load(ctl32, STOP) !== 0;
}

function makeImports(): WebAssembly.Imports {
  const hostImports = host.imports() as Record<string, (...args: unknown[]) => number | bigint | undefined>;
  const wasi: Record<string, (...args: unknown[]) => unknown> = {};
  for (const name of WASI_FUNCTIONS) {
    const f = hostImports[name] ?? (() => ENOSYS);
    if (!init.asyncify) {
      wasi[name] = f;
      continue;
    }
    wasi[name] = (...args: unknown[]) => {
      if (rewinding) {
        rewinding = false;
        exports.asyncify_stop_rewind();
      }
      if (stopPending()) {
        unwind();
        return 0;
      }
      try {
        return f(...args);
      } catch (e) {
        if (e instanceof StopRequested) {
          unwind();
          return 0;
        }
        throw e;
      }
    };
  }
  return {
    [WASI_MODULE]: wasi,
    [IMPORT_MODULE]: {
      [IMPORT_MEMORY]: memory,
      [IMPORT_CONTROL]: init.control,
      [IMPORT_PREEMPT]: () => {
        if (rewinding) {
          rewinding = false;
          exports.asyncify_stop_rewind();
          return;
        }
        if (stopPending()) unwind();
      },
    },
  } as WebAssembly.Imports;
}

function instantiate(): void {
  instance = new WebAssembly.Instance(init.module, makeImports());
  exports = instance.exports as unknown as AsyncifyExports;
}

function asyncMemory(): Uint8Array {
  return new Uint8Array((instance.exports[EXPORT_ASYNCIFY_MEMORY] as WebAssembly.Memory).buffer);
}

function captureContext(): Uint8Array {
  const globals = init.globals.map((type, i) => {
    const g = instance.exports[`${EXPORT_GLOBAL_PREFIX}${i}`] as WebAssembly.Global;
    return { type, bits: globalToBits(type, g.value as number | bigint) };
  });
  let stack = new Uint8Array(0);
  if (init.asyncify && unwound) {
    const mem = asyncMemory();
    const top = new DataView(mem.buffer).getUint32(ASYNCIFY_DATA_PTR, true);
    stack = mem.slice(ASYNCIFY_STACK_START, top);
  }
  return encodeContext({ globals, stack });
}

function applyContext(body: Uint8Array): void {
  if (!init.asyncify) throw new GuestError("bad-context", "this module was built without Asyncify");
  const mem = asyncMemory();
  const c = decodeContext(body, init.globals, mem.length - ASYNCIFY_STACK_START);
  c.globals.forEach((g, i) => {
    (instance.exports[`${EXPORT_GLOBAL_PREFIX}${i}`] as WebAssembly.Global).value = bitsToGlobal(
      g.type,
      g.bits,
    );
  });
  mem.set(c.stack, ASYNCIFY_STACK_START);
  const v = new DataView(mem.buffer);
  v.setUint32(ASYNCIFY_DATA_PTR, ASYNCIFY_STACK_START + c.stack.length, true);
  v.setUint32(ASYNCIFY_DATA_PTR + 4, mem.length, true);
  unwound = c.stack.length > 0;
}

/** Run the guest until it ends or unwinds (a snapshot rewinds at once). Reports the outcome as an event. */
function run(rewind: boolean): void {
  try {
    for (;;) {
      if (rewind) {
        rewinding = true;
        exports.asyncify_start_rewind(ASYNCIFY_DATA_PTR);
      }
      exports._start();
      if (init.asyncify && exports.asyncify_get_state() === ASYNCIFY_UNWINDING) {
        exports.asyncify_stop_unwind();
        unwound = true;
        if (takeSnapshot()) {
          rewind = true;
          continue;
        }
        Atomics.store(ctl32, RUNNING, 0);
        host.onSuspend();
        // The changed file blocks travel with the event: no round trip for harvestFsDirty().
        const fsDirty = takeFsDirty();
        post({ t: "suspended", fsDirty, captured: captureAtStop(fsDirty) });
        return;
      }
      finish({ t: "exited", code: 0 });
      return;
    }
  } catch (e) {
    rewinding = false;
    if (e instanceof ProcExit) finish({ t: "exited", code: e.code });
    else finish({ t: "trapped", message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
}

const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/**
 * A stop for a snapshot (CTL_STOP = STOP_SNAPSHOT*), the guest just unwound: take its changed
 * file blocks, the context and the host state with those blocks (input already posted delivered
 * first, as a capture does), the digest if asked, then harvest the dirty map and copy the pages
 * it names, post it all (the copy transferred) and return true: the caller rewinds the guest at
 * once, with no word from the main thread, and its output from then on follows the "snapshot"
 * event on the same port. More dirty pages than CTL_SNAP_MAX, or a capture that fails: the stop
 * becomes an ordinary one (STOP_CAPTURE, or STOP_PLAIN after a failure, with the blocks kept) and
 * false is returned, nothing harvested.
 */
function takeSnapshot(): boolean {
  const how = Atomics.load(ctl32, STOP);
  if (how !== STOP_SNAPSHOT && how !== STOP_SNAPSHOT_DIGEST) return false;
  const stoppedAt = nowMs();
  const mem = new Uint8Array(memory.buffer);
  const memoryPages = mem.byteLength / PAGE_SIZE;
  if (countMap(map64, ctlBytes, memoryPages) > Atomics.load(ctl32, SNAP_MAX)) {
    Atomics.store(ctl32, STOP, STOP_CAPTURE);
    return false;
  }
  host.onSuspend();
  const fsBlocks = takeFsDirty();
  let context: Uint8Array;
  let hostState: Uint8Array;
  let digest: Uint8Array | undefined;
  try {
    pump();
    context = captureContext();
    hostState = host.captureState({ kind: "some", blocks: fsBlocks });
    if (how === STOP_SNAPSHOT_DIGEST) digest = stateDigest(mem, context, host.captureState({ kind: "all" }));
  } catch {
    if (fsBlocks.length > 0) {
      pendingFs = unionBlocks(pendingFs, fsBlocks);
      Atomics.store(ctl32, FS_PENDING, 1);
    }
    Atomics.store(ctl32, STOP, STOP_PLAIN);
    return false;
  }
  const pfns = harvestMap(map64, ctl32, memoryPages);
  const pages = new Uint8Array(pfns.length * PAGE_SIZE);
  copyPageRuns(mem, pfns, pages);
  Atomics.store(ctl32, STOP, 0);
  host.onResume();
  const resumedAt = nowMs();
  port.postMessage(
    {
      t: "snapshot",
      snap: { pfns, pages, memoryPages, fsBlocks, context, hostState, digest, stoppedAt, resumedAt },
    } satisfies WorkerEvent,
    [pages.buffer],
  );
  return true;
}

/**
 * A stop that asked for it (CTL_STOP = STOP_CAPTURE) gets the guest context and the host state
 * with this stop's changed blocks, as the captureContext and captureHost requests would give them
 * (input already posted is delivered first), in the same step: no further round trip. A capture
 * that fails is left to those requests, which report the error.
 */
function captureAtStop(fsDirty: FsBlockRef[]): UnwindCapture | undefined {
  const how = Atomics.load(ctl32, STOP);
  if (how !== STOP_CAPTURE && how !== STOP_CAPTURE_ALL) return undefined;
  const allBlocks = how === STOP_CAPTURE_ALL;
  try {
    pump();
    const hostState = host.captureState(allBlocks ? { kind: "all" } : { kind: "some", blocks: fsDirty });
    return { context: captureContext(), hostState, allBlocks };
  } catch {
    return undefined;
  }
}

function finish(event: WorkerEvent): void {
  Atomics.store(ctl32, RUNNING, 0);
  ended = true;
  unwound = false;
  host.onSuspend();
  const done = () => post(event);
  if (init.writeBackOnExit && event.t === "exited") host.writeBack().then(done, done);
  else done();
}

/**
 * A guest that exited or trapped gets a state applied (COLO: the replica that ended alone is
 * restored from the other's checkpoint): a fresh instance over the same memory. Instantiating
 * re-applies the data segments, so the memory is copied back afterwards (unmarked: it is what it
 * was); the applied context then sets every global and the Asyncify stack.
 */
function revive(): void {
  if (!ended) return;
  const saved = new Uint8Array(memory.buffer).slice();
  instantiate();
  new Uint8Array(memory.buffer).set(saved);
  ended = false;
}

function serialize(e: unknown): SerializedError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, code: typeof code === "string" ? code : undefined, message: e.message };
  }
  return { name: "Error", code: undefined, message: String(e) };
}

function handle(req: Request): Uint8Array | ReturnType<WasiHost["harvestFsDirty"]> | undefined {
  switch (req.op) {
    case "start":
    case "resume":
      return undefined; // answered and run below
    case "captureContext":
      return captureContext();
    case "applyContext":
      revive();
      applyContext(req.body);
      return undefined;
    case "captureHost":
      pump();
      return host.captureState(req.fs);
    case "applyHost":
      revive();
      pump();
      host.applyState(req.body);
      return undefined;
    case "harvestFs":
      return takeFsDirty();
    case "reinstantiate": {
      const ctx = init.asyncify ? captureContext() : undefined;
      const old = new Uint8Array(memory.buffer);
      memory = req.memory;
      instantiate();
      new Uint8Array(memory.buffer).set(old.subarray(0, Math.min(old.length, req.copyPages * 4096)));
      if (ctx !== undefined) applyContext(ctx);
      return undefined;
    }
    case "prefault": {
      // One atomic read-modify-write of 0 per 4 KiB page: a write access, so the OS maps (and
      // zeroes) the page now rather than on the restore's first write of it, and the value is
      // unchanged even when the main thread writes that page at the same moment. The guest's
      // dirty map is not touched (only instrumented stores and host calls mark pages).
      const words = new Int32Array(memory.buffer);
      const to = Math.min(req.to, words.length >>> 10);
      for (let p = Math.max(0, req.from); p < to; p++) Atomics.or(words, p << 10, 0);
      return undefined;
    }
  }
}

function serve(msg: RequestMessage): Reply {
  try {
    return { t: "reply", id: msg.id, ok: true, value: handle(msg) };
  } catch (e) {
    return { t: "reply", id: msg.id, ok: false, error: serialize(e) };
  }
}

port.on("message", (msg: RequestMessage | BatchMessage) => {
  if (msg.op === "batch") {
    // Captures and applies only (never start or resume): served in order, answered together.
    post({ t: "replies", replies: msg.requests.map(serve) });
    return;
  }
  let value: ReturnType<typeof handle>;
  try {
    if (ended && (msg.op === "start" || msg.op === "resume")) throw new Error("guest has ended");
    value = handle(msg);
  } catch (e) {
    post({ t: "reply", id: msg.id, ok: false, error: serialize(e) });
    return;
  }
  if (msg.op === "start" || msg.op === "resume") {
    // The reply carries when the guest runs again (this thread's monotonic clock, ms): the end of
    // its pause, which the main thread only hears of a wake-up later.
    host.onResume();
    if (msg.op === "resume") pump();
    post({ t: "reply", id: msg.id, ok: true, value: Number(process.hrtime.bigint()) / 1e6 });
    Atomics.store(ctl32, RUNNING, 1);
    Atomics.notify(ctl32, RUNNING); // a main thread handing its core over (resume handOffMs)
    run(msg.op === "resume" && unwound);
    return;
  }
  post({ t: "reply", id: msg.id, ok: true, value });
});

try {
  instantiate();
  post({ t: "ready" });
} catch (e) {
  post({ t: "trapped", message: `instantiate: ${e instanceof Error ? e.message : String(e)}` });
}
