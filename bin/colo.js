#!/usr/bin/env node
// The `colo` command. npm scripts and npx put node_modules/.bin first on PATH, where the pinned
// `node` dev dependency (Node.js 24) lives; the sources are TypeScript run by Node 24's type stripping.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  process.stderr.write(
    `colo: needs Node.js 24 or later (this is ${process.version}); run it as \`npx colo\` or \`npm run colo --\` from the project, which use the pinned node package\n`,
  );
  process.exit(2);
}
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
