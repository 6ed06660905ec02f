#!/usr/bin/env node
// The `raftkv` command (package.json "bin"): runs the built CLI (dist/, as in the images), or the
// TypeScript source through tsx in a checkout after `npm ci`. A checkout with both uses the build
// only while it is newer than every source file the CLI is made of, so an old `npm run build`
// never runs instead of the code in front of you.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const built = join(root, "dist/services/cli/main.js");
const source = join(root, "services/cli/main.ts");

/** Newest modification time of the .ts files under the given directories (0 if none). */
function newestSource(dirs) {
  let newest = 0;
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      if (e.isFile() && e.name.endsWith(".ts")) newest = Math.max(newest, statSync(join(e.parentPath ?? e.path, e.name)).mtimeMs);
    }
  }
  return newest;
}

function tsxAvailable() {
  try {
    import.meta.resolve("tsx/esm/api");
    return true;
  } catch {
    return false;
  }
}

const useBuild =
  existsSync(built) &&
  (!existsSync(source) || !tsxAvailable() || statSync(built).mtimeMs >= newestSource([join(root, "services/cli"), join(root, "services/common")]));

if (useBuild) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import(pathToFileURL(source).href);
}
