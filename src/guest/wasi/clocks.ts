/**
 * Raw host clocks for a HostEnv (contract.ts: `monotonicNs`, `realtimeNs`).
 *
 * Date.now() has millisecond resolution, so a realtime clock made from it alone gives a guest
 * microsecond timestamps that are whole milliseconds (and two reads within a millisecond equal).
 * The realtime clock here is a wall-clock base taken from Date.now() once, plus the elapsed time
 * on the monotonic high-resolution clock since then: nanosecond resolution, and monotone between
 * rebases. Each read also compares itself with Date.now(); when the two are more than
 * REALTIME_RESYNC_NS apart (the wall clock was stepped, or the two clocks drifted apart) the base
 * is taken again, so the value stays within REALTIME_RESYNC_NS + 1 ms of Date.now().
 */

/** How far the realtime clock may stray from Date.now() before it is rebased, ns. */
export const REALTIME_RESYNC_NS = 5_000_000n;

const NS_PER_MS = 1_000_000n;

/** Clock sources, injectable for tests. */
export interface ClockSources {
  /** Wall clock in ms since the epoch (Date.now). */
  readonly wallMs: () => number;
  /** Monotonic clock in ns (process.hrtime.bigint). */
  readonly monoNs: () => bigint;
}

const SYSTEM: ClockSources = { wallMs: Date.now, monoNs: process.hrtime.bigint };

/** A realtime clock in ns since the epoch with nanosecond resolution (see the header). */
export function createRealtimeClock(sources: ClockSources = SYSTEM): () => bigint {
  const { wallMs, monoNs } = sources;
  let wallBase = BigInt(wallMs()) * NS_PER_MS;
  let monoBase = monoNs();
  return () => {
    const mono = monoNs();
    const wall = BigInt(wallMs()) * NS_PER_MS;
    const t = wallBase + (mono - monoBase);
    // Date.now() truncates, so the true time is in [wall, wall + 1 ms); measure from its middle.
    const off = t - wall - NS_PER_MS / 2n;
    if (off > REALTIME_RESYNC_NS || off < -REALTIME_RESYNC_NS) {
      wallBase = wall;
      monoBase = mono;
      return wall;
    }
    return t;
  };
}
