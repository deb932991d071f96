/**
 * libxc x86 records, decoded structurally: X86_PV_INFO, X86_PV_P2M_FRAMES, the four
 * X86_PV_VCPU_* records (vcpu id + opaque blob), SHARED_INFO, X86_TSC_INFO, X86_CPUID_POLICY,
 * X86_MSR_POLICY. Layouts are Xen's.
 */
import {
  type BodyCodec,
  blobCodec,
  entryListCodec,
  fail,
  requireLength,
  requireMinLength,
  requireMultiple,
  requireZero,
  viewOf,
} from "../codec.ts";
import {
  LIBXC,
  REC_LENGTH_MAX,
  SHARED_INFO_SIZE,
  X86_CPUID_ENTRY_SIZE,
  X86_MSR_ENTRY_SIZE,
  X86_PV_INFO_SIZE,
  X86_PV_P2M_FRAMES_HEADER_SIZE,
  X86_PV_VCPU_HEADER_SIZE,
  X86_TSC_INFO_SIZE,
} from "../format.ts";

export interface X86PvInfo {
  readonly kind: "x86-pv-info";
  /** Guest word size in bytes: 4 or 8. */
  readonly guestWidth: number;
  /** Page-table levels: 3 or 4. */
  readonly ptLevels: number;
}

export const x86PvInfo: BodyCodec<X86PvInfo> = {
  layer: "libxc",
  type: LIBXC.X86_PV_INFO,
  name: "X86_PV_INFO",
  minLength: X86_PV_INFO_SIZE,
  maxLength: X86_PV_INFO_SIZE,
  size: () => X86_PV_INFO_SIZE,
  encode(v, view, offset) {
    view.setUint8(offset, v.guestWidth);
    view.setUint8(offset + 1, v.ptLevels);
    view.setUint16(offset + 2, 0, true);
    view.setUint32(offset + 4, 0, true);
    return offset + X86_PV_INFO_SIZE;
  },
  decode(body) {
    requireLength(body, X86_PV_INFO_SIZE);
    const guestWidth = body[0]!;
    const ptLevels = body[1]!;
    if (guestWidth !== 4 && guestWidth !== 8) fail("bad-value", `guest width ${guestWidth}, expected 4 or 8`);
    if (ptLevels !== 3 && ptLevels !== 4) fail("bad-value", `page-table levels ${ptLevels}, expected 3 or 4`);
    requireZero(body, 2, 8, "X86_PV_INFO reserved");
    return { kind: "x86-pv-info", guestWidth, ptLevels };
  },
};

export interface X86PvP2mFrames {
  readonly kind: "x86-pv-p2m-frames";
  readonly startPfn: number;
  /** Inclusive. */
  readonly endPfn: number;
  /** Guest pfns of the P2M frames (u64 each, as bigint). */
  readonly frames: readonly bigint[];
}

export const x86PvP2mFrames: BodyCodec<X86PvP2mFrames> = {
  layer: "libxc",
  type: LIBXC.X86_PV_P2M_FRAMES,
  name: "X86_PV_P2M_FRAMES",
  minLength: X86_PV_P2M_FRAMES_HEADER_SIZE,
  maxLength: REC_LENGTH_MAX,
  size: (v) => X86_PV_P2M_FRAMES_HEADER_SIZE + 8 * v.frames.length,
  encode(v, view, offset) {
    view.setUint32(offset, v.startPfn, true);
    view.setUint32(offset + 4, v.endPfn, true);
    let o = offset + 8;
    for (const f of v.frames) {
      view.setBigUint64(o, f, true);
      o += 8;
    }
    return o;
  },
  decode(body) {
    requireMinLength(body, X86_PV_P2M_FRAMES_HEADER_SIZE);
    requireMultiple(body, 8);
    const view = viewOf(body);
    const startPfn = view.getUint32(0, true);
    const endPfn = view.getUint32(4, true);
    if (startPfn > endPfn) fail("bad-value", `p2m start pfn ${startPfn} > end pfn ${endPfn}`);
    const frames: bigint[] = [];
    for (let o = 8; o < body.length; o += 8) frames.push(view.getBigUint64(o, true));
    return { kind: "x86-pv-p2m-frames", startPfn, endPfn, frames };
  },
};

export interface X86PvVcpu {
  readonly kind: "x86-pv-vcpu";
  readonly vcpuId: number;
  /** Opaque domctl context blob (may be empty: Xen 4.6–4.8 wrote empty ones). */
  readonly context: Uint8Array;
}

function vcpuCodec(type: number, name: string): BodyCodec<X86PvVcpu> {
  return {
    layer: "libxc",
    type,
    name,
    minLength: X86_PV_VCPU_HEADER_SIZE,
    maxLength: REC_LENGTH_MAX,
    size: (v) => X86_PV_VCPU_HEADER_SIZE + v.context.length,
    encode(v, view, offset) {
      view.setUint32(offset, v.vcpuId, true);
      view.setUint32(offset + 4, 0, true);
      new Uint8Array(view.buffer, view.byteOffset + offset + 8, v.context.length).set(v.context);
      return offset + 8 + v.context.length;
    },
    decode(body) {
      requireMinLength(body, X86_PV_VCPU_HEADER_SIZE);
      requireZero(body, 4, 8, `${name} reserved`);
      return { kind: "x86-pv-vcpu", vcpuId: viewOf(body).getUint32(0, true), context: body.subarray(8) };
    },
  };
}

