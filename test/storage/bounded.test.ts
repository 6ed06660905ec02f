// Disk use stays bounded under an endless write load: with a snapshot every N entries, old WAL
// segments and all but the last two snapshots are deleted, and the in-memory log is compacted.

import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import type { Entry } from "../../services/node/raft/types.js";
import { DiskStorage } from "../../services/node/storage/disk-storage.js";
import { quietLogger, tempDir } from "../../services/node/storage/testutil.js";

const cleanups: Array<() => void> = [];
after(() => cleanups.forEach((c) => c()));

function bytesUnder(dir: string): number {
  let total = 0;
  for (const name of fs.readdirSync(dir, { recursive: true })) {
    const st = fs.statSync(join(dir, String(name)));
    if (st.isFile()) total += st.size;
  }
  return total;
}

describe("bounded disk use", () => {
  it("stays under a fixed bound over 50,000 entries with a snapshot every 2,000", async () => {
    const t = tempDir("bounded");
    cleanups.push(t.cleanup);
    const SEGMENT = 128 * 1024;
    const KEEP = 1000;
    const EVERY = 2000;
    const ENTRY = 100;
    const RECORD = ENTRY + 26; // framing + term/index/type
    const SNAPSHOT = 64 * 1024;
    const s = await DiskStorage.open(t.dir, { logger: quietLogger, segmentBytes: SEGMENT, keepEntries: KEEP, initialVoters: ["n1"] });
    const BATCH = 100;
    // The WAL reaches back to the older of the two snapshots kept (2 intervals, give or take a
    // batch) plus the part of a segment before it, the unused tail of the current (preallocated)
    // segment, and the next one preallocated; plus the 2 snapshots.
    const bound = 2 * EVERY * RECORD + 2 * BATCH * RECORD + 3 * SEGMENT + 2 * (SNAPSHOT + 1024);
    const data = Buffer.alloc(ENTRY, 0x5a);
    const state = Buffer.alloc(SNAPSHOT, 0x33);
    let max = 0;
    let lastSnap = 0;
    for (let i = 1; i <= 50_000; i += BATCH) {
      const ents: Entry[] = [];
      for (let j = i; j < i + BATCH; j++) ents.push({ index: j, term: 1, type: 0, data });
      await s.save({ entries: ents, hardState: { term: 1, vote: "n1", commit: i + BATCH - 1 }, mustSync: true });
      if (i + BATCH - 1 - lastSnap >= EVERY) {
        lastSnap = i + BATCH - 1;
        await s.createSnapshot(lastSnap, { voters: ["n1"], learners: [] }, state);
      }
      assert.ok(s.lastIndex() - s.firstIndex() + 1 <= EVERY + KEEP + BATCH, `in-memory log holds ${s.lastIndex() - s.firstIndex() + 1} entries`);
      if (i > 10 * EVERY) max = Math.max(max, bytesUnder(t.dir));
    }
    await s.idle();
    const written = s.stats().bytesWritten;
    assert.ok(written > 5 * bound, `the load wrote ${written} bytes, several times the bound`);
    assert.ok(max <= bound, `data dir peaked at ${max} bytes, bound ${bound}`);
    process.stderr.write(`bounded: wrote ${written} bytes; the data dir peaked at ${max} bytes (bound ${bound})\n`);
    assert.ok(bytesUnder(t.dir) <= bound);
    assert.equal(fs.readdirSync(join(t.dir, "snap")).length, 2);
    await s.close();
    // And it reopens with everything after the snapshot.
    const again = await DiskStorage.open(t.dir, { logger: quietLogger, segmentBytes: SEGMENT, keepEntries: KEEP });
    assert.equal(again.lastIndex(), 50_000);
    assert.equal(again.snapshot().meta.index, lastSnap);
    await again.close();
  });
});
