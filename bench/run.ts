/**
 * `npm run bench`: runs every bench/*.bench.ts in turn, each as a child process of this same
 * node, and reports failures. Extra arguments are passed to every benchmark.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";

const dir = new URL(".", import.meta.url).pathname;
const benches = readdirSync(dir)
  .filter((f) => f.endsWith(".bench.ts"))
  .sort();
let failed = 0;
for (const b of benches) {
  process.stdout.write(`\n== ${b}\n`);
  const r = spawnSync(process.execPath, [dir + b, ...process.argv.slice(2)], { stdio: "inherit" });
  if (r.status !== 0) {
    failed++;
    process.stdout.write(`!! ${b} exited with ${r.status ?? r.signal}\n`);
  }
}
process.stdout.write(`\n${benches.length - failed}/${benches.length} benchmarks ran\n`);
process.exitCode = failed > 0 ? 1 : 0;
