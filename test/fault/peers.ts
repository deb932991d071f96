/**
 * Hand-made peers for the hostile-peer tests (hostile.test.ts, replay-hello.test.ts): a relay
 * that joins two sockets and can look at what the client sends, and a one-shot exchange that
 * sends some bytes and collects the answer until the connection closes (bounded: 5 s).
 */
import type net from "node:net";

/**
 * Join `inbound` (the client's side) and `out` both ways; `onInbound` sees each chunk from the
 * client before it is passed on. When either side closes or fails, both are destroyed.
 */
export function joinSockets(inbound: net.Socket, out: net.Socket, onInbound?: (d: Buffer) => void): void {
  inbound.on("data", (d: Buffer) => {
    onInbound?.(d);
    out.write(d);
  });
  out.on("data", (d: Buffer) => inbound.write(d));
  const end = () => {
    inbound.destroy();
    out.destroy();
  };
  inbound.on("close", end).on("error", end);
  out.on("close", end).on("error", end);
}

/**
 * On `s` (connecting), once `ready` fires: write `chunks`, then collect what comes back until the
 * connection closes, `enough` bytes have come (then it is closed), or 5 s pass (then it is
 * destroyed). Resolves with the bytes and the error code (or message) of a failure, if any.
 */
export function exchange(
  s: net.Socket,
  ready: "connect" | "secureConnect",
  chunks: readonly Uint8Array[],
  enough = Number.POSITIVE_INFINITY,
): Promise<{ got: Buffer; error: string | undefined }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let length = 0;
    let error: string | undefined;
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on(ready, () => {
      for (const c of chunks) s.write(c);
    });
    s.on("data", (d: Buffer) => {
      got.push(d);
      length += d.length;
      if (length >= enough) s.destroy();
    });
    s.on("error", (e) => {
      error = (e as NodeJS.ErrnoException).code ?? e.message;
    });
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ got: Buffer.concat(got), error });
    });
  });
}
