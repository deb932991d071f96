/**
 * Transport bandwidth on loopback, all in one run: raw TCP (the baseline), TLS 1.3 with the
 * colo cipher and a pre-shared key, and the colo channel (TLS + hello + ByteChannel writes with
 * backpressure). Default 256 MiB each; COLO_BENCH_MB=N (or --mb N) changes it.
 * The measuring functions live in src/transport/bandwidth.ts for other benchmarks to reuse.
 */
import { measureChannel, measureRawTcp, measureTls } from "../src/transport/bandwidth.ts";
import { TLS_CIPHER } from "../src/transport/format.ts";

const flag = process.argv.indexOf("--mb");
const mb = Number(flag >= 0 ? process.argv[flag + 1] : (process.env.COLO_BENCH_MB ?? 256));
const bytes = mb * (1 << 20);

const raw = await measureRawTcp({ bytes });
const tls = await measureTls({ bytes });
const channel = await measureChannel({ bytes });

const rows: [string, number][] = [
  ["raw TCP (baseline)", raw.mbPerSecond],
  [`TLS 1.3 ${TLS_CIPHER} (PSK)`, tls.mbPerSecond],
  ["colo channel (TLS + hello + backpressure)", channel.mbPerSecond],
];
process.stdout.write(`transport bandwidth, loopback, ${mb} MiB each, 1 MiB writes\n`);
process.stdout.write(
  `${"path".padEnd(44)} ${"MB/s".padStart(8)} ${"vs raw".padStart(8)} ${"vs TLS".padStart(8)}\n`,
);
for (const [name, v] of rows) {
  process.stdout.write(
    `${name.padEnd(44)} ${v.toFixed(0).padStart(8)} ${(v / raw.mbPerSecond).toFixed(2).padStart(8)} ${(v / tls.mbPerSecond).toFixed(2).padStart(8)}\n`,
  );
}
