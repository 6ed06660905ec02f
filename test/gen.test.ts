// The generated protobuf code is committed; it must be exactly what `npm run gen` makes from proto/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

test("generated protobuf code in services/common/gen is up to date with proto/ (run `npm run gen`)", () => {
  const out = mkdtempSync(join(tmpdir(), "raftkv-gen-"));
  try {
    execFileSync("bash", ["scripts/gen-proto.sh", out], { stdio: "pipe" });
    const dir = "raftkv/v1";
    const fresh = readdirSync(join(out, dir)).sort();
    const committed = readdirSync(join("services/common/gen", dir)).sort();
    assert.deepEqual(committed, fresh, "generated file list differs");
    for (const f of fresh) {
      const a = readFileSync(join("services/common/gen", dir, f), "utf8");
      const b = readFileSync(join(out, dir, f), "utf8");
      assert.ok(a === b, `services/common/gen/${dir}/${f} is stale: run npm run gen`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
