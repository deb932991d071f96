/**
 * Stream headers: libxc image header (24 B, big-endian), libxc domain header (16 B, LE), libxl
 * header (16 B, big-endian) and the xl save-file header (48 B + optional data, little-endian as
 * written by x86 hosts). Each codec has a fixed `size`, `encode(value)` → bytes and
 * `decode(bytes)` that validates every field (throws StreamError without an offset).
 */
import { fail, requireZero, viewOf } from "./codec.ts";
import {
  DHDR_SIZE,
  DHDR_TYPE_NAMES,
  IHDR_ID,
  IHDR_MARKER,
  IHDR_OPT_BIG_ENDIAN,
  IHDR_OPT_RESERVED_MASK,
  IHDR_SIZE,
  IHDR_VERSION,
  IHDR_VERSION_MIN,
  LIBXL_HDR_SIZE,
  LIBXL_IDENT,
  LIBXL_OPT_BIG_ENDIAN,
  LIBXL_OPT_LEGACY,
  LIBXL_OPT_RESERVED_MASK,
  LIBXL_VERSION,
  PAGE_SHIFT,
  XL_BYTEORDER_MARKER,
  XL_HEADER_SIZE,
  XL_MAGIC,
  XL_MAGIC_SIZE,
  XL_MANDATORY_FLAG_STREAMV2,
  XL_MANDATORY_FLAGS_KNOWN,
  XL_OPTIONAL_DATA_MAX,
} from "./format.ts";

export interface ImageHeader {
  /** 2 or 3. */
  readonly version: number;
}

export const imageHeader = {
  size: IHDR_SIZE,
  encode(v: ImageHeader = { version: IHDR_VERSION }): Uint8Array {
    const out = new Uint8Array(IHDR_SIZE);
    const view = viewOf(out);
    view.setBigUint64(0, IHDR_MARKER, false);
    view.setUint32(8, IHDR_ID, false);
    view.setUint32(12, v.version, false);
    return out; // options 0 (little-endian), reserved 0
  },
  decode(bytes: Uint8Array): ImageHeader {
    const view = viewOf(bytes);
    if (view.getBigUint64(0, false) !== IHDR_MARKER) fail("bad-magic", "libxc image marker is not FF×8");
    const id = view.getUint32(8, false);
    if (id !== IHDR_ID) fail("bad-magic", `libxc image id 0x${id.toString(16)}, expected 0x58454e46 "XENF"`);
    const version = view.getUint32(12, false);
    if (version < IHDR_VERSION_MIN || version > IHDR_VERSION) {
      fail("bad-version", `libxc image version ${version}, expected 2 or 3`, { version });
    }
    const options = view.getUint16(16, false);
    if (options & IHDR_OPT_RESERVED_MASK) fail("reserved-nonzero", "libxc image options reserved bits set");
    if (options & IHDR_OPT_BIG_ENDIAN) fail("big-endian", "big-endian libxc stream");
    requireZero(bytes, 18, 24, "libxc image header reserved");
    return { version };
  },
};

export interface DomainHeader {
  /** DHDR_TYPE_*: x86 PV 1, x86 HVM 2, colo wasm32 DHDR_TYPE_WASM32. */
  readonly type: number;
  readonly pageShift: number;
  readonly xenMajor: number;
  readonly xenMinor: number;
}

export const domainHeader = {
  size: DHDR_SIZE,
  encode(v: DomainHeader): Uint8Array {
    const out = new Uint8Array(DHDR_SIZE);
    const view = viewOf(out);
    view.setUint32(0, v.type, true);
    view.setUint16(4, v.pageShift, true);
    view.setUint32(8, v.xenMajor, true);
    view.setUint32(12, v.xenMinor, true);
    return out;
  },
  decode(bytes: Uint8Array): DomainHeader {
    const view = viewOf(bytes);
    const type = view.getUint32(0, true);
    if (!DHDR_TYPE_NAMES.has(type)) fail("bad-value", `unknown domain type 0x${type.toString(16)}`, { type });
    const pageShift = view.getUint16(4, true);
    if (pageShift !== PAGE_SHIFT) fail("bad-value", `page shift ${pageShift}, expected 12`, { pageShift });
    requireZero(bytes, 6, 8, "domain header reserved");
    return { type, pageShift, xenMajor: view.getUint32(8, true), xenMinor: view.getUint32(12, true) };
  },
};

