import assert from "node:assert/strict";
import fs from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { DiskStorage, type DiskStorageOptions } from "./disk-storage.js";
import { CorruptWalError, InconsistentStorageError } from "./errors.js";
import { RecordEncoder, RecordType, readRecord } from "./record.js";
import { CapturingLogger, entry, payload, quietLogger, range, sameBytes, tempDir } from "./testutil.js";
import { segmentName } from "./wal.js";
import { Prng } from "../raft/prng.js";

const dirs: Array<() => void> = [];
after(() => dirs.forEach((c) => c()));
function fresh(tag: string): string {
  const t = tempDir(tag);
  dirs.push(t.cleanup);
  return t.dir;
}

function walFiles(dir: string): string[] {
  return fs
    .readdirSync(join(dir, "wal"))
    .filter((f) => f.endsWith(".wal"))
    .sort()
    .map((f) => join(dir, "wal", f));
}

/** [start, end) of every record in a segment file, with its type and (for entries) index. */
function records(file: string): Array<{ start: number; end: number; type: RecordType; index?: number }> {
  const buf = fs.readFileSync(file);
  const out = [];
  let off = 0;
  for (;;) {
    const r = readRecord(buf, off);
    if (r.kind !== "record") break;
    const rec = r.record;
    out.push({ start: off, end: r.next, type: rec.type, index: rec.type === RecordType.Entry ? rec.entry.index : undefined });
    off = r.next;
  }
  return out;
}

/** Deterministic pseudo-random integers in [0, n) (the project's seeded PRNG). */
function rng(seed: number): (n: number) => number {
  const p = new Prng(seed);
  return (n) => p.int(n);
}

async function writeLog(dir: string, opts: DiskStorageOptions, batches: number): Promise<void> {
  const s = await DiskStorage.open(dir, opts);
  let i = 1;
  for (let b = 0; b < batches; b++) {
    const n = 1 + (b % 4);
    await s.save({ entries: range(i, i + n - 1, 1), hardState: { term: 1, vote: "n1", commit: i - 1 }, mustSync: true });
    i += n;
  }
  // The last batch: one entry and nothing after it, so the tail record is an entry.
  await s.save({ entries: [entry(i, 1)], mustSync: true });
  await s.close();
}

const base: DiskStorageOptions = { logger: quietLogger, segmentBytes: 1 << 20, initialVoters: ["n1"] };

