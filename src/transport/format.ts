/**
 * Wire constants of the transport layer: hello, verdict, frame header, message types, limits.
 * No logic. Byte order is little-endian everywhere. The layouts are drawn in docs/transport.md.
 */

/** Protocol version carried in every hello. Peers of another version are refused. */
export const PROTOCOL_VERSION = 1;

/** "COLOHELO" in ASCII: the first 8 bytes every colo connection sends after TLS is up. */
export const HELLO_MAGIC = Uint8Array.of(0x43, 0x4f, 0x4c, 0x4f, 0x48, 0x45, 0x4c, 0x4f);
/** Size of a version-1 hello. The length field allows a later version to send more (up to the max). */
export const HELLO_SIZE = 64;
/** Largest hello length accepted from the wire (bytes past HELLO_SIZE are ignored). */
export const HELLO_MAX_SIZE = 1024;
/** Session ids and connection nonces: 128 random bits each. */
export const SESSION_ID_SIZE = 16;
export const NONCE_SIZE = 16;

/** Field offsets of the hello (see docs/transport.md). */
export const HELLO = {
  magic: 0,
  version: 8,
  length: 10,
  role: 12,
  kind: 13,
  reserved0: 14,
  session: 16,
  capabilities: 32,
  nonce: 40,
  sequence: 56,
  reserved1: 60,
} as const;

/** "COLV": the verdict that answers a hello. */
export const VERDICT_MAGIC = Uint8Array.of(0x43, 0x4f, 0x4c, 0x56);
export const VERDICT_SIZE = 8;

/** Verdict status codes (u16). */
export const Verdict = {
  ok: 0,
  version: 1,
  role: 2,
  kind: 3,
  session: 4,
  replay: 5,
  capabilities: 6,
  malformed: 7,
  busy: 8,
} as const;
export type VerdictCode = (typeof Verdict)[keyof typeof Verdict];

/** Roles (u8). A dialler and a listener pair as primary/secondary or source/target. */
export const Role = { primary: 1, secondary: 2, source: 3, target: 4 } as const;
export type RoleName = keyof typeof Role;

/** Channel kinds (u8). */
export const ChannelKind = { replication: 1, mirror: 2, heartbeat: 3, control: 4, migration: 5 } as const;
export type ChannelKindName = keyof typeof ChannelKind;

/**
 * Capability bits (u64 bit set). The transport only carries and checks them; their meaning
 * belongs to the layers above. Bits 0–31 are allocated here, bits 32–63 are free for experiments.
 */
export const Capability = {
  /** The secondary can send CHECKPOINT_DIRTY_PFN_LIST on the back channel. */
  backChannel: 1n << 0n,
  /** The secondary keeps a cache of the last checkpoint (the paper's first design). */
  cacheStrategy: 1n << 1n,
  /** Remus mode (only the primary runs). */
  remus: 1n << 2n,
  /** Checkpoints carry changed file-system blocks. */
  fsBlocks: 1n << 3n,
  /** Digest verification after each checkpoint (--verify). */
  verify: 1n << 4n,
} as const;

/** Message frame header: u32 body length, u16 type, u16 reserved (zero). */
export const FRAME_HEADER_SIZE = 8;
/** Default cap on one message body (bytes). The mirror's largest chunk must fit under it. */
export const DEFAULT_MAX_MESSAGE = 1 << 20;
/** Absolute cap on a message body: a u32 length is never trusted beyond this. */
export const ABSOLUTE_MAX_MESSAGE = 64 << 20;

/**
 * Message type ranges (u16). 0x0000 is never valid. Each family owns one high byte:
 * 0x01xx mirror (src/transport/mirror.ts), 0x02xx heartbeat, 0x03xx control (free for the
 * controller), 0x7fxx test use.
 */
export const MessageType = {
  mirrorInput: 0x0101,
  mirrorOpen: 0x0102,
  mirrorEof: 0x0103,
  mirrorOutput: 0x0104,
  mirrorShutdown: 0x0105,
  mirrorClose: 0x0106,
  mirrorEnd: 0x0107,
  heartbeatBeat: 0x0201,
  heartbeatBye: 0x0202,
  controlFirst: 0x0300,
  controlLast: 0x03ff,
} as const;

/** Pre-shared keys: at least 128 bits, at most what OpenSSL accepts comfortably. */
export const PSK_MIN_BYTES = 16;
export const PSK_MAX_BYTES = 256;

/**
 * The TLS suite for every colo connection: TLS 1.3 with TLS_AES_128_GCM_SHA256.
 * With a pre-shared key, OpenSSL binds an external PSK given through Node's pskCallback to
 * SHA-256, so TLS_AES_256_GCM_SHA384 cannot be negotiated (handshake fails); AES-128-GCM is
 * hardware accelerated (AES-NI) and measured ~1.8x faster than CHACHA20-POLY1305 here.
 * The key exchange is psk_dhe_ke (ECDHE mixed with the PSK), so sessions have forward secrecy.
 */
export const TLS_CIPHER = "TLS_AES_128_GCM_SHA256";
export const TLS_VERSION = "TLSv1.3";
/** PSK identity both ends present. */
export const PSK_IDENTITY = "colo/1";
