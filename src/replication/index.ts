/**
 * The replication layer's public API (architecture layer 6): the primary's and the secondary's
 * controllers, their settings, the three connections between them, status and metrics.
 */
export {
  capabilitiesOf,
  DEFAULT_SETTINGS,
  MODES,
  type ReplicationMode,
  type ReplicationSettings,
  STRATEGIES,
  type Strategy,
  settings,
  settingsFromCapabilities,
} from "./config.ts";
export {
  codeOf,
  describeError,
  isReplicationError,
  REPLICATION_ERROR_CODES,
  ReplicationError,
  type ReplicationErrorCode,
} from "./errors.ts";
export {
  dialSecondary,
  listenForPrimary,
  memoryLinks,
  type PrimaryLinks,
  primaryLinksOf,
  type SecondaryLinks,
  secondaryLinksOf,
} from "./links.ts";
export { replicationRegistry, serveMetrics } from "./metrics.ts";
export {
  type Log,
  PrimaryController,
  type PrimaryControllerOptions,
  type PrimaryEvents,
  type PrimaryState,
  type PrimaryStatus,
} from "./primary.ts";
export { RespClient, RespError, type RespValue } from "./resp-client.ts";
export {
  SecondaryController,
  type SecondaryControllerOptions,
  type SecondaryEvents,
  type SecondaryOutcome,
  type SecondaryState,
  type SecondaryStatus,
} from "./secondary.ts";
export type { CheckpointRecord, SecondaryCheckpointRecord, Trigger } from "./stats.ts";
export { hostSummary, TrackedDomain } from "./tracked-domain.ts";
