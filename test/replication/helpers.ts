// A primary and a secondary controller in one process: real WasmDomains running the KV guest,
// the real proxy on a loopback service port, and the three connections in memory (with the real
// hellos), so faults can be injected on the replication connection.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Domain } from "../../src/guest/domain.ts";
import { WasmDomain } from "../../src/guest/wasm/wasm-domain.ts";
import { PrimaryProxy } from "../../src/proxy/primary.ts";
import { capabilitiesOf, type ReplicationSettings, settings } from "../../src/replication/config.ts";
import { memoryLinks } from "../../src/replication/links.ts";
import { PrimaryController, type PrimaryControllerOptions } from "../../src/replication/primary.ts";
import { RespClient } from "../../src/replication/resp-client.ts";
import { SecondaryController, type SecondaryOutcome } from "../../src/replication/secondary.ts";

export const ROOT = join(import.meta.dirname, "../..");
export const KV = readFileSync(join(ROOT, "guests/kv.wasm"));
const HOST = { args: ["kv.wasm"], env: [], preopens: [], fsLimitBytes: 1 << 20 };

export interface Pair {
  readonly pvm: WasmDomain;
  readonly proxy: PrimaryProxy;
  readonly port: number;
  readonly primary: PrimaryController;
  readonly secondary: SecondaryController;
  readonly outcome: Promise<SecondaryOutcome>;
  readonly links: Awaited<ReturnType<typeof memoryLinks>>;
  readonly svms: Domain[];
  readonly logs: string[];
  /** Every byte of the replication connection after the hellos: P → S and S → P (the back channel). */
  readonly wire: { readonly forward: Uint8Array[]; readonly back: Uint8Array[] };
  close(): Promise<void>;
}

export async function startPair(
  partial: Partial<ReplicationSettings> = {},
  hb = { intervalMs: 50, timeoutMs: 3000 },
  primaryOptions: Partial<Pick<PrimaryControllerOptions, "maxCopyPages">> = {},
  extra: {
    /** What the secondary's controller sees of its replica (default: the WasmDomain itself). */
    readonly svmView?: (d: WasmDomain) => Domain;
  } = {},
): Promise<Pair> {
  const s = settings({ verify: true, ...partial });
  const pvm = await WasmDomain.create(KV, { host: HOST });
  const proxy = new PrimaryProxy({
    port: pvm,
    mode: "unprotected",
    host: "127.0.0.1",
    listenPort: 0,
    stdio: () => {},
  });
  const addr = await proxy.listen();
  await pvm.start();
  const wire = { forward: [] as Uint8Array[], back: [] as Uint8Array[] };
  const links = await memoryLinks({
    capabilities: capabilitiesOf(s),
    heartbeat: hb,
    replicationFaults: {
      aToB: { intercept: (c) => (wire.forward.push(c.slice()), [c]) },
      bToA: { intercept: (c) => (wire.back.push(c.slice()), [c]) },
    },
  });
  const logs: string[] = [];
  const log = (level: string, m: string): void => {
    logs.push(`${level}: ${m}`);
  };
  const svms: Domain[] = [];
  const secondary = new SecondaryController({
    createTarget: async (bytes) => {
      const d = await WasmDomain.createRestoreTarget(bytes, { host: { ...HOST, args: [] } });
      svms.push(d);
      return extra.svmView?.(d) ?? d;
    },
    takeover: { host: "127.0.0.1", listenPort: 0, stdio: () => {} },
    log,
  });
  const outcome = secondary.serve(links.secondary);
  const primary = new PrimaryController({ domain: pvm, proxy, settings: s, log, ...primaryOptions });
  await primary.protect(links.primary);
  return {
    pvm,
    proxy,
    port: addr.port,
    primary,
    secondary,
    outcome,
    links,
    svms,
    logs,
    wire,
    async close() {
      await primary.stop();
      await proxy.close();
      await pvm.destroy();
      // A took-over proxy feeds the SVM: close it before the SVM goes.
      const o = await Promise.race([
        outcome,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
      ]);
      if (o?.kind === "took-over") await o.proxy.close();
      for (const d of svms) await d.destroy();
    },
  };
}

/** Wait until `pred` holds (polling every 5 ms), at most `ms`. */
export async function until(pred: () => boolean, ms = 10_000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A bounded KV workload over `clients` connections: SET/GET/INCR, and every `forceEvery`-th
 * request a TIME or RANDOMKEY (replicas answer differently: a forced divergence). Returns every
 * request with the reply the client saw.
 */
export async function workload(
  port: number,
  o: { clients: number; requests: number; forceEvery?: number; prefix?: string },
): Promise<{ args: string[]; reply: unknown }[]> {
  const seen: { args: string[]; reply: unknown }[] = [];
  const per = Math.ceil(o.requests / o.clients);
  await Promise.all(
    Array.from({ length: o.clients }, async (_, c) => {
      const cl = await RespClient.connect(port);
      try {
        for (let i = 0; i < per; i++) {
          const n = c * per + i;
          const k = `${o.prefix ?? "k"}:${c}:${i % 20}`;
          let args: string[];
          if (o.forceEvery !== undefined && n % o.forceEvery === o.forceEvery - 1)
            args = n % 2 === 0 ? ["TIME"] : ["RANDOMKEY"];
          else if (i % 3 === 0) args = ["SET", k, `v${n}`];
          else if (i % 3 === 1) args = ["GET", k];
          else args = ["INCR", `${o.prefix ?? "k"}:ctr:${c}`];
          seen.push({ args, reply: await cl.command(...args) });
        }
      } finally {
        cl.close();
      }
    }),
  );
  return seen;
}
