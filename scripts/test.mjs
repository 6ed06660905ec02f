#!/usr/bin/env node
// Runs every *.test.ts under services/ and test/ with Node's own test runner (node:test), TypeScript
// loaded through tsx. Node 20 has no glob support for --test, so the files are found here.
// Extra arguments are passed to the runner (e.g. --test-name-pattern=...); a path argument
// narrows the run to files under it.
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";

const roots = ["services", "test"];
const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith("-"));
const passthrough = args.filter((a) => a.startsWith("-"));
const files = [];
for (const root of roots) {
  for (const rel of readdirSync(root, { recursive: true })) {
    const path = join(root, String(rel));
    if (path.includes("node_modules") || !path.endsWith(".test.ts")) continue;
    if (filters.length && !filters.some((f) => path.startsWith(f) || path.includes(f))) continue;
    files.push(path);
  }
}
files.sort();
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? "2";
const r = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", `--test-concurrency=${concurrency}`, ...passthrough, ...files],
  { stdio: "inherit" },
);
process.exit(r.status ?? 1);
