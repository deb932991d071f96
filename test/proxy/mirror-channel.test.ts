/** The proxy over the transport's mirror codec and message channel (in-memory byte channels). */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ProxyError } from "../../src/proxy/errors.ts";
import { primaryMirrorChannel, secondaryMirrorChannel } from "../../src/proxy/mirror-channel.ts";
import { type Divergence, PrimaryProxy } from "../../src/proxy/primary.ts";
import { SecondaryProxy } from "../../src/proxy/secondary.ts";
import { openPair } from "../../src/transport/memory.ts";
import { MessageChannel } from "../../src/transport/message-channel.ts";
import { sendMirror } from "../../src/transport/mirror.ts";
import { Client, FakeGuest, settle, until, upperBang } from "./helpers.ts";

test("primary and secondary proxies over the transport's mirror codec: echo, then a divergence", async (t) => {
  const [a, b] = openPair();
  const pc = new MessageChannel(a);
  const sc = new MessageChannel(b);
  const errors: ProxyError[] = [];
  const pvm = new FakeGuest("pvm", { seed: 3 });
  const svm = new FakeGuest("svm", { seed: 4 });
  const primary = new PrimaryProxy({
    port: pvm,
    link: primaryMirrorChannel(pc, { onError: (e) => errors.push(e) }),
  });
  const secondary = new SecondaryProxy({
    port: svm,
    link: secondaryMirrorChannel(sc, { onError: (e) => errors.push(e) }),
  });
  t.after(async () => {
    await primary.close();
    secondary.close();
    pc.destroy();
    sc.destroy();
  });
  const divergences: Divergence[] = [];
  primary.on("divergence", (d) => divergences.push(d));
  const { port } = await primary.listen();
  const c = await Client.connect(port);
  c.write("over the wire");
  await c.until(() => c.text === "OVER THE WIRE", "echo through the codec");
  c.socket.end();
  await c.until(() => c.ended, "close released");
  assert.ok(svm.inputs.some((e) => e.kind === "eof"));

  svm.transform = upperBang;
  const c2 = await Client.connect(port);
  c2.write("ab!");
  await until(() => divergences.length === 1, "divergence");
  await settle();
  assert.equal(c2.text, "AB");
  assert.equal(divergences[0]!.offset, 2);
  assert.deepEqual(errors, []);
  c2.socket.destroy();
});

test("a misdirected mirror message is reported, never delivered", async (t) => {
  const [a, b] = openPair();
  const pc = new MessageChannel(a);
  const sc = new MessageChannel(b);
  t.after(() => {
    pc.destroy();
    sc.destroy();
  });
  const errors: ProxyError[] = [];
  const end = secondaryMirrorChannel(sc, { onError: (e) => errors.push(e) });
  const got: unknown[] = [];
  end.onMessage((m) => got.push(m));
  sendMirror(pc, {
    kind: "output",
    checkpoint: 0,
    stream: { kind: "stdout" },
    offset: 0,
    bytes: new Uint8Array(1),
  });
  sendMirror(pc, { kind: "open", checkpoint: 0, conn: 7 });
  await until(() => got.length === 1, "the open");
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.code, "protocol");
  assert.deepEqual(got, [{ kind: "open", seq: 0, conn: 7 }]);
});
