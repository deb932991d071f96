/**
 * Fixed layout shared by the transform (which emits code against it), the worker and the
 * main-thread domain (which read and write it). Changing any value changes TRANSFORM_FORMAT.
 *
 * The control memory ("colo"."dirty", shared) holds:
 *   [0, DIRTY_MAP_BYTES)       one byte per 4 KiB guest page: 1 = written since last harvest
 *   CTL_STOP (i32)             non-zero: a stop is requested (checked at loop heads and host calls)
 *   CTL_SIGNAL (i32)           bumped by the main thread after posting input events (Atomics.notify)
 *   CTL_PARKED (i32)           1 while the worker waits in a host call (set by the worker just
 *                              before Atomics.wait, cleared when it wakes); the main thread
 *                              turns 1 into 2 to claim a stop that took effect there
 *   CTL_FS_PENDING (i32)       1 while the worker holds changed file blocks not yet reported
 *   CTL_RUNNING (i32)          1 while the worker runs the guest
 *   CTL_SNAP_MAX (i32)         the most pages a snapshot copies
 *                              (none of these words is used by emitted code)
 * The Asyncify memory (exported "colo_asyncify_memory", per instance, not shared):
 *   [0, 8)                     Asyncify data struct: current stack pointer, stack end (u32 LE)
 *   [8, end)                   the Asyncify stack
 */
import { PAGE_SHIFT } from "../domain.ts";

/** Bumped whenever the emitted code or this layout changes; part of the transform version. */
export const TRANSFORM_FORMAT = "colo-xform/3";

/** Default iterations of one loop between two preemption checks (TransformOptions.preemptInterval). */
export const PREEMPT_INTERVAL = 1024;

export const WASM_PAGE = 65536;
/** 4 KiB pages per 64 KiB wasm page. */
export const PAGES_PER_WASM_PAGE = WASM_PAGE >> PAGE_SHIFT;

/** Largest wasm32 memory: 65536 wasm pages = 4 GiB = 2^20 4-KiB pages. */
export const MAX_WASM_PAGES = 65536;
export const DIRTY_MAP_BYTES = 1 << 20;
export const CTL_STOP = DIRTY_MAP_BYTES;
export const CTL_SIGNAL = DIRTY_MAP_BYTES + 4;
export const CTL_PARKED = DIRTY_MAP_BYTES + 8;
export const CTL_FS_PENDING = DIRTY_MAP_BYTES + 12;
/** 1 while the worker runs the guest (set, and notified, right before it starts or resumes it). */
export const CTL_RUNNING = DIRTY_MAP_BYTES + 16;
/** The most dirty pages a snapshot copies (Domain.snapshot maxPages; read by the worker only). */
export const CTL_SNAP_MAX = DIRTY_MAP_BYTES + 20;
/** Control memory size in wasm pages (map + one page for control words). */
export const CTL_MEMORY_PAGES = DIRTY_MAP_BYTES / WASM_PAGE + 1;

export const ASYNCIFY_DATA_PTR = 0;
export const ASYNCIFY_STACK_START = 8;
/** Asyncify memory size in wasm pages (1 MiB of stack for unwound frames). */
export const ASYNCIFY_MEMORY_PAGES = 16;

/** Import/export names the transform adds. */
export const IMPORT_MODULE = "colo";
export const IMPORT_MEMORY = "memory";
export const IMPORT_CONTROL = "dirty";
export const IMPORT_PREEMPT = "preempt";
export const EXPORT_ASYNCIFY_MEMORY = "colo_asyncify_memory";
/** Mutable globals are exported as `${EXPORT_GLOBAL_PREFIX}${index}` in module order. */
export const EXPORT_GLOBAL_PREFIX = "colo_g";

export const WASI_MODULE = "wasi_snapshot_preview1";

/** Every WASI preview 1 function; any other import is refused. Unimplemented ones answer ENOSYS. */
export const WASI_FUNCTIONS: readonly string[] = [
  "args_get",
  "args_sizes_get",
  "environ_get",
  "environ_sizes_get",
  "clock_res_get",
  "clock_time_get",
  "fd_advise",
  "fd_allocate",
  "fd_close",
  "fd_datasync",
  "fd_fdstat_get",
  "fd_fdstat_set_flags",
  "fd_fdstat_set_rights",
  "fd_filestat_get",
  "fd_filestat_set_size",
  "fd_filestat_set_times",
  "fd_pread",
  "fd_prestat_get",
  "fd_prestat_dir_name",
  "fd_pwrite",
  "fd_read",
  "fd_readdir",
  "fd_renumber",
  "fd_seek",
  "fd_sync",
  "fd_tell",
  "fd_write",
  "path_create_directory",
  "path_filestat_get",
  "path_filestat_set_times",
  "path_link",
  "path_open",
  "path_readlink",
  "path_remove_directory",
  "path_rename",
  "path_symlink",
  "path_unlink_file",
  "poll_oneoff",
  "proc_exit",
  "proc_raise",
  "sched_yield",
  "random_get",
  "sock_accept",
  "sock_recv",
  "sock_send",
  "sock_shutdown",
];
