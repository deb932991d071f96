/**
 * The transport layer's public API (architecture layer 3). Moves bytes and small messages
 * between hosts, securely; knows nothing of Xen records or guests.
 */
export type { ByteChannel, ChannelEvents, ChannelOptions, ChannelType } from "./channel.ts";
export { BaseChannel, DEFAULT_HIGH_WATER_MARK, DEFAULT_INBOX_LIMIT } from "./channel.ts";
export type {
  ConnectedPairOptions,
  Connection,
  DialOptions,
  HelloParams,
  Listener,
  ListenOptions,
  LogLevel,
  RefusedInfo,
  TransportLog,
} from "./connect.ts";
export {
  connectedPair,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  defaultLog,
  dial,
  handshakeAsDialler,
  handshakeAsListener,
  isLoopback,
  listen,
} from "./connect.ts";
export type { TransportErrorCode, TransportErrorOptions } from "./errors.ts";
export { TransportError } from "./errors.ts";
export type { ChannelKindName, RoleName, VerdictCode } from "./format.ts";
export {
  Capability,
  ChannelKind,
  DEFAULT_MAX_MESSAGE,
  MessageType,
  PROTOCOL_VERSION,
  PSK_MIN_BYTES,
  Role,
  TLS_CIPHER,
  TLS_VERSION,
} from "./format.ts";
export type { DecoderOptions, Message } from "./frame.ts";
export { encodeFrame, FrameDecoder } from "./frame.ts";
export type { HeartbeatEvents, HeartbeatLoss, HeartbeatOptions, HeartbeatState } from "./heartbeat.ts";
export { DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, Heartbeat } from "./heartbeat.ts";
export type { Hello, HelloExpectation } from "./hello.ts";
export { counterpart, newSessionId } from "./hello.ts";
export type { Faults, Interceptor, PairOptions } from "./memory.ts";
export { fault, MemoryChannel, openPair } from "./memory.ts";
export { MessageChannel } from "./message-channel.ts";
export type { MirrorMessage, MirrorStream } from "./mirror.ts";
export { decodeMirror, encodeMirror, isMirrorType, MIRROR_HEADER_SIZE, sendMirror } from "./mirror.ts";
export type { Security, SecurityFlags } from "./security.ts";
export {
  ENV_PSK,
  ENV_PSK_FILE,
  generatePsk,
  loadCertFiles,
  loadPskFile,
  parsePsk,
  securityFromOptions,
} from "./security.ts";
export type { FileWriteOptions, RawConnectOptions } from "./stream-channel.ts";
export {
  connectRaw,
  openFileForRead,
  openFileForWrite,
  pipeChannel,
  StreamChannel,
  socketChannel,
  stdioChannel,
} from "./stream-channel.ts";
