/**
 * The WASI preview 1 host (wasi_snapshot_preview1) whose whole state is serialisable.
 *
 * Design:
 * - All guest-visible state is one HostState object (state.ts); captureState encodes it
 *   canonically (state-codec.ts), applyState swaps in a decoded one. Host-local things stay here:
 *   the host paths of preopens and the offset between the raw and the guest monotonic clock.
 * - fd 0 reads the port's stdin chunks (option stdin "port") or EOF at once (the default);
 *   fd 1/2 writes become port "data" events on stdout/stderr with offsets in state. fd 3 is the
 *   listening socket of the port (LISTEN_FDS=1); fd 4… are the preopens.
 * - Every import is wrapped: guest mistakes become errno values (bad pointers EFAULT, bad fds
 *   EBADF, path escapes ENOTCAPABLE); only StopRequested (from HostEnv.wait) and ProcExit leave.
 * - A blocking call validates its arguments, then loops { pump; if ready: act; else wait }. It
 *   changes no state and no guest memory before the last wait, so a StopRequested thrown by wait
 *   lets the runtime re-run the call from the start after resume. One deliberate exception:
 *   poll_oneoff records when it first blocked (state.pendingPoll), so that re-running it after a
 *   stop keeps its relative timeouts' deadlines instead of restarting them.
 * - Input chunks are units: one read returns bytes of at most one chunk.
 *
 * Backpressure: deliver() returns the unread bytes queued for the connection (or stdin). A read
 * that leaves a queue empty emits "drained" ("stdin-drained") if at least DRAIN_MIN_PEAK bytes
 * were delivered to the queue since the previous one (InputQueue.peak counts them). So a plug
 * whose bound is at least DRAIN_MIN_PEAK always hears it after it stops feeding, even when its
 * idea of the queue is only an estimate that counts bytes still in flight to the host (a
 * worker's port): every byte it counted since the last "drained" it saw is delivered after that
 * one, so once they are read the count is reached. A rule on the queue's peak instead would miss
 * bytes the guest read one small chunk at a time as they arrived (the lost wake-up behind the
 * stdin hang of `colo run`, see test/run/stdin.test.ts).
 */
import type { FsBlockSelection } from "../domain.ts";
import type { ConnId, PortInput, PortOutput, StdinInput } from "../port.ts";
import {
  CLOCK,
  DEV_PORT,
  DEV_VFS,
  E,
  EVENTRW_HANGUP,
  EVENTTYPE,
  FDFLAGS,
  FILETYPE,
  FSTFLAGS,
  OFLAGS,
  PREOPENTYPE_DIR,
  PREOPENTYPE_NOT_DIR,
  R,
  RIFLAGS,
  RIGHTS_ALL,
  RIGHTS_CONN,
  RIGHTS_DIR,
  RIGHTS_FILE,
  RIGHTS_LISTEN,
  RIGHTS_STDIN,
  RIGHTS_STDOUT,
  SDFLAGS,
  SIZE,
  SUBCLOCK_ABSTIME,
  WHENCE,
} from "./abi.ts";
import type { CreateWasiHost, HostEnv, WasiHost, WasiHostOptions } from "./contract.ts";
import { ProcExit, StopRequested } from "./contract.ts";
import { Errno, WasiHostError } from "./errors.ts";
import { seedTree, writeTree } from "./fs-host.ts";
import { GuestMemory, iovTotal } from "./memory.ts";
import type { Conn, DirNode, FdEntry, FileNode, HostState, Inode, InputQueue } from "./state.ts";
import { decodeState, encodeState } from "./state-codec.ts";
import { listDir, Vfs } from "./vfs.ts";

/** Most open fds at once (EMFILE beyond). */
export const MAX_FDS = 1024;
/** See the backpressure note above. */
export const DRAIN_MIN_PEAK = 16 * 1024;
/** Resolution reported by clock_res_get, ns. */
export const CLOCK_RES_NS = 1000n;

const encoder = new TextEncoder();

export const createWasiHost: CreateWasiHost = (options, env) => new Host(options, env);

type Iov = { ptr: number; len: number };
type Fn = (...args: never[]) => number | bigint | undefined;

class Host implements WasiHost {
  private state: HostState;
  private readonly vfs: Vfs;
  private readonly env: HostEnv;
  /** Host directories of the preopens, by preopen index (host-local). */
  private readonly hostPaths: Array<string | undefined>;
  /** guest monotonic = raw monotonic + monoOffset (host-local). */
  private monoOffset = 0n;
  /** Guest monotonic time frozen at suspend or taken from an applied state; rebased on next use. */
  private frozenMono: bigint | undefined;

  constructor(options: WasiHostOptions, env: HostEnv) {
    this.env = env;
    const envList = options.env.filter((kv) => !kv.startsWith("LISTEN_FDS="));
    envList.push("LISTEN_FDS=1");
    const state: HostState = {
      args: [...options.args],
      env: envList,
      fds: new Map(),
      conns: new Map(),
      pendingAccepts: [],
      stdoutOffset: 0,
      stderrOffset: 0,
      stdin: newQueue(options.stdin !== "port"),
      pendingPoll: undefined,
      monoStart: env.monotonicNs(),
      inodes: new Map(),
      nextIno: 1,
      roots: [],
    };
    state.fds.set(0, { kind: "stdin", rightsBase: RIGHTS_STDIN, rightsInheriting: 0n, flags: 0 });
    state.fds.set(1, {
      kind: "stdout",
      rightsBase: RIGHTS_STDOUT,
      rightsInheriting: 0n,
      flags: FDFLAGS.APPEND,
    });
    state.fds.set(2, {
      kind: "stderr",
      rightsBase: RIGHTS_STDOUT,
      rightsInheriting: 0n,
      flags: FDFLAGS.APPEND,
    });
    state.fds.set(3, { kind: "listen", rightsBase: RIGHTS_LISTEN, rightsInheriting: RIGHTS_CONN, flags: 0 });
    this.state = state;
    this.vfs = new Vfs(state, options.fsLimitBytes, () => env.realtimeNs());
    this.hostPaths = [];
    const now = env.realtimeNs();
    let fd = 4;
    for (const p of options.preopens) {
      const ino = state.nextIno++;
      const root: DirNode = {
        kind: "dir",
        ino,
        parent: ino,
        entries: new Map(),
        atim: now,
        mtim: now,
        ctim: now,
      };
      state.inodes.set(ino, root);
      state.roots.push(ino);
      this.hostPaths.push(p.hostPath);
      state.fds.set(fd++, {
        kind: "dir",
        ino,
        preopen: p.guestPath,
        rightsBase: RIGHTS_DIR,
        rightsInheriting: RIGHTS_DIR | RIGHTS_FILE,
        flags: 0,
      });
      if (p.hostPath !== undefined) seedTree(state, root, p.hostPath, options.fsLimitBytes);
    }
    this.vfs.replace(state);
    this.vfs.harvestDirty(); // seeding is the starting point, not a change
  }