export interface LibxlHeader {
  /** Options bit 1: converted from a legacy stream. */
  readonly legacy: boolean;
}

export const libxlHeader = {
  size: LIBXL_HDR_SIZE,
  encode(v: LibxlHeader = { legacy: false }): Uint8Array {
    const out = new Uint8Array(LIBXL_HDR_SIZE);
    const view = viewOf(out);
    view.setBigUint64(0, LIBXL_IDENT, false);
    view.setUint32(8, LIBXL_VERSION, false);
    view.setUint32(12, v.legacy ? LIBXL_OPT_LEGACY : 0, false);
    return out;
  },
  decode(bytes: Uint8Array): LibxlHeader {
    const view = viewOf(bytes);
    if (view.getBigUint64(0, false) !== LIBXL_IDENT) fail("bad-magic", 'libxl ident is not "LibxlFmt"');
    const version = view.getUint32(8, false);
    if (version !== LIBXL_VERSION) fail("bad-version", `libxl version ${version}, expected 2`, { version });
    const options = view.getUint32(12, false);
    if (options & LIBXL_OPT_RESERVED_MASK) fail("reserved-nonzero", "libxl options reserved bits set");
    if (options & LIBXL_OPT_BIG_ENDIAN) fail("big-endian", "big-endian libxl stream");
    return { legacy: (options & LIBXL_OPT_LEGACY) !== 0 };
  },
};

export interface XlHeader {
  /** bit 0 config is JSON, bit 1 a libxl v2 stream follows. */
  readonly mandatoryFlags: number;
  readonly optionalFlags: number;
  /** The optional data (u32 config length + config text in xl's files), raw. */
  readonly optionalData: Uint8Array;
}

const XL_MAGIC_BYTES = Uint8Array.from(XL_MAGIC, (c) => c.charCodeAt(0));

/** The xl header: fixed 48 bytes, then `optionalDataLength(fixed)` bytes. */
export const xlHeader = {
  fixedSize: XL_HEADER_SIZE,
  magic: XL_MAGIC_BYTES,
  encode(v: XlHeader): Uint8Array {
    const out = new Uint8Array(XL_HEADER_SIZE + v.optionalData.length);
    const view = viewOf(out);
    out.set(XL_MAGIC_BYTES, 0);
    view.setUint32(32, XL_BYTEORDER_MARKER, true);
    view.setUint32(36, v.mandatoryFlags, true);
    view.setUint32(40, v.optionalFlags, true);
    view.setUint32(44, v.optionalData.length, true);
    out.set(v.optionalData, XL_HEADER_SIZE);
    return out;
  },
  /** Validates the fixed 48 bytes; returns the optional data length to read next (capped). */
  decodeFixed(bytes: Uint8Array): {
    mandatoryFlags: number;
    optionalFlags: number;
    optionalDataLength: number;
  } {
    for (let i = 0; i < XL_MAGIC_SIZE; i++) {
      if (bytes[i] !== XL_MAGIC_BYTES[i]) fail("bad-magic", "xl save-file magic mismatch");
    }
    const view = viewOf(bytes);
    if (view.getUint32(32, true) !== XL_BYTEORDER_MARKER) {
      fail("big-endian", "xl byte-order marker is not 0x01020304 little-endian");
    }
    const mandatoryFlags = view.getUint32(36, true);
    if (mandatoryFlags & ~XL_MANDATORY_FLAGS_KNOWN) {
      fail("bad-value", `unknown xl mandatory flags 0x${mandatoryFlags.toString(16)}`, { mandatoryFlags });
    }
    if (!(mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2)) {
      fail("bad-version", "xl file holds a legacy (pre-v2) stream", { mandatoryFlags });
    }
    const optionalDataLength = view.getUint32(44, true);
    if (optionalDataLength > XL_OPTIONAL_DATA_MAX) {
      fail("length-cap", `xl optional data ${optionalDataLength} bytes exceeds ${XL_OPTIONAL_DATA_MAX}`, {
        length: optionalDataLength,
        cap: XL_OPTIONAL_DATA_MAX,
      });
    }
    return { mandatoryFlags, optionalFlags: view.getUint32(40, true), optionalDataLength };
  },
};
