/**
 * The write workload of the fault tests: `clients` concurrent clients, each owning its own keys
 * (so a key's writes are sequential), each write `SET key <unique value>` over real TCP to a
 * service address, recorded as a Write for the history checker. A client whose connection fails
 * moves on to the next address of the list (after a failover the survivor's) and keeps going.
 * Bounded by write count and by a deadline; stop() ends it early. Then `readAll()` GETs every
 * written key from one address.
 */
import type { Write, WriteOutcome } from "./history.ts";
import { RespConnection } from "./resp.ts";

export interface Address {
  readonly host: string;
  readonly port: number;
}

export interface WorkloadOptions {
  /** Where to write; clients start on the first and rotate through the list on failure. */
  readonly addresses: () => readonly Address[];
  readonly clients?: number;
  readonly keysPerClient?: number;
  /** Total writes over all clients. */
  readonly maxWrites?: number;
  /** Wall-clock bound (ms). */
  readonly maxMs?: number;
  /** Per-command reply timeout (ms); past it the write is indeterminate. */
  readonly replyTimeoutMs?: number;
  /** Pause between writes of one client (ms); 0 = back to back. */
  readonly pauseMs?: number;
  /** Prefix of keys and values, unique per run. */
  readonly tag?: string;
}

export class Workload {
  readonly writes: Write[] = [];
  readonly #opts: Required<Omit<WorkloadOptions, "addresses">> & Pick<WorkloadOptions, "addresses">;
  #stopped = false;
  #issued = 0;
  #done: Promise<void> | undefined;
  readonly #t0 = performance.now();
  /** Acknowledged writes so far (for tests that wait for progress). */
  acked = 0;

  constructor(opts: WorkloadOptions) {
    this.#opts = {
      clients: 4,
      keysPerClient: 8,
      maxWrites: 10_000,
      maxMs: 30_000,
      replyTimeoutMs: 3000,
      pauseMs: 0,
      tag: `r${Date.now().toString(36)}`,
      ...opts,
    };
  }

  start(): this {
    this.#done = Promise.all(Array.from({ length: this.#opts.clients }, (_, i) => this.#client(i))).then(
      () => {},
    );
    return this;
  }

  /** Resolves when `n` more writes than now have been acknowledged, or after `ms`. */
  async progress(n: number, ms = 10_000): Promise<boolean> {
    const target = this.acked + n;
    const deadline = Date.now() + ms;
    while (this.acked < target && Date.now() < deadline && !this.#stopped) await sleep(5);
    return this.acked >= target;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }

  get finished(): Promise<void> {
    return this.#done ?? Promise.resolve();
  }

  /** The clock of `invokedAt` / `completedAt` (ms since the workload was made). */
  now(): number {
    return this.#now();
  }

  #now(): number {
    return performance.now() - this.#t0;
  }

  async #client(index: number): Promise<void> {
    const o = this.#opts;
    const deadline = Date.now() + o.maxMs;
    let conn: RespConnection | undefined;
    let addrIndex = 0;
    let n = 0;
    while (!this.#stopped && this.#issued < o.maxWrites && Date.now() < deadline) {
      if (conn === undefined || conn.closed) {
        conn?.close();
        conn = undefined;
        const list = o.addresses();
        const addr = list[addrIndex % Math.max(1, list.length)];
        if (addr === undefined) {
          await sleep(10);
          continue;
        }
        try {
          conn = await RespConnection.connect(addr.host, addr.port, 500);
        } catch {
          addrIndex++;
          await sleep(10);
          continue;
        }
      }
      if (this.#issued >= o.maxWrites || this.#stopped) break;
      this.#issued++;
      const key = `${o.tag}:c${index}:k${n % o.keysPerClient}`;
      const value = `${o.tag}:c${index}:w${n}`;
      n++;
      const invokedAt = this.#now();
      const r = await conn.command(["SET", key, value], o.replyTimeoutMs);
      const completedAt = this.#now();
      let outcome: WriteOutcome;
      if (r.kind === "reply") outcome = r.reply.type === "simple" && r.reply.value === "OK" ? "ok" : "failed";
      else if (r.kind === "unsent") outcome = "failed";
      else outcome = "indeterminate";
      this.writes.push({ key, value, invokedAt, completedAt, outcome });
      if (outcome === "ok") this.acked++;
      else {
        conn.close();
        conn = undefined;
        addrIndex++;
      }
      if (o.pauseMs > 0) await sleep(o.pauseMs);
    }
    conn?.close();
  }
}

/** GET every key in `keys` from `addr`, retrying a failed connection until `timeoutMs`. */
export async function readAll(
  addr: Address,
  keys: Iterable<string>,
  timeoutMs = 15_000,
): Promise<Map<string, string | null>> {
  const deadline = Date.now() + timeoutMs;
  const out = new Map<string, string | null>();
  const todo = [...new Set(keys)];
  let conn: RespConnection | undefined;
  while (todo.length > 0) {
    if (Date.now() > deadline)
      throw new Error(`could not read ${todo.length} keys from ${addr.host}:${addr.port}`);
    if (conn === undefined || conn.closed) {
      try {
        conn = await RespConnection.connect(addr.host, addr.port, 1000);
      } catch {
        await sleep(20);
        continue;
      }
    }
    const key = todo[todo.length - 1]!;
    const r = await conn.command(["GET", key], 3000);
    if (r.kind !== "reply") continue;
    if (r.reply.type !== "bulk") throw new Error(`GET ${key}: unexpected reply ${JSON.stringify(r.reply)}`);
    out.set(key, r.reply.value);
    todo.pop();
  }
  conn?.close();
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