  // ---------------------------------------------------------------- WasiHost

  imports(): Record<string, Fn> {
    const table: Record<string, Fn> = {};
    const calls = this.calls();
    for (const [name, fn] of Object.entries(calls)) {
      const isPoll = name === "poll_oneoff";
      table[name] = (...args: never[]) => {
        // Any other call means no stopped poll_oneoff is waiting to be re-run.
        if (!isPoll) this.state.pendingPoll = undefined;
        try {
          return (fn as (...a: never[]) => number)(...args);
        } catch (e) {
          if (e instanceof Errno) return e.errno;
          if (e instanceof StopRequested || e instanceof ProcExit) throw e;
          return E.IO; // a host bug must not become a guest crash or escape
        }
      };
    }
    return table;
  }

  deliver(event: PortInput | StdinInput): number {
    const st = this.state;
    if (event.kind === "stdin" || event.kind === "stdin-eof") return this.deliverStdin(event);
    if (event.kind === "open") {
      if (st.conns.has(event.conn)) {
        throw new WasiHostError("input-order", `connection ${event.conn} opened twice`, { conn: event.conn });
      }
      st.conns.set(event.conn, newConn(event.conn));
      st.pendingAccepts.push(event.conn);
      return 0;
    }
    const c = st.conns.get(event.conn);
    if (c === undefined) return 0; // the guest closed it: late input is dropped
    if (event.kind === "eof") {
      c.eof = true;
      return queued(c);
    }
    if (event.offset !== c.inOffset) {
      throw new WasiHostError(
        "input-offset",
        `connection ${event.conn}: input offset ${event.offset}, expected ${c.inOffset}`,
        { conn: event.conn, expected: c.inOffset, actual: event.offset },
      );
    }
    if (c.eof) {
      throw new WasiHostError("input-order", `connection ${event.conn}: data after eof`, {
        conn: event.conn,
      });
    }
    if (c.rdShut) {
      c.inOffset += event.bytes.length;
      return 0;
    }
    return enqueue(c, event.bytes);
  }

  private deliverStdin(event: StdinInput): number {
    const q = this.state.stdin;
    if (event.kind === "stdin-eof") {
      q.eof = true;
      return queued(q);
    }
    if (event.offset !== q.inOffset) {
      throw new WasiHostError("input-offset", `stdin: input offset ${event.offset}, expected ${q.inOffset}`, {
        expected: q.inOffset,
        actual: event.offset,
      });
    }
    if (q.eof) throw new WasiHostError("input-order", 'stdin: data after eof (or stdin is not "port")');
    return enqueue(q, event.bytes);
  }

  captureState(fs: FsBlockSelection): Uint8Array {
    return encodeState(this.state, this.guestMonoForCapture(), fs);
  }

  applyState(body: Uint8Array): void {
    const { state, mono } = decodeState(body, this.state, this.vfs.limitBytes);
    this.state = state;
    this.vfs.replace(state);
    this.frozenMono = mono;
  }

  harvestFsDirty() {
    return this.vfs.harvestDirty();
  }

  onSuspend(): void {
    if (this.frozenMono === undefined) this.frozenMono = this.env.monotonicNs() + this.monoOffset;
  }

  onResume(): void {
    this.guestMono();
  }

  async writeBack(): Promise<void> {
    for (let i = 0; i < this.hostPaths.length; i++) {
      const hostPath = this.hostPaths[i];
      const ino = this.state.roots[i];
      if (hostPath === undefined || ino === undefined) continue;
      await writeTree(this.state, ino, hostPath);
    }
  }

  // ---------------------------------------------------------------- clocks

  /** Guest monotonic now; un-freezes (rebases) if frozen, so guest time continues from the frozen value. */
  private guestMono(): bigint {
    const raw = this.env.monotonicNs();
    if (this.frozenMono !== undefined) {
      this.monoOffset = this.frozenMono - raw;
      this.frozenMono = undefined;
    }
    return raw + this.monoOffset;
  }

  private guestMonoForCapture(): bigint {
    return this.frozenMono ?? this.env.monotonicNs() + this.monoOffset;
  }

  private clockNow(id: number): bigint {
    switch (id) {
      case CLOCK.REALTIME:
        return this.env.realtimeNs();
      case CLOCK.MONOTONIC:
        return this.guestMono();
      case CLOCK.PROCESS_CPUTIME:
      case CLOCK.THREAD_CPUTIME:
        return this.guestMono() - this.state.monoStart;
      default:
        throw new Errno(E.INVAL);
    }
  }

  // ---------------------------------------------------------------- helpers

  private mem(): GuestMemory {
    return new GuestMemory(this.env.memory(), (p, n) => this.env.markDirty(p, n));
  }

  private fd(fd: number): FdEntry {
    const e = this.state.fds.get(fd >>> 0);
    if (e === undefined) throw new Errno(E.BADF);
    return e;
  }

  private fileFd(fd: number, right: bigint): { e: Extract<FdEntry, { kind: "file" }>; node: FileNode } {
    const e = this.fd(fd);
    if (e.kind === "dir") throw new Errno(E.ISDIR);
    if (e.kind !== "file") throw new Errno(e.kind === "conn" || e.kind === "listen" ? E.SPIPE : E.SPIPE);
    if ((e.rightsBase & right) === 0n) throw new Errno(E.BADF);
    const node = this.vfs.inode(e.ino);
    if (node.kind !== "file") throw new Errno(E.BADF);
    return { e, node };
  }

  private dirFd(fd: number, right: bigint): Extract<FdEntry, { kind: "dir" }> {
    const e = this.fd(fd);
    if (e.kind !== "dir") throw new Errno(E.NOTDIR);
    if ((e.rightsBase & right) === 0n) throw new Errno(E.NOTCAPABLE);
    return e;
  }

