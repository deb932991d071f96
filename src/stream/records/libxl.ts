/**
 * libxl records: END, LIBXC_CONTEXT, EMULATOR_XENSTORE_DATA, EMULATOR_CONTEXT, CHECKPOINT_END,
 * CHECKPOINT_STATE. Layouts are Xen's.
 */
import {
  type BodyCodec,
  emptyCodec,
  fail,
  putBytes,
  requireMinLength,
  requireZero,
  viewOf,
} from "../codec.ts";
import {
  CHECKPOINT_STATE_LENGTH,
  CHECKPOINT_STATE_LENGTH_MAX,
  CHECKPOINT_STATE_NAMES,
  EMULATOR_HEADER_SIZE,
  EMULATOR_ID_NAMES,
  LIBXL,
  REC_LENGTH_MAX,
} from "../format.ts";

export const libxlEnd = emptyCodec("libxl", LIBXL.END, "END", "libxl-end");
export const libxcContext = emptyCodec("libxl", LIBXL.LIBXC_CONTEXT, "LIBXC_CONTEXT", "libxc-context");
export const checkpointEnd = emptyCodec("libxl", LIBXL.CHECKPOINT_END, "CHECKPOINT_END", "checkpoint-end");

function readEmulatorHeader(body: Uint8Array): { emulatorId: number; index: number } {
  requireMinLength(body, EMULATOR_HEADER_SIZE);
  const view = viewOf(body);
  const emulatorId = view.getUint32(0, true);
  if (!EMULATOR_ID_NAMES.has(emulatorId)) {
    fail("bad-value", `unknown emulator id 0x${emulatorId.toString(16)}`, { emulatorId });
  }
  return { emulatorId, index: view.getUint32(4, true) };
}

function writeEmulatorHeader(view: DataView, offset: number, emulatorId: number, index: number): number {
  view.setUint32(offset, emulatorId, true);
  view.setUint32(offset + 4, index, true);
  return offset + EMULATOR_HEADER_SIZE;
}

export interface EmulatorXenstoreData {
  readonly kind: "emulator-xenstore-data";
  readonly emulatorId: number;
  readonly index: number;
  /** key/value pairs, keys relative to the device model's xenstore directory. */
  readonly pairs: readonly (readonly [string, string])[];
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false });

export const emulatorXenstoreData: BodyCodec<EmulatorXenstoreData> = {
  layer: "libxl",
  type: LIBXL.EMULATOR_XENSTORE_DATA,
  name: "EMULATOR_XENSTORE_DATA",
  minLength: EMULATOR_HEADER_SIZE,
  maxLength: REC_LENGTH_MAX,
  size: (v) =>
    EMULATOR_HEADER_SIZE +
    v.pairs.reduce((n, [k, val]) => n + utf8.encode(k).length + utf8.encode(val).length + 2, 0),
  encode(v, view, offset) {
    let o = writeEmulatorHeader(view, offset, v.emulatorId, v.index);
    for (const [k, val] of v.pairs) {
      for (const s of [k, val]) {
        const b = utf8.encode(s);
        if (b.includes(0)) fail("invalid-argument", "xenstore strings cannot contain NUL");
        o = putBytes(view, o, b);
        view.setUint8(o++, 0);
      }
    }
    return o;
  },
  decode(body) {
    const { emulatorId, index } = readEmulatorHeader(body);
    const data = body.subarray(EMULATOR_HEADER_SIZE);
    const pairs: [string, string][] = [];
    if (data.length > 0) {
      if (data[data.length - 1] !== 0) fail("bad-value", "xenstore data is not NUL-terminated");
      const parts = utf8Decoder.decode(data.subarray(0, data.length - 1)).split("\0");
      if (parts.length % 2 !== 0)
        fail("bad-value", `xenstore data holds ${parts.length} strings, expected pairs`);
      for (let i = 0; i < parts.length; i += 2) pairs.push([parts[i]!, parts[i + 1]!]);
    }
    return { kind: "emulator-xenstore-data", emulatorId, index, pairs };
  },
};

export interface EmulatorContext {
  readonly kind: "emulator-context";
  readonly emulatorId: number;
  readonly index: number;
  /** The emulator's opaque state (for EMULATOR_ID.WASI_HOST: the WASI host state). */
  readonly data: Uint8Array;
}

export const emulatorContext: BodyCodec<EmulatorContext> = {
  layer: "libxl",
  type: LIBXL.EMULATOR_CONTEXT,
  name: "EMULATOR_CONTEXT",
  minLength: EMULATOR_HEADER_SIZE,
  maxLength: REC_LENGTH_MAX,
  size: (v) => EMULATOR_HEADER_SIZE + v.data.length,
  encode: (v, view, offset) =>
    putBytes(view, writeEmulatorHeader(view, offset, v.emulatorId, v.index), v.data),
  decode(body) {
    const { emulatorId, index } = readEmulatorHeader(body);
    return { kind: "emulator-context", emulatorId, index, data: body.subarray(EMULATOR_HEADER_SIZE) };
  },
};

export interface CheckpointState {
  readonly kind: "checkpoint-state";
  /** CHECKPOINT_STATE.NEW / SVM_SUSPENDED / SVM_READY / SVM_RESUMED. */
  readonly id: number;
}

/** Written with length 4 (as libxl does); read with any length 4…64 whose extra bytes are zero. */
export const checkpointState: BodyCodec<CheckpointState> = {
  layer: "libxl",
  type: LIBXL.CHECKPOINT_STATE,
  name: "CHECKPOINT_STATE",
  minLength: CHECKPOINT_STATE_LENGTH,
  maxLength: CHECKPOINT_STATE_LENGTH_MAX,
  size: () => CHECKPOINT_STATE_LENGTH,
  encode(v, view, offset) {
    view.setUint32(offset, v.id, true);
    return offset + CHECKPOINT_STATE_LENGTH;
  },
  decode(body) {
    requireMinLength(body, CHECKPOINT_STATE_LENGTH);
    const id = viewOf(body).getUint32(0, true);
    if (!CHECKPOINT_STATE_NAMES.has(id)) fail("bad-value", `unknown checkpoint state id ${id}`, { id });
    requireZero(body, 4, body.length, "CHECKPOINT_STATE padding");
    return { kind: "checkpoint-state", id };
  },
};
