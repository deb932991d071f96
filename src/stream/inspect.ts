/**
 * One-line human summaries and JSON-friendly views of decoded items, for `colo stream inspect`.
 */

import type { DecodedItem } from "./decoder.ts";
import { hex32 } from "./errors.ts";
import { CHECKPOINT_STATE_NAMES, DHDR_TYPE_NAMES, EMULATOR_ID_NAMES, PAGE_TYPE_NAMES } from "./format.ts";
import type { DomainHeader, ImageHeader, LibxlHeader, XlHeader } from "./headers.ts";

const hex = (n: number) => `0x${n.toString(16)}`;
const hexBytes = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("hex");

/** "0x0-0x3ff,0x500" for up to `max` runs of consecutive pfns, then "…(+n runs)". */
export function pfnRanges(pfns: ArrayLike<number>, max = 4): string {
  const runs: string[] = [];
  let total = 0;
  let i = 0;
  while (i < pfns.length) {
    let j = i;
    while (j + 1 < pfns.length && pfns[j + 1] === pfns[j]! + 1) j++;
    total++;
    if (runs.length < max) runs.push(i === j ? hex(pfns[i]!) : `${hex(pfns[i]!)}-${hex(pfns[j]!)}`);
    i = j + 1;
  }
  return total > max ? `${runs.join(",")},…(+${total - max} runs)` : runs.join(",");
}

/** Short description of an item's content. */
export function summarize(item: DecodedItem): string {
  if (item.kind === "header") {
    switch (item.header) {
      case "xl": {
        const v = item.value as XlHeader;
        return `xl save header, mandatory flags ${hex(v.mandatoryFlags)}, ${v.optionalData.length} bytes optional data`;
      }
      case "libxl":
        return `libxl v2${(item.value as LibxlHeader).legacy ? ", legacy-converted" : ""}`;
      case "libxc-image":
        return `libxc image v${(item.value as ImageHeader).version}, little-endian`;
      case "libxc-domain": {
        const v = item.value as DomainHeader;
        return `domain ${DHDR_TYPE_NAMES.get(v.type) ?? hex32(v.type)}, page shift ${v.pageShift}, Xen ${v.xenMajor}.${v.xenMinor}`;
      }
    }
  }
  const v = item.value;
  switch (v.kind) {
    case "page-data": {
      const types = new Set<number>(v.types);
      const t =
        types.size === 1 && types.has(0)
          ? ""
          : ` types ${[...types].map((x) => PAGE_TYPE_NAMES[x]).join(",")}`;
      return `${v.count} pfns, ${v.pageCount} pages: ${pfnRanges(v.pfns)}${t}`;
    }
    case "dirty-pfn-list":
      return `${v.pfns.length} pfns: ${pfnRanges([...v.pfns].sort((a, b) => a - b))}`;
    case "fs-dirty-block-list":
      return `${v.blocks.length} blocks${
        v.blocks.length > 0
          ? `: ${v.blocks
              .slice(0, 4)
              .map((b) => `${b.ino}:${b.block}`)
              .join(",")}${v.blocks.length > 4 ? ",…" : ""}`
          : ""
      }`;
    case "checkpoint-state":
      return CHECKPOINT_STATE_NAMES.get(v.id) ?? String(v.id);
    case "checkpoint-seq":
      return `seq ${v.seq}`;
    case "checkpoint-info":
      return `seq ${v.seq}, memory ${v.memoryPages} pages (${(v.memoryPages * 4) / 1024} MiB)`;
    case "checkpoint-digest":
      return `seq ${v.seq}, sha256 ${hexBytes(v.digest)}`;
    case "module-identity":
      return `module ${v.moduleBytes.length} bytes, instrumented sha256 ${hexBytes(v.instrumentedHash).slice(0, 16)}…, transform "${v.transformVersion}"`;
    case "emulator-context":
    case "emulator-xenstore-data": {
      const who = `${EMULATOR_ID_NAMES.get(v.emulatorId) ?? hex32(v.emulatorId)} #${v.index}`;
      return v.kind === "emulator-context"
        ? `${who}, ${v.data.length} bytes`
        : `${who}, ${v.pairs.length} keys`;
    }
    case "x86-pv-info":
      return `${v.guestWidth * 8}-bit guest, ${v.ptLevels} page-table levels`;
    case "x86-pv-p2m-frames":
      return `pfns ${hex(v.startPfn)}-${hex(v.endPfn)}, ${v.frames.length} frames`;
    case "x86-pv-vcpu":
      return `vcpu ${v.vcpuId}, ${v.context.length} bytes`;
    case "x86-tsc-info":
      return `mode ${v.mode}, ${v.khz} kHz, ${v.nsec} ns, incarnation ${v.incarnation}`;
    case "x86-cpuid-policy":
      return `${v.leaves.length} leaves`;
    case "x86-msr-policy":
      return `${v.entries.length} MSRs`;
    case "hvm-params":
      return `${v.params.length} params`;
    case "hvm-context":
    case "guest-context":
    case "shared-info":
    case "toolstack":
      return `${v.data.length} bytes`;
    default:
      return "";
  }
}

/** A JSON-safe object describing an item (bigints as strings, bytes as lengths or hex). */
export function toJson(item: DecodedItem): Record<string, unknown> {
  if (item.kind === "header") {
    return {
      offset: item.offset,
      kind: "header",
      header: item.header,
      size: item.size,
      summary: summarize(item),
    };
  }
  return {
    offset: item.offset,
    kind: "record",
    layer: item.layer,
    type: hex32(item.type),
    name: item.name,
    length: item.length,
    summary: summarize(item),
  };
}

/** "offset  layer  type  NAME  length  summary" */
export function formatLine(item: DecodedItem): string {
  const off = String(item.offset).padStart(10);
  if (item.kind === "header") {
    return `${off}  ${"header".padEnd(6)}  ${"".padEnd(10)}  ${item.header.toUpperCase().padEnd(26)}  ${String(item.size).padStart(9)}  ${summarize(item)}`;
  }
  return `${off}  ${item.layer.padEnd(6)}  ${hex32(item.type)}  ${item.name.padEnd(26)}  ${String(item.length).padStart(9)}  ${summarize(item)}`;
}