export const x86PvVcpuBasic = vcpuCodec(LIBXC.X86_PV_VCPU_BASIC, "X86_PV_VCPU_BASIC");
export const x86PvVcpuExtended = vcpuCodec(LIBXC.X86_PV_VCPU_EXTENDED, "X86_PV_VCPU_EXTENDED");
export const x86PvVcpuXsave = vcpuCodec(LIBXC.X86_PV_VCPU_XSAVE, "X86_PV_VCPU_XSAVE");
export const x86PvVcpuMsrs = vcpuCodec(LIBXC.X86_PV_VCPU_MSRS, "X86_PV_VCPU_MSRS");

export const sharedInfo = blobCodec(
  "libxc",
  LIBXC.SHARED_INFO,
  "SHARED_INFO",
  "shared-info",
  SHARED_INFO_SIZE,
  SHARED_INFO_SIZE,
);

export interface X86TscInfo {
  readonly kind: "x86-tsc-info";
  readonly mode: number;
  readonly khz: number;
  readonly nsec: bigint;
  readonly incarnation: number;
}

export const x86TscInfo: BodyCodec<X86TscInfo> = {
  layer: "libxc",
  type: LIBXC.X86_TSC_INFO,
  name: "X86_TSC_INFO",
  minLength: X86_TSC_INFO_SIZE,
  maxLength: X86_TSC_INFO_SIZE,
  size: () => X86_TSC_INFO_SIZE,
  encode(v, view, offset) {
    view.setUint32(offset, v.mode, true);
    view.setUint32(offset + 4, v.khz, true);
    view.setBigUint64(offset + 8, v.nsec, true);
    view.setUint32(offset + 16, v.incarnation, true);
    view.setUint32(offset + 20, 0, true);
    return offset + X86_TSC_INFO_SIZE;
  },
  decode(body) {
    requireLength(body, X86_TSC_INFO_SIZE);
    requireZero(body, 20, 24, "X86_TSC_INFO reserved");
    const view = viewOf(body);
    return {
      kind: "x86-tsc-info",
      mode: view.getUint32(0, true),
      khz: view.getUint32(4, true),
      nsec: view.getBigUint64(8, true),
      incarnation: view.getUint32(16, true),
    };
  },
};

export interface CpuidLeaf {
  readonly leaf: number;
  /** 0xFFFFFFFF = no subleaf. */
  readonly subleaf: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
}

export interface X86CpuidPolicy {
  readonly kind: "x86-cpuid-policy";
  readonly leaves: readonly CpuidLeaf[];
}

export const x86CpuidPolicy: BodyCodec<X86CpuidPolicy> = entryListCodec({
  layer: "libxc",
  type: LIBXC.X86_CPUID_POLICY,
  name: "X86_CPUID_POLICY",
  kind: "x86-cpuid-policy",
  field: "leaves",
  entrySize: X86_CPUID_ENTRY_SIZE,
  minEntries: 1,
  writeEntry(view, o, l: CpuidLeaf) {
    view.setUint32(o, l.leaf, true);
    view.setUint32(o + 4, l.subleaf, true);
    view.setUint32(o + 8, l.a, true);
    view.setUint32(o + 12, l.b, true);
    view.setUint32(o + 16, l.c, true);
    view.setUint32(o + 20, l.d, true);
  },
  readEntry: (view, _body, o) => ({
    leaf: view.getUint32(o, true),
    subleaf: view.getUint32(o + 4, true),
    a: view.getUint32(o + 8, true),
    b: view.getUint32(o + 12, true),
    c: view.getUint32(o + 16, true),
    d: view.getUint32(o + 20, true),
  }),
});

export interface MsrEntry {
  readonly index: number;
  readonly value: bigint;
}

export interface X86MsrPolicy {
  readonly kind: "x86-msr-policy";
  readonly entries: readonly MsrEntry[];
}

export const x86MsrPolicy: BodyCodec<X86MsrPolicy> = entryListCodec({
  layer: "libxc",
  type: LIBXC.X86_MSR_POLICY,
  name: "X86_MSR_POLICY",
  kind: "x86-msr-policy",
  field: "entries",
  entrySize: X86_MSR_ENTRY_SIZE,
  minEntries: 1,
  writeEntry(view, o, e: MsrEntry) {
    view.setUint32(o, e.index, true);
    view.setUint32(o + 4, 0, true);
    view.setBigUint64(o + 8, e.value, true);
  },
  readEntry(view, body, o, i) {
    requireZero(body, o + 4, o + 8, `msr[${i}].flags`);
    return { index: view.getUint32(o, true), value: view.getBigUint64(o + 8, true) };
  },
});