describe("WAL recovery", () => {
  for (const preallocate of [false, true]) {
    it(`truncates a torn record at the tail of the last segment with a warning (preallocate ${preallocate})`, async () => {
      const pick = rng(preallocate ? 7 : 3);
      for (let trial = 0; trial < 8; trial++) {
        const dir = fresh("torn");
        await writeLog(dir, { ...base, preallocate }, 20);
        const file = walFiles(dir).at(-1)!;
        const recs = records(file);
        const last = recs.at(-1)!;
        assert.equal(last.type, RecordType.Entry);
        const lastIndex = last.index!;
        // Cut the last record at a random byte inside it, then add zeros (as a crash can leave).
        const cutAt = last.start + 1 + pick(last.end - last.start - 1);
        const bytes = fs.readFileSync(file).subarray(0, cutAt);
        fs.writeFileSync(file, Buffer.concat([bytes, Buffer.alloc(pick(5000))]));

        const log = new CapturingLogger();
        const s = await DiskStorage.open(dir, { ...base, preallocate, logger: log });
        assert.equal(s.lastIndex(), lastIndex - 1, "the torn entry is gone, everything before it is there");
        for (const e of s.entries(1, s.lastIndex() + 1, Infinity)) assert.ok(sameBytes(e.data, payload(e.index, e.term)));
        const warn = log.at("warn").find((l) => /torn record/.test(l.msg));
        assert.ok(warn, "a warning says what was truncated");
        assert.equal(warn.obj.file, file);
        assert.equal(warn.obj.offset, last.start);
        // The log goes on where it was cut, and reads back after another restart.
        await s.save({ entries: [entry(lastIndex, 2)], hardState: { term: 2, vote: "", commit: lastIndex - 1 }, mustSync: true });
        await s.close();
        const again = await DiskStorage.open(dir, { ...base, preallocate, logger: log });
        assert.equal(again.lastIndex(), lastIndex);
        assert.equal(again.term(lastIndex), 2);
        await again.close();
      }
    });
  }

  it("drops a last segment whose header was torn and goes on in the previous one", async () => {
    const dir = fresh("tornheader");
    const opts = { ...base, segmentBytes: 1024, preallocate: false };
    await writeLog(dir, opts, 40);
    const files = walFiles(dir);
    assert.ok(files.length >= 3);
    const lastOfPrev = records(files.at(-2)!).filter((r) => r.type === RecordType.Entry).at(-1)!.index!;
    fs.truncateSync(files.at(-1)!, 10);
    const log = new CapturingLogger();
    const s = await DiskStorage.open(dir, { ...opts, logger: log });
    assert.equal(s.lastIndex(), lastOfPrev);
    assert.ok(log.at("warn").some((l) => l.obj.file === files.at(-1)));
    await s.save({ entries: [entry(lastOfPrev + 1, 1)], mustSync: true });
    await s.close();
  });

  it("refuses to open when a byte in the middle of the log is flipped, naming the file and offset", async () => {
    const pick = rng(11);
    const dir = fresh("flip-src");
    await writeLog(dir, { ...base, preallocate: false }, 30);
    const file = walFiles(dir)[0];
    const original = fs.readFileSync(file);
    const recs = records(file);
    for (let trial = 0; trial < 25; trial++) {
      // Any record but the last: valid records follow it, so this cannot be a torn write.
      const victim = recs[pick(recs.length - 1)];
      const at = victim.start + pick(victim.end - victim.start);
      const broken = Buffer.from(original);
      broken[at] ^= 1 << pick(8);
      fs.writeFileSync(file, broken);
      await assert.rejects(DiskStorage.open(dir, base), (err: unknown) => {
        assert.ok(err instanceof CorruptWalError, String(err));
        assert.equal(err.file, file);
        assert.equal(err.offset, victim.start, `flip at ${at} in record [${victim.start}, ${victim.end}): ${err.message}`);
        assert.match(err.message, new RegExp(`${file}.*offset ${victim.start}`));
        return true;
      });
    }
    fs.writeFileSync(file, original);
    const s = await DiskStorage.open(dir, base);
    await s.close();
  });

  it("refuses a flipped byte in an older segment too", async () => {
    const dir = fresh("flip-old");
    const opts = { ...base, segmentBytes: 1024, preallocate: false };
    await writeLog(dir, opts, 40);
    const file = walFiles(dir)[1];
    const recs = records(file);
    const victim = recs.at(-1)!; // the last record of a segment that is not the last one
    const buf = fs.readFileSync(file);
    buf[victim.end - 1] ^= 0x80;
    fs.writeFileSync(file, buf);
    await assert.rejects(DiskStorage.open(dir, opts), (err: unknown) => err instanceof CorruptWalError && err.file === file && err.offset === victim.start);
  });

  it("in repair mode truncates at the bad record and reports exactly what it discards", async () => {
    const dir = fresh("repair");
    await writeLog(dir, { ...base, preallocate: false }, 30);
    const file = walFiles(dir)[0];
    const recs = records(file);
    const entriesRecs = recs.filter((r) => r.type === RecordType.Entry);
    const victim = entriesRecs[Math.floor(entriesRecs.length / 2)];
    const lastIndex = entriesRecs.at(-1)!.index!;
    const buf = fs.readFileSync(file);
    buf[victim.start + 12] ^= 0xff;
    fs.writeFileSync(file, buf);

    const log = new CapturingLogger();
    const s = await DiskStorage.open(dir, { ...base, repair: true, logger: log });
    assert.equal(s.lastIndex(), victim.index! - 1);
    assert.ok(s.initialState().hardState.commit <= s.lastIndex());
    const report = log.at("error").find((l) => /WAL repair: truncated/.test(l.msg));
    assert.ok(report, "the repair is reported at error level");
    assert.equal(report.obj.file, file);
    assert.equal(report.obj.offset, victim.start);
    assert.equal(report.obj.discardedBytes, buf.length - victim.start);
    assert.deepEqual(report.obj.discardedEntries, { first: victim.index! + 1, last: lastIndex });
    assert.ok(fs.existsSync(file + ".broken"), "the original is kept");
    await s.close();
    // The repaired log opens normally.
    const again = await DiskStorage.open(dir, base);
    assert.equal(again.lastIndex(), victim.index! - 1);
    await again.close();
  });

  it("refuses a log with a missing segment in the middle", async () => {
    const dir = fresh("hole");
    const opts = { ...base, segmentBytes: 1024, preallocate: false };
    await writeLog(dir, opts, 40);
    const files = walFiles(dir);
    fs.rmSync(files[1]);
    await assert.rejects(DiskStorage.open(dir, opts), (err: unknown) => err instanceof InconsistentStorageError && /segment 1 is missing/.test(err.message));
  });

  it("refuses a hard state whose commit index is past the end of the log (committed entries missing)", async () => {
    const dir = fresh("commit");
    fs.mkdirSync(join(dir, "wal"), { recursive: true });
    const enc = new RecordEncoder();
    enc.segmentHeader(0, 1);
    for (let i = 1; i <= 3; i++) enc.entry(entry(i, 1));
    enc.hardState({ term: 1, vote: "n1", commit: 5 });
    fs.writeFileSync(join(dir, "wal", segmentName(0, 1)), enc.buf.subarray(0, enc.length));
    await assert.rejects(DiskStorage.open(dir, base), (err: unknown) => err instanceof InconsistentStorageError && /up to 5 are committed but the log ends at 3/.test(err.message));
  });

  it("refuses to start from a snapshot alone when the WAL directory was emptied (the vote would be lost)", async () => {
    const dir = fresh("nowal");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 5, 2), hardState: { term: 2, vote: "n1", commit: 5 }, mustSync: true });
    await s.createSnapshot(5, { voters: ["n1"], learners: [] }, Buffer.from("x"));
    await s.close();
    for (const f of walFiles(dir)) fs.rmSync(f);
    await assert.rejects(DiskStorage.open(dir, base), /no segments but snapshot/);
    const log = new CapturingLogger();
    const repaired = await DiskStorage.open(dir, { ...base, repair: true, logger: log });
    assert.equal(repaired.lastIndex(), 5);
    assert.ok(log.at("error").length > 0);
    await repaired.close();
  });

  it("ignores a segment left half-created by a crash (a .tmp file)", async () => {
    const dir = fresh("tmpseg");
    await writeLog(dir, base, 5);
    fs.writeFileSync(join(dir, "wal", segmentName(9, 99) + ".tmp"), Buffer.alloc(100, 7));
    const s = await DiskStorage.open(dir, base);
    assert.equal(s.lastIndex(), 12);
    assert.ok(!fs.readdirSync(join(dir, "wal")).some((f) => f.startsWith(segmentName(9, 99))));
    await s.close();
  });
});

