/**
 * The guest's I/O port (architecture: Guest contract). The WASI host owns no real socket: the
 * listening socket on fd 3, stdout and stderr are this port. Whoever plugs in (`colo run` with a
 * real listening socket, the COLO proxy with itself) assigns connection ids and feeds events in;
 * the guest's outputs come out as events with byte offsets.
 *
 * Ordering contract: events in are delivered to the guest in the order given. Each input chunk
 * is one unit: a single sock_recv never returns bytes of two chunks, so two replicas fed the same
 * chunks see the same reads. Unread chunks are host state and travel with a checkpoint.
 *
 * Backpressure contract: `input()` returns the number of bytes now queued in the host for that
 * connection (unread by the guest); the plug must stop feeding a connection above its own bound
 * and resume on an "drained" output event for that connection. The host never drops input.
 */

/** A connection id, assigned by the plug; u32, never reused within one guest's life. */
export type ConnId = number;

/** Where an output came from. */
export type OutputStream =
  | { readonly kind: "conn"; readonly id: ConnId }
  | { readonly kind: "stdout" }
  | { readonly kind: "stderr" };

/** Events from the plug into the guest. */
export type PortInput =
  /** A client connected; the guest's next sock_accept on fd 3 returns it. */
  | { readonly kind: "open"; readonly conn: ConnId }
  /** Bytes from the client. `offset` is the input offset of the first byte (checked: must equal the host's). */
  | { readonly kind: "data"; readonly conn: ConnId; readonly offset: number; readonly bytes: Uint8Array }
  /** The client closed its sending side (EOF after the queued chunks). */
  | { readonly kind: "eof"; readonly conn: ConnId };

/**
 * Events from the plug into the guest's stdin (fd 0), kept apart from PortInput because only
 * `colo run` feeds stdin, and only to a host created with `stdin: "port"` (otherwise fd 0 is at
 * EOF from the start, so replicas see the same empty stdin). Chunks and offsets work as for a
 * connection's "data"; "stdin-drained" is their backpressure signal.
 */
export type StdinInput =
  /** Bytes for stdin; `offset` is the stdin offset of the first byte (checked). */
  | { readonly kind: "stdin"; readonly offset: number; readonly bytes: Uint8Array }
  /** End of stdin: fd 0 reads EOF once its queued chunks are read. */
  | { readonly kind: "stdin-eof" };

/** Events from the guest out to the plug. */
export type PortOutput =
  /** Bytes the guest wrote; `offset` is the output offset of the first byte on that stream. */
  | {
      readonly kind: "data";
      readonly stream: OutputStream;
      readonly offset: number;
      readonly bytes: Uint8Array;
    }
  /** The guest shut down its sending side of a connection (sock_shutdown WR or close). */
  | { readonly kind: "shutdown"; readonly conn: ConnId }
  /** The guest closed the connection's fd. */
  | { readonly kind: "close"; readonly conn: ConnId }
  /** The host's queue for this connection has fallen below half its bound: feed more. */
  | { readonly kind: "drained"; readonly conn: ConnId }
  /** The same for stdin's queue (only ever after StdinInput). */
  | { readonly kind: "stdin-drained" };

/** What a running domain exposes for I/O. Implemented by the WebAssembly domain. */
export interface GuestPort {
  /** Deliver one event to the guest (wakes it if blocked). Returns bytes queued for that conn (or stdin). */
  input(event: PortInput | StdinInput): number;
  /** Subscribe to outputs; events arrive in the order the guest produced them. Returns unsubscribe. */
  onOutput(listener: (event: PortOutput) => void): () => void;
}
