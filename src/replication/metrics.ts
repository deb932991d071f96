/**
 * Prometheus metrics of a replication end (prom-client), served on `--metrics HOST:PORT` at
 * /metrics. Values are read from the controller's status at scrape time (no second set of
 * counters to keep in step). Names start with `colo_`; counters end in `_total`.
 */
import http from "node:http";
import client from "prom-client";
import type { PrimaryProxy } from "../proxy/primary.ts";
import type { PrimaryStatus } from "./primary.ts";
import type { SecondaryStatus } from "./secondary.ts";

export type StatusSource = () => PrimaryStatus | SecondaryStatus | undefined;

const PRIMARY_STATES = [
  "unprotected",
  "seeding",
  "protected",
  "checkpointing",
  "unprotected-after-loss",
  "fencing",
  "fenced-out",
  "verify-failed",
  "stopped",
];
const SECONDARY_STATES = [
  "waiting",
  "seeding",
  "running",
  "standby",
  "suspended",
  "buffering",
  "applying",
  "stood-down",
  "took-over",
];

/** A registry whose metrics read `status()` (and the proxy's counters, when given) on each scrape. */
export function replicationRegistry(
  status: StatusSource,
  proxy?: () => PrimaryProxy | undefined,
): client.Registry {
  const registry = new client.Registry();
  const gauge = (
    name: string,
    help: string,
    read: (s: PrimaryStatus | SecondaryStatus) => number | undefined,
    labels?: string[],
  ) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      ...(labels === undefined ? {} : { labelNames: labels }),
      collect() {
        const s = status();
        if (s === undefined) return;
        const v = read(s);
        if (v !== undefined && Number.isFinite(v)) this.set(v);
      },
    });
  gauge(
    "colo_checkpoints_total",
    "Checkpoints completed (primary: sent and acknowledged; secondary: applied)",
    (s) => s.checkpoints,
  );
  gauge("colo_checkpoint_seq", "Sequence number of the last checkpoint", (s) =>
    s.role === "primary" ? s.seq : s.applied,
  );
  gauge(
    "colo_last_pause_seconds",
    "Pause of the last checkpoint (PVM: NEW sent to resumed; SVM: NEW received to resumed)",
    (s) => (s.lastPauseMs === undefined ? undefined : s.lastPauseMs / 1000),
  );
  gauge("colo_divergences_total", "Output divergences reported by the proxy", (s) =>
    s.role === "primary" ? s.divergences : undefined,
  );
  const p = (read: (s: PrimaryStatus) => number) => (s: PrimaryStatus | SecondaryStatus) =>
    s.role === "primary" ? read(s) : undefined;
  gauge(
    "colo_pages_a_total",
    "Pages the PVM dirtied (A), summed over checkpoints",
    p((s) => s.totals.pagesA),
  );
  gauge(
    "colo_pages_b_total",
    "Pages the SVM dirtied (B) as reported on the back channel",
    p((s) => s.totals.pagesB),
  );
  gauge(
    "colo_pages_d_total",
    "Pages of A ∪ B",
    p((s) => s.totals.pagesD),
  );
  gauge(
    "colo_pages_sent_total",
    "PAGE_DATA pages sent",
    p((s) => s.totals.pagesSent),
  );
  gauge(
    "colo_stream_bytes_total",
    "Bytes of the replication stream",
    p((s) => s.totals.bytes),
  );
  gauge(
    "colo_back_channel_bytes_total",
    "Bytes of the back channel",
    p((s) => s.totals.backBytes),
  );
  gauge(
    "colo_verified_total",
    "Checkpoints whose digests compared equal (--verify)",
    p((s) => s.totals.verified),
  );
  gauge(
    "colo_verify_failures_total",
    "Checkpoints whose digests differed (--verify)",
    p((s) => s.totals.verifyFailures),
  );
  gauge(
    "colo_checkpoints_retaken_total",
    "COLO snapshot checkpoints taken again at a second stop (S changed pages the snapshot lacked)",
    p((s) => s.totals.retaken),
  );
  gauge(
    "colo_pause_seconds_total",
    "Sum of PVM pauses",
    p((s) => s.totals.pauseMsTotal / 1000),
  );
  new client.Gauge({
    name: "colo_state",
    help: "1 for the controller's current state",
    labelNames: ["role", "state"],
    registers: [registry],
    collect() {
      const s = status();
      if (s === undefined) return;
      this.reset();
      for (const st of s.role === "primary" ? PRIMARY_STATES : SECONDARY_STATES) {
        this.set({ role: s.role, state: st }, s.state === st ? 1 : 0);
      }
    },
  });
  new client.Gauge({
    name: "colo_protected",
    help: "1 while the primary is protected by a secondary",
    registers: [registry],
    collect() {
      const s = status();
      if (s?.role === "primary") this.set(s.state === "protected" || s.state === "checkpointing" ? 1 : 0);
    },
  });
  if (proxy !== undefined) {
    new client.Gauge({
      name: "colo_proxy_held_bytes",
      help: "PVM output bytes held by the proxy",
      registers: [registry],
      collect() {
        const m = proxy()?.metrics();
        if (m !== undefined) this.set(m.heldBytes);
      },
    });
    new client.Gauge({
      name: "colo_proxy_bytes_released_total",
      help: "PVM output bytes released to clients",
      registers: [registry],
      collect() {
        const m = proxy()?.metrics();
        if (m !== undefined) this.set(m.bytesReleased);
      },
    });
  }
  return registry;
}

/** Serve `registry` at http://host:port/metrics. Resolves to the server (close() it when done). */
export async function serveMetrics(
  registry: client.Registry,
  host: string,
  port: number,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (e: Error) => res.writeHead(500).end(`${e.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.unref();
  return server;
}
