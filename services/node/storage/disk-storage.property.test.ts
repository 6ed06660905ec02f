// The WAL reads back exactly what was written: random histories of appends (with conflicting
// suffixes overwritten), hard states, local snapshots with compaction, installed snapshots and
// restarts, over tiny segments so that records cross many segment boundaries. The model is the
// core's own MemoryStorage.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { MemoryStorage } from "../raft/storage.js";
import type { ConfState, Entry, HardState } from "../raft/types.js";
import { DiskStorage, type DiskStorageOptions } from "./disk-storage.js";
import { payload, quietLogger, sameBytes, tempDir } from "./testutil.js";

const dirs: Array<() => void> = [];
after(() => dirs.forEach((c) => c()));

type Op =
  | { k: "append"; n: number; back: number; bump: boolean; sync: boolean; big: boolean }
  | { k: "commit"; adv: number; sync: boolean }
  | { k: "snap"; at: number; size: number }
  | { k: "install"; ahead: number }
  | { k: "reopen" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant("append" as const), n: fc.integer({ min: 1, max: 12 }), back: fc.nat(6), bump: fc.boolean(), sync: fc.boolean(), big: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("commit" as const), adv: fc.nat(15), sync: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("snap" as const), at: fc.nat(1000), size: fc.nat(3000) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("install" as const), ahead: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 1, arbitrary: fc.constant({ k: "reopen" as const }) },
);

const optsArb = fc.record({
  segmentBytes: fc.constantFrom(1024, 1500, 3000, 1 << 16),
  keepEntries: fc.constantFrom(0, 3, 40),
  preallocate: fc.boolean(),
  syncMode: fc.constantFrom("odsync" as const, "fdatasync" as const),
  writes: fc.constantFrom("inline" as const, "threadpool" as const),
});

const CONF: ConfState = { voters: ["n1", "n2", "n3"], learners: [] };

async function check(disk: DiskStorage, model: MemoryStorage, snapData: Map<number, Uint8Array>, hs: HardState): Promise<void> {
  assert.equal(disk.lastIndex(), model.lastIndex(), "lastIndex");
  const dm = disk.snapshot().meta;
  const mm = model.snapshot().meta;
  assert.deepEqual({ index: dm.index, term: dm.term }, { index: mm.index, term: mm.term }, "snapshot");
  assert.deepEqual(disk.initialState().hardState, hs, "hard state");
  // Everything after the snapshot is in the log; entries before it may be compacted.
  assert.ok(disk.firstIndex() - 1 <= dm.index, `firstIndex ${disk.firstIndex()} <= snapshot ${dm.index} + 1`);
  const lo = Math.max(disk.firstIndex(), model.firstIndex());
  assert.equal(disk.term(lo - 1), model.term(lo - 1), `term(${lo - 1})`);
  if (lo <= disk.lastIndex()) {
    const got = disk.entries(lo, disk.lastIndex() + 1, Infinity);
    const want = model.entries(lo, model.lastIndex() + 1, Infinity);
    assert.equal(got.length, want.length);
    for (let i = 0; i < got.length; i++) {
      assert.equal(got[i].index, want[i].index);
      assert.equal(got[i].term, want[i].term, `term of ${want[i].index}`);
      assert.equal(got[i].type, want[i].type);
      assert.ok(sameBytes(got[i].data, want[i].data), `data of ${want[i].index}`);
    }
  }
  if (dm.index > 0) assert.ok(sameBytes(await disk.readSnapshotData(), snapData.get(dm.index)!), "snapshot data");
}

describe("DiskStorage against MemoryStorage (property)", () => {
  it("reads back exactly what was written across segment boundaries, truncations, snapshots and restarts", async () => {
    await fc.assert(
      fc.asyncProperty(optsArb, fc.array(opArb, { minLength: 1, maxLength: 40 }), async (o, ops) => {
        const t = tempDir("prop");
        dirs.push(t.cleanup);
        const opts: DiskStorageOptions = { ...o, logger: quietLogger, initialVoters: CONF.voters };
        let disk = await DiskStorage.open(t.dir, opts);
        const model = new MemoryStorage(CONF.voters);
        const snapData = new Map<number, Uint8Array>();
        let hs: HardState = { term: 0, vote: "", commit: 0 };
        let maxTerm = 1;
        try {
          for (const op of ops) {
            switch (op.k) {
              case "append": {
                // Never overwrite committed entries: only a suffix after the commit index.
                const start = Math.max(hs.commit + 1, model.lastIndex() + 1 - op.back, model.firstIndex());
                if (op.bump || start <= model.lastIndex()) maxTerm++;
                const ents: Entry[] = [];
                for (let i = start; i < start + op.n; i++) ents.push({ index: i, term: maxTerm, type: i % 5 === 0 ? 1 : 0, data: payload(i, maxTerm, op.big ? 700 : i % 40) });
                hs = { term: maxTerm, vote: `n${(maxTerm % 3) + 1}`, commit: hs.commit };
                await disk.save({ entries: ents, hardState: hs, mustSync: op.sync, offLoop: op.bump });
                model.append(ents);
                model.setHardState(hs);
                break;
              }
              case "commit": {
                hs = { ...hs, commit: Math.min(model.lastIndex(), hs.commit + op.adv) };
                await disk.save({ entries: [], hardState: hs, mustSync: op.sync });
                model.setHardState(hs);
                break;
              }
              case "snap": {
                const cur = model.snapshot().meta.index;
                if (hs.commit <= cur) break;
                const i = cur + 1 + (op.at % (hs.commit - cur));
                const data = payload(i, 99, op.size);
                snapData.set(i, data);
                await disk.createSnapshot(i, CONF, data);
                model.createSnapshot(i, CONF, data);
                if (i - o.keepEntries > model.firstIndex() - 1) model.compact(i - o.keepEntries);
                break;
              }
              case "install": {
                const i = Math.max(model.lastIndex(), model.snapshot().meta.index) + op.ahead;
                maxTerm++;
                const data = payload(i, maxTerm, 100);
                snapData.set(i, data);
                const snap = { meta: { index: i, term: maxTerm, conf: CONF }, data };
                await disk.applySnapshot(snap);
                model.applySnapshot(snap);
                // What the core's next Ready carries after a snapshot: commit = snapshot index.
                hs = { term: maxTerm, vote: hs.vote, commit: i };
                await disk.save({ entries: [], hardState: hs, mustSync: true });
                model.setHardState(hs);
                break;
              }
              case "reopen":
                await disk.close();
                disk = await DiskStorage.open(t.dir, opts);
                break;
            }
            await check(disk, model, snapData, hs);
          }
          await disk.close();
          disk = await DiskStorage.open(t.dir, opts);
          await check(disk, model, snapData, hs);
        } finally {
          await disk.close();
          t.cleanup();
        }
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 60) },
    );
  });
});
