/**
 * Page writes of a restore handed to the target's own thread (Domain.queueWrites), so the copy
 * into guest memory runs beside the main thread that decrypts and parses the stream.
 *
 * A streamed PAGE_DATA item is a view of the chunk the reader got from its source (one TLS
 * record's 16 KiB, a socket read) or of the decoder's staging page (a page split across two
 * chunks). Views of a chunk are collected until the reader moves to the next chunk; the chunk's
 * buffer is then transferred whole with the list of its runs (no copy on this thread) when that
 * is safe: the chunk spans its whole ArrayBuffer (no other chunk shares it), the buffer may be
 * transferred, and no other item (a record body the restore may keep) came from the chunk.
 * Otherwise, and for staged pages, the bytes are copied into a side buffer that travels with the
 * batch. Writes keep their stream order; a batch goes out every FLUSH_BYTES and before any other
 * record is handled (the domain's later requests then find every page written).
 */
import { isMarkedAsUntransferable } from "node:worker_threads";
import { PAGE_SIZE } from "../guest/domain.ts";

/** Bytes of page writes per batch posted to the target's thread. */
const FLUSH_BYTES = 512 * 1024;
/** Side buffer size (copied pages of a batch). */
const SIDE_BYTES = 256 * 1024;

export interface QueueingTarget {
  queueWrites(buffers: ArrayBuffer[], ops: Float64Array): void;
}

export class PageWriteQueue {
  readonly #target: QueueingTarget;
  /** The chunk whose page views are pending, and its runs (source offset, destination, length). */
  #chunk: Uint8Array | undefined;
  #runs: number[] = [];
  /** A chunk that something other than page data came from: its views are copied, never moved. */
  #tainted: Uint8Array | undefined;
  #buffers: ArrayBuffer[] = [];
  #ops: number[] = [];
  #bytes = 0;
  #side: Uint8Array | undefined;
  #sideIndex = -1;
  #sideUsed = 0;
  /** Pages moved with their chunk and pages copied (for tests and benchmarks). */
  moved = 0;
  copied = 0;

  constructor(target: QueueingTarget) {
    this.#target = target;
  }

  /**
   * Bytes for guest memory at byte `dst`: `bytes` is a view of `chunk` (the chunk the reader is
   * decoding) or of a buffer the decoder reuses.
   */
  add(dst: number, bytes: Uint8Array, chunk: Uint8Array | undefined): void {
    if (chunk === undefined || bytes.buffer !== chunk.buffer || chunk === this.#tainted) {
      this.#copy(bytes, dst);
      return;
    }
    if (this.#chunk !== chunk) {
      this.#seal(false);
      this.#chunk = chunk;
    }
    this.#runs.push(bytes.byteOffset, dst, bytes.byteLength);
  }

  /** The reader has moved past `chunk`: its pending runs go into the batch. */
  chunkDone(chunk: Uint8Array): void {
    if (this.#chunk === chunk) this.#seal(true);
    if (this.#bytes >= FLUSH_BYTES) this.flush();
  }

  /**
   * Another item (not page data) came from `chunk`: its pending pages are copied (the item may
   * keep a view of it), and everything queued goes to the target before the item is handled.
   */
  otherItem(chunk: Uint8Array | undefined): void {
    this.#tainted = chunk;
    if (this.#chunk !== undefined) this.#seal(false);
    this.flush();
  }

  /** Post the batch. */
  flush(): void {
    if (this.#ops.length === 0) return;
    const buffers = this.#buffers;
    const ops = Float64Array.from(this.#ops);
    this.#buffers = [];
    this.#ops = [];
    this.#bytes = 0;
    this.#side = undefined;
    this.#sideIndex = -1;
    this.#sideUsed = 0;
    this.#target.queueWrites(buffers, ops);
  }

  #seal(done: boolean): void {
    const chunk = this.#chunk;
    if (chunk === undefined) return;
    const runs = this.#runs;
    this.#chunk = undefined;
    this.#runs = [];
    const buf = chunk.buffer;
    const movable =
      done &&
      buf instanceof ArrayBuffer &&
      chunk.byteOffset === 0 &&
      chunk.byteLength === buf.byteLength &&
      !isMarkedAsUntransferable(buf);
    if (!movable) {
      for (let i = 0; i < runs.length; i += 3)
        this.#copy(new Uint8Array(buf, runs[i]!, runs[i + 2]!), runs[i + 1]!);
      return;
    }
    const index = this.#buffers.push(buf) - 1;
    for (let i = 0; i < runs.length; i += 3) {
      this.#ops.push(index, runs[i]!, runs[i + 1]!, runs[i + 2]!);
      this.#bytes += runs[i + 2]!;
      this.moved += runs[i + 2]! / PAGE_SIZE;
    }
  }

  #copy(bytes: Uint8Array, dst: number): void {
    if (this.#side === undefined || this.#sideUsed + bytes.byteLength > this.#side.byteLength) {
      const side = new ArrayBuffer(Math.max(SIDE_BYTES, bytes.byteLength));
      this.#side = new Uint8Array(side);
      this.#sideIndex = this.#buffers.push(side) - 1;
      this.#sideUsed = 0;
    }
    this.#side.set(bytes, this.#sideUsed);
    this.#ops.push(this.#sideIndex, this.#sideUsed, dst, bytes.byteLength);
    this.#sideUsed += bytes.byteLength;
    this.#bytes += bytes.byteLength;
    this.copied += bytes.byteLength / PAGE_SIZE;
  }
}