describe("snapshot recovery", () => {
  async function twoSnapshots(dir: string, opts: DiskStorageOptions): Promise<string[]> {
    const s = await DiskStorage.open(dir, opts);
    for (let i = 1; i <= 100; i += 10) await s.save({ entries: range(i, i + 9, 1), hardState: { term: 1, vote: "", commit: i + 9 }, mustSync: true });
    await s.createSnapshot(40, { voters: ["n1"], learners: [] }, Buffer.from("state@40"));
    await s.createSnapshot(80, { voters: ["n1", "n2"], learners: [] }, Buffer.from("state@80"));
    await s.close();
    return fs.readdirSync(join(dir, "snap")).sort().map((f) => join(dir, "snap", f));
  }

  it("falls back to the older snapshot with a warning when the newest fails its checksum", async () => {
    const dir = fresh("snapfallback");
    const opts = { ...base, segmentBytes: 1024, keepEntries: 0 };
    const [older, newest] = await twoSnapshots(dir, opts);
    const buf = fs.readFileSync(newest);
    buf[buf.length - 20] ^= 0x01; // inside the payload
    fs.writeFileSync(newest, buf);
    const log = new CapturingLogger();
    const s = await DiskStorage.open(dir, { ...opts, logger: log });
    assert.equal(s.snapshot().meta.index, 40);
    assert.deepEqual(s.initialState().confState.voters, ["n1"]);
    assert.equal(Buffer.from(await s.readSnapshotData()).toString(), "state@40");
    assert.equal(s.lastIndex(), 100);
    assert.ok(s.firstIndex() <= 41);
    for (const e of s.entries(41, 101, Infinity)) assert.ok(sameBytes(e.data, payload(e.index, e.term)));
    assert.ok(log.at("warn").some((l) => l.obj.file === newest && /checksum/.test(String(l.obj.reason))));
    assert.ok(fs.existsSync(newest + ".broken"));
    assert.ok(fs.existsSync(older));
    await s.close();
  });

  it("refuses to open when no usable snapshot is left and the WAL does not reach back to the start", async () => {
    const dir = fresh("snapnone");
    const opts = { ...base, segmentBytes: 1024, keepEntries: 0 };
    const files = await twoSnapshots(dir, opts);
    for (const f of files) {
      const buf = fs.readFileSync(f);
      buf[20] ^= 0x01; // inside the metadata
      fs.writeFileSync(f, buf);
    }
    await assert.rejects(DiskStorage.open(dir, opts), (err: unknown) => {
      assert.ok(err instanceof InconsistentStorageError, String(err));
      assert.match(err.message, /newest snapshot is unusable.*metadata checksum mismatch/);
      assert.match(err.message, /entries 1\.\.\d+ are missing/);
      return true;
    });
  });

  it("refuses an installed snapshot whose file is gone, since the WAL says the log restarts after it", async () => {
    const dir = fresh("snapgone");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: "", commit: 3 }, mustSync: true });
    await s.applySnapshot({ meta: { index: 50, term: 3, conf: { voters: ["n1"], learners: [] } }, data: Buffer.from("s") });
    await s.close();
    for (const f of fs.readdirSync(join(dir, "snap"))) fs.rmSync(join(dir, "snap", f));
    await assert.rejects(DiskStorage.open(dir, base), /snapshot installed at index 50/);
  });

  it("restarts the log after a snapshot that was installed but not yet recorded in the WAL", async () => {
    // A crash between writing the snapshot file and the WAL marker: the snapshot wins, the old
    // entries are superseded, and later appends replay without a gap.
    const dir = fresh("snapnomarker");
    const s = await DiskStorage.open(dir, base);
    await s.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: "", commit: 3 }, mustSync: true });
    await s.close();
    const other = fresh("snapsource");
    const src = await DiskStorage.open(other, base);
    await src.applySnapshot({ meta: { index: 50, term: 3, conf: { voters: ["n1"], learners: [] } }, data: Buffer.from("s") });
    await src.close();
    for (const f of fs.readdirSync(join(other, "snap"))) fs.copyFileSync(join(other, "snap", f), join(dir, "snap", f));
    let t = await DiskStorage.open(dir, base);
    assert.equal(t.lastIndex(), 50);
    await t.save({ entries: range(51, 52, 3), hardState: { term: 3, vote: "", commit: 52 }, mustSync: true });
    await t.close();
    t = await DiskStorage.open(dir, base);
    assert.equal(t.firstIndex(), 51);
    assert.equal(t.lastIndex(), 52);
    await t.close();
  });
});
