/**
 * Whole-stream verification: the decoder's framing and body checks, plus the ordering rules of
 * plain and checkpointed streams, the checkpoint sequence numbers, and the back-channel protocol
 * of each replication mode. The rules are listed in docs/stream-format.md §7–§8; each check below
 * names the rule it enforces. Independent of the save/restore engine: it only reads bytes.
 */

import {
  BACK_CHANNEL_RECORDS,
  type DecodedItem,
  type DecodedRecord,
  type DecoderOptions,
  type RecordKey,
  StreamDecoder,
} from "./decoder.ts";
import { StreamError } from "./errors.ts";
import {
  CHECKPOINT_STATE,
  CHECKPOINT_STATE_NAMES,
  DHDR_TYPE_WASM32,
  DHDR_TYPE_X86_PV,
  EMULATOR_ID,
  type Layer,
  LIBXC,
  LIBXC_V3_TYPES,
  LIBXL,
} from "./format.ts";
import type { DomainHeader, ImageHeader } from "./headers.ts";

/** Replication mode, selecting the back-channel protocol (and, on the main channel, the form). */
export type Mode = "colo" | "plain" | "remus" | "cache" | "full";
export const MODES: readonly Mode[] = ["colo", "plain", "remus", "cache", "full"];

export interface VerifyOptions {
  /** Force the checkpointed (true) or plain (false) form; inferred from the records otherwise. */
  readonly checkpointed?: boolean;
  /** Verify the secondary → primary byte sequence instead of a main stream. */
  readonly backChannel?: boolean;
  /**
   * Main channel: when given, the stream must be of this form (plain: no CHECKPOINT; remus: no
   * CHECKPOINT_STATE; colo/cache/full: CHECKPOINT_STATE NEW before every checkpoint after the
   * first). Back channel: the protocol to check; default "colo".
   */
  readonly mode?: Mode;
  /** Passed to the decoder (start format, caps). */
  readonly decoder?: Omit<DecoderOptions, "start"> & { readonly start?: DecoderOptions["start"] };
}

const PV_ONLY = new Set<number>([
  LIBXC.X86_PV_INFO,
  LIBXC.X86_PV_P2M_FRAMES,
  LIBXC.X86_PV_VCPU_BASIC,
  LIBXC.X86_PV_VCPU_EXTENDED,
  LIBXC.X86_PV_VCPU_XSAVE,
  LIBXC.X86_PV_VCPU_MSRS,
  LIBXC.SHARED_INFO,
]);
const HVM_ONLY = new Set<number>([LIBXC.HVM_CONTEXT, LIBXC.HVM_PARAMS]);
const WASM_ONLY = new Set<number>([LIBXC.MODULE_IDENTITY, LIBXC.CHECKPOINT_INFO, LIBXC.GUEST_CONTEXT]);
/** Records a wasm32 stream may carry from Xen's set. */
const WASM_XEN_TYPES = new Set<number>([
  LIBXC.END,
  LIBXC.PAGE_DATA,
  LIBXC.VERIFY,
  LIBXC.CHECKPOINT,
  LIBXC.STATIC_DATA_END,
]);
/** Static (execution-independent) records: before STATIC_DATA_END in a v3 stream. */
const STATIC_TYPES = new Set<number>([
  LIBXC.X86_PV_INFO,
  LIBXC.X86_CPUID_POLICY,
  LIBXC.X86_MSR_POLICY,
  LIBXC.MODULE_IDENTITY,
]);
const BACK_ONLY_LIBXC = new Set<number>([LIBXC.CHECKPOINT_DIRTY_PFN_LIST, LIBXC.FS_DIRTY_BLOCK_LIST]);
const BACK_ONLY_LIBXL = new Set<number>([
  LIBXL.MIGRATION_TARGET_READY,
  LIBXL.MIGRATION_RECEIVED,
  LIBXL.MIGRATION_RESUMED,
  LIBXL.CHECKPOINT_DIGEST,
]);

function orderError(rec: DecodedRecord, reason: string, details?: Record<string, unknown>): StreamError {
  return new StreamError("order", reason, {
    offset: rec.offset,
    layer: rec.layer,
    type: rec.type,
    ...(details ? { details } : {}),
  });
}

