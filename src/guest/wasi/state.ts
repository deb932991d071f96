/**
 * The WASI host's guest-visible state: everything captureState encodes. Host-local things (host
 * paths of preopens, the raw-clock offset) are not here; they live in the host object.
 *
 * Invariants (checked by state-codec on apply):
 * - every fd entry of kind "conn" names a connection in `conns`; at most one fd per connection;
 * - every connection is either in `pendingAccepts` or named by exactly one fd;
 * - every fd of kind "file"/"dir" names an inode of that kind in the file system;
 * - chunks of an input queue are non-empty; `headPos` < length of the first chunk.
 */
import type { ConnId } from "../port.ts";

/** An input stream of the port (a connection's input, or stdin): chunks delivered, not yet read. */
export interface InputQueue {
  /** Input offset: bytes delivered so far (the next "data"/"stdin" event must carry this offset). */
  inOffset: number;
  /** Unread input chunks, in order; each non-empty. */
  chunks: Uint8Array[];
  /** Bytes of chunks[0] already read. */
  headPos: number;
  /** The sender ended ("eof", "stdin-eof"): reads return 0 once chunks are empty. */
  eof: boolean;
  /**
   * Bytes delivered since the last "drained" (backpressure bookkeeping, see host.ts): at least the
   * queue's peak since then, which it once was, hence the name (other layers build queues by it).
   */
  peak: number;
}

/** One connection of the port, from "open" until the guest closes its fd. */
export interface Conn extends InputQueue {
  readonly id: ConnId;
  /** Output offset: bytes the guest has sent so far. */
  outOffset: number;
  /** The guest shut down its sending side (emitted "shutdown"). */
  wrShut: boolean;
  /** The guest shut down its receiving side: reads return 0. */
  rdShut: boolean;
}

/**
 * A poll_oneoff that blocked and was stopped (StopRequested from HostEnv.wait). The runtime
 * re-runs the same call after resume; when its arguments and subscriptions are these, relative
 * clock timeouts count from `start`, the guest monotonic time of the first run, so a stop (or a
 * checkpoint, or a migration) does not restart them.
 */
export interface PendingPoll {
  readonly inPtr: number;
  readonly outPtr: number;
  readonly nsubs: number;
  /** The subscriptions' bytes as the first run read them (nsubs × 48). */
  readonly subs: Uint8Array;
  /** Guest monotonic ns at the first run. */
  readonly start: bigint;
}

export type FdEntry =
  | {
      kind: "stdin" | "stdout" | "stderr" | "listen";
      rightsBase: bigint;
      rightsInheriting: bigint;
      flags: number;
    }
  | { kind: "conn"; conn: ConnId; rightsBase: bigint; rightsInheriting: bigint; flags: number }
  | {
      kind: "file";
      ino: number;
      /** Byte position for fd_read/fd_write/fd_seek. */
      pos: number;
      rightsBase: bigint;
      rightsInheriting: bigint;
      flags: number;
    }
  | {
      kind: "dir";
      ino: number;
      /** Guest path if this fd is a preopen (answers fd_prestat_get), else undefined. */
      preopen: string | undefined;
      rightsBase: bigint;
      rightsInheriting: bigint;
      flags: number;
    };

/** Timestamps are guest realtime in ns. */
export interface Times {
  atim: bigint;
  mtim: bigint;
  ctim: bigint;
}

export interface FileNode extends Times {
  readonly kind: "file";
  readonly ino: number;
  nlink: number;
  /** Size in bytes. */
  size: number;
  /** 4 KiB data blocks; undefined is a block of zeros (a hole, or never written). */
  blocks: Array<Uint8Array | undefined>;
}

export interface DirNode extends Times {
  readonly kind: "dir";
  readonly ino: number;
  /** Parent directory's inode (a root's parent is itself). */
  parent: number;
  /** Name → inode. Listing and encoding always sort names. */
  entries: Map<string, number>;
}

export type Inode = FileNode | DirNode;

export interface HostState {
  args: string[];
  /** Environment as given plus LISTEN_FDS=1. */
  env: string[];
  fds: Map<number, FdEntry>;
  conns: Map<ConnId, Conn>;
  /** Opened connections not yet returned by sock_accept, in order. */
  pendingAccepts: ConnId[];
  stdoutOffset: number;
  stderrOffset: number;
  /** fd 0's input (eof from the start unless the host was created with stdin "port"). */
  stdin: InputQueue;
  /** The poll_oneoff stopped mid-wait, if any. */
  pendingPoll: PendingPoll | undefined;
  /** Guest monotonic time at which the guest started (process/thread cputime is measured from it). */
  monoStart: bigint;
  inodes: Map<number, Inode>;
  /** Next inode number to hand out; inode numbers are never reused. */
  nextIno: number;
  /** Root inode of each preopen, in preopen order (write-back pairs them with host paths). */
  roots: number[];
}

export const BLOCK_SIZE = 4096;
export const BLOCK_SHIFT = 12;
