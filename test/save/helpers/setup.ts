/**
 * Setup shared by the engine tests that migrate between two MemoryDomains over an in-memory
 * pair (migrate.test.ts, verify.test.ts): the channel ends of each side, a started guest with
 * known contents, and a target factory that keeps what it made.
 */
import { channelSink, channelSource } from "../../../src/save/channel.ts";
import type { MemoryChannel } from "../../../src/transport/memory.ts";
import { MemoryDomain, type MemoryDomainOptions, testIdentity } from "./memory-domain.ts";

/** The source's ends (stream out, back channel in) on `a`, the target's on `b`. */
export function channelEnds(a: MemoryChannel, b: MemoryChannel) {
  return {
    source: { sink: channelSink(a), back: channelSource(a) },
    target: { source: channelSource(b), back: channelSink(b) },
  };
}

/** What a started guest holds: pages filled from `fill`, context and host blobs, fs blocks. */
export interface GuestContents {
  readonly fill: number;
  readonly blob: string;
  readonly hostBlob: string;
  readonly fs: Record<string, Uint8Array>;
}

/** A MemoryDomain with `contents`, started (it dirties pages if `options.dirtyPerTick` says so). */
export async function startedGuest(
  options: MemoryDomainOptions,
  contents: GuestContents,
): Promise<MemoryDomain> {
  const enc = new TextEncoder();
  const d = new MemoryDomain(options);
  d.fill(contents.fill);
  d.setState({ blob: enc.encode(contents.blob), hostBlob: enc.encode(contents.hostBlob), fs: contents.fs });
  await d.start();
  return d;
}

/** A createTarget for the receivers (one-page MemoryDomains, filled by the stream); `made` lists them. */
export function targets() {
  const made: MemoryDomain[] = [];
  return {
    made,
    createTarget: async () => {
      const d = new MemoryDomain({ pages: 1, identity: testIdentity() });
      made.push(d);
      return d;
    },
  };
}
