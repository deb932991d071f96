/**
 * Pull records from a ByteSource through the stream layer's incremental decoder.
 *
 * `next()` resolves with the next validated item, or null once the input ended at a point where
 * the stream may end (the decoder's `end()` decides: a plain stream only after its last END, a
 * checkpointed one only between checkpoints; a back channel at any record boundary). It rejects
 * with the decoder's StreamError (code "truncated" for an early end) or the source's error.
 *
 * Ownership: record bodies are views that stay valid until the following `next()` call. With
 * `streamPageData: true` PAGE_DATA arrives as page-data-begin / -pages / -end items (see
 * docs/stream-format.md); a page view is valid only until the following `next()` call too (the
 * reader may hand the decoder its next chunk then).
 */
import {
  type DecodedItem,
  type ItemOf,
  type RecordKey,
  StreamDecoder,
  type StreamedItem,
  type StreamingDecoderOptions,
} from "../stream/decoder.ts";
import { StreamError } from "../stream/errors.ts";
import type { ByteSource } from "./channel.ts";

export type { DecodedItem, StreamedItem };

/** A short name for an item, for messages: "PAGE_DATA" or "libxc-domain header". */
export function itemName(item: StreamedItem): string {
  if (item.kind === "header") return `${item.header} header`;
  if (item.kind === "record") return `${item.name} (0x${item.type.toString(16).padStart(8, "0")})`;
  return "PAGE_DATA (0x00000001)";
}

/** `S`: whether PAGE_DATA is streamed (`streamPageData: true`) rather than read whole. */
export class RecordReader<S extends boolean = false> {
  readonly source: ByteSource;
  readonly decoder: StreamDecoder<S>;
  #eof = false;

  constructor(source: ByteSource, options: StreamingDecoderOptions<S> = {}) {
    this.source = source;
    this.decoder = new StreamDecoder<S>({ reuseBuffer: true, ...options });
  }

  /** Stream offset of the next unread byte. */
  get offset(): number {
    return this.decoder.offset;
  }

  /** Back channel: restrict the acceptable records for the next item. */
  expect(accept?: readonly RecordKey[]): void {
    this.decoder.expect(accept);
  }

  /**
   * next(), except that items `take` accepts (returns true for) are consumed on the spot: with a
   * source that offers its chunks synchronously (ByteSource.offer), a chunk is decoded as it
   * arrives and its items handed to `take` with no await per chunk. Resolves with the first item
   * `take` declines, or null at a clean end; rejects like next() (or with what `take` threw).
   */
  nextExcept(take: (item: ItemOf<S>) => boolean): Promise<ItemOf<S> | null> {
    for (let item = this.decoder.next(); item !== undefined; item = this.decoder.next()) {
      if (!take(item)) return Promise.resolve(item);
    }
    const source = this.source;
    if (source.offer === undefined || this.#eof) return this.#nextSlow(take);
    return new Promise((resolve, reject) => {
      const stop = (): void => source.offer!(undefined);
      source.offer!({
        chunk: (chunk) => {
          try {
            this.decoder.write(chunk);
            for (let item = this.decoder.next(); item !== undefined; item = this.decoder.next()) {
              if (!take(item)) {
                stop();
                resolve(item);
                return;
              }
            }
          } catch (e) {
            stop();
            reject(e);
          }
        },
        end: () => {
          stop();
          this.#eof = true;
          try {
            this.decoder.end();
            resolve(null);
          } catch (e) {
            reject(e);
          }
        },
        fail: (e) => {
          stop();
          reject(e);
        },
      });
    });
  }

  async #nextSlow(take: (item: ItemOf<S>) => boolean): Promise<ItemOf<S> | null> {
    for (;;) {
      const item = await this.next();
      if (item === null || !take(item)) return item;
    }
  }

  async next(): Promise<ItemOf<S> | null> {
    for (;;) {
      const item = this.decoder.next();
      if (item !== undefined) return item;
      if (this.#eof) return null;
      const chunk = await this.source.read();
      if (chunk === null) {
        this.#eof = true;
        this.decoder.end();
        return null;
      }
      this.decoder.write(chunk);
    }
  }

  /**
   * From the next item on, PAGE_DATA comes as whole records: the same reader, retyped (the
   * decoder keeps its place). Call between items, not inside a streamed PAGE_DATA record.
   */
  wholePageData(): RecordReader<false> {
    this.decoder.setStreamPageData(false);
    return this as unknown as RecordReader<false>;
  }

  /** The stream must end here (no further bytes). */
  async expectEof(): Promise<void> {
    const item = await this.next();
    if (item !== null) {
      throw new StreamError("trailing-data", `${itemName(item)} after the stream's end`, {
        offset: item.offset,
      });
    }
  }
}
