/**
 * The only part of the WASI host that touches the host's file system: seeding a preopen's tree
 * from its host directory at creation (synchronous, before the guest runs) and writing it back
 * at guest exit. Symbolic links and special files on the host are skipped when seeding (never
 * followed), so a seed cannot reach outside the host directory.
 */
import { lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { lstat, mkdir, readdir, rename, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { WasiHostError } from "./errors.ts";
import { BLOCK_SIZE, type DirNode, type FileNode, type HostState } from "./state.ts";
import { Vfs } from "./vfs.ts";

/** Suffix of temporary files written during write-back (then renamed over the real name). */
const TMP_SUFFIX = ".colo-writeback.tmp";

/** Fill `root` (empty) from the host directory; throws WasiHostError "seed-failed". */
export function seedTree(state: HostState, root: DirNode, hostPath: string, limitBytes: number): void {
  let used = Vfs.sumSizes(state);
  try {
    const st = statSync(hostPath, { throwIfNoEntry: false });
    if (st === undefined) return; // created at write-back
    if (!st.isDirectory())
      throw new WasiHostError("seed-failed", `${hostPath} is not a directory`, { path: hostPath });
  } catch (e) {
    if (e instanceof WasiHostError) throw e;
    throw new WasiHostError("seed-failed", `cannot read ${hostPath}`, { path: hostPath }, e);
  }
  const walk = (dir: DirNode, path: string): void => {
    let names: string[];
    try {
      names = readdirSync(path).sort();
    } catch (e) {
      throw new WasiHostError("seed-failed", `cannot read ${path}`, { path }, e);
    }
    for (const name of names) {
      if (name.endsWith(TMP_SUFFIX)) continue;
      const p = join(path, name);
      const st = lstatSync(p, { bigint: true });
      const times = { atim: st.atimeNs, mtim: st.mtimeNs, ctim: st.ctimeNs };
      if (st.isDirectory()) {
        const ino = state.nextIno++;
        const node: DirNode = { kind: "dir", ino, parent: dir.ino, entries: new Map(), ...times };
        state.inodes.set(ino, node);
        dir.entries.set(name, ino);
        walk(node, p);
      } else if (st.isFile()) {
        const data = readFileSync(p);
        used += data.length;
        if (used > limitBytes) {
          throw new WasiHostError(
            "seed-failed",
            `${p}: seeding passes the file-system cap of ${limitBytes} bytes`,
            {
              path: p,
            },
          );
        }
        const blocks: Array<Uint8Array | undefined> = [];
        for (let at = 0; at < data.length; at += BLOCK_SIZE) {
          const block = new Uint8Array(BLOCK_SIZE);
          block.set(data.subarray(at, Math.min(data.length, at + BLOCK_SIZE)));
          blocks.push(block);
        }
        const ino = state.nextIno++;
        const node: FileNode = { kind: "file", ino, nlink: 1, size: data.length, blocks, ...times };
        state.inodes.set(ino, node);
        dir.entries.set(name, ino);
      }
    }
  };
  walk(root, hostPath);
}

/**
 * Make the host directory mirror the tree under `rootIno`: files replaced atomically (temporary
 * file, then rename), directories created, host entries absent from the tree removed.
 */
export async function writeTree(state: HostState, rootIno: number, hostPath: string): Promise<void> {
  const walk = async (dir: DirNode, path: string): Promise<void> => {
    await mkdir(path, { recursive: true });
    for (const name of await readdir(path)) {
      if (!dir.entries.has(name)) await rm(join(path, name), { recursive: true, force: true });
    }
    for (const [name, ino] of [...dir.entries].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const node = state.inodes.get(ino);
      if (node === undefined) continue;
      const p = join(path, name);
      const existing = await lstat(p).catch(() => undefined);
      if (node.kind === "dir") {
        if (existing !== undefined && !existing.isDirectory()) await rm(p, { force: true });
        await walk(node, p);
      } else {
        if (existing?.isDirectory()) await rm(p, { recursive: true, force: true });
        const data = new Uint8Array(node.size);
        node.blocks.forEach((b, i) => {
          if (b !== undefined)
            data.set(b.subarray(0, Math.min(BLOCK_SIZE, node.size - i * BLOCK_SIZE)), i * BLOCK_SIZE);
        });
        const tmp = join(path, `.${name}${TMP_SUFFIX}`);
        await writeFile(tmp, data);
        const secs = (ns: bigint) => Number(ns / 1000n) / 1e6;
        await utimes(tmp, secs(node.atim), secs(node.mtim)).catch(() => undefined);
        await rename(tmp, p);
      }
    }
  };
  const root = state.inodes.get(rootIno);
  if (root === undefined || root.kind !== "dir") return;
  try {
    await walk(root, hostPath);
  } catch (e) {
    throw new WasiHostError("write-back-failed", `cannot write back to ${hostPath}`, { path: hostPath }, e);
  }
}