function seqError(rec: DecodedRecord, got: bigint, expected: bigint): StreamError {
  return new StreamError("bad-sequence", `sequence number ${got}, expected ${expected}`, {
    offset: rec.offset,
    layer: rec.layer,
    type: rec.type,
    details: { got, expected },
  });
}

/** Tracks "every CHECKPOINT_STATE is followed by CHECKPOINT_SEQ, or none is" on one channel. */
class SeqRule {
  /** undefined until the first CHECKPOINT_STATE shows which convention the channel uses. */
  used: boolean | undefined;
  awaiting = false;
  constructor(required: boolean) {
    this.used = required ? true : undefined;
  }
  /** After a CHECKPOINT_STATE. */
  stateSeen(): void {
    this.awaiting = this.used !== false;
  }
  /** Before any record: is it the SEQ we are waiting for? throws when a required SEQ is missing. */
  check(rec: DecodedRecord): "seq" | "other" {
    const isSeq = rec.layer === "libxl" && rec.type === LIBXL.CHECKPOINT_SEQ;
    if (isSeq) {
      if (!this.awaiting) throw orderError(rec, "CHECKPOINT_SEQ must immediately follow a CHECKPOINT_STATE");
      this.used = true;
      this.awaiting = false;
      return "seq";
    }
    if (this.awaiting) {
      if (this.used === true) throw orderError(rec, "CHECKPOINT_STATE not followed by CHECKPOINT_SEQ");
      this.used = false;
      this.awaiting = false;
    }
    return "other";
  }
}

/** Main-channel rules (libxl and libxc records of a forward stream). */
class MainRules {
  private version = 3;
  private domainType = 0;
  private staticDone = false;
  private staticEndSeen = false;
  private pvInfo: { width: number } | null = null;
  private p2mSeen = false;
  private moduleIdentitySeen = false;
  private checkpointed: boolean | undefined;
  private readonly mode: Mode | undefined;
  private checkpoints = 0;
  // current libxc segment (one checkpoint, or the whole plain stream)
  private segSeq: bigint | undefined;
  private segPages: number | undefined;
  private segGuestContext = false;
  private lastSeq: bigint | undefined;
  private announcedSeq: bigint | undefined;
  // libxl state
  private libxlRecords = 0;
  private libxcEnded: "end" | "checkpoint" | null = null;
  private xenstoreSeen = false;
  private emulatorIndexes = new Set<number>();
  private wasiHostSeen = false;
  private inInterlude = false;
  private newSeenInInterlude = false;
  private statesUsed: boolean | undefined;
  private seq = new SeqRule(false);

  constructor(options: VerifyOptions) {
    this.mode = options.mode;
    this.checkpointed =
      options.checkpointed ?? (options.mode === undefined ? undefined : options.mode !== "plain");
    if (options.mode === "remus") this.statesUsed = false;
    if (options.mode === "colo" || options.mode === "cache" || options.mode === "full")
      this.statesUsed = true;
  }

  get wasm(): boolean {
    return this.domainType === DHDR_TYPE_WASM32;
  }

  header(item: Extract<DecodedItem, { kind: "header" }>): void {
    if (item.header === "libxc-image") this.version = (item.value as ImageHeader).version;
    if (item.header === "libxc-domain") {
      this.domainType = (item.value as DomainHeader).type;
      if (this.wasm) this.seq = new SeqRule(true);
    }
  }

  record(rec: DecodedRecord): void {
    if (this.seq.check(rec) === "seq") {
      const seq = (rec.value as { seq: bigint }).seq;
      // NEW announces the next checkpoint: lastSeq + 1.
      if (this.lastSeq !== undefined && seq !== this.lastSeq + 1n)
        throw seqError(rec, seq, this.lastSeq + 1n);
      this.announcedSeq = seq;
      return;
    }
    if (rec.layer === "libxc") this.libxc(rec);
    else this.libxl(rec);
  }

