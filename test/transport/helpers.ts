/** Test helpers for the transport tests. */
import type { ByteChannel, TransportLog } from "../../src/transport/index.ts";

/** A log that keeps quiet (tests assert on refusals through Listener.onRefused). */
export const quietLog: TransportLog = () => {};

/** Read a channel to its end; resolves with all bytes, rejects with the close error. */
export function collect(channel: ByteChannel): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    channel.onData((c) => parts.push(c));
    channel.once("end", () => resolve(new Uint8Array(Buffer.concat(parts))));
    channel.once("close", (err) => {
      if (err !== undefined) reject(err);
      else resolve(new Uint8Array(Buffer.concat(parts)));
    });
  });
}
