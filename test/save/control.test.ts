import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  ControlError,
  controlPath,
  controlRequest,
  listGuestNames,
  startControlServer,
} from "../../src/save/control.ts";

let dir: string;
let saved: string | undefined;
before(() => {
  dir = mkdtempSync(join(tmpdir(), "colo-ctl-"));
  saved = process.env.XDG_RUNTIME_DIR;
  process.env.XDG_RUNTIME_DIR = dir;
});
after(() => {
  if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
  else process.env.XDG_RUNTIME_DIR = saved;
  rmSync(dir, { recursive: true, force: true });
});

test("requests reach the named guest, with progress lines, and errors keep their code", async () => {
  const a = await startControlServer("alpha", {
    info: async () => ({ name: "alpha" }),
    save: async (args, progress) => {
      progress({ pages: 1 });
      progress({ pages: 2 });
      if (args.fail === true) throw Object.assign(new Error("disk full"), { code: "io" });
      return { path: args.path };
    },
  });
  const b = await startControlServer("beta", { info: async () => ({ name: "beta" }) });
  try {
    assert.deepEqual(await listGuestNames(), ["alpha", "beta"]);
    assert.deepEqual(await controlRequest("beta", "info"), { name: "beta" });
    const seen: unknown[] = [];
    assert.deepEqual(await controlRequest("alpha", "save", { path: "/x" }, (p) => seen.push(p)), {
      path: "/x",
    });
    assert.deepEqual(seen, [{ pages: 1 }, { pages: 2 }]);
    await assert.rejects(
      controlRequest("alpha", "save", { fail: true }),
      (e) => e instanceof ControlError && e.code === "io",
    );
    await assert.rejects(
      controlRequest("beta", "save"),
      (e) => e instanceof ControlError && e.code === "protocol",
    );
    await assert.rejects(
      startControlServer("alpha", {}),
      (e) => e instanceof ControlError && e.code === "exists",
    );
  } finally {
    await a.close();
    await b.close();
  }
  await assert.rejects(
    controlRequest("alpha", "info"),
    (e) => e instanceof ControlError && e.code === "not-found",
  );
  assert.deepEqual(await listGuestNames(), []);
});

test("guest names are checked", () => {
  assert.throws(
    () => controlPath("../etc"),
    (e) => e instanceof ControlError && e.code === "bad-name",
  );
  assert.match(controlPath("kv-1"), /kv-1\.sock$/);
});

test("hostile request lines (JSON null, non-objects, a handler throwing null) get a protocol answer, no crash", async () => {
  const { connect } = await import("node:net");
  const s = await startControlServer("gamma", {
    info: async () => ({ name: "gamma" }),
    boom: async () => {
      throw null;
    },
  });
  try {
    const lines = ["null", "5", '"info"', "[]", '{"id":7,"op":"boom"}', "{nope", '{"id":8,"op":"info"}'];
    const answers = await new Promise<Record<string, unknown>[]>((resolve, reject) => {
      const sock = connect(controlPath("gamma"));
      let buf = "";
      sock.setEncoding("utf8");
      sock.on("error", reject);
      sock.on("data", (chunk: string) => {
        buf += chunk;
        const got = buf.split("\n").filter((l) => l !== "");
        if (got.length === lines.length) {
          sock.destroy();
          resolve(got.map((l) => JSON.parse(l) as Record<string, unknown>));
        }
      });
      sock.write(`${lines.join("\n")}\n`);
    });
    const byId = new Map(answers.map((a) => [a.id, a]));
    assert.deepEqual(byId.get(8), { id: 8, ok: true, result: { name: "gamma" } });
    assert.equal((byId.get(7) as { ok: boolean }).ok, false);
    const failed = answers.filter((a) => a.ok === false);
    assert.equal(failed.length, lines.length - 1);
    // The server still answers afterwards.
    assert.deepEqual(await controlRequest("gamma", "info"), { name: "gamma" });
  } finally {
    await s.close();
  }
});