  private libxc(rec: DecodedRecord): void {
    const t = rec.type;
    if (this.inInterlude) {
      // first libxc record of the next checkpoint
      if (this.statesUsed === true && !this.newSeenInInterlude) {
        throw orderError(rec, "checkpoint not announced by CHECKPOINT_STATE NEW");
      }
      this.statesUsed ??= this.newSeenInInterlude;
      this.inInterlude = false;
      this.newSeenInInterlude = false;
      this.libxcEnded = null;
      this.xenstoreSeen = false;
      this.emulatorIndexes.clear();
      this.wasiHostSeen = false;
    }
    if (this.version < 3 && LIBXC_V3_TYPES.includes(t)) {
      throw new StreamError("bad-version", `${rec.name} is not valid in a v2 stream`, {
        offset: rec.offset,
        layer: "libxc",
        type: t,
      });
    }
    if (BACK_ONLY_LIBXC.has(t)) throw orderError(rec, `${rec.name} belongs on the back channel only`);
    if (t === LIBXC.TOOLSTACK) {
      throw new StreamError("deprecated", "TOOLSTACK records are deprecated", {
        offset: rec.offset,
        layer: "libxc",
        type: t,
      });
    }
    // domain-type rules
    const pv = this.domainType === DHDR_TYPE_X86_PV;
    if (PV_ONLY.has(t) && !pv) throw orderError(rec, `${rec.name} is only valid for x86 PV domains`);
    if (HVM_ONLY.has(t) && (pv || this.wasm))
      throw orderError(rec, `${rec.name} is only valid for HVM domains`);
    if (WASM_ONLY.has(t) && !this.wasm) throw orderError(rec, `${rec.name} is only valid for wasm32 domains`);
    if (this.wasm && t < 0x100 && !WASM_XEN_TYPES.has(t)) {
      throw orderError(rec, `${rec.name} is not valid in a wasm32 domain stream`);
    }
    // static data
    if (t === LIBXC.STATIC_DATA_END) {
      if (this.staticEndSeen) throw orderError(rec, "a second STATIC_DATA_END");
      this.staticEndSeen = true;
      this.staticDone = true;
      if (this.wasm && !this.moduleIdentitySeen)
        throw orderError(rec, "wasm32 stream without MODULE_IDENTITY");
      return;
    }
    if (STATIC_TYPES.has(t)) {
      if (this.staticDone) throw orderError(rec, `static record ${rec.name} after the static data`);
    } else if (this.version >= 3) {
      if (!this.staticDone) throw orderError(rec, `${rec.name} before STATIC_DATA_END`);
    } else {
      this.staticDone = true; // v2: static data ends implicitly at the first dynamic record
    }
    switch (rec.value.kind) {
      case "module-identity":
        if (this.moduleIdentitySeen) throw orderError(rec, "a second MODULE_IDENTITY");
        this.moduleIdentitySeen = true;
        return;
      case "x86-pv-info":
        if (this.pvInfo !== null) throw orderError(rec, "a second X86_PV_INFO");
        this.pvInfo = { width: rec.value.guestWidth };
        return;
      case "x86-pv-p2m-frames": {
        if (this.pvInfo === null) throw orderError(rec, "X86_PV_P2M_FRAMES before X86_PV_INFO");
        const fpp = 4096 / this.pvInfo.width;
        const k = Math.floor(rec.value.endPfn / fpp) - Math.floor(rec.value.startPfn / fpp) + 1;
        if (rec.value.frames.length !== k) {
          throw new StreamError("bad-length", `${rec.value.frames.length} p2m frames, expected ${k}`, {
            offset: rec.offset,
            layer: "libxc",
            type: t,
            details: { expected: k, actual: rec.value.frames.length },
          });
        }
        this.p2mSeen = true;
        return;
      }
      case "x86-pv-vcpu":
        if (!this.p2mSeen) throw orderError(rec, `${rec.name} before X86_PV_P2M_FRAMES`);
        return;
      case "checkpoint-info": {
        const { seq, memoryPages } = rec.value;
        if (this.segSeq !== undefined) {
          if (seq !== this.segSeq) throw seqError(rec, seq, this.segSeq);
        } else {
          const expected = this.announcedSeq ?? (this.lastSeq === undefined ? undefined : this.lastSeq + 1n);
          if (expected !== undefined && seq !== expected) throw seqError(rec, seq, expected);
          this.segSeq = seq;
        }
        this.segPages = memoryPages;
        return;
      }
      case "page-data": {
        if (pv && !this.p2mSeen) throw orderError(rec, "PAGE_DATA before X86_PV_P2M_FRAMES");
        if (this.wasm) {
          if (this.segPages === undefined)
            throw orderError(rec, "PAGE_DATA before this checkpoint's CHECKPOINT_INFO");
          const { pfns, count } = rec.value;
          for (let i = 0; i < count; i++) {
            if (pfns[i]! >= this.segPages) {
              throw new StreamError(
                "bad-value",
                `pfn[${i}] = ${pfns[i]} is beyond the memory size ${this.segPages}`,
                {
                  offset: rec.offset,
                  layer: "libxc",
                  type: t,
                  details: { index: i, pfn: pfns[i], memoryPages: this.segPages },
                },
              );
            }
          }
        }
        return;
      }
      case "guest-context":
        if (this.segGuestContext) throw orderError(rec, "a second GUEST_CONTEXT in one checkpoint");
        this.segGuestContext = true;
        return;
      case "verify":
        if (this.checkpointed === true) throw orderError(rec, "VERIFY in a checkpointed stream");
        return;
      case "checkpoint":
        if (this.checkpointed === false) throw orderError(rec, "CHECKPOINT in a non-checkpointed stream");
        this.checkpointed = true;
        this.endSegment(rec);
        this.libxcEnded = "checkpoint";
        return;
      case "end":
        if (this.checkpointed === true && this.checkpoints === 0) {
          throw orderError(rec, "END before any CHECKPOINT in a checkpointed stream");
        }
        this.endSegment(rec);
        this.libxcEnded = "end";
        return;
      default:
        return;
    }
  }

