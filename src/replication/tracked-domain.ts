/**
 * The secondary's view of its replica for the engine: a Domain that forwards every call to the
 * real one and remembers what the engine applied, which the controller needs after a checkpoint:
 * - the pfns written since `takeWritten()` (the cache strategy updates its cache with them);
 * - the last host state applied (its per-connection input offsets tell the mirror receiver
 *   which mirrored input the checkpoint already holds).
 */
import {
  type Domain,
  type DomainState,
  type FsBlockRef,
  type FsBlockSelection,
  type GuestEnd,
  type ModuleIdentity,
  PAGE_SIZE,
  type ResumeOptions,
  type SuspendOptions,
  writeBytesByPage,
} from "../guest/domain.ts";
import type { ConnId } from "../guest/port.ts";
import type { HostState } from "../guest/wasi/state.ts";
import { decodeState } from "../guest/wasi/state-codec.ts";

export class TrackedDomain implements Domain {
  readonly inner: Domain;
  #written = new Set<number>();
  #hostState: Uint8Array | undefined;

  constructor(inner: Domain) {
    this.inner = inner;
  }

  get state(): DomainState {
    return this.inner.state;
  }
  get end(): GuestEnd | undefined {
    return this.inner.end;
  }
  get identity(): ModuleIdentity {
    return this.inner.identity;
  }
  /** The last host-state body applied (undefined before the first). */
  get lastHostState(): Uint8Array | undefined {
    return this.#hostState;
  }
  /** Pfns written by the engine since the last call, and forget them. */
  takeWritten(): Set<number> {
    const w = this.#written;
    this.#written = new Set();
    return w;
  }

  pageCount(): number {
    return this.inner.pageCount();
  }
  resize(pages: number): Promise<void> {
    return this.inner.resize(pages);
  }
  readPage(pfn: number, dst: Uint8Array): void {
    this.inner.readPage(pfn, dst);
  }
  writePage(pfn: number, src: Uint8Array): void {
    this.inner.writePage(pfn, src);
    this.#written.add(pfn);
  }
  writePages(firstPfn: number, src: Uint8Array): void {
    const n = src.length / PAGE_SIZE;
    if (this.inner.writePages !== undefined) this.inner.writePages(firstPfn, src);
    else
      for (let k = 0; k < n; k++)
        this.inner.writePage(firstPfn + k, src.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
    for (let k = 0; k < n; k++) this.#written.add(firstPfn + k);
  }
  writeBytes(offset: number, src: Uint8Array): void {
    if (src.length === 0) return;
    if (this.inner.writeBytes !== undefined) this.inner.writeBytes(offset, src);
    else writeBytesByPage(this.inner, offset, src);
    const last = Math.floor((offset + src.length - 1) / PAGE_SIZE);
    for (let pfn = Math.floor(offset / PAGE_SIZE); pfn <= last; pfn++) this.#written.add(pfn);
  }
  harvestDirty(): Uint32Array {
    return this.inner.harvestDirty();
  }
  harvestStopped(): Uint32Array | undefined {
    return this.inner.harvestStopped?.();
  }
  start(): Promise<void> {
    return this.inner.start();
  }
  suspend(opts?: SuspendOptions): Promise<void> {
    return this.inner.suspend(opts);
  }
  resume(opts?: ResumeOptions): Promise<void> {
    return this.inner.resume(opts);
  }
  get resumedAt(): number | undefined {
    return this.inner.resumedAt;
  }
  captureContext(): Promise<Uint8Array> {
    return this.inner.captureContext();
  }
  applyContext(body: Uint8Array): Promise<void> {
    return this.inner.applyContext(body);
  }
  validateContext(body: Uint8Array): void {
    this.inner.validateContext?.(body);
  }
  validateHostState(body: Uint8Array): void {
    this.inner.validateHostState?.(body);
  }
  captureHostState(fs: FsBlockSelection): Promise<Uint8Array> {
    return this.inner.captureHostState(fs);
  }
  async applyHostState(body: Uint8Array): Promise<void> {
    await this.inner.applyHostState(body);
    this.#hostState = body.slice();
  }
  harvestFsDirty(): Promise<FsBlockRef[]> {
    return this.inner.harvestFsDirty();
  }
  digest(): Promise<Uint8Array> {
    return this.inner.digest();
  }
  destroy(): Promise<void> {
    return this.inner.destroy();
  }
}

function emptyHostState(): HostState {
  return {
    args: [],
    env: [],
    fds: new Map(),
    conns: new Map(),
    pendingAccepts: [],
    stdoutOffset: 0,
    stderrOffset: 0,
    stdin: { inOffset: 0, chunks: [], headPos: 0, eof: true, peak: 0 },
    pendingPoll: undefined,
    monoStart: 0n,
    inodes: new Map(),
    nextIno: 1,
    roots: [],
  };
}

/** What the secondary needs from a host-state body. */
export interface HostSummary {
  /** Per open connection, its input offset: every byte delivered to the host, read or queued. */
  readonly inputs: Map<ConnId, number>;
  readonly stdout: number;
  readonly stderr: number;
  /** Highest connection id the state holds (-1: none). */
  readonly maxConn: number;
}

export function hostSummary(hostState: Uint8Array): HostSummary {
  // Only the connection table is read; the file-system cap is the codec's business, not ours.
  const { state } = decodeState(hostState, emptyHostState(), Number.MAX_SAFE_INTEGER);
  const inputs = new Map<ConnId, number>();
  let maxConn = -1;
  for (const [id, c] of state.conns) {
    inputs.set(id, c.inOffset);
    if (id > maxConn) maxConn = id;
  }
  return { inputs, stdout: state.stdoutOffset, stderr: state.stderrOffset, maxConn };
}
