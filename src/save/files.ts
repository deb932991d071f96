/**
 * Saving to a file: written to a temporary file beside the target, flushed, then renamed over it,
 * so a reader never sees a half-written save and a failed save leaves nothing behind. Nothing is
 * written over an existing file unless `force`.
 */
import { constants, createReadStream } from "node:fs";
import { access, type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type ByteSink, type ByteSource, coalesce } from "./channel.ts";
import { SaveError } from "./errors.ts";

/** A ByteSink over a file handle; pages are copied by the kernel before write() resolves. */
export class FileSink implements ByteSink {
  readonly retains = false;
  readonly #fh: FileHandle;
  constructor(fh: FileHandle) {
    this.#fh = fh;
  }
  async write(chunks: readonly Uint8Array[]): Promise<void> {
    let list = coalesce(chunks);
    while (list.length > 0) {
      // writev may write less than asked; go on from where it stopped
      const { bytesWritten } = await this.#fh.writev(list as Uint8Array[]);
      let left = bytesWritten;
      const rest: Uint8Array[] = [];
      for (const c of list) {
        if (left >= c.byteLength) left -= c.byteLength;
        else {
          rest.push(c.subarray(left));
          left = 0;
        }
      }
      list = rest;
    }
  }
  async end(): Promise<void> {
    await this.#fh.sync();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path, constants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Run `write` against a temporary file next to `path`, then rename it into place. Refuses
 * ("exists") when `path` exists and not `force`. On failure the temporary file is removed.
 */
export async function writeFileAtomically<T>(
  path: string,
  force: boolean,
  write: (sink: ByteSink) => Promise<T>,
): Promise<T> {
  if (!force && (await exists(path))) {
    throw new SaveError("exists", `${path} exists (use --force to overwrite it)`);
  }
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  let fh: FileHandle;
  try {
    fh = await open(tmp, "wx", 0o600);
  } catch (e) {
    throw new SaveError("io", `cannot create ${tmp}`, { cause: e });
  }
  try {
    const result = await write(new FileSink(fh));
    await fh.close();
    if (!force && (await exists(path))) throw new SaveError("exists", `${path} appeared while saving`);
    await rename(tmp, path);
    return result;
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw e instanceof SaveError ? e : new SaveError("io", `writing ${path} failed`, { cause: e });
  }
}

/** A ByteSource reading a file in 1 MiB chunks. */
export function fileSource(path: string): ByteSource & { close(): void } {
  const stream = createReadStream(path, { highWaterMark: 1 << 20 });
  const it = stream[Symbol.asyncIterator]();
  return {
    async read() {
      const r = await it.next();
      return r.done === true ? null : (r.value as Buffer);
    },
    close() {
      stream.destroy();
    },
  };
}