  private endSegment(rec: DecodedRecord): void {
    if (this.wasm) {
      if (this.segSeq === undefined) throw orderError(rec, `${rec.name} without CHECKPOINT_INFO`);
      if (!this.segGuestContext) throw orderError(rec, `${rec.name} without GUEST_CONTEXT`);
    }
    if (rec.type === LIBXC.CHECKPOINT) this.checkpoints++;
    const next =
      this.segSeq ?? this.announcedSeq ?? (this.lastSeq === undefined ? undefined : this.lastSeq + 1n);
    this.lastSeq = next;
    this.segSeq = undefined;
    this.segPages = undefined;
    this.segGuestContext = false;
    this.announcedSeq = undefined;
  }

  private libxl(rec: DecodedRecord): void {
    const t = rec.type;
    this.libxlRecords++;
    if (this.libxlRecords === 1 && t !== LIBXL.LIBXC_CONTEXT) {
      throw orderError(rec, "the first libxl record must be LIBXC_CONTEXT");
    }
    if (BACK_ONLY_LIBXL.has(t)) throw orderError(rec, `${rec.name} belongs on the back channel only`);
    switch (rec.value.kind) {
      case "libxc-context":
        return;
      case "emulator-xenstore-data":
        if (this.libxcEnded === null) throw orderError(rec, `${rec.name} inside the libxc stream`);
        if (this.xenstoreSeen || this.emulatorIndexes.size > 0) {
          throw orderError(rec, "EMULATOR_XENSTORE_DATA must come once, before EMULATOR_CONTEXT");
        }
        this.xenstoreSeen = true;
        return;
      case "emulator-context": {
        if (this.libxcEnded === null) throw orderError(rec, `${rec.name} inside the libxc stream`);
        if (this.emulatorIndexes.has(rec.value.index))
          throw orderError(rec, "a second EMULATOR_CONTEXT for one emulator");
        this.emulatorIndexes.add(rec.value.index);
        const wasi = rec.value.emulatorId === EMULATOR_ID.WASI_HOST;
        if (this.wasm !== wasi) {
          throw new StreamError("bad-value", "the WASI host emulator id is used exactly by wasm32 domains", {
            offset: rec.offset,
            layer: "libxl",
            type: t,
            details: { emulatorId: rec.value.emulatorId },
          });
        }
        this.wasiHostSeen ||= wasi;
        return;
      }
      case "checkpoint-end":
        if (this.wasm && !this.wasiHostSeen)
          throw orderError(rec, "checkpoint without the WASI host EMULATOR_CONTEXT");
        this.inInterlude = true;
        return;
      case "libxl-end":
        if (this.libxcEnded !== "end") throw orderError(rec, "libxl END before the libxc END");
        if (this.wasm && !this.wasiHostSeen)
          throw orderError(rec, "stream without the WASI host EMULATOR_CONTEXT");
        return;
      case "checkpoint-state":
        if (rec.value.id !== CHECKPOINT_STATE.NEW) {
          throw orderError(
            rec,
            `CHECKPOINT_STATE ${CHECKPOINT_STATE_NAMES.get(rec.value.id)} on the main channel (only NEW)`,
          );
        }
        if (this.statesUsed === false)
          throw orderError(rec, "CHECKPOINT_STATE in a stream without checkpoint states");
        if (this.newSeenInInterlude) throw orderError(rec, "a second CHECKPOINT_STATE NEW");
        this.newSeenInInterlude = true;
        this.seq.stateSeen();
        return;
      case "migration-go":
        if (this.checkpointed === true || (this.mode !== undefined && this.mode !== "plain")) {
          throw orderError(rec, "MIGRATION_GO in a checkpointed stream");
        }
        return;
      default:
        return;
    }
  }
}

