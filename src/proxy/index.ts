/**
 * The proxy layer's public API (architecture layer 5): the primary's service-address proxy, the
 * secondary's mirror receiver, the mirror message types the transport carries, and the
 * comparator. Imports point down only (guest port types).
 */
export { ChunkQueue, type CompareMode, type Mismatch, StreamCompare, type StreamMark } from "./compare.ts";
export { ProxyError, type ProxyErrorCode } from "./errors.ts";
export {
  MemoryMirrorLink,
  type MirrorEnd,
  type MirrorInput,
  type MirrorOutput,
  messageWeight,
  type PrimaryMirrorEnd,
  type SecondaryMirrorEnd,
} from "./link.ts";
export {
  DIVERGENCE_KINDS,
  type DivergenceKind,
  type PrimaryProxyMetrics,
  type SecondaryProxyMetrics,
} from "./metrics.ts";
export { type MirrorChannelOptions, primaryMirrorChannel, secondaryMirrorChannel } from "./mirror-channel.ts";
export {
  type CheckpointNeeded,
  DEFAULTS,
  type Divergence,
  PrimaryProxy,
  type PrimaryProxyEvents,
  type PrimaryProxyOptions,
  type ProxyMode,
  streamText,
} from "./primary.ts";
export {
  SecondaryProxy,
  type SecondaryProxyEvents,
  type SecondaryProxyOptions,
  type TakeoverOptions,
} from "./secondary.ts";
