import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { CompactedError, UnavailableError } from "../raft/storage.js";
import { DiskStorage, type DiskStorageOptions } from "./disk-storage.js";
import { CapturingLogger, entry, payload, quietLogger, range, sameBytes, tempDir } from "./testutil.js";

const dirs: Array<() => void> = [];
after(() => dirs.forEach((c) => c()));
function fresh(tag: string): string {
  const t = tempDir(tag);
  dirs.push(t.cleanup);
  return t.dir;
}
const base: DiskStorageOptions = { logger: quietLogger, segmentBytes: 4096, initialVoters: ["n1", "n2", "n3"] };

describe("DiskStorage", () => {
  it("starts a new directory with an empty log and the initial voters", async () => {
    const dir = fresh("new");
    const s = await DiskStorage.open(dir, base);
    assert.equal(s.firstIndex(), 1);
    assert.equal(s.lastIndex(), 0);
    assert.equal(s.term(0), 0);
    assert.deepEqual(s.initialState(), { hardState: { term: 0, vote: "", commit: 0 }, confState: { voters: ["n1", "n2", "n3"], learners: [] } });
    assert.equal(s.snapshot().meta.index, 0);
    assert.deepEqual(await s.readSnapshotData(), new Uint8Array(0));
    await s.close();
  });

  it("reads back entries and the hard state after a restart", async () => {
    const dir = fresh("reopen");
    let s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: "n2", commit: 4 }, mustSync: true });
    await s.save({ entries: range(11, 12, 2), hardState: { term: 2, vote: "n3", commit: 11 }, mustSync: true });
    await s.close();
    s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 12);
    assert.deepEqual(s.initialState().hardState, { term: 2, vote: "n3", commit: 11 });
    const got = s.entries(1, 13, Infinity);
    assert.equal(got.length, 12);
    for (const e of got) assert.ok(sameBytes(e.data, payload(e.index, e.term)), `entry ${e.index} intact`);
    assert.deepEqual(got.map((e) => e.term), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2]);
    await s.close();
  });

  it("truncates a conflicting suffix when a follower overwrites entries (§5.3), also after a restart", async () => {
    const dir = fresh("conflict");
    let s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 8, 1), hardState: { term: 1, vote: "n1", commit: 3 }, mustSync: true });
    await s.save({ entries: range(5, 6, 2), hardState: { term: 2, vote: "n2", commit: 3 }, mustSync: true });
    assert.equal(s.lastIndex(), 6);
    assert.equal(s.term(5), 2);
    assert.throws(() => s.term(7), UnavailableError);
    await s.close();
    s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 6);
    assert.deepEqual(s.entries(1, 7, Infinity).map((e) => e.term), [1, 1, 1, 1, 2, 2]);
    await s.close();
  });

  it("makes one durable write per save (group commit) and none for an unsynced save", async () => {
    const dir = fresh("group");
    const seen: number[] = [];
    const s = await DiskStorage.open(dir, { ...base, segmentBytes: 1 << 20, onFsync: (sec) => seen.push(sec) });
    const before = s.stats().fsyncs;
    await s.save({ entries: range(1, 500, 1), hardState: { term: 1, vote: "n1", commit: 0 }, mustSync: true });
    assert.equal(s.stats().fsyncs - before, 1, "500 entries + hard state: one durable write");
    await s.save({ entries: [], hardState: { term: 1, vote: "n1", commit: 100 }, mustSync: false });
    assert.equal(s.stats().fsyncs - before, 1, "a commit-only change waits for the next synced batch");
    await s.save({ entries: range(501, 501, 1), hardState: { term: 1, vote: "n1", commit: 200 }, mustSync: true });
    assert.equal(s.stats().fsyncs - before, 2);
    assert.equal(seen.length, s.stats().fsyncs);
    assert.ok(seen.every((x) => x >= 0 && x < 60));
    await s.close();
  });

  it("keeps unsynced saves through a clean close", async () => {
    const dir = fresh("unsynced");
    let s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: "", commit: 2 }, mustSync: false });
    await s.close();
    s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 3);
    assert.equal(s.initialState().hardState.commit, 2);
    await s.close();
  });

  it("loses only unsynced saves when closed as a crash would (discardUnsynced)", async () => {
    const dir = fresh("discard");
    let s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: "", commit: 1 }, mustSync: true });
    await s.save({ entries: [], hardState: { term: 1, vote: "", commit: 3 }, mustSync: false });
    await s.close({ discardUnsynced: true });
    s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 3);
    assert.equal(s.initialState().hardState.commit, 1);
    await s.close();
  });

  it("applies concurrent saves in call order", async () => {
    const dir = fresh("order");
    let s = await DiskStorage.open(dir, base);
    const ps = [];
    for (let i = 1; i <= 50; i++) ps.push(s.save({ entries: [entry(i, 1)], hardState: { term: 1, vote: "", commit: i - 1 }, mustSync: i % 3 === 0 }));
    await Promise.all(ps);
    assert.equal(s.lastIndex(), 50);
    await s.close();
    s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 50);
    assert.equal(s.initialState().hardState.commit, 49);
    await s.close();
  });

  it("rejects a save that would leave a gap, and keeps working afterwards", async () => {
    const dir = fresh("gap");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 3, 1), mustSync: true });
    await assert.rejects(s.save({ entries: range(5, 6, 1), mustSync: true }), /cannot append at 5/);
    await assert.rejects(s.save({ entries: [entry(4, 1), entry(6, 1)], mustSync: true }), /not contiguous/);
    await assert.rejects(s.save({ entries: [], hardState: { term: 1, vote: "", commit: 9 }, mustSync: true }), /beyond the last log index/);
    await s.save({ entries: range(4, 4, 1), mustSync: true });
    assert.equal(s.lastIndex(), 4);
    await s.close();
  });

  it("rolls over to new segments and replays across their boundaries", async () => {
    const dir = fresh("segments");
    let s = await DiskStorage.open(dir, { ...base, segmentBytes: 1024 });
    for (let i = 1; i <= 200; i += 5) await s.save({ entries: range(i, i + 4, 1), hardState: { term: 1, vote: "", commit: i }, mustSync: true });
    const segs = s.stats().walSegments;
    assert.ok(segs > 10, `expected many segments, got ${segs}`);
    await s.close();
    s = await DiskStorage.open(dir, { ...base, segmentBytes: 1024 });
    assert.equal(s.lastIndex(), 200);
    for (const e of s.entries(1, 201, Infinity)) assert.ok(sameBytes(e.data, payload(e.index, e.term)));
    await s.close();
  });

  it("compacts after a local snapshot, keeping keepEntries before it, and deletes old segments", async () => {
    const dir = fresh("compact");
    const opts = { ...base, segmentBytes: 2048, keepEntries: 10 };
    let s = await DiskStorage.open(dir, opts);
    for (let i = 1; i <= 300; i += 10) await s.save({ entries: range(i, i + 9, 1), hardState: { term: 1, vote: "", commit: i + 9 }, mustSync: true });
    const segsBefore = s.stats().walSegments;
    const meta = await s.createSnapshot(250, { voters: ["n1", "n2", "n3"], learners: [] }, Buffer.from("state@250"));
    assert.deepEqual(meta, { index: 250, term: 1, conf: { voters: ["n1", "n2", "n3"], learners: [] } });
    assert.equal(s.firstIndex(), 241);
    assert.throws(() => s.entries(240, 242, Infinity), CompactedError);
    assert.equal(s.term(240), 1);
    assert.ok(s.stats().walSegments < segsBefore, "old segments deleted");
    assert.deepEqual(s.snapshot(), { meta, data: new Uint8Array(0) });
    assert.equal(Buffer.from(await s.readSnapshotData()).toString(), "state@250");
    await s.close();
    s = await DiskStorage.open(dir, opts);
    assert.equal(s.snapshot().meta.index, 250);
    assert.equal(s.lastIndex(), 300);
    assert.ok(s.firstIndex() <= 251 && s.firstIndex() >= 241, `firstIndex ${s.firstIndex()}`);
    assert.deepEqual(s.initialState().confState, { voters: ["n1", "n2", "n3"], learners: [] });
    await s.close();
  });

  it("streams a snapshot's payload from an async iterable and serves it in chunks", async () => {
    const dir = fresh("stream");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 20, 3), hardState: { term: 3, vote: "", commit: 20 }, mustSync: true });
    const parts = Array.from({ length: 50 }, (_, i) => payload(i, 1, 1000 + i));
    async function* gen() {
      for (const p of parts) yield p;
    }
    await s.createSnapshot(20, { voters: ["n1"], learners: ["n9"] }, gen());
    const whole = Buffer.concat(parts);
    assert.ok(Buffer.from(await s.readSnapshotData(20)).equals(whole));
    const chunks: Uint8Array[] = [];
    for await (const c of s.snapshotChunks(20, 4096)) chunks.push(c);
    assert.ok(chunks.every((c) => c.length <= 4096));
    assert.ok(Buffer.concat(chunks).equals(whole));
    assert.deepEqual(s.snapshot().meta.conf, { voters: ["n1"], learners: ["n9"] });
    await s.close();
  });

  it("does not block saves while a snapshot streams", async () => {
    const dir = fresh("nonblocking");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 5, 1), hardState: { term: 1, vote: "", commit: 5 }, mustSync: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* slow() {
      yield new Uint8Array([1, 2, 3]);
      await gate;
      yield new Uint8Array([4]);
    }
    const snap = s.createSnapshot(5, { voters: ["n1"], learners: [] }, slow());
    await s.save({ entries: range(6, 8, 1), hardState: { term: 1, vote: "", commit: 8 }, mustSync: true });
    assert.equal(s.lastIndex(), 8);
    release();
    await snap;
    assert.equal(s.snapshot().meta.index, 5);
    await s.close();
  });

  it("installs a snapshot from the leader: the log restarts after it, also after a restart", async () => {
    const dir = fresh("install");
    let s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 30, 1), hardState: { term: 1, vote: "", commit: 10 }, mustSync: true });
    await s.applySnapshot({ meta: { index: 100, term: 4, conf: { voters: ["a", "b"], learners: [] } }, data: Buffer.from("leader-state") });
    assert.equal(s.firstIndex(), 101);
    assert.equal(s.lastIndex(), 100);
    assert.equal(s.term(100), 4);
    assert.equal(s.initialState().hardState.commit, 100);
    await s.save({ entries: range(101, 105, 4), hardState: { term: 4, vote: "", commit: 103 }, mustSync: true });
    await s.close();
    s = await DiskStorage.open(dir, base);
    assert.equal(s.firstIndex(), 101);
    assert.equal(s.lastIndex(), 105);
    assert.deepEqual(s.initialState(), { hardState: { term: 4, vote: "", commit: 103 }, confState: { voters: ["a", "b"], learners: [] } });
    assert.equal(Buffer.from(await s.readSnapshotData()).toString(), "leader-state");
    await assert.rejects(s.applySnapshot({ meta: { index: 50, term: 4, conf: { voters: [], learners: [] } }, data: new Uint8Array() }), /older than/);
    await s.close();
  });

  it("keeps only the last two snapshot files", async () => {
    const dir = fresh("keep2");
    const s = await DiskStorage.open(dir, { ...base, keepEntries: 0 });
    await s.save({ entries: range(1, 40, 1), hardState: { term: 1, vote: "", commit: 40 }, mustSync: true });
    for (const i of [10, 20, 30, 40]) await s.createSnapshot(i, { voters: ["n1"], learners: [] }, Buffer.from(`s${i}`));
    const files = fs.readdirSync(join(dir, "snap")).sort();
    assert.equal(files.length, 2, files.join(","));
    assert.equal(s.stats().snapshots, 2);
    assert.equal(Buffer.from(await s.readSnapshotData(30)).toString(), "s30");
    await assert.rejects(s.readSnapshotData(10), /no snapshot at index 10/);
    await s.close();
  });

  it("refuses to snapshot past the commit index or before the current snapshot", async () => {
    const dir = fresh("snaprules");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: "", commit: 5 }, mustSync: true });
    await assert.rejects(s.createSnapshot(6, { voters: [], learners: [] }, new Uint8Array()), /only entries up to 5 are committed/);
    await s.createSnapshot(5, { voters: [], learners: [] }, new Uint8Array());
    await assert.rejects(s.createSnapshot(4, { voters: [], learners: [] }, new Uint8Array()), /older than/);
    await s.close();
  });

  it("refuses a second open of the same directory", async () => {
    const dir = fresh("lock");
    const s = await DiskStorage.open(dir, base);
    await assert.rejects(DiskStorage.open(dir, base), /already open/);
    await s.close();
    const again = await DiskStorage.open(dir, base);
    await again.close();
  });

  it("moves appends to a zero-filled segment once the background preallocation is done", async () => {
    const dir = fresh("prealloc");
    const SEG = 256 * 1024;
    let s = await DiskStorage.open(dir, { ...base, segmentBytes: SEG });
    await s.save({ entries: range(1, 2, 1), mustSync: true });
    await s.idle();
    await s.save({ entries: range(3, 4, 1), mustSync: true });
    const wal = join(dir, "wal");
    const segs = fs.readdirSync(wal).filter((f) => f.endsWith(".wal")).sort();
    assert.equal(segs.length, 2);
    assert.equal(fs.statSync(join(wal, segs[1])).size, SEG, "the current segment is preallocated");
    await s.close();
    assert.ok(!fs.readdirSync(wal).some((f) => f.endsWith(".tmp")), "no preallocation left behind after close");
    s = await DiskStorage.open(dir, { ...base, segmentBytes: SEG });
    assert.equal(s.lastIndex(), 4);
    await s.close();
  });

  it("rejects writes after close", async () => {
    const dir = fresh("closed");
    const s = await DiskStorage.open(dir, base);
    await s.close();
    await assert.rejects(s.save({ entries: range(1, 1, 1), mustSync: true }), /closed/);
  });

  it("reports its size and activity in stats()", async () => {
    const dir = fresh("stats");
    const log = new CapturingLogger();
    const s = await DiskStorage.open(dir, { ...base, logger: log, preallocate: false });
    await s.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: "", commit: 10 }, mustSync: true });
    await s.createSnapshot(10, { voters: ["n1"], learners: [] }, Buffer.alloc(1000));
    const st = s.stats();
    assert.equal(st.walSegments, 1);
    assert.equal(st.walBytes, fs.statSync(join(dir, "wal", fs.readdirSync(join(dir, "wal"))[0])).size);
    assert.ok(st.snapshotBytes > 1000);
    assert.equal(st.lastIndex, 10);
    assert.equal(st.snapshotIndex, 10);
    assert.ok(st.bytesWritten >= 10 * (8 + 18 + 16), `bytesWritten ${st.bytesWritten}`);
    assert.ok(log.at("info").some((l) => l.msg === "storage opened"));
    await s.close();
  });
});
