/**
 * Two test hosts made by the test itself: network namespaces `a` and `b` joined by one veth
 * link, addresses `SUBNET.1` and `SUBNET.2` that exist only inside them, loopback up. Traffic
 * between them never leaves this machine. `remove()` deletes both namespaces, and with them the
 * veth pair; it is safe after a failed or partial create and safe to call twice.
 */
import { execFileSync } from "node:child_process";

/** Run `ip ARGS…`, throwing on failure. */
export function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: "ignore" });
}

/** Why namespace tests cannot run here (skip with this reason), or undefined if they can. */
export function canNetns(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (ip netns, veth)";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "needs Debian package iproute2";
  }
  return undefined;
}

export interface TwoHosts {
  /** Namespace names. */
  readonly a: string;
  readonly b: string;
  /** The veth ends inside `a` and `b`. */
  readonly devA: string;
  readonly devB: string;
  /** Addresses on the link: SUBNET.1 in `a`, SUBNET.2 in `b`. */
  readonly ipA: string;
  readonly ipB: string;
  /** Command prefix that runs a program inside a namespace: `["ip", "netns", "exec", ns]`. */
  exec(ns: string): string[];
  remove(): void;
}

/**
 * Make the two hosts. `tag`: short and unique per test run (it becomes part of interface names,
 * which Linux caps at 15 characters: keep it ≤ 12). `subnet`: the first three octets, e.g.
 * "10.97.42". Throws (after removing what it made) if they cannot be made.
 */
export function twoHosts(tag: string, subnet: string): TwoHosts {
  const hosts: TwoHosts = {
    a: `colo-${tag}-a`,
    b: `colo-${tag}-b`,
    devA: `v${tag}a`,
    devB: `v${tag}b`,
    ipA: `${subnet}.1`,
    ipB: `${subnet}.2`,
    exec: (ns) => ["ip", "netns", "exec", ns],
    remove() {
      for (const ns of [hosts.a, hosts.b]) {
        try {
          ip("netns", "del", ns);
        } catch {
          // never created, or already gone
        }
      }
    },
  };
  try {
    ip("netns", "add", hosts.a);
    ip("netns", "add", hosts.b);
    ip(
      "link",
      "add",
      hosts.devA,
      "netns",
      hosts.a,
      "type",
      "veth",
      "peer",
      "name",
      hosts.devB,
      "netns",
      hosts.b,
    );
    for (const [ns, dev, addr] of [
      [hosts.a, hosts.devA, hosts.ipA],
      [hosts.b, hosts.devB, hosts.ipB],
    ] as const) {
      ip("-n", ns, "addr", "add", `${addr}/24`, "dev", dev);
      ip("-n", ns, "link", "set", dev, "up");
      ip("-n", ns, "link", "set", "lo", "up");
    }
  } catch (e) {
    hosts.remove();
    throw e;
  }
  return hosts;
}
