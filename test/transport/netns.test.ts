/**
 * Two hosts made of two network namespaces joined by a veth pair (root and iproute2 only).
 * A heartbeat peer listens in one and a peer dials from the other over TLS-PSK; then the test
 * cuts the link and the listener must report the peer lost.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface, type Interface } from "node:readline";
import { test } from "node:test";
import { generatePsk } from "../../src/transport/index.ts";
import { canNetns, ip, twoHosts } from "../helpers/netns.ts";

const PEER = path.join(import.meta.dirname, "fixtures", "heartbeat-peer.ts");

function nextEvent(lines: Interface, want: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const on = (line: string) => {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.event === want) {
        lines.off("line", on);
        resolve(o);
      }
    };
    lines.on("line", on);
  });
}

test("heartbeat and TLS-PSK across two network namespaces; a cut link is a lost peer", async (t) => {
  const why = canNetns();
  if (why !== undefined) {
    t.skip(why);
    return;
  }
  const id = Math.floor(Math.random() * 0xffff).toString(16);
  const octet = 1 + Math.floor(Math.random() * 250);
  const hosts = twoHosts(`t${id}`, `10.99.${octet}`);
  const { a: nsA, b: nsB, ipA } = hosts;
  const children: ChildProcess[] = [];
  try {
    const env = { ...process.env, COLO_PSK: Buffer.from(generatePsk()).toString("hex") };
    const run = (ns: string, ...args: string[]) => {
      const c = spawn("ip", ["netns", "exec", ns, process.execPath, PEER, ...args], {
        env,
        stdio: ["ignore", "pipe", "inherit"],
      });
      children.push(c);
      return createInterface({ input: c.stdout! });
    };
    const a = run(nsA, "listen", ipA, "0");
    const { port } = await nextEvent(a, "listening");
    const aConnected = nextEvent(a, "connected");
    const b = run(nsB, "dial", ipA, String(port));
    const bc = await nextEvent(b, "connected");
    const ac = await aConnected;
    assert.equal(ac.cipher, "TLS_AES_128_GCM_SHA256");
    assert.equal(bc.cipher, "TLS_AES_128_GCM_SHA256");
    const lost = nextEvent(a, "lost");
    await new Promise((r) => setTimeout(r, 300));
    ip("-n", nsB, "link", "set", hosts.devB, "down");
    const l = await lost;
    assert.equal(l.reason, "timeout", "a cut link sends no FIN: only the timeout can see it");
  } finally {
    for (const c of children) {
      c.kill("SIGKILL");
      if (c.exitCode === null && c.signalCode === null) await once(c, "exit");
    }
    hosts.remove();
  }
});
