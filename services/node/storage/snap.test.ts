import assert from "node:assert/strict";
import fs from "node:fs";
import { after, describe, it } from "node:test";
import { CorruptSnapshotError } from "./errors.js";
import { listSnapshotFiles, readSnapshotFile, snapshotFileChunks, verifySnapshotFile, writeSnapshotFile } from "./snap.js";
import { payload, tempDir } from "./testutil.js";

const dirs: Array<() => void> = [];
after(() => dirs.forEach((c) => c()));
function fresh(): string {
  const t = tempDir("snap");
  dirs.push(t.cleanup);
  return t.dir;
}
const meta = { index: 1234, term: 7, conf: { voters: ["raftkv-0", "raftkv-1", "raftkv-2"], learners: ["raftkv-3"] } };

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

describe("snapshot files", () => {
  it("round-trip metadata and payload, written whole or streamed", async () => {
    const dir = fresh();
    const data = payload(1, 1, 300_000);
    const whole = await writeSnapshotFile(dir, meta, data);
    assert.deepEqual(await readSnapshotFile(whole.path), { meta, data });
    const meta2 = { ...meta, index: 2000 };
    async function* parts() {
      for (let p = 0; p < data.length; p += 977) yield data.subarray(p, p + 977);
    }
    const streamed = await writeSnapshotFile(dir, meta2, parts());
    assert.deepEqual(await verifySnapshotFile(streamed.path), meta2);
    assert.ok((await collect(snapshotFileChunks(streamed.path, 65536))).equals(Buffer.from(data)));
    assert.deepEqual((await listSnapshotFiles(dir)).map((f) => f.index), [2000, 1234]);
  });

  it("round-trip an empty payload", async () => {
    const dir = fresh();
    const f = await writeSnapshotFile(dir, { index: 1, term: 1, conf: { voters: [], learners: [] } }, new Uint8Array(0));
    assert.equal((await readSnapshotFile(f.path)).data.length, 0);
    assert.equal((await collect(snapshotFileChunks(f.path))).length, 0);
  });

  it("detect a flipped byte anywhere in the file", async () => {
    const dir = fresh();
    const f = await writeSnapshotFile(dir, meta, payload(2, 2, 5000));
    const clean = fs.readFileSync(f.path);
    for (const at of [3, 10, 14, 20, 60, 200, 2500, clean.length - 17, clean.length - 12, clean.length - 5, clean.length - 1]) {
      const b = Buffer.from(clean);
      b[at] ^= 0x10;
      fs.writeFileSync(f.path, b);
      await assert.rejects(verifySnapshotFile(f.path), CorruptSnapshotError, `flip at ${at}`);
      await assert.rejects(readSnapshotFile(f.path), CorruptSnapshotError, `flip at ${at}`);
    }
  });

  it("detect a truncated file", async () => {
    const dir = fresh();
    const f = await writeSnapshotFile(dir, meta, payload(3, 3, 5000));
    fs.truncateSync(f.path, 3000);
    await assert.rejects(verifySnapshotFile(f.path), /bad trailer magic|does not fit|payload/);
  });

  it("fail the chunk stream at its end when the payload checksum does not match", async () => {
    const dir = fresh();
    const f = await writeSnapshotFile(dir, meta, payload(4, 4, 10_000));
    const b = fs.readFileSync(f.path);
    b[500] ^= 1;
    fs.writeFileSync(f.path, b);
    await assert.rejects(collect(snapshotFileChunks(f.path, 1000)), /payload checksum mismatch/);
  });

  it("refuse a stream that yields something other than bytes, leaving no file behind", async () => {
    const dir = fresh();
    async function* bad() {
      yield new Uint8Array([1]);
      yield "two" as unknown as Uint8Array;
    }
    await assert.rejects(writeSnapshotFile(dir, meta, bad()), TypeError);
    assert.deepEqual(fs.readdirSync(dir), []);
  });

  it("remove leftover temp files when listing", async () => {
    const dir = fresh();
    fs.writeFileSync(`${dir}/00000000000004d2-0000000000000007.snap.tmp`, "partial");
    assert.deepEqual(await listSnapshotFiles(dir), []);
    assert.deepEqual(fs.readdirSync(dir), []);
  });
});