  private connFd(fd: number): Extract<FdEntry, { kind: "conn" }> {
    const e = this.fd(fd);
    if (e.kind === "listen") throw new Errno(E.NOTCONN);
    if (e.kind !== "conn") throw new Errno(E.NOTSOCK);
    return e;
  }

  private conn(id: ConnId): Conn {
    const c = this.state.conns.get(id);
    if (c === undefined) throw new Errno(E.BADF);
    return c;
  }

  private freeFd(): number {
    for (let fd = 0; fd < MAX_FDS; fd++) if (!this.state.fds.has(fd)) return fd;
    throw new Errno(E.MFILE);
  }

  private emit(event: PortOutput): void {
    this.env.emit(event);
  }

  /** Read from a connection into iovecs: bytes of at most one chunk; blocks unless non-blocking. */
  private connRead(
    e: Extract<FdEntry, { kind: "conn" }>,
    iovs: Iov[],
    peek: boolean,
    m: GuestMemory,
  ): number {
    return this.queueRead(
      () => {
        const c = this.conn(e.conn);
        return c.rdShut ? undefined : c;
      },
      e,
      iovs,
      peek,
      m,
      { kind: "drained", conn: e.conn },
    );
  }

  /**
   * Read an input queue into iovecs: bytes of at most one chunk; 0 at EOF (or when `get` returns
   * undefined: shut for reading); blocks unless the fd is non-blocking. `get` is called again
   * after each pump, as a delivery or a close may have changed things. `drained` is emitted when
   * the read empties a queue that got DRAIN_MIN_PEAK bytes delivered since the last one.
   */
  private queueRead(
    get: () => InputQueue | undefined,
    e: FdEntry,
    iovs: Iov[],
    peek: boolean,
    m: GuestMemory,
    drained: PortOutput,
  ): number {
    for (;;) {
      this.env.pump();
      const q = get();
      if (q === undefined) return 0;
      const head = q.chunks[0];
      if (head !== undefined) {
        const n = m.scatter(iovs, head.subarray(q.headPos));
        if (!peek && n > 0) {
          q.headPos += n;
          if (q.headPos === head.length) {
            q.chunks.shift();
            q.headPos = 0;
          }
          if (q.chunks.length === 0 && q.peak >= DRAIN_MIN_PEAK) {
            q.peak = 0;
            this.emit(drained);
          }
        }
        return n;
      }
      if (q.eof) return 0;
      if ((e.flags & FDFLAGS.NONBLOCK) !== 0) throw new Errno(E.AGAIN);
      this.env.wait(undefined);
    }
  }

  private connWrite(e: Extract<FdEntry, { kind: "conn" }>, bytes: Uint8Array): number {
    const c = this.conn(e.conn);
    if (c.wrShut) throw new Errno(E.PIPE);
    if (bytes.length === 0) return 0;
    this.emit({ kind: "data", stream: { kind: "conn", id: c.id }, offset: c.outOffset, bytes });
    c.outOffset += bytes.length;
    return bytes.length;
  }

  private stdWrite(kind: "stdout" | "stderr", bytes: Uint8Array): number {
    if (bytes.length === 0) return 0;
    const st = this.state;
    const offset = kind === "stdout" ? st.stdoutOffset : st.stderrOffset;
    this.emit({ kind: "data", stream: { kind }, offset, bytes });
    if (kind === "stdout") st.stdoutOffset += bytes.length;
    else st.stderrOffset += bytes.length;
    return bytes.length;
  }

  private closeFd(fd: number): void {
    const e = this.fd(fd);
    this.state.fds.delete(fd >>> 0);
    if (e.kind === "conn") {
      const c = this.state.conns.get(e.conn);
      if (c !== undefined) {
        this.state.conns.delete(e.conn);
        if (!c.wrShut) this.emit({ kind: "shutdown", conn: c.id });
        this.emit({ kind: "close", conn: c.id });
      }
    } else if (e.kind === "file") {
      const node = this.state.inodes.get(e.ino);
      if (node !== undefined && node.kind === "file") this.vfs.dropIfUnused(node);
    }
  }

  private writeFilestat(m: GuestMemory, ptr: number, node: Inode | undefined, filetype: number): void {
    m.writeStruct(ptr, SIZE.FILESTAT, (dv, p) => {
      dv.setBigUint64(p, node === undefined ? DEV_PORT : DEV_VFS, true);
      dv.setBigUint64(p + 8, BigInt(node?.ino ?? 0), true);
      dv.setUint8(p + 16, filetype);
      for (let i = 17; i < 24; i++) dv.setUint8(p + i, 0);
      dv.setBigUint64(p + 24, BigInt(node === undefined ? 1 : node.kind === "file" ? node.nlink : 1), true);
      dv.setBigUint64(p + 32, BigInt(node?.kind === "file" ? node.size : 0), true);
      dv.setBigUint64(p + 40, node?.atim ?? 0n, true);
      dv.setBigUint64(p + 48, node?.mtim ?? 0n, true);
      dv.setBigUint64(p + 56, node?.ctim ?? 0n, true);
    });
  }

  private setTimes(node: Inode, atim: bigint, mtim: bigint, fst: number): void {
    if ((fst & ~0xf) !== 0) throw new Errno(E.INVAL);
    if ((fst & FSTFLAGS.ATIM) !== 0 && (fst & FSTFLAGS.ATIM_NOW) !== 0) throw new Errno(E.INVAL);
    if ((fst & FSTFLAGS.MTIM) !== 0 && (fst & FSTFLAGS.MTIM_NOW) !== 0) throw new Errno(E.INVAL);
    const now = this.env.realtimeNs();
    if ((fst & FSTFLAGS.ATIM) !== 0) node.atim = BigInt.asUintN(64, atim);
    if ((fst & FSTFLAGS.ATIM_NOW) !== 0) node.atim = now;
    if ((fst & FSTFLAGS.MTIM) !== 0) node.mtim = BigInt.asUintN(64, mtim);
    if ((fst & FSTFLAGS.MTIM_NOW) !== 0) node.mtim = now;
    node.ctim = now;
  }

