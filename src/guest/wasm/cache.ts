/**
 * On-disk cache of instrumented modules. Transforming a large module takes seconds and hundreds
 * of MB, so the result is kept under `$COLO_CACHE_DIR`, else `$XDG_CACHE_HOME/colo`, else
 * `~/.cache/colo`, keyed by SHA-256 of the input and of the transform version and settings.
 * A damaged or unreadable entry is ignored and rewritten; failing to write is not an error.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import {
  type GlobalType,
  type Instrumented,
  resolveOptions,
  type TransformOptions,
  type TransformSettings,
  transformVersion,
} from "./transform.ts";
import { transformOffThread } from "./transform-thread.ts";

export function cacheDir(): string {
  const env = process.env;
  if (env.COLO_CACHE_DIR) return env.COLO_CACHE_DIR;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "colo");
  return join(homedir(), ".cache", "colo");
}

interface Meta {
  readonly version: string;
  readonly hash: string;
  readonly memory: { initial: number; maximum: number };
  readonly globals: GlobalType[];
}

/** transform() with the disk cache in front. `dir` overrides cacheDir(); null disables the cache. */
export async function loadInstrumented(
  input: Uint8Array,
  options?: TransformOptions,
  settings?: TransformSettings,
  dir: string | null = cacheDir(),
): Promise<Instrumented> {
  const o = resolveOptions(options);
  const version = transformVersion(o);
  if (dir === null) return transformOffThread(input, o, settings);
  const key = createHash("sha256")
    .update(input)
    .update(`\0${version}\0${settings?.defaultMaxPages ?? ""}`)
    .digest("hex");
  const base = join(dir, key);
  try {
    const meta = JSON.parse(await readFile(`${base}.json`, "utf8")) as Meta;
    const bytes = new Uint8Array(await readFile(`${base}.wasm`));
    const hash = new Uint8Array(createHash("sha256").update(bytes).digest());
    if (meta.version === version && Buffer.from(hash).toString("hex") === meta.hash) {
      return { bytes, hash, version, options: o, memory: meta.memory, globals: meta.globals };
    }
  } catch {
    // missing or damaged: transform afresh
  }
  const result = await transformOffThread(input, o, settings);
  try {
    await mkdir(dir, { recursive: true });
    const tmp = `${base}.${randomBytes(6).toString("hex")}.tmp`;
    await writeFile(tmp, result.bytes);
    await rename(tmp, `${base}.wasm`);
    const meta: Meta = {
      version,
      hash: Buffer.from(result.hash).toString("hex"),
      memory: { ...result.memory },
      globals: [...result.globals],
    };
    await writeFile(tmp, JSON.stringify(meta));
    await rename(tmp, `${base}.json`);
  } catch {
    // a read-only cache is not an error
  }
  return result;
}
