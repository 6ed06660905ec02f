// The write-ahead log: numbered segment files in <dataDir>/wal/, named
// <seq:16 hex>-<firstIndex:16 hex>.wal, where firstIndex is the log's last index + 1 when the
// segment was started. Every segment begins with a header record and the hard state, so any
// suffix of segments replays on its own. A segment may be deleted once the next one starts at
// or before the compaction point: whatever it held that was still live then sits at indexes
// below the next segment's firstIndex.
//
// Writes: records are staged in memory and flushed as ONE write that is durable when it
// returns (O_DSYNC, or write + fdatasync), so a ready turn costs one disk round trip (group
// commit). Batches that need not be synced (mustSync false: only the commit index moved) stay
// staged until the next synced batch, as etcd's WAL keeps them in its buffer. Every byte in a
// segment is therefore synced before any byte after it is written, so only the last segment
// can end in a torn record.

import fs from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Entry, HardState } from "../raft/types.js";
import { CorruptWalError, InconsistentStorageError } from "./errors.js";
import {
  close,
  fdatasync,
  fsyncDir,
  open,
  pwriteAll,
  pwriteAllSync,
  truncateFile,
} from "./fsio.js";
import type { StorageLogger } from "./logger.js";
import {
  type RecordProblem,
  RecordEncoder,
  RecordType,
  type WalRecord,
  findNextValidRecord,
  readRecord,
} from "./record.js";

export type SyncMode = "odsync" | "fdatasync";
export type WriteMode = "inline" | "threadpool";

export interface WalOptions {
  segmentBytes: number;
  /** Zero-fill each new segment ahead of time (in the background) so appends do not grow the file. */
  preallocate: boolean;
  /** "odsync": one O_DSYNC write per batch; "fdatasync": write, then fdatasync. Same guarantee. */
  syncMode: SyncMode;
  /**
   * "inline": the durable write runs on the calling thread (it blocks the event loop for one
   * disk round trip); "threadpool": it runs on libuv's thread pool. See DiskStorageOptions.
   */
  writes: WriteMode;
  repair: boolean;
  logger: StorageLogger;
  onFsync?: (seconds: number) => void;
}

/** Records the replay hands to the log: everything but segment headers. */
export type LogRecord = Exclude<WalRecord, { type: RecordType.SegmentHeader }>;

/** Folds one replayed record into the log; returns a reason string if it does not fit (a gap). */
export type ReplayVisitor = (rec: LogRecord) => string | undefined;

interface Segment {
  seq: number;
  firstIndex: number;
  name: string;
  path: string;
  /** Bytes on disk (preallocated segments are segmentBytes long from the start). */
  size: number;
  /** End of the valid records. */
  end: number;
  /** End of the records the segment starts with (header, hard state, snapshot marker). */
  headerEnd: number;
}

export interface WalStats {
  walBytes: number;
  walSegments: number;
  fsyncs: number;
  bytesWritten: number;
}

const SEGMENT_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
const PREALLOC_NAME = "prealloc.tmp";
/** Unsynced (mustSync false) bytes are flushed once this many are staged. */
const STAGED_FLUSH_BYTES = 1 << 20;

