#!/usr/bin/env node
// The `raftkv` command (package.json "bin"): runs the built CLI when there is one (dist/, as in
// the images), else the TypeScript source through tsx (a checkout after `npm ci`).
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const built = fileURLToPath(new URL("../dist/services/cli/main.js", import.meta.url));
if (existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(new URL("../services/cli/main.ts", import.meta.url).href);
}
