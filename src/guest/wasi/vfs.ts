/**
 * The virtual file system behind preopened directories: inodes in host state, file data in 4 KiB
 * blocks, a cap on total file bytes (sum of file sizes; NOSPC beyond it), and a record of the
 * blocks changed since the last harvest.
 *
 * Paths are resolved component by component from a directory inode, never through the host's
 * file system: "." is skipped, ".." climbs only as far as the directory the lookup started from
 * (beyond it: NOTCAPABLE), a leading "/" is NOTCAPABLE. Symbolic links do not exist here.
 *
 * Every method that fails throws Errno and leaves the tree unchanged.
 */
import type { FsBlockRef } from "../domain.ts";
import { E } from "./abi.ts";
import { Errno } from "./errors.ts";
import { BLOCK_SHIFT, BLOCK_SIZE, type DirNode, type FileNode, type HostState, type Inode } from "./state.ts";

/** Longest path argument accepted, in bytes (NAMETOOLONG beyond). */
export const MAX_PATH_BYTES = 4096;
/** Longest single name, in bytes. */
export const MAX_NAME_BYTES = 255;
/** Most hard links to one file. */
export const MAX_NLINK = 1024;

export interface Resolved {
  /** The directory holding the final name; undefined when the path names the start dir or an ancestor ("." / ".."). */
  readonly parent: DirNode | undefined;
  /** The final name; undefined as for parent. */
  readonly name: string | undefined;
  /** The inode the path names, if it exists. */
  readonly node: Inode | undefined;
  /** The path ended with "/": its target must be a directory. */
  readonly mustBeDir: boolean;
}

const encoder = new TextEncoder();

export class Vfs {
  state: HostState;
  readonly limitBytes: number;
  /** Sum of file sizes, kept in step with the tree. */
  usedBytes: number;
  private dirty = new Map<number, Set<number>>();
  private readonly now: () => bigint;

  constructor(state: HostState, limitBytes: number, now: () => bigint) {
    this.state = state;
    this.limitBytes = limitBytes;
    this.now = now;
    this.usedBytes = Vfs.sumSizes(state);
  }

  static sumSizes(state: HostState): number {
    let used = 0;
    for (const n of state.inodes.values()) if (n.kind === "file") used += n.size;
    return used;
  }

  /** Swap in a whole new state (after applyState). The dirty record is kept. */
  replace(state: HostState): void {
    this.state = state;
    this.usedBytes = Vfs.sumSizes(state);
  }

  inode(ino: number): Inode {
    const n = this.state.inodes.get(ino);
    if (n === undefined) throw new Errno(E.BADF);
    return n;
  }

  dir(ino: number): DirNode {
    const n = this.inode(ino);
    if (n.kind !== "dir") throw new Errno(E.NOTDIR);
    return n;
  }

  // ---- dirty blocks ----
  //
  // The record's contract, which a "some" apply (state-codec) relies on: every (ino, block) whose
  // bytes on this replica may differ from the last sync point is in it, including blocks of inodes
  // freed since (see dropIfUnused). Inode numbers are never reused on one replica, but after a
  // sync both replicas hand out the same next numbers to different files; that is safe because
  // every block of a file created after the sync that holds data (or lies inside its size at all,
  // via write or setSize) was marked when it got there, on whichever replica made it.

  markBlocks(ino: number, fromByte: number, toByte: number): void {
    if (toByte <= fromByte) return;
    let set = this.dirty.get(ino);
    if (set === undefined) {
      set = new Set();
      this.dirty.set(ino, set);
    }
    const last = (toByte - 1) >>> BLOCK_SHIFT;
    for (let b = fromByte >>> BLOCK_SHIFT; b <= last; b++) set.add(b);
  }

  harvestDirty(): FsBlockRef[] {
    const out: FsBlockRef[] = [];
    const inos = [...this.dirty.keys()].sort((a, b) => a - b);
    for (const ino of inos) {
      const blocks = [...this.dirty.get(ino)!].sort((a, b) => a - b);
      for (const block of blocks) out.push({ ino, block });
    }
    this.dirty = new Map();
    return out;
  }