export function segmentName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}.wal`;
}

export function hex16(n: number): string {
  return n.toString(16).padStart(16, "0");
}

const ODSYNC: number | undefined = fs.constants.O_DSYNC;

export class Wal {
  private readonly dir: string;
  private readonly opts: WalOptions;
  private segments: Segment[] = [];
  private fd = -1;
  /** Write offset in the current (last) segment. */
  private pos = 0;
  /** End of the records a segment starts with; a segment holding only those is never cut. */
  private headerEnd = 0;
  private readonly enc = new RecordEncoder();
  /** Log last index and hard state as of the end of what is on disk / what is staged. */
  private writtenLast = 0;
  private writtenHs: HardState = { term: 0, vote: "", commit: 0 };
  private stagedLast = 0;
  private stagedHs: HardState = { term: 0, vote: "", commit: 0 };
  private prealloc: Promise<string | null> | null = null;
  /** The preallocated file is complete and waiting to become the next segment. */
  private preallocReady = false;
  private stopPrealloc = false;
  /** The current segment was zero-filled ahead (appends do not grow it). */
  private currentPreallocated = false;
  private nextSeq = 0;
  private readonly syncMode: SyncMode;
  private fsyncCount = 0;
  private bytesWrittenCount = 0;
  /** True when open() found segment files (false for a new or emptied WAL directory). */
  hadSegments = false;

  private constructor(dir: string, opts: WalOptions) {
    this.dir = dir;
    this.opts = opts;
    this.syncMode = opts.syncMode === "odsync" && ODSYNC === undefined ? "fdatasync" : opts.syncMode;
  }

  /**
   * Reads every segment in order, handing each record to `visit`. A torn record at the tail of
   * the last segment is cut off with a warning; anything else that is not a valid record stops
   * with a CorruptWalError naming file and offset (or, in repair mode, is cut off and reported).
   * Call start() afterwards to make the WAL writable.
   */
  static async open(dir: string, opts: WalOptions, visit: ReplayVisitor): Promise<Wal> {
    const wal = new Wal(dir, opts);
    await wal.replay(visit);
    return wal;
  }

  private async replay(visit: ReplayVisitor): Promise<void> {
    const { logger } = this.opts;
    const segs: Segment[] = [];
    for (const name of await fs.promises.readdir(this.dir)) {
      const path = join(this.dir, name);
      const m = SEGMENT_RE.exec(name);
      if (m) {
        const st = await fs.promises.stat(path);
        segs.push({ seq: parseInt(m[1], 16), firstIndex: parseInt(m[2], 16), name, path, size: st.size, end: 0, headerEnd: 0 });
      } else if (name.endsWith(".tmp")) {
        // A segment or preallocation that never got renamed into place: never part of the log.
        await fs.promises.rm(path, { force: true });
      } else if (!name.endsWith(".broken")) {
        logger.warn({ file: path }, "ignoring unknown file in the WAL directory");
      }
    }
    segs.sort((a, b) => a.seq - b.seq);
    this.hadSegments = segs.length > 0;
    for (let i = 1; i < segs.length; i++) {
      if (segs[i].seq !== segs[i - 1].seq + 1) {
        const missing = `WAL segment ${segs[i - 1].seq + 1} is missing (found ${segs[i - 1].name} then ${segs[i].name})`;
        if (!this.opts.repair) throw new InconsistentStorageError(`${missing}; the log has a hole and cannot be trusted`);
        await this.discardSegments(segs.slice(i), missing);
        segs.length = i;
        break;
      }
    }

    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i];
      const isLast = i === segs.length - 1;
      const buf = await fs.promises.readFile(seg.path);
      let off = 0;
      let problem: RecordProblem | null = null;
      // A problem in the records' meaning (not their bytes) is never a torn write.
      let logical = false;
      for (;;) {
        const r = readRecord(buf, off);
        if (r.kind === "end") break;
        if (r.kind === "bad") {
          problem = r.problem;
          break;
        }
        const rec = r.record;
        let why: string | undefined;
        if (off === 0) {
          if (rec.type !== RecordType.SegmentHeader) {
            why = `segment does not start with a segment header (found record type ${rec.type})`;
          } else if (rec.seq !== seg.seq || rec.firstIndex !== seg.firstIndex) {
            why = `segment header says seq ${rec.seq}, first index ${rec.firstIndex}, which does not match the file name`;
          } else {
            seg.headerEnd = r.next;
          }
        } else if (rec.type === RecordType.SegmentHeader) {
          why = "unexpected segment header in the middle of a segment";
        } else {
          why = visit(rec);
        }
        if (why !== undefined) {
          problem = { offset: off, reason: why };
          logical = true;
          break;
        }
        off = r.next;
      }
      if (problem === null && off === 0) {
        // No header at all: an empty or all-zero file. Only a last segment can be left like that
        // by a crash (a segment is renamed into place after its header is synced).
        problem = { offset: 0, reason: "segment has no header" };
        logical = !isLast;
      }
      seg.end = off;
      if (problem !== null) {
        const outcome = await this.handleProblem(seg, buf, problem, isLast && !logical, segs.slice(i + 1));
        seg.end = problem.offset;
        if (outcome === "dropped") {
          segs.length = i;
          break;
        }
        if (outcome === "truncated-rest") {
          segs.length = i + 1;
          break;
        }
      }
    }
    if (segs.length > 0) {
      const last = segs[segs.length - 1];
      this.pos = last.end;
      this.headerEnd = last.headerEnd;
    }
    this.segments = segs;
    this.nextSeq = segs.length > 0 ? segs[segs.length - 1].seq + 1 : 0;
  }

  /**
   * A bad record at problem.offset. Returns "truncated" when the segment now ends there,
   * "truncated-rest" when later segments were discarded too (repair), "dropped" when the
   * segment itself is gone (it held nothing valid).
   */
  private async handleProblem(
    seg: Segment,
    buf: Buffer,
    problem: RecordProblem,
    mayBeTorn: boolean,
    later: Segment[],
  ): Promise<"truncated" | "truncated-rest" | "dropped"> {
    const { logger } = this.opts;
    const { offset, reason } = problem;
    if (mayBeTorn && findNextValidRecord(buf, offset) === -1) {
      // A write the crash interrupted: never acknowledged (acks follow the sync), safe to drop.
      logger.warn(
        { file: seg.path, offset, discardedBytes: buf.length - offset, reason },
        "WAL: truncating a torn record at the tail of the last segment (a write interrupted by a crash)",
      );
      return this.cutSegmentAt(seg, offset);
    }
    if (!this.opts.repair) throw new CorruptWalError(seg.path, offset, reason);

    const report = describeDiscarded(buf, offset);
    const laterReports = later.map((s) => ({ file: s.path, bytes: s.size }));
    await fs.promises.copyFile(seg.path, seg.path + ".broken");
    const result = await this.cutSegmentAt(seg, offset);
    await this.discardSegments(later, `repair at ${seg.name}:${offset}`);
    logger.error(
      {
        file: seg.path,
        offset,
        reason,
        discardedBytes: buf.length - offset,
        discardedRecordsFound: report.records,
        discardedEntries: report.firstIndex === null ? null : { first: report.firstIndex, last: report.lastIndex },
        discardedHardStates: report.hardStates,
        discardedSegments: laterReports,
        backup: seg.path + ".broken",
      },
      `WAL repair: truncated ${seg.name} at byte ${offset} (${reason}); discarded ${buf.length - offset} bytes ` +
        `(${report.records} recognizable records, entries ${report.firstIndex ?? "-"}..${report.lastIndex ?? "-"}) ` +
        `and ${later.length} later segment(s); the originals are kept as *.broken`,
    );
    if (result === "dropped") return "dropped";
    return later.length > 0 ? "truncated-rest" : "truncated";
  }

  private async cutSegmentAt(seg: Segment, offset: number): Promise<"truncated" | "dropped"> {
    if (offset === 0) {
      await fs.promises.rm(seg.path, { force: true });
      await fsyncDir(this.dir);
      return "dropped";
    }
    await truncateFile(seg.path, offset);
    seg.size = offset;
    return "truncated";
  }

  private async discardSegments(segs: Segment[], why: string): Promise<void> {
    for (const s of segs) {
      await fs.promises.rename(s.path, s.path + ".broken");
      this.opts.logger.error({ file: s.path, bytes: s.size, why }, "WAL repair: discarded a whole segment (kept as *.broken)");
    }
    if (segs.length > 0) await fsyncDir(this.dir);
  }

  /**
   * Makes the WAL writable: lastIndex/hardState are the log state replay ended with. A WAL
   * without segments gets its first one here.
   */
  async start(lastIndex: number, hardState: HardState): Promise<void> {
    this.writtenLast = this.stagedLast = lastIndex;
    this.writtenHs = this.stagedHs = { ...hardState };
    if (this.segments.length === 0) {
      // Not waiting for a zero-filled file here keeps open() fast; the first flush after the
      // background preallocation is done moves on to it (see flush).
      await this.createSegment(this.nextSeq, lastIndex + 1, null, false);
    } else {
      const seg = this.segments[this.segments.length - 1];
      this.fd = await open(seg.path, this.appendFlags());
      this.currentPreallocated = seg.size >= this.opts.segmentBytes;
    }
    if (this.opts.preallocate) this.startPrealloc();
  }

  private appendFlags(): number {
    const c = fs.constants;
    return c.O_WRONLY | (this.syncMode === "odsync" ? ODSYNC! : 0);
  }

  /**
   * Stages entries (then the hard state, if given) for the next flush. `lastAfter` is the
   * log's last index once they apply. Nothing is staged if encoding fails.
   */
  stage(entries: Entry[], hs: HardState | undefined, lastAfter: number): void {
    const mark = this.enc.length;
    try {
      for (let i = 0; i < entries.length; i++) this.enc.entry(entries[i]);
      if (hs) this.enc.hardState(hs);
    } catch (err) {
      this.enc.length = mark;
      throw err;
    }
    this.stagedLast = lastAfter;
    if (hs) this.stagedHs = { ...hs };
  }

  get stagedBytes(): number {
    return this.enc.length;
  }

  /** True when unsynced staged bytes have piled up and should go out with a sync anyway. */
  get shouldFlush(): boolean {
    return this.enc.length >= STAGED_FLUSH_BYTES;
  }

  /** Writes everything staged in one durable write (cutting a new segment first if full). */
  async flush(inline = this.opts.writes === "inline"): Promise<void> {
    const len = this.enc.length;
    if (len === 0) return;
    const full = this.pos + len > this.opts.segmentBytes;
    // A segment that grows as written (the first one, or one cut short by recovery) makes every
    // sync update the file size too; move on to the preallocated one as soon as it is ready.
    const growing = !this.currentPreallocated && this.preallocReady;
    if ((full || growing) && this.pos > this.headerEnd) await this.cut(null);
    await this.writeDurable(this.enc.buf, len, inline);
    this.enc.reset();
    this.writtenLast = this.stagedLast;
    this.writtenHs = this.stagedHs;
  }

  private async writeDurable(buf: Buffer, len: number, inline: boolean): Promise<void> {
    const t0 = performance.now();
    if (inline) {
      pwriteAllSync(this.fd, buf, 0, len, this.pos);
      if (this.syncMode === "fdatasync") fs.fdatasyncSync(this.fd);
    } else {
      await pwriteAll(this.fd, buf, 0, len, this.pos);
      if (this.syncMode === "fdatasync") await fdatasync(this.fd);
    }
    const seconds = (performance.now() - t0) / 1000;
    this.fsyncCount++;
    this.bytesWrittenCount += len;
    this.pos += len;
    const seg = this.segments[this.segments.length - 1];
    seg.end = this.pos;
    if (this.pos > seg.size) seg.size = this.pos;
    this.opts.onFsync?.(seconds);
  }

  /**
   * Records that a snapshot at (index, term) replaced the log: flushes what is staged, starts
   * a new segment whose header is followed by the marker, and deletes every older segment.
   */
  async resetToSnapshot(index: number, term: number): Promise<void> {
    await this.flush();
    await this.cut({ index, term });
    this.writtenLast = this.stagedLast = index;
    await this.deleteSegments(this.segments.length - 1);
  }

  /** Deletes segments that hold nothing after compactIndex (never the current one). */
  async releaseTo(compactIndex: number): Promise<void> {
    let n = 0;
    while (n + 1 < this.segments.length && this.segments[n + 1].firstIndex - 1 <= compactIndex) n++;
    await this.deleteSegments(n);
  }

  private async deleteSegments(n: number): Promise<void> {
    // One at a time, oldest first, each made durable: a crash leaves a suffix, never a hole.
    for (let i = 0; i < n; i++) {
      const seg = this.segments[0];
      await fs.promises.rm(seg.path, { force: true });
      await fsyncDir(this.dir);
      this.segments.shift();
    }
  }

  private async cut(marker: { index: number; term: number } | null): Promise<void> {
    const firstIndex = marker ? marker.index + 1 : this.writtenLast + 1;
    const oldFd = this.fd;
    await this.createSegment(this.nextSeq, firstIndex, marker, true);
    await close(oldFd);
    if (this.opts.preallocate) this.startPrealloc();
  }

  private async createSegment(
    seq: number,
    firstIndex: number,
    marker: { index: number; term: number } | null,
    usePreallocated: boolean,
  ): Promise<void> {
    const name = segmentName(seq, firstIndex);
    const path = join(this.dir, name);
    const head = new RecordEncoder(256);
    head.segmentHeader(seq, firstIndex);
    const hs = this.writtenHs;
    if (hs.term !== 0 || hs.vote !== "" || hs.commit !== 0) head.hardState(hs);
    if (marker) head.snapshot(marker.index, marker.term);

    let tmp = usePreallocated ? await this.takePreallocated() : null;
    const preallocated = tmp !== null;
    if (tmp === null) tmp = path + ".tmp";
    const fd = await open(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT);
    let size = 0;
    try {
      await pwriteAll(fd, head.buf, 0, head.length, 0);
      await fdatasync(fd);
      size = (await fs.promises.stat(tmp)).size;
    } finally {
      await close(fd);
    }
    // Header durable before the name appears, the name durable before anything relies on it.
    await fs.promises.rename(tmp, path);
    await fsyncDir(this.dir);
    this.fd = await open(path, this.appendFlags());
    this.segments.push({ seq, firstIndex, name, path, size: Math.max(size, head.length), end: head.length, headerEnd: head.length });
    this.nextSeq = seq + 1;
    this.pos = this.headerEnd = head.length;
    this.currentPreallocated = preallocated;
  }

  private startPrealloc(): void {
    if (this.prealloc) return;
    const path = join(this.dir, PREALLOC_NAME);
    const bytes = this.opts.segmentBytes;
    this.preallocReady = false;
    this.prealloc = (async () => {
      const fd = await open(path, "w");
      try {
        const zeros = Buffer.alloc(Math.min(bytes, 1 << 20));
        for (let pos = 0; pos < bytes; pos += zeros.length) {
          if (this.stopPrealloc) return null;
          await pwriteAll(fd, zeros, 0, Math.min(zeros.length, bytes - pos), pos);
        }
        await fdatasync(fd);
      } finally {
        await close(fd);
      }
      this.preallocReady = true;
      return path;
    })().catch((err: unknown) => {
      this.opts.logger.warn({ err, file: path }, "WAL: preallocating the next segment failed; it will grow as written");
      return null;
    });
  }

  /** Resolves when no preallocation runs in the background. */
  async idle(): Promise<void> {
    if (this.prealloc) await this.prealloc;
  }

  private async takePreallocated(): Promise<string | null> {
    if (!this.prealloc) return null;
    const p = await this.prealloc;
    this.prealloc = null;
    this.preallocReady = false;
    return p;
  }

  stats(): WalStats {
    let walBytes = 0;
    for (const s of this.segments) walBytes += s.size;
    return { walBytes, walSegments: this.segments.length, fsyncs: this.fsyncCount, bytesWritten: this.bytesWrittenCount };
  }

  segmentNames(): string[] {
    return this.segments.map((s) => s.name);
  }

  /** Flushes what is staged (unless `flush` is false: after a failure) and closes the files. */
  async close(flush = true): Promise<void> {
    try {
      if (flush && this.fd >= 0) await this.flush();
    } finally {
      const p = this.prealloc;
      this.prealloc = null;
      this.stopPrealloc = true;
      if (p) {
        await p;
        await fs.promises.rm(join(this.dir, PREALLOC_NAME), { force: true });
      }
      if (this.fd >= 0) await close(this.fd);
      this.fd = -1;
    }
  }
}

/** What a repair throws away: valid-looking records found by scanning past the bad spot. */
function describeDiscarded(buf: Buffer, from: number): { records: number; hardStates: number; firstIndex: number | null; lastIndex: number | null } {
  let records = 0;
  let hardStates = 0;
  let firstIndex: number | null = null;
  let lastIndex: number | null = null;
  let p = findNextValidRecord(buf, from);
  while (p >= 0) {
    const r = readRecord(buf, p);
    if (r.kind !== "record") {
      p = findNextValidRecord(buf, p);
      continue;
    }
    records++;
    const rec = r.record;
    if (rec.type === RecordType.Entry) {
      const i = rec.entry.index;
      firstIndex = firstIndex === null ? i : Math.min(firstIndex, i);
      lastIndex = lastIndex === null ? i : Math.max(lastIndex, i);
    } else if (rec.type === RecordType.HardState) {
      hardStates++;
    }
    p = r.next;
  }
  return { records, hardStates, firstIndex, lastIndex };
}