  private writeStrings(m: GuestMemory, list: readonly string[], ptrsPtr: number, bufPtr: number): void {
    const encoded = list.map((s) => encoder.encode(`${s}\0`));
    let total = 0;
    for (const b of encoded) total += b.length;
    m.check(ptrsPtr, list.length * 4);
    m.check(bufPtr, total);
    let at = bufPtr >>> 0;
    for (let i = 0; i < encoded.length; i++) {
      m.setU32((ptrsPtr >>> 0) + i * 4, at);
      m.write(at, encoded[i]!);
      at += encoded[i]!.length;
    }
  }

  private writeSizes(list: readonly string[], countPtr: number, sizePtr: number): number {
    const m = this.mem();
    m.check(countPtr, 4);
    m.check(sizePtr, 4);
    let total = 0;
    for (const s of list) total += encoder.encode(s).length + 1;
    m.setU32(countPtr, list.length);
    m.setU32(sizePtr, total);
    return E.SUCCESS;
  }

  /**
   * path_rename and path_link: both paths are read first (FAULT), then both dir fds are checked
   * (BADF/NOTCAPABLE, source before target), then the vfs does `op`.
   */
  private twoPathCall(
    op: "rename" | "link",
    src: [fd: number, ptr: number, len: number],
    dst: [fd: number, ptr: number, len: number],
  ): number {
    const m = this.mem();
    const srcPath = m.string(src[1], src[2]);
    const dstPath = m.string(dst[1], dst[2]);
    const rename = op === "rename";
    const a = this.dirFd(src[0], rename ? R.PATH_RENAME_SOURCE : R.PATH_LINK_SOURCE).ino;
    const b = this.dirFd(dst[0], rename ? R.PATH_RENAME_TARGET : R.PATH_LINK_TARGET).ino;
    if (rename) this.vfs.rename(a, srcPath, b, dstPath);
    else this.vfs.link(a, srcPath, b, dstPath);
    return E.SUCCESS;
  }

  /**
   * The frame of the iovec calls (fd_read, fd_write, fd_pread, fd_pwrite, sock_send): the iovecs,
   * then the count pointer, are checked (FAULT) before `body` runs; the byte count `body` returns
   * is stored at `nPtr`.
   */
  private iovCall(
    iovsPtr: number,
    iovsLen: number,
    nPtr: number,
    body: (m: GuestMemory, iovs: Array<{ ptr: number; len: number }>) => number,
  ): number {
    const m = this.mem();
    const iovs = m.iovecs(iovsPtr, iovsLen);
    m.check(nPtr, 4);
    m.setU32(nPtr, body(m, iovs));
    return E.SUCCESS;
  }