type BackState =
  | "seed-target-ready"
  | "first-ready"
  | "suspended"
  | "dirty"
  | "fs-or-ready"
  | "ready"
  | "after-ready"
  | "after-digest"
  | "plain-target-ready"
  | "plain-received"
  | "plain-resumed"
  | "plain-done";

const K = {
  state: { layer: "libxl", type: LIBXL.CHECKPOINT_STATE },
  seq: { layer: "libxl", type: LIBXL.CHECKPOINT_SEQ },
  digest: { layer: "libxl", type: LIBXL.CHECKPOINT_DIGEST },
  targetReady: { layer: "libxl", type: LIBXL.MIGRATION_TARGET_READY },
  received: { layer: "libxl", type: LIBXL.MIGRATION_RECEIVED },
  resumed: { layer: "libxl", type: LIBXL.MIGRATION_RESUMED },
  dirty: { layer: "libxc", type: LIBXC.CHECKPOINT_DIRTY_PFN_LIST },
  fs: { layer: "libxc", type: LIBXC.FS_DIRTY_BLOCK_LIST },
} as const satisfies Record<string, RecordKey>;

/**
 * Back-channel protocol (S → P), per mode:
 * - plain:  MIGRATION_TARGET_READY, MIGRATION_RECEIVED, MIGRATION_RESUMED (exactly these, in
 *           this order; the stream may stop after any of them).
 * - checkpointed modes may open with one MIGRATION_TARGET_READY (the seed's target created its
 *   domain); it is optional there, since Xen's COLO secondary has no such step.
 * - remus:  per checkpoint SVM_READY [CHECKPOINT_DIGEST].
 * - colo:   checkpoint 1: SVM_READY [DIGEST] SVM_RESUMED; each later one: SVM_SUSPENDED,
 *           CHECKPOINT_DIRTY_PFN_LIST, [FS_DIRTY_BLOCK_LIST], SVM_READY, [DIGEST], SVM_RESUMED.
 * - cache, full: as colo without the dirty pfn list and the fs list.
 * Every CHECKPOINT_STATE may be followed by CHECKPOINT_SEQ (all or none): SVM_SUSPENDED (and, in
 * Remus, SVM_READY) opens checkpoint n+1, the others carry n; a DIGEST carries n. The stream may
 * stop at any record boundary.
 */
class BackRules {
  private state: BackState;
  private readonly mode: Mode;
  private readonly seq = new SeqRule(false);
  /** Sequence number of the checkpoint being acknowledged, once a CHECKPOINT_SEQ has shown it. */
  private current: bigint | undefined;
  private lastStateId = -1;

  constructor(mode: Mode) {
    this.mode = mode;
    this.state = mode === "plain" ? "plain-target-ready" : "seed-target-ready";
  }

  /** Records acceptable next (fed to the decoder to resolve the layer). */
  expected(): readonly RecordKey[] {
    if (this.seq.awaiting) return this.seq.used === true ? [K.seq] : [K.seq, ...this.base()];
    return this.base();
  }

  private base(): RecordKey[] {
    switch (this.state) {
      case "plain-target-ready":
        return [K.targetReady];
      case "seed-target-ready":
        return [K.targetReady, K.state];
      case "plain-received":
        return [K.received];
      case "plain-resumed":
        return [K.resumed];
      case "plain-done":
        return [];
      case "dirty":
        return [K.dirty];
      case "fs-or-ready":
        return [K.fs, K.state];
      case "after-ready":
        return [K.digest, K.state];
      default:
        return [K.state];
    }
  }

