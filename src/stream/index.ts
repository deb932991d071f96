/**
 * Public API of the stream layer: pure codecs for Xen's libxc (v3) and libxl (v2) migration
 * streams plus colo's own records. No I/O, no guest knowledge.
 *
 * Encoding: `encodeRecord(type, bodyParts)`, `encode(codec, value)`, `encodePageData(entries,
 * pages)` return gather lists (Uint8Array[]); the header codecs (`imageHeader`, `domainHeader`,
 * `libxlHeader`, `xlHeader`) return bytes. Decoding: `StreamDecoder` (push/next/end), typed record
 * values narrowed on `value.kind`; with `streamPageData: true`, PAGE_DATA comes as
 * page-data-begin / page-data-pages / page-data-end items whose pages are views of the input
 * (valid until the next `write()`). Errors: `StreamError` with a stable `code`.
 * Verification of whole streams (order, sequence numbers, back-channel protocol): `verify.ts`.
 */

export type { BodyCodec } from "./codec.ts";
export { encodeBody } from "./codec.ts";
export {
  BACK_CHANNEL_RECORDS,
  type DecodedHeader,
  type DecodedItem,
  type DecodedRecord,
  type DecoderOptions,
  decodeAll,
  type HeaderKind,
  type ItemOf,
  type PageDataBegin,
  type PageDataEnd,
  type PageDataItem,
  type PageDataPages,
  type RecordKey,
  StreamDecoder,
  type StreamedItem,
  type StreamingDecoderOptions,
} from "./decoder.ts";
export {
  concat,
  encode,
  encodePageData,
  encodeRecord,
  gatherLength,
  type PageEntry,
  paddingFor,
  recordSize,
} from "./encode.ts";
export { hex32, recordName, StreamError, type StreamErrorCode } from "./errors.ts";
export * from "./format.ts";
export * from "./headers.ts";
export * from "./records/colo.ts";
export * from "./records/libxc.ts";
export * from "./records/libxl.ts";
export {
  dataPfnsOf,
  forEachPageRun,
  forEachStreamedRun,
  type PageData,
  type PageEntries,
  pageData,
  pageDataCount,
  pageDataEntries,
  pageTypeHasData,
  pageTypeInvalid,
} from "./records/page-data.ts";
export * from "./records/x86.ts";
export { codecFor, LIBXC_CODECS, LIBXL_CODECS, type RecordValue } from "./registry.ts";