  private toSafe(v: bigint, errno: number): number {
    const u = BigInt.asUintN(64, v);
    if (u > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(errno);
    return Number(u);
  }

  // ---------------------------------------------------------------- the imports

  private calls(): Record<string, Fn> {
    const st = () => this.state;
    return {
      args_get: (argv: number, buf: number) => {
        this.writeStrings(this.mem(), st().args, argv, buf);
        return E.SUCCESS;
      },
      args_sizes_get: (countPtr: number, sizePtr: number) => this.writeSizes(st().args, countPtr, sizePtr),
      environ_get: (envp: number, buf: number) => {
        this.writeStrings(this.mem(), st().env, envp, buf);
        return E.SUCCESS;
      },
      environ_sizes_get: (countPtr: number, sizePtr: number) => this.writeSizes(st().env, countPtr, sizePtr),

      clock_res_get: (id: number, ptr: number) => {
        if (id < 0 || id > 3) return E.INVAL;
        this.mem().setU64(ptr, CLOCK_RES_NS);
        return E.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        const m = this.mem();
        m.check(ptr, 8);
        m.setU64(ptr, this.clockNow(id));
        return E.SUCCESS;
      },

      random_get: (ptr: number, len: number) => {
        const m = this.mem();
        const p = m.check(ptr, len);
        const n = len >>> 0;
        const chunk = new Uint8Array(Math.min(n, 65536));
        for (let at = 0; at < n; at += chunk.length) {
          const k = Math.min(chunk.length, n - at);
          const part = chunk.subarray(0, k);
          this.env.randomFill(part);
          m.write(p + at, part);
        }
        return E.SUCCESS;
      },

      proc_exit: (code: number) => {
        throw new ProcExit(code >>> 0);
      },
      proc_raise: (_sig: number) => E.NOSYS,
      sched_yield: () => {
        this.env.pump();
        return E.SUCCESS;
      },

      fd_write: (fd: number, iovsPtr: number, iovsLen: number, nPtr: number) =>
        this.iovCall(iovsPtr, iovsLen, nPtr, (m, iovs) => {
          const e = this.fd(fd);
          if ((e.rightsBase & R.FD_WRITE) === 0n) throw new Errno(E.BADF);
          const bytes = m.gather(iovs);
          switch (e.kind) {
            case "stdout":
            case "stderr":
              return this.stdWrite(e.kind, bytes);
            case "conn":
              return this.connWrite(e, bytes);
            case "file": {
              const { node } = this.fileFd(fd, R.FD_WRITE);
              const pos = (e.flags & FDFLAGS.APPEND) !== 0 ? node.size : e.pos;
              this.vfs.write(node, pos, bytes);
              e.pos = pos + bytes.length;
              return bytes.length;
            }
            default:
              throw new Errno(E.BADF);
          }
        }),
      fd_read: (fd: number, iovsPtr: number, iovsLen: number, nPtr: number) =>
        this.iovCall(iovsPtr, iovsLen, nPtr, (m, iovs) => {
          const e = this.fd(fd);
          if (e.kind === "dir") throw new Errno(E.ISDIR);
          if (e.kind === "listen") throw new Errno(E.NOTCONN);
          if ((e.rightsBase & R.FD_READ) === 0n) throw new Errno(E.BADF);
          switch (e.kind) {
            case "stdin":
              return this.queueRead(() => this.state.stdin, e, iovs, false, m, { kind: "stdin-drained" });
            case "conn":
              return this.connRead(e, iovs, false, m);
            case "file": {
              const { node } = this.fileFd(fd, R.FD_READ);
              const n = m.scatter(iovs, this.vfs.read(node, e.pos, iovTotal(iovs)));
              e.pos += n;
              return n;
            }
            default:
              throw new Errno(E.BADF);
          }
        }),
      fd_pread: (fd: number, iovsPtr: number, iovsLen: number, offset: bigint, nPtr: number) =>
        this.iovCall(iovsPtr, iovsLen, nPtr, (m, iovs) => {
          const { node } = this.fileFd(fd, R.FD_READ);
          const pos = this.toSafe(offset, E.INVAL);
          return m.scatter(iovs, this.vfs.read(node, pos, iovTotal(iovs)));
        }),
      fd_pwrite: (fd: number, iovsPtr: number, iovsLen: number, offset: bigint, nPtr: number) =>
        this.iovCall(iovsPtr, iovsLen, nPtr, (m, iovs) => {
          const { node } = this.fileFd(fd, R.FD_WRITE);
          const pos = this.toSafe(offset, E.INVAL);
          const bytes = m.gather(iovs);
          this.vfs.write(node, pos, bytes);
          return bytes.length;
        }),
      fd_seek: (fd: number, offset: bigint, whence: number, newPtr: number) => {
        const m = this.mem();
        m.check(newPtr, 8);
        const e = this.fd(fd);
        if (e.kind !== "file") throw new Errno(e.kind === "dir" ? E.BADF : E.SPIPE);
        const { node } = this.fileFd(fd, R.FD_SEEK | R.FD_TELL);
        const delta = BigInt.asIntN(64, offset);
        let base: bigint;
        if (whence === WHENCE.SET) base = 0n;
        else if (whence === WHENCE.CUR) base = BigInt(e.pos);
        else if (whence === WHENCE.END) base = BigInt(node.size);
        else throw new Errno(E.INVAL);
        const next = base + delta;
        if (next < 0n) throw new Errno(E.INVAL);
        if (next > BigInt(Number.MAX_SAFE_INTEGER)) throw new Errno(E.OVERFLOW);
        e.pos = Number(next);
        m.setU64(newPtr, next);
        return E.SUCCESS;
      },
      fd_tell: (fd: number, ptr: number) => {
        const m = this.mem();
        m.check(ptr, 8);
        const e = this.fd(fd);
        if (e.kind !== "file") throw new Errno(e.kind === "dir" ? E.BADF : E.SPIPE);
        m.setU64(ptr, BigInt(e.pos));
        return E.SUCCESS;
      },
      fd_close: (fd: number) => {
        this.closeFd(fd);
        return E.SUCCESS;
      },
      fd_sync: (fd: number) => {
        const e = this.fd(fd);
        return e.kind === "file" || e.kind === "dir" ? E.SUCCESS : E.INVAL;
      },
      fd_datasync: (fd: number) => {
        const e = this.fd(fd);
        return e.kind === "file" || e.kind === "dir" ? E.SUCCESS : E.INVAL;
      },
      fd_advise: (fd: number, _offset: bigint, _len: bigint, advice: number) => {
        const e = this.fd(fd);
        if (advice < 0 || advice > 5) return E.INVAL;
        if (e.kind === "dir") return E.BADF;
        return e.kind === "file" ? E.SUCCESS : E.SPIPE;
      },
      fd_allocate: (fd: number, offset: bigint, len: bigint) => {
        const { node } = this.fileFd(fd, R.FD_ALLOCATE);
        const end = this.toSafe(offset, E.FBIG) + this.toSafe(len, E.FBIG);
        if (!Number.isSafeInteger(end)) throw new Errno(E.FBIG);
        if (end > node.size) this.vfs.setSize(node, end);
        return E.SUCCESS;
      },
      fd_fdstat_get: (fd: number, ptr: number) => {
        const m = this.mem();
        m.check(ptr, SIZE.FDSTAT);
        const e = this.fd(fd);
        m.writeStruct(ptr, SIZE.FDSTAT, (dv, p) => {
          dv.setUint8(p, fileTypeOf(e));
          dv.setUint8(p + 1, 0);
          dv.setUint16(p + 2, e.flags, true);
          dv.setUint32(p + 4, 0, true);
          dv.setBigUint64(p + 8, e.rightsBase, true);
          dv.setBigUint64(p + 16, e.rightsInheriting, true);
        });
        return E.SUCCESS;
      },
      fd_fdstat_set_flags: (fd: number, flags: number) => {
        const e = this.fd(fd);
        if ((flags & ~0x1f) !== 0) return E.INVAL;
        e.flags = flags;
        return E.SUCCESS;
      },
      fd_fdstat_set_rights: (fd: number, base: bigint, inheriting: bigint) => {
        const e = this.fd(fd);
        const b = BigInt.asUintN(64, base);
        const i = BigInt.asUintN(64, inheriting);
        if ((b & ~e.rightsBase) !== 0n || (i & ~e.rightsInheriting) !== 0n) return E.NOTCAPABLE;
        e.rightsBase = b;
        e.rightsInheriting = i;
        return E.SUCCESS;
      },
      fd_filestat_get: (fd: number, ptr: number) => {
        const m = this.mem();
        m.check(ptr, SIZE.FILESTAT);
        const e = this.fd(fd);
        const node = e.kind === "file" || e.kind === "dir" ? this.vfs.inode(e.ino) : undefined;
        this.writeFilestat(m, ptr, node, fileTypeOf(e));
        return E.SUCCESS;
      },
      fd_filestat_set_size: (fd: number, size: bigint) => {
        const { node } = this.fileFd(fd, R.FD_FILESTAT_SET_SIZE);
        this.vfs.setSize(node, this.toSafe(size, E.FBIG));
        return E.SUCCESS;
      },
      fd_filestat_set_times: (fd: number, atim: bigint, mtim: bigint, fst: number) => {
        const e = this.fd(fd);
        if (e.kind !== "file" && e.kind !== "dir") {
          if ((fst & ~0xf) !== 0) return E.INVAL;
          return E.SUCCESS;
        }
        this.setTimes(this.vfs.inode(e.ino), atim, mtim, fst);
        return E.SUCCESS;
      },
      fd_prestat_get: (fd: number, ptr: number) => {
        const m = this.mem();
        m.check(ptr, SIZE.PRESTAT);
        const e = this.fd(fd);
        let tag: number;
        let nameLen = 0;
        if (e.kind === "listen") tag = PREOPENTYPE_NOT_DIR;
        else if (e.kind === "dir" && e.preopen !== undefined) {
          tag = PREOPENTYPE_DIR;
          nameLen = encoder.encode(e.preopen).length;
        } else return E.BADF;
        m.writeStruct(ptr, SIZE.PRESTAT, (dv, p) => {
          dv.setUint32(p, tag, true); // u8 tag + 3 bytes padding
          dv.setUint32(p + 4, nameLen, true);
        });
        return E.SUCCESS;
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        const m = this.mem();
        m.check(ptr, len);
        const e = this.fd(fd);
        if (e.kind !== "dir" || e.preopen === undefined) return E.BADF;
        const name = encoder.encode(e.preopen);
        if (len >>> 0 < name.length) return E.NAMETOOLONG;
        m.write(ptr, name);
        return E.SUCCESS;
      },
      fd_readdir: (fd: number, buf: number, bufLen: number, cookie: bigint, usedPtr: number) => {
        const m = this.mem();
        const p = m.check(buf, bufLen);
        m.check(usedPtr, 4);
        const e = this.dirFd(fd, R.FD_READDIR);
        const dir = this.vfs.dir(e.ino);
        const list = listDir(this.vfs, dir);
        const cap = bufLen >>> 0;
        const out = new Uint8Array(cap);
        const dv = new DataView(out.buffer);
        let used = 0;
        const start = BigInt.asUintN(64, cookie);
        for (
          let i = start > BigInt(list.length) ? list.length : Number(start);
          i < list.length && used < cap;
          i++
        ) {
          const ent = list[i]!;
          const name = encoder.encode(ent.name);
          const rec = new Uint8Array(SIZE.DIRENT + name.length);
          const rdv = new DataView(rec.buffer);
          rdv.setBigUint64(0, BigInt(i + 1), true);
          rdv.setBigUint64(8, BigInt(ent.ino), true);
          rdv.setUint32(16, name.length, true);
          rdv.setUint8(20, ent.kind === "dir" ? FILETYPE.DIRECTORY : FILETYPE.REGULAR_FILE);
          rec.set(name, SIZE.DIRENT);
          const n = Math.min(rec.length, cap - used);
          out.set(rec.subarray(0, n), used);
          used += n;
        }
        void dv;
        m.write(p, out.subarray(0, used));
        m.setU32(usedPtr, used);
        return E.SUCCESS;
      },
      fd_renumber: (from: number, to: number) => {
        const e = this.fd(from);
        this.fd(to);
        if (from >>> 0 === to >>> 0) return E.SUCCESS;
        this.state.fds.delete(from >>> 0);
        this.state.fds.set(from >>> 0, e); // keep `from` alive while `to` closes (a file must not be dropped)
        this.closeFd(to);
        this.state.fds.delete(from >>> 0);
        this.state.fds.set(to >>> 0, e);
        return E.SUCCESS;
      },

      path_open: (
        dirfd: number,
        _dirflags: number,
        pathPtr: number,
        pathLen: number,
        oflags: number,
        rightsBase: bigint,
        rightsInheriting: bigint,
        fdflags: number,
        fdPtr: number,
      ) => {
        const m = this.mem();
        const path = m.string(pathPtr, pathLen);
        m.check(fdPtr, 4);
        const d = this.dirFd(dirfd, R.PATH_OPEN);
        if ((oflags & ~0xf) !== 0 || (fdflags & ~0x1f) !== 0) return E.INVAL;
        const r = this.vfs.resolve(d.ino, path);
        const base = BigInt.asUintN(64, rightsBase);
        const newFd = this.freeFd();
        let node = r.node;
        if (node === undefined) {
          if ((oflags & OFLAGS.CREAT) === 0) return E.NOENT;
          if ((oflags & OFLAGS.DIRECTORY) !== 0 || r.mustBeDir) return E.INVAL;
          if ((d.rightsBase & R.PATH_CREATE_FILE) === 0n) return E.NOTCAPABLE;
          if (r.parent === undefined || r.name === undefined) return E.EXIST;
          node = this.vfs.createFile(r.parent, r.name);
        } else {
          if ((oflags & OFLAGS.CREAT) !== 0 && (oflags & OFLAGS.EXCL) !== 0) return E.EXIST;
          if ((oflags & OFLAGS.DIRECTORY) !== 0 && node.kind !== "dir") return E.NOTDIR;
          if (node.kind === "dir" && ((oflags & OFLAGS.TRUNC) !== 0 || (base & R.FD_WRITE) !== 0n))
            return E.ISDIR;
          if (node.kind === "file" && (oflags & OFLAGS.TRUNC) !== 0) {
            if ((d.rightsBase & R.PATH_FILESTAT_SET_SIZE) === 0n && (base & R.FD_WRITE) === 0n)
              return E.NOTCAPABLE;
            this.vfs.setSize(node, 0);
          }
        }
        const inh = d.rightsInheriting;
        const entry: FdEntry =
          node.kind === "dir"
            ? {
                kind: "dir",
                ino: node.ino,
                preopen: undefined,
                rightsBase: base & inh & RIGHTS_DIR,
                rightsInheriting: BigInt.asUintN(64, rightsInheriting) & inh,
                flags: fdflags,
              }
            : {
                kind: "file",
                ino: node.ino,
                pos: 0,
                rightsBase: base & inh & RIGHTS_FILE,
                rightsInheriting: BigInt.asUintN(64, rightsInheriting) & inh & RIGHTS_ALL,
                flags: fdflags,
              };
        this.state.fds.set(newFd, entry);
        m.setU32(fdPtr, newFd);
        return E.SUCCESS;
      },
      path_create_directory: (fd: number, pathPtr: number, pathLen: number) => {
        const path = this.mem().string(pathPtr, pathLen);
        const d = this.dirFd(fd, R.PATH_CREATE_DIRECTORY);
        this.vfs.mkdir(d.ino, path);
        return E.SUCCESS;
      },
      path_remove_directory: (fd: number, pathPtr: number, pathLen: number) => {
        const path = this.mem().string(pathPtr, pathLen);
        const d = this.dirFd(fd, R.PATH_REMOVE_DIRECTORY);
        this.vfs.rmdir(d.ino, path);
        return E.SUCCESS;
      },
      path_unlink_file: (fd: number, pathPtr: number, pathLen: number) => {
        const path = this.mem().string(pathPtr, pathLen);
        const d = this.dirFd(fd, R.PATH_UNLINK_FILE);
        this.vfs.unlink(d.ino, path);
        return E.SUCCESS;
      },
      path_rename: (fd: number, ptr: number, len: number, toFd: number, toPtr: number, toLen: number) =>
        this.twoPathCall("rename", [fd, ptr, len], [toFd, toPtr, toLen]),
      path_link: (
        fd: number,
        _flags: number,
        ptr: number,
        len: number,
        toFd: number,
        toPtr: number,
        toLen: number,
      ) => this.twoPathCall("link", [fd, ptr, len], [toFd, toPtr, toLen]),
      path_symlink: (oldPtr: number, oldLen: number, fd: number, newPtr: number, newLen: number) => {
        const m = this.mem();
        m.string(oldPtr, oldLen);
        m.string(newPtr, newLen);
        this.dirFd(fd, R.PATH_SYMLINK);
        return E.NOTSUP;
      },
      path_readlink: (
        fd: number,
        pathPtr: number,
        pathLen: number,
        buf: number,
        bufLen: number,
        usedPtr: number,
      ) => {
        const m = this.mem();
        const path = m.string(pathPtr, pathLen);
        m.check(buf, bufLen);
        m.check(usedPtr, 4);
        const d = this.dirFd(fd, R.PATH_READLINK);
        this.vfs.lookup(d.ino, path);
        return E.INVAL; // exists, but there are no symbolic links here
      },
      path_filestat_get: (fd: number, _flags: number, pathPtr: number, pathLen: number, ptr: number) => {
        const m = this.mem();
        const path = m.string(pathPtr, pathLen);
        m.check(ptr, SIZE.FILESTAT);
        const d = this.dirFd(fd, R.PATH_FILESTAT_GET);
        const node = this.vfs.lookup(d.ino, path);
        this.writeFilestat(m, ptr, node, node.kind === "dir" ? FILETYPE.DIRECTORY : FILETYPE.REGULAR_FILE);
        return E.SUCCESS;
      },
      path_filestat_set_times: (
        fd: number,
        _flags: number,
        pathPtr: number,
        pathLen: number,
        atim: bigint,
        mtim: bigint,
        fst: number,
      ) => {
        const path = this.mem().string(pathPtr, pathLen);
        const d = this.dirFd(fd, R.PATH_FILESTAT_SET_TIMES);
        this.setTimes(this.vfs.lookup(d.ino, path), atim, mtim, fst);
        return E.SUCCESS;
      },

      poll_oneoff: (inPtr: number, outPtr: number, nsubs: number, neventsPtr: number) =>
        this.poll(inPtr, outPtr, nsubs, neventsPtr),

      sock_accept: (fd: number, flags: number, fdPtr: number) => {
        const m = this.mem();
        m.check(fdPtr, 4);
        const e = this.fd(fd);
        if (e.kind === "conn") return E.INVAL;
        if (e.kind !== "listen") return E.NOTSOCK;
        if ((flags & ~FDFLAGS.NONBLOCK) !== 0) return E.INVAL;
        for (;;) {
          this.env.pump();
          const id = this.state.pendingAccepts[0];
          if (id !== undefined) {
            const newFd = this.freeFd();
            this.state.pendingAccepts.shift();
            this.state.fds.set(newFd, {
              kind: "conn",
              conn: id,
              rightsBase: RIGHTS_CONN,
              rightsInheriting: 0n,
              flags: flags & FDFLAGS.NONBLOCK,
            });
            m.setU32(fdPtr, newFd);
            return E.SUCCESS;
          }
          if ((e.flags & FDFLAGS.NONBLOCK) !== 0) return E.AGAIN;
          this.env.wait(undefined);
        }
      },
      sock_recv: (
        fd: number,
        iovsPtr: number,
        iovsLen: number,
        riFlags: number,
        nPtr: number,
        roFlagsPtr: number,
      ) => {
        const m = this.mem();
        const iovs = m.iovecs(iovsPtr, iovsLen);
        m.check(nPtr, 4);
        m.check(roFlagsPtr, 2);
        const e = this.connFd(fd);
        if ((riFlags & ~(RIFLAGS.PEEK | RIFLAGS.WAITALL)) !== 0) return E.INVAL;
        const n = this.connRead(e, iovs, (riFlags & RIFLAGS.PEEK) !== 0, m);
        m.setU32(nPtr, n);
        m.writeStruct(roFlagsPtr, 2, (dv, p) => dv.setUint16(p, 0, true));
        return E.SUCCESS;
      },
      sock_send: (fd: number, iovsPtr: number, iovsLen: number, _siFlags: number, nPtr: number) =>
        this.iovCall(iovsPtr, iovsLen, nPtr, (m, iovs) => this.connWrite(this.connFd(fd), m.gather(iovs))),
      sock_shutdown: (fd: number, how: number) => {
        const e = this.connFd(fd);
        if (how !== SDFLAGS.RD && how !== SDFLAGS.WR && how !== (SDFLAGS.RD | SDFLAGS.WR)) return E.INVAL;
        const c = this.conn(e.conn);
        if ((how & SDFLAGS.RD) !== 0) {
          c.rdShut = true;
          c.chunks = [];
          c.headPos = 0;
        }
        if ((how & SDFLAGS.WR) !== 0 && !c.wrShut) {
          c.wrShut = true;
          this.emit({ kind: "shutdown", conn: c.id });
        }
        return E.SUCCESS;
      },
    };
  }

  // ---------------------------------------------------------------- poll_oneoff

  private poll(inPtr: number, outPtr: number, nsubs: number, neventsPtr: number): number {
    const m = this.mem();
    const n = nsubs >>> 0;
    if (n === 0) return E.INVAL;
    m.check(inPtr, n * SIZE.SUBSCRIPTION);
    m.check(outPtr, n * SIZE.EVENT);
    m.check(neventsPtr, 4);
    if (n * SIZE.SUBSCRIPTION > m.u8.length) return E.FAULT;
    type Sub =
      | { userdata: bigint; type: 0; deadline: bigint | undefined; error: number }
      | { userdata: bigint; type: 1 | 2; fd: number };
    const subs: Sub[] = [];
    const now0 = this.guestMono();
    // Relative timeouts count from the first run of this very call, if a stop interrupted it.
    const pending = this.state.pendingPoll;
    const resumed =
      pending !== undefined &&
      pending.inPtr === inPtr >>> 0 &&
      pending.outPtr === outPtr >>> 0 &&
      pending.nsubs === n &&
      equalBytes(pending.subs, m.u8.subarray(inPtr >>> 0, (inPtr >>> 0) + n * SIZE.SUBSCRIPTION));
    const start = resumed ? pending.start : now0;
    let recorded = resumed;
    for (let i = 0; i < n; i++) {
      const p = (inPtr >>> 0) + i * SIZE.SUBSCRIPTION;
      const userdata = m.u64(p);
      const tag = m.u8At(p + 8);
      if (tag === EVENTTYPE.CLOCK) {
        const id = m.u32(p + 16);
        const timeout = m.u64(p + 24);
        const flags = m.u16(p + 40);
        let deadline: bigint | undefined;
        let error: number = E.SUCCESS;
        if (id > 3) error = E.INVAL;
        else if ((flags & SUBCLOCK_ABSTIME) === 0) deadline = start + timeout;
        else if (id === CLOCK.REALTIME) deadline = now0 + (timeout - this.env.realtimeNs());
        else if (id === CLOCK.MONOTONIC) deadline = timeout;
        else deadline = this.state.monoStart + timeout;
        subs.push({ userdata, type: 0, deadline, error });
      } else if (tag === EVENTTYPE.FD_READ || tag === EVENTTYPE.FD_WRITE) {
        subs.push({ userdata, type: tag, fd: m.u32(p + 16) });
      } else return E.INVAL;
    }
    for (;;) {
      this.env.pump();
      const now = this.guestMono();
      const events: Array<{ userdata: bigint; error: number; type: number; nbytes: bigint; flags: number }> =
        [];
      let earliest: bigint | undefined;
      for (const s of subs) {
        if (s.type === 0) {
          if (s.error !== E.SUCCESS || (s.deadline !== undefined && s.deadline <= now)) {
            events.push({ userdata: s.userdata, error: s.error, type: 0, nbytes: 0n, flags: 0 });
          } else if (s.deadline !== undefined && (earliest === undefined || s.deadline < earliest)) {
            earliest = s.deadline;
          }
          continue;
        }
        const r = this.fdReadiness(s.fd, s.type);
        if (r !== undefined) events.push({ userdata: s.userdata, type: s.type, ...r });
      }
      if (events.length > 0) {
        m.writeStruct(outPtr, events.length * SIZE.EVENT, (dv, base) => {
          events.forEach((ev, i) => {
            const p = base + i * SIZE.EVENT;
            dv.setBigUint64(p, ev.userdata, true);
            dv.setUint16(p + 8, ev.error, true);
            dv.setUint8(p + 10, ev.type);
            for (let k = 11; k < 16; k++) dv.setUint8(p + k, 0);
            dv.setBigUint64(p + 16, ev.nbytes, true);
            dv.setUint16(p + 24, ev.flags, true);
            for (let k = 26; k < 32; k++) dv.setUint8(p + k, 0);
          });
        });
        m.setU32(neventsPtr, events.length);
        this.state.pendingPoll = undefined;
        return E.SUCCESS;
      }
      if (!recorded) {
        recorded = true;
        const at = inPtr >>> 0;
        const bytes = m.u8.slice(at, at + n * SIZE.SUBSCRIPTION);
        this.state.pendingPoll = { inPtr: at, outPtr: outPtr >>> 0, nsubs: n, subs: bytes, start };
      }
      const rawDeadline = earliest === undefined ? undefined : earliest - this.monoOffset;
      this.env.wait(rawDeadline);
    }
  }

  /** Readiness of one fd subscription, or undefined if not ready. */
  private fdReadiness(fd: number, type: 1 | 2): { error: number; nbytes: bigint; flags: number } | undefined {
    const e = this.state.fds.get(fd >>> 0);
    if (e === undefined) return { error: E.BADF, nbytes: 0n, flags: 0 };
    const ok = (nbytes: number, flags = 0) => ({ error: E.SUCCESS, nbytes: BigInt(nbytes), flags });
    if (type === EVENTTYPE.FD_WRITE) {
      switch (e.kind) {
        case "stdout":
        case "stderr":
        case "file":
          return ok(0);
        case "conn": {
          const c = this.state.conns.get(e.conn);
          if (c === undefined || c.wrShut) return { error: E.PIPE, nbytes: 0n, flags: 0 };
          return ok(0);
        }
        default:
          return { error: E.BADF, nbytes: 0n, flags: 0 };
      }
    }
    switch (e.kind) {
      case "stdin": {
        const q = queued(this.state.stdin);
        if (q > 0) return ok(q);
        return this.state.stdin.eof ? ok(0, EVENTRW_HANGUP) : undefined;
      }
      case "file": {
        const node = this.state.inodes.get(e.ino);
        return ok(node?.kind === "file" ? Math.max(0, node.size - e.pos) : 0);
      }
      case "listen":
        return this.state.pendingAccepts.length > 0 ? ok(this.state.pendingAccepts.length) : undefined;
      case "conn": {
        const c = this.state.conns.get(e.conn);
        if (c === undefined) return ok(0, EVENTRW_HANGUP);
        const q = queued(c);
        if (q > 0) return ok(q);
        if (c.eof || c.rdShut) return ok(0, EVENTRW_HANGUP);
        return undefined;
      }
      default:
        return { error: E.BADF, nbytes: 0n, flags: 0 };
    }
  }
}

function newQueue(eof: boolean): InputQueue {
  return { inOffset: 0, chunks: [], headPos: 0, eof, peak: 0 };
}

function newConn(id: ConnId): Conn {
  return { id, ...newQueue(false), outOffset: 0, wrShut: false, rdShut: false };
}

/** Unread input bytes queued for a connection or stdin. */
export function queued(c: InputQueue): number {
  let q = -c.headPos;
  for (const ch of c.chunks) q += ch.length;
  return Math.max(0, q);
}

/** Append one delivered chunk (copied); returns the bytes now queued. */
function enqueue(c: InputQueue, bytes: Uint8Array): number {
  c.inOffset += bytes.length;
  c.peak += bytes.length;
  if (bytes.length > 0) c.chunks.push(bytes.slice());
  return queued(c);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fileTypeOf(e: FdEntry): number {
  switch (e.kind) {
    case "stdin":
    case "stdout":
    case "stderr":
      return FILETYPE.CHARACTER_DEVICE;
    case "listen":
    case "conn":
      return FILETYPE.SOCKET_STREAM;
    case "file":
      return FILETYPE.REGULAR_FILE;
    case "dir":
      return FILETYPE.DIRECTORY;
  }
}
