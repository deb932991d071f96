/**
 * libxc records that are not x86-specific and not PAGE_DATA: the signalling records (END,
 * VERIFY, CHECKPOINT, STATIC_DATA_END), HVM_CONTEXT, HVM_PARAMS, TOOLSTACK and the back
 * channel's CHECKPOINT_DIRTY_PFN_LIST. Layouts are Xen's.
 */
import {
  type BodyCodec,
  blobCodec,
  emptyCodec,
  fail,
  requireMinLength,
  requireMultiple,
  requireZero,
  viewOf,
  writeSafeU64,
} from "../codec.ts";
import {
  HVM_PARAMS_ENTRY_SIZE,
  HVM_PARAMS_HEADER_SIZE,
  LIBXC,
  PFN_LIST_ENTRY_SIZE,
  REC_LENGTH_MAX,
} from "../format.ts";

export const libxcEnd = emptyCodec("libxc", LIBXC.END, "END", "end");
export const verify = emptyCodec("libxc", LIBXC.VERIFY, "VERIFY", "verify");
export const checkpoint = emptyCodec("libxc", LIBXC.CHECKPOINT, "CHECKPOINT", "checkpoint");
export const staticDataEnd = emptyCodec("libxc", LIBXC.STATIC_DATA_END, "STATIC_DATA_END", "static-data-end");

/** Opaque XEN_DOMCTL_gethvmcontext blob; must not be empty. */
export const hvmContext = blobCodec(
  "libxc",
  LIBXC.HVM_CONTEXT,
  "HVM_CONTEXT",
  "hvm-context",
  1,
  REC_LENGTH_MAX,
);

/** Deprecated by Xen; decodable so that the verifier can name it, never emitted. */
export const toolstack = blobCodec("libxc", LIBXC.TOOLSTACK, "TOOLSTACK", "toolstack", 0, REC_LENGTH_MAX);

export interface HvmParams {
  readonly kind: "hvm-params";
  /** (index, value) pairs, u64 each. */
  readonly params: readonly { readonly index: bigint; readonly value: bigint }[];
}

export const hvmParams: BodyCodec<HvmParams> = {
  layer: "libxc",
  type: LIBXC.HVM_PARAMS,
  name: "HVM_PARAMS",
  minLength: HVM_PARAMS_HEADER_SIZE,
  maxLength: REC_LENGTH_MAX,
  size: (v) => HVM_PARAMS_HEADER_SIZE + HVM_PARAMS_ENTRY_SIZE * v.params.length,
  encode(v, view, offset) {
    view.setUint32(offset, v.params.length, true);
    view.setUint32(offset + 4, 0, true);
    let o = offset + 8;
    for (const p of v.params) {
      view.setBigUint64(o, p.index, true);
      view.setBigUint64(o + 8, p.value, true);
      o += 16;
    }
    return o;
  },
  decode(body) {
    requireMinLength(body, HVM_PARAMS_HEADER_SIZE);
    const view = viewOf(body);
    const count = view.getUint32(0, true);
    requireZero(body, 4, 8, "HVM_PARAMS reserved");
    const expected = HVM_PARAMS_HEADER_SIZE + HVM_PARAMS_ENTRY_SIZE * count;
    if (body.length !== expected) {
      fail("bad-length", `HVM_PARAMS count ${count} needs ${expected} bytes, body has ${body.length}`, {
        expected,
        actual: body.length,
      });
    }
    const params: { index: bigint; value: bigint }[] = [];
    for (let o = 8; o < body.length; o += 16) {
      params.push({ index: view.getBigUint64(o, true), value: view.getBigUint64(o + 8, true) });
    }
    return { kind: "hvm-params", params };
  },
};

export interface DirtyPfnList {
  readonly kind: "dirty-pfn-list";
  /** pfns, unordered; u64 on the wire, returned as numbers (values above 2^53−1 are refused). */
  readonly pfns: Float64Array;
}

export const checkpointDirtyPfnList: BodyCodec<DirtyPfnList> = {
  layer: "libxc",
  type: LIBXC.CHECKPOINT_DIRTY_PFN_LIST,
  name: "CHECKPOINT_DIRTY_PFN_LIST",
  minLength: 0,
  maxLength: REC_LENGTH_MAX,
  size: (v) => PFN_LIST_ENTRY_SIZE * v.pfns.length,
  encode(v, view, offset) {
    let o = offset;
    for (const pfn of v.pfns) {
      writeSafeU64(view, o, pfn);
      o += PFN_LIST_ENTRY_SIZE;
    }
    return o;
  },
  decode(body) {
    requireMultiple(body, PFN_LIST_ENTRY_SIZE);
    const view = viewOf(body);
    const n = body.length / PFN_LIST_ENTRY_SIZE;
    const pfns = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const hi = view.getUint32(8 * i + 4, true);
      if (hi > 0x1f_ffff) fail("bad-value", `pfn[${i}] exceeds 2^53-1`, { index: i });
      pfns[i] = hi * 0x1_0000_0000 + view.getUint32(8 * i, true);
    }
    return { kind: "dirty-pfn-list", pfns };
  },
};