  record(rec: DecodedRecord): void {
    if (!this.expected().some((k) => k.layer === rec.layer && k.type === rec.type)) {
      throw orderError(rec, `${rec.name} not expected on the ${this.mode} back channel here`);
    }
    if (this.seq.check(rec) === "seq") {
      const seq = (rec.value as { seq: bigint }).seq;
      const opens = this.lastStateId === CHECKPOINT_STATE.SVM_SUSPENDED || this.mode === "remus";
      const expected = this.current === undefined ? seq : opens ? this.current + 1n : this.current;
      if (seq !== expected) throw seqError(rec, seq, expected);
      this.current = seq;
      return;
    }
    switch (rec.value.kind) {
      case "migration-target-ready":
        this.state = this.mode === "plain" ? "plain-received" : this.afterSeedReady();
        return;
      case "migration-received":
        this.state = "plain-resumed";
        return;
      case "migration-resumed":
        this.state = "plain-done";
        return;
      case "dirty-pfn-list":
        this.state = "fs-or-ready";
        return;
      case "fs-dirty-block-list":
        this.state = "ready";
        return;
      case "checkpoint-digest":
        if (this.current !== undefined && rec.value.seq !== this.current) {
          throw seqError(rec, rec.value.seq, this.current);
        }
        this.state = "after-digest";
        return;
      case "checkpoint-state":
        this.onState(rec, rec.value.id);
        return;
      default:
        return;
    }
  }

  /** Where a checkpointed back channel starts once past its optional MIGRATION_TARGET_READY. */
  private afterSeedReady(): BackState {
    return this.mode === "remus" ? "ready" : "first-ready";
  }

  private onState(rec: DecodedRecord, id: number): void {
    const S = CHECKPOINT_STATE;
    if (this.state === "seed-target-ready") this.state = this.afterSeedReady();
    const due =
      this.state === "suspended"
        ? S.SVM_SUSPENDED
        : this.state === "after-ready" || this.state === "after-digest"
          ? this.mode === "remus"
            ? S.SVM_READY
            : S.SVM_RESUMED
          : S.SVM_READY;
    if (id !== due) {
      throw orderError(
        rec,
        `CHECKPOINT_STATE ${CHECKPOINT_STATE_NAMES.get(id)} where ${CHECKPOINT_STATE_NAMES.get(due)} was due`,
        { id, due },
      );
    }
    if (id === S.SVM_SUSPENDED) this.state = this.mode === "colo" ? "dirty" : "ready";
    else if (id === S.SVM_READY) this.state = "after-ready";
    else this.state = "suspended";
    this.lastStateId = id;
    this.seq.stateSeen();
  }
}

export interface VerifySummary {
  readonly items: number;
  readonly bytes: number;
}

/**
 * Verifies a stream fed in chunks. `push` returns the items it validated (for inspect) and throws
 * the first StreamError; `end` checks the stream may end where it did.
 */
export class StreamVerifier {
  private readonly decoder: StreamDecoder;
  private readonly main: MainRules | undefined;
  private readonly back: BackRules | undefined;
  private count = 0;

  constructor(options: VerifyOptions = {}) {
    const back = options.backChannel ?? false;
    this.decoder = new StreamDecoder({
      ...options.decoder,
      start: back ? "back-channel" : (options.decoder?.start ?? "auto"),
      ...(options.mode === "remus" ? { checkpointState: false } : {}),
      ...(options.mode === "colo" || options.mode === "cache" || options.mode === "full"
        ? { checkpointState: true }
        : {}),
    });
    if (back) this.back = new BackRules(options.mode ?? "colo");
    else this.main = new MainRules(options);
  }

  push(chunk: Uint8Array): DecodedItem[] {
    this.decoder.write(chunk);
    const out: DecodedItem[] = [];
    for (;;) {
      if (this.back) this.decoder.expect(this.back.expected());
      const item = this.decoder.next();
      if (item === undefined) return out;
      this.count++;
      if (item.kind === "header") this.main?.header(item);
      else if (this.back) this.back.record(item);
      else this.main!.record(item);
      out.push(item);
    }
  }

  end(): VerifySummary {
    this.decoder.end();
    return { items: this.count, bytes: this.decoder.offset };
  }
}

/** Verifies a whole in-memory stream; throws the first StreamError. */
export function verifyBytes(bytes: Uint8Array, options: VerifyOptions = {}): VerifySummary {
  const v = new StreamVerifier(options);
  v.push(bytes);
  return v.end();
}

export type { Layer };
/** The back-channel records as keys (for callers building their own `expect` sets). */
export { BACK_CHANNEL_RECORDS };