  // ---- paths ----

  resolve(startIno: number, path: string): Resolved {
    if (encoder.encode(path).length > MAX_PATH_BYTES) throw new Errno(E.NAMETOOLONG);
    if (path.length === 0) throw new Errno(E.NOENT);
    if (path.startsWith("/")) throw new Errno(E.NOTCAPABLE);
    if (path.includes("\0")) throw new Errno(E.INVAL);
    const mustBeDir = path.endsWith("/");
    const parts = path.split("/").filter((p) => p !== "" && p !== ".");
    for (const p of parts) if (encoder.encode(p).length > MAX_NAME_BYTES) throw new Errno(E.NAMETOOLONG);
    const stack: DirNode[] = [this.dir(startIno)];
    const top = (): DirNode => stack[stack.length - 1]!;
    if (parts.length === 0) return { parent: undefined, name: undefined, node: top(), mustBeDir };
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i]!;
      if (p === "..") {
        if (stack.length === 1) throw new Errno(E.NOTCAPABLE);
        stack.pop();
        continue;
      }
      const ino = top().entries.get(p);
      if (ino === undefined) throw new Errno(E.NOENT);
      const n = this.inode(ino);
      if (n.kind !== "dir") throw new Errno(E.NOTDIR);
      stack.push(n);
    }
    const last = parts[parts.length - 1]!;
    if (last === "..") {
      if (stack.length === 1) throw new Errno(E.NOTCAPABLE);
      stack.pop();
      return { parent: undefined, name: undefined, node: top(), mustBeDir };
    }
    const parent = top();
    const ino = parent.entries.get(last);
    const node = ino === undefined ? undefined : this.inode(ino);
    if (node !== undefined && mustBeDir && node.kind !== "dir") throw new Errno(E.NOTDIR);
    return { parent, name: last, node, mustBeDir };
  }

  /** Resolve a path that must exist. */
  lookup(startIno: number, path: string): Inode {
    const r = this.resolve(startIno, path);
    if (r.node === undefined) throw new Errno(E.NOENT);
    return r.node;
  }

  // ---- creation and removal ----

  private allocIno(): number {
    const ino = this.state.nextIno;
    if (ino >= 0xffff_ffff) throw new Errno(E.NOSPC);
    this.state.nextIno = ino + 1;
    return ino;
  }

  createFile(parent: DirNode, name: string): FileNode {
    const t = this.now();
    const node: FileNode = {
      kind: "file",
      ino: this.allocIno(),
      nlink: 1,
      size: 0,
      blocks: [],
      atim: t,
      mtim: t,
      ctim: t,
    };
    this.state.inodes.set(node.ino, node);
    parent.entries.set(name, node.ino);
    parent.mtim = t;
    parent.ctim = t;
    return node;
  }

  mkdir(startIno: number, path: string): void {
    const r = this.resolve(startIno, path);
    if (r.node !== undefined || r.parent === undefined || r.name === undefined) throw new Errno(E.EXIST);
    const t = this.now();
    const node: DirNode = {
      kind: "dir",
      ino: this.allocIno(),
      parent: r.parent.ino,
      entries: new Map(),
      atim: t,
      mtim: t,
      ctim: t,
    };
    this.state.inodes.set(node.ino, node);
    r.parent.entries.set(r.name, node.ino);
    r.parent.mtim = t;
    r.parent.ctim = t;
  }

  rmdir(startIno: number, path: string): void {
    const r = this.resolve(startIno, path);
    if (r.node === undefined) throw new Errno(E.NOENT);
    if (r.parent === undefined || r.name === undefined) throw new Errno(E.INVAL);
    if (r.node.kind !== "dir") throw new Errno(E.NOTDIR);
    if (r.node.entries.size > 0) throw new Errno(E.NOTEMPTY);
    if (this.isRoot(r.node.ino) || this.dirHasFd(r.node.ino)) throw new Errno(E.PERM);
    r.parent.entries.delete(r.name);
    this.state.inodes.delete(r.node.ino);
    this.touchDir(r.parent);
  }

  unlink(startIno: number, path: string): void {
    const r = this.resolve(startIno, path);
    if (r.node === undefined) throw new Errno(E.NOENT);
    if (r.parent === undefined || r.name === undefined) throw new Errno(E.ISDIR);
    if (r.node.kind === "dir") throw new Errno(E.ISDIR);
    if (r.mustBeDir) throw new Errno(E.NOTDIR);
    r.parent.entries.delete(r.name);
    r.node.nlink -= 1;
    r.node.ctim = this.now();
    this.touchDir(r.parent);
    this.dropIfUnused(r.node);
  }

  link(oldStart: number, oldPath: string, newStart: number, newPath: string): void {
    const src = this.lookup(oldStart, oldPath);
    if (src.kind === "dir") throw new Errno(E.PERM);
    const dst = this.resolve(newStart, newPath);
    if (dst.node !== undefined || dst.parent === undefined || dst.name === undefined)
      throw new Errno(E.EXIST);
    if (dst.mustBeDir) throw new Errno(E.NOTDIR);
    if (src.nlink >= MAX_NLINK) throw new Errno(E.MLINK);
    dst.parent.entries.set(dst.name, src.ino);
    src.nlink += 1;
    src.ctim = this.now();
    this.touchDir(dst.parent);
  }

  rename(oldStart: number, oldPath: string, newStart: number, newPath: string): void {
    const s = this.resolve(oldStart, oldPath);
    if (s.node === undefined) throw new Errno(E.NOENT);
    if (s.parent === undefined || s.name === undefined) throw new Errno(E.INVAL);
    const d = this.resolve(newStart, newPath);
    if (d.parent === undefined || d.name === undefined) throw new Errno(E.INVAL);
    const src = s.node;
    if (src.kind !== "dir" && (s.mustBeDir || d.mustBeDir)) throw new Errno(E.NOTDIR);
    if (d.node === src) return; // same inode: POSIX says do nothing
    if (src.kind === "dir") {
      // A directory cannot move into itself or below itself.
      for (let a: DirNode = d.parent; ; a = this.dir(a.parent)) {
        if (a.ino === src.ino) throw new Errno(E.INVAL);
        if (a.parent === a.ino) break;
      }
      if (this.isRoot(src.ino)) throw new Errno(E.PERM);
    }
    if (d.node !== undefined) {
      if (src.kind === "dir") {
        if (d.node.kind !== "dir") throw new Errno(E.NOTDIR);
        if (d.node.entries.size > 0) throw new Errno(E.NOTEMPTY);
        if (this.isRoot(d.node.ino) || this.dirHasFd(d.node.ino)) throw new Errno(E.PERM);
      } else if (d.node.kind === "dir") {
        throw new Errno(E.ISDIR);
      }
    }
    // Checks done: change the tree.
    const t = this.now();
    if (d.node !== undefined) {
      if (d.node.kind === "dir") this.state.inodes.delete(d.node.ino);
      else {
        d.node.nlink -= 1;
        d.node.ctim = t;
        this.dropIfUnused(d.node);
      }
    }
    s.parent.entries.delete(s.name);
    d.parent.entries.set(d.name, src.ino);
    if (src.kind === "dir") src.parent = d.parent.ino;
    src.ctim = t;
    this.touchDir(s.parent);
    this.touchDir(d.parent);
  }

  private touchDir(d: DirNode): void {
    const t = this.now();
    d.mtim = t;
    d.ctim = t;
  }

  isRoot(ino: number): boolean {
    return this.state.roots.includes(ino);
  }

  private dirHasFd(ino: number): boolean {
    for (const e of this.state.fds.values()) if (e.kind === "dir" && e.ino === ino) return true;
    return false;
  }

  /**
   * Delete a file inode that has no name and no open fd.
   *
   * Its data blocks go with it, which is a change to every block that held data: they are marked
   * dirty, not forgotten. The other replica may still hold the inode (an fd there is still open,
   * or it never unlinked it), and a "some" apply here takes every block it does not carry from
   * this replica's copy of the inode, which is now gone, so an unmarked block would come back as
   * zeros. Holes need no mark: they were holes on both replicas at the last sync, and any change
   * to one since then is already in the record.
   */
  dropIfUnused(node: FileNode): void {
    if (node.nlink > 0) return;
    for (const e of this.state.fds.values()) if (e.kind === "file" && e.ino === node.ino) return;
    const count = Math.ceil(node.size / BLOCK_SIZE);
    for (let b = 0; b < count; b++)
      if (node.blocks[b] !== undefined) this.markBlocks(node.ino, b * BLOCK_SIZE, (b + 1) * BLOCK_SIZE);
    this.usedBytes -= node.size;
    this.state.inodes.delete(node.ino);
  }

  // ---- file data ----

  read(node: FileNode, pos: number, len: number): Uint8Array {
    const end = Math.min(node.size, pos + len);
    if (end <= pos) return new Uint8Array(0);
    const out = new Uint8Array(end - pos);
    let at = pos;
    while (at < end) {
      const b = at >>> BLOCK_SHIFT;
      const inBlock = at & (BLOCK_SIZE - 1);
      const n = Math.min(BLOCK_SIZE - inBlock, end - at);
      const block = node.blocks[b];
      if (block !== undefined) out.set(block.subarray(inBlock, inBlock + n), at - pos);
      at += n;
    }
    return out;
  }

  /** Write bytes at pos, growing the file; NOSPC if the cap would be passed (nothing written). */
  write(node: FileNode, pos: number, bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const end = pos + bytes.length;
    if (!Number.isSafeInteger(end)) throw new Errno(E.FBIG);
    const grow = Math.max(0, end - node.size);
    if (this.usedBytes + grow > this.limitBytes) throw new Errno(E.NOSPC);
    let at = pos;
    while (at < end) {
      const b = at >>> BLOCK_SHIFT;
      const inBlock = at & (BLOCK_SIZE - 1);
      const n = Math.min(BLOCK_SIZE - inBlock, end - at);
      let block = node.blocks[b];
      if (block === undefined) {
        block = new Uint8Array(BLOCK_SIZE);
        while (node.blocks.length < b) node.blocks.push(undefined);
        node.blocks[b] = block;
      }
      block.set(bytes.subarray(at - pos, at - pos + n), inBlock);
      at += n;
    }
    this.markBlocks(node.ino, pos, end);
    if (end > node.size) {
      // Blocks between the old end and pos are holes that now lie inside the file.
      this.markBlocks(node.ino, node.size, pos);
      this.usedBytes += end - node.size;
      node.size = end;
    }
    const t = this.now();
    node.mtim = t;
    node.ctim = t;
  }

  setSize(node: FileNode, size: number): void {
    if (!Number.isSafeInteger(size) || size < 0) throw new Errno(E.FBIG);
    if (size > node.size && this.usedBytes + (size - node.size) > this.limitBytes) throw new Errno(E.NOSPC);
    const old = node.size;
    if (size < old) {
      const keep = Math.ceil(size / BLOCK_SIZE);
      node.blocks.length = Math.min(node.blocks.length, keep);
      const tail = size & (BLOCK_SIZE - 1);
      const lastBlock = node.blocks[keep - 1];
      if (tail !== 0 && lastBlock !== undefined) lastBlock.fill(0, tail);
    }
    this.markBlocks(node.ino, Math.min(old, size), Math.max(old, size));
    this.usedBytes += size - old;
    node.size = size;
    const t = this.now();
    node.mtim = t;
    node.ctim = t;
  }
}

/** Sorted directory listing with "." and ".." first, as readdir shows it. */
export function listDir(vfs: Vfs, dir: DirNode): Array<{ name: string; ino: number; kind: Inode["kind"] }> {
  const out: Array<{ name: string; ino: number; kind: Inode["kind"] }> = [
    { name: ".", ino: dir.ino, kind: "dir" },
    { name: "..", ino: dir.parent, kind: "dir" },
  ];
  for (const name of [...dir.entries.keys()].sort()) {
    const ino = dir.entries.get(name)!;
    out.push({ name, ino, kind: vfs.inode(ino).kind });
  }
  return out;
}
