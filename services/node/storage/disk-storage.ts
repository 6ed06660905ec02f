// DiskStorage: the raft log on disk. Reads are synchronous (the core calls them inside step()),
// so the live part of the log is kept in memory, as etcd keeps a MemoryStorage beside its WAL;
// compaction after each snapshot bounds it. Writes go through the WAL (wal.ts) and snapshot
// files (snap.ts), serialized in call order.
//
// Open = newest snapshot whose checksum verifies + replay of the WAL after it. Replay folds the
// records like the live log does: an entry at an index <= the last one truncates the log from
// there (a follower overwrote a conflicting suffix, §5.3), a snapshot marker restarts the log.

import fs from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  CompactedError,
  type InitialState,
  type LogStorage,
  SnapshotOutOfDateError,
  UnavailableError,
  cloneConf,
  limitSize,
} from "../raft/storage.js";
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  type HardState,
  NONE,
  type Snapshot,
  type SnapshotMeta,
  hardStateEqual,
} from "../raft/types.js";
import { CorruptSnapshotError, InconsistentStorageError, StorageFailedError } from "./errors.js";
import { ensureDir, fsyncDir } from "./fsio.js";
import { type StorageLogger, defaultStorageLogger } from "./logger.js";
import { RecordType } from "./record.js";
import {
  type SnapshotFile,
  listSnapshotFiles,
  readSnapshotFile,
  snapshotFileChunks,
  verifySnapshotFile,
  writeSnapshotFile,
} from "./snap.js";
import { type LogRecord, type SyncMode, Wal, type WriteMode } from "./wal.js";

export interface DiskStorageOptions {
  /** pino or anything with info/warn/error(obj, msg). Default: pino at level warn on stderr. */
  logger?: StorageLogger;
  /** Truncate the WAL at the first bad record (and report what is discarded) instead of refusing to open. */
  repair?: boolean;
  /** WAL segment size. Default 64 MiB. */
  segmentBytes?: number;
  /** The voters of a brand-new cluster, used while no snapshot holds a configuration. */
  initialVoters?: string[];
  /** Entries kept before a snapshot's index so slow followers can catch up without it. Default 5000. */
  keepEntries?: number;
  /** Snapshot files kept. Default 2 (the newest and one to fall back to). */
  keepSnapshots?: number;
  /** Zero-fill new WAL segments ahead of time. Default true. */
  preallocate?: boolean;
  /** How a batch is made durable: "odsync" (one O_DSYNC write, default) or "fdatasync" (write + fdatasync). */
  syncMode?: SyncMode;
  /**
   * Where the durable WAL write runs. "inline" (default): on the event loop, which it blocks
   * for one disk round trip, as etcd's raft loop blocks on its WAL; a thread-pool hand-off costs
   * more than a fast disk's whole write, and a follower has nothing to do before its write is
   * durable (a batch can still ask for the thread pool: SaveBatch.offLoop). "threadpool": always
   * on libuv's thread pool, so the loop keeps serving during slow disk writes.
   */
  writes?: WriteMode;
  /** Called with the duration of every durable WAL write, e.g. to feed a histogram. */
  onFsync?: (seconds: number) => void;
}

/** What the driver persists from one Ready. */
export interface SaveBatch {
  hardState?: HardState;
  entries: Entry[];
  mustSync: boolean;
  /**
   * Write this batch on the thread pool even with writes "inline": for a caller that needs
   * its event loop during this write (a leader whose appends must reach the sockets).
   */
  offLoop?: boolean;
}

export interface StorageStats {
  /** Bytes the WAL segment files take on disk (preallocation included). */
  walBytes: number;
  walSegments: number;
  /** Bytes of the snapshot files kept. */
  snapshotBytes: number;
  snapshots: number;
  /** Durable WAL writes (each is one write + fdatasync, or one O_DSYNC write). */
  fsyncs: number;
  bytesWritten: number;
  firstIndex: number;
  lastIndex: number;
  snapshotIndex: number;
}

export const DEFAULT_SEGMENT_BYTES = 64 << 20;
export const DEFAULT_KEEP_ENTRIES = 5000;
const MIN_SEGMENT_BYTES = 1024;

const openDirs = new Set<string>();

export class DiskStorage implements LogStorage {
  /** ents[0] is a dummy standing for the entry before the first one (MemoryStorage's layout). */
  private ents: Entry[];
  private hs: HardState;
  private conf: ConfState;
  private snapMeta: SnapshotMeta;
  /** Snapshot files, newest first. */
  private snaps: SnapshotFile[];
  private queue: Promise<unknown> = Promise.resolve();
  private snapQueue: Promise<unknown> = Promise.resolve();
  private failed: Error | null = null;
  private closing = false;
  private closed: Promise<void> | null = null;

  private constructor(
    readonly dir: string,
    private readonly wal: Wal,
    private readonly snapDir: string,
    private readonly opts: Required<Pick<DiskStorageOptions, "keepEntries" | "keepSnapshots">> & { logger: StorageLogger },
    private readonly unlock: () => Promise<void>,
    state: { ents: Entry[]; hs: HardState; conf: ConfState; snapMeta: SnapshotMeta; snaps: SnapshotFile[] },
  ) {
    this.ents = state.ents;
    this.hs = state.hs;
    this.conf = state.conf;
    this.snapMeta = state.snapMeta;
    this.snaps = state.snaps;
  }

  /**
   * Opens (or creates) the storage in `dir`: <dir>/wal/ and <dir>/snap/. Recovers from a torn
   * WAL tail with a warning; refuses (CorruptWalError, InconsistentStorageError) to open a log
   * that is damaged anywhere else or misses entries, unless `repair` is set.
   */
  static async open(dir: string, options: DiskStorageOptions = {}): Promise<DiskStorage> {
    const logger = options.logger ?? defaultStorageLogger();
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    const keepEntries = options.keepEntries ?? DEFAULT_KEEP_ENTRIES;
    const keepSnapshots = options.keepSnapshots ?? 2;
    const repair = options.repair ?? false;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES) {
      throw new RangeError(`segmentBytes must be an integer >= ${MIN_SEGMENT_BYTES}, got ${segmentBytes}`);
    }
    if (!Number.isSafeInteger(keepEntries) || keepEntries < 0) throw new RangeError(`keepEntries must be an integer >= 0, got ${keepEntries}`);
    if (!Number.isSafeInteger(keepSnapshots) || keepSnapshots < 1) throw new RangeError(`keepSnapshots must be an integer >= 1, got ${keepSnapshots}`);
    const syncMode = options.syncMode ?? "odsync";
    if (syncMode !== "odsync" && syncMode !== "fdatasync") throw new RangeError(`syncMode must be "odsync" or "fdatasync", got ${String(syncMode)}`);
    const writes = options.writes ?? "inline";
    if (writes !== "inline" && writes !== "threadpool") throw new RangeError(`writes must be "inline" or "threadpool", got ${String(writes)}`);

    const root = resolve(dir);
    const created = await fs.promises.mkdir(root, { recursive: true });
    if (created !== undefined) await fsyncDir(dirname(created));
    const unlock = await acquireLock(root);
    try {
      const walDir = join(root, "wal");
      const snapDir = join(root, "snap");
      await ensureDir(walDir, root);
      await ensureDir(snapDir, root);
      const t0 = performance.now();

      const replay = new ReplayLog();
      const wal = await Wal.open(
        walDir,
        { segmentBytes, preallocate: options.preallocate ?? true, syncMode, writes, repair, logger, onFsync: options.onFsync },
        (rec) => replay.visit(rec),
      );
      try {
        // The newest snapshot whose checksums verify; a bad one is set aside with a warning.
        const files = await listSnapshotFiles(snapDir);
        let chosen: { file: SnapshotFile; meta: SnapshotMeta } | null = null;
        const rejected: string[] = [];
        while (files.length > 0 && chosen === null) {
          const file = files[0];
          try {
            const meta = await verifySnapshotFile(file.path);
            if (meta.index !== file.index || meta.term !== file.term) {
              throw new CorruptSnapshotError(file.path, `contents say index ${meta.index} term ${meta.term}, unlike the file name`);
            }
            chosen = { file, meta };
          } catch (err) {
            if (!(err instanceof CorruptSnapshotError)) throw err;
            files.shift();
            rejected.push(`${file.path}: ${err.reason}`);
            logger.warn({ file: file.path, reason: err.reason }, "snapshot failed its checksum; falling back to an older one (kept as *.broken)");
            await fs.promises.rename(file.path, file.path + ".broken");
            await fsyncDir(snapDir);
          }
        }
        if (!wal.hadSegments && chosen !== null) {
          const msg = `the WAL directory ${walDir} has no segments but snapshot ${chosen.file.path} exists: the persisted term and vote are lost`;
          if (!repair) throw new InconsistentStorageError(`${msg}; restore the WAL or open in repair mode to start from the snapshot`);
          logger.error({ walDir }, `${msg}; repair mode: starting from the snapshot with an empty hard state`);
        }

        const s = chosen ? { index: chosen.meta.index, term: chosen.meta.term } : { index: 0, term: 0 };
        let fin: ReturnType<ReplayLog["finish"]>;
        try {
          fin = replay.finish(s, keepEntries);
        } catch (err) {
          if (rejected.length > 0 && err instanceof InconsistentStorageError) {
            throw new InconsistentStorageError(
              `the newest snapshot is unusable (${rejected.join("; ")}) and the fallback cannot be used: ${err.message}`,
            );
          }
          throw err;
        }
        if (fin.reset) {
          logger.info({ snapshotIndex: s.index, walLast: replay.lastIndex() }, "WAL entries superseded by a newer snapshot; restarting the log after it");
        }
        const ents = fin.ents;
        const lastIndex = ents[0].index + ents.length - 1;
        const hs = { ...replay.hs };
        // A snapshot only ever holds committed entries (an installed one may be newer than the
        // last hard state that reached the disk).
        if (hs.commit < s.index) hs.commit = s.index;
        if (hs.commit > lastIndex) {
          throw new InconsistentStorageError(
            `the hard state says entries up to ${hs.commit} are committed but the log ends at ${lastIndex}: committed entries are missing from ${walDir}`,
          );
        }
        const conf = chosen ? cloneConf(chosen.meta.conf) : { voters: [...(options.initialVoters ?? [])], learners: [] };
        const snapMeta: SnapshotMeta = chosen ? { ...chosen.meta, conf: cloneConf(chosen.meta.conf) } : { index: 0, term: 0, conf: cloneConf(conf) };

        await wal.start(lastIndex, hs);
        if (fin.reset) await wal.resetToSnapshot(s.index, s.term);
        const storage = new DiskStorage(root, wal, snapDir, { keepEntries, keepSnapshots, logger }, unlock, {
          ents,
          hs,
          conf,
          snapMeta,
          snaps: files,
        });
        await wal.releaseTo(storage.diskCompactIndex());
        await storage.pruneSnapshots();
        logger.info(
          {
            dir: root,
            snapshotIndex: s.index,
            firstIndex: storage.firstIndex(),
            lastIndex,
            hardState: hs,
            segments: wal.segmentNames().length,
            ms: Math.round(performance.now() - t0),
          },
          "storage opened",
        );
        return storage;
      } catch (err) {
        await wal.close(false).catch(() => {});
        throw err;
      }
    } catch (err) {
      await unlock();
      throw err;
    }
  }

  // ---- LogStorage (synchronous reads) ----

  initialState(): InitialState {
    return { hardState: { ...this.hs }, confState: cloneConf(this.conf) };
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.ents[0].index;
    if (i < off) throw new CompactedError(i);
    if (i - off >= this.ents.length) throw new UnavailableError(i);
    return this.ents[i - off].term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.ents[0].index;
    if (lo <= off) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi);
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes);
  }

  /** The newest snapshot's metadata; `data` is empty (read it with readSnapshotData / snapshotChunks). */
  snapshot(): Snapshot {
    return { meta: { ...this.snapMeta, conf: cloneConf(this.snapMeta.conf) }, data: EMPTY_BYTES };
  }

  // ---- writes (serialized in call order) ----

  /**
   * Persists one Ready: entries (an entry at an index <= lastIndex truncates the log there
   * first) then the hard state. With mustSync, resolves once everything is durable: one write
   * and one sync for the whole batch. Without, the bytes go out with the next synced batch.
   */
  save(rd: SaveBatch): Promise<void> {
    if (this.closing) return Promise.reject(new Error("storage is closed"));
    return this.enqueue(() => this.doSave(rd));
  }

  private async doSave(rd: SaveBatch): Promise<void> {
    let ents = rd.entries ?? [];
    for (let i = 1; i < ents.length; i++) {
      if (ents[i].index !== ents[i - 1].index + 1) {
        throw new RangeError(`entries to save are not contiguous: index ${ents[i - 1].index} is followed by ${ents[i].index}`);
      }
    }
    const first = this.firstIndex();
    const last = this.lastIndex();
    if (ents.length > 0) {
      // Entries already compacted away are committed and unchanged: skip them (as MemoryStorage does).
      if (ents[ents.length - 1].index < first) ents = [];
      else if (ents[0].index < first) ents = ents.slice(first - ents[0].index);
    }
    if (ents.length > 0 && ents[0].index > last + 1) {
      throw new RangeError(`missing log entries: the log ends at ${last}, cannot append at ${ents[0].index}`);
    }
    const lastAfter = ents.length > 0 ? ents[ents.length - 1].index : last;
    const hs = rd.hardState;
    const hsChanged = hs !== undefined && !hardStateEqual(hs, this.hs);
    if (hsChanged && hs.commit > lastAfter) {
      throw new RangeError(`hard state commit ${hs.commit} is beyond the last log index ${lastAfter}`);
    }
    if (ents.length > 0 || hsChanged) this.wal.stage(ents, hsChanged ? hs : undefined, lastAfter);
    if ((rd.mustSync && this.wal.stagedBytes > 0) || this.wal.shouldFlush) await this.io(() => this.wal.flush(rd.offLoop ? false : undefined));

    if (ents.length > 0) {
      const off = ents[0].index - this.ents[0].index;
      this.ents.length = off;
      for (let i = 0; i < ents.length; i++) this.ents.push(ents[i]);
    }
    if (hsChanged) this.hs = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  /**
   * Installs a snapshot received from the leader: the file is made durable, then the WAL
   * records that the log restarts after it, and the in-memory log is reset.
   */
  applySnapshot(snap: Snapshot): Promise<void> {
    if (this.closing) return Promise.reject(new Error("storage is closed"));
    return this.enqueue(async () => {
      const meta: SnapshotMeta = { index: snap.meta.index, term: snap.meta.term, conf: cloneConf(snap.meta.conf) };
      if (meta.index <= this.snapMeta.index) throw new SnapshotOutOfDateError(meta.index, this.snapMeta.index);
      const file = await writeSnapshotFile(this.snapDir, meta, snap.data);
      await this.io(() => this.wal.resetToSnapshot(meta.index, meta.term));
      this.ents = [{ index: meta.index, term: meta.term, type: 0, data: EMPTY_BYTES }];
      this.conf = cloneConf(meta.conf);
      this.snapMeta = meta;
      if (this.hs.commit < meta.index) this.hs = { ...this.hs, commit: meta.index };
      this.addSnapshotFile(file);
      await this.pruneSnapshots();
    });
  }

  /**
   * Writes a snapshot of the local state machine at `index` (<= applied <= commit), streaming
   * `data` to disk while saves go on, then releases log entries up to index - keepEntries and
   * the WAL segments and snapshot files no longer needed. `committed`: the caller's commit
   * index, when it knows more than the last saved hard state (a leader applies entries its
   * followers made durable before its own Ready with the new commit index is saved).
   */
  createSnapshot(index: number, conf: ConfState, data: Uint8Array | AsyncIterable<Uint8Array>, committed = 0): Promise<SnapshotMeta> {
    if (this.closing) return Promise.reject(new Error("storage is closed"));
    const run = async (): Promise<SnapshotMeta> => {
      if (this.failed) throw this.failed;
      if (index <= this.snapMeta.index) throw new SnapshotOutOfDateError(index, this.snapMeta.index);
      if (index > this.lastIndex()) throw new UnavailableError(index);
      const known = Math.max(committed, this.hs.commit);
      if (index > known) throw new RangeError(`cannot snapshot at ${index}: only entries up to ${known} are committed`);
      const meta: SnapshotMeta = { index, term: this.term(index), conf: cloneConf(conf) };
      const file = await writeSnapshotFile(this.snapDir, meta, data);
      await this.enqueue(async () => {
        if (index <= this.snapMeta.index) {
          // A newer snapshot was installed from the leader meanwhile.
          await fs.promises.rm(file.path, { force: true });
          throw new SnapshotOutOfDateError(index, this.snapMeta.index);
        }
        this.snapMeta = meta;
        this.addSnapshotFile(file);
        this.compactMemory(index - this.opts.keepEntries);
        await this.io(() => this.wal.releaseTo(this.diskCompactIndex()));
        await this.pruneSnapshots();
      });
      return { ...meta, conf: cloneConf(meta.conf) };
    };
    const p = this.snapQueue.then(run, run);
    this.snapQueue = p.catch(() => undefined);
    return p;
  }

  /** The configuration the node runs with (in memory; snapshots carry it to disk). */
  setConfState(conf: ConfState): void {
    this.conf = cloneConf(conf);
  }

  /** The snapshot payload at `index` (default: the newest); empty when there is no snapshot. */
  async readSnapshotData(index?: number): Promise<Uint8Array> {
    if (this.snaps.length === 0 && (index === undefined || index === 0)) return new Uint8Array(0);
    return (await readSnapshotFile(this.snapshotFile(index).path)).data;
  }

  /** The snapshot payload at `index` in chunks of at most chunkBytes, for the transport. */
  snapshotChunks(index: number, chunkBytes: number): AsyncIterable<Uint8Array> {
    return snapshotFileChunks(this.snapshotFile(index).path, chunkBytes);
  }

  stats(): StorageStats {
    let snapshotBytes = 0;
    for (const s of this.snaps) snapshotBytes += s.bytes;
    return {
      ...this.wal.stats(),
      snapshotBytes,
      snapshots: this.snaps.length,
      firstIndex: this.firstIndex(),
      lastIndex: this.lastIndex(),
      snapshotIndex: this.snapMeta.index,
    };
  }

  /** Resolves when background work (preallocating the next WAL segment) has finished. */
  async idle(): Promise<void> {
    await this.queue;
    await this.wal.idle();
  }

  /**
   * Waits for pending writes, flushes unsynced bytes, closes the files. Idempotent.
   * `discardUnsynced` drops what mustSync: false saves left in memory instead, as a crash would
   * (for simulations of crash-restart).
   */
  close(opts: { discardUnsynced?: boolean } = {}): Promise<void> {
    if (this.closed) return this.closed;
    this.closing = true;
    this.closed = (async () => {
      await this.snapQueue;
      await this.queue;
      try {
        await this.wal.close(this.failed === null && !opts.discardUnsynced);
      } finally {
        await this.unlock();
      }
    })();
    return this.closed;
  }

  // ---- internals ----

  private snapshotFile(index: number | undefined): SnapshotFile {
    const f = index === undefined ? this.snaps[0] : this.snaps.find((s) => s.index === index);
    if (!f) throw new Error(`no snapshot at index ${index ?? "(newest)"} in ${this.snapDir}`);
    return f;
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = (): Promise<T> => (this.failed ? Promise.reject(this.failed) : fn());
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Runs a WAL operation; if it fails, what reached the disk is unknown: stop accepting writes. */
  private async io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.failed = new StorageFailedError(err);
      this.opts.logger.error({ err }, "storage write failed; refusing further writes (restart to recover from the WAL)");
      throw this.failed;
    }
  }

  private compactMemory(compactIndex: number): void {
    const off = this.ents[0].index;
    if (compactIndex <= off) return;
    const i = Math.min(compactIndex, this.lastIndex()) - off;
    const head = this.ents[i];
    this.ents = [{ index: head.index, term: head.term, type: 0, data: EMPTY_BYTES } as Entry].concat(this.ents.slice(i + 1));
  }

  /**
   * WAL segments are kept back to the older retained snapshot too, so that if the newest
   * snapshot file turns out corrupt at the next start the older one plus the WAL still work.
   */
  private diskCompactIndex(): number {
    const memory = this.ents[0].index;
    const older = this.snaps[1];
    return older ? Math.min(memory, older.index) : memory;
  }

  private addSnapshotFile(file: SnapshotFile): void {
    this.snaps = [file, ...this.snaps.filter((s) => s.path !== file.path)].sort((a, b) => b.index - a.index);
  }

  private async pruneSnapshots(): Promise<void> {
    if (this.snaps.length <= this.opts.keepSnapshots) return;
    const drop = this.snaps.slice(this.opts.keepSnapshots);
    this.snaps = this.snaps.slice(0, this.opts.keepSnapshots);
    for (const s of drop) await fs.promises.rm(s.path, { force: true });
    await fsyncDir(this.snapDir);
  }
}

/** The log as replay rebuilds it, before it is reconciled with the chosen snapshot. */
class ReplayLog {
  /** A snapshot marker: the log restarts after (index, term). */
  private base: { index: number; term: number } | null = null;
  /** Index of arr[0]. */
  private start = 0;
  private arr: Entry[] = [];
  hs: HardState = { term: 0, vote: NONE, commit: 0 };

  lastIndex(): number {
    if (this.arr.length > 0) return this.start + this.arr.length - 1;
    return this.base ? this.base.index : 0;
  }

  visit(rec: LogRecord): string | undefined {
    switch (rec.type) {
      case RecordType.HardState:
        this.hs = rec.hardState;
        return undefined;
      case RecordType.Snapshot:
        this.base = { index: rec.index, term: rec.term };
        this.arr = [];
        this.start = rec.index + 1;
        return undefined;
      case RecordType.Entry:
        return this.entry(rec.entry);
    }
  }

  private entry(e: Entry): string | undefined {
    const arr = this.arr;
    if (arr.length === 0) {
      if (this.base === null) {
        this.start = e.index;
        arr.push(e);
        return undefined;
      }
      if (e.index === this.base.index + 1) {
        arr.push(e);
        return undefined;
      }
      if (e.index > this.base.index + 1) return `entry ${e.index} leaves a gap after the snapshot at ${this.base.index}`;
      return `entry ${e.index} rewrites the log at or before the installed snapshot at ${this.base.index}`;
    }
    const last = this.start + arr.length - 1;
    if (e.index === last + 1) {
      arr.push(e);
    } else if (e.index > last + 1) {
      return `entry ${e.index} leaves a gap after entry ${last}`;
    } else if (e.index >= this.start) {
      arr.length = e.index - this.start; // a conflicting suffix was overwritten
      arr.push(e);
    } else if (this.base !== null) {
      return `entry ${e.index} rewrites the log before the installed snapshot at ${this.base.index}`;
    } else {
      // Overwrites entries whose earlier history lived in segments already deleted.
      this.start = e.index;
      this.arr = [e];
    }
    return undefined;
  }

  /**
   * Reconciles the replayed log with the snapshot the node restarts from (index 0: none).
   * Returns the log in MemoryStorage layout (dummy first) and whether it had to restart after
   * the snapshot (the WAL must then record that, or the next replay would see a gap).
   */
  finish(s: { index: number; term: number }, keepEntries: number): { ents: Entry[]; reset: boolean } {
    const dummy = (index: number, term: number): Entry => ({ index, term, type: 0, data: EMPTY_BYTES });
    const arr = this.arr;
    const base = this.base;
    if (arr.length === 0) {
      if (base !== null && base.index > s.index) {
        throw new InconsistentStorageError(
          `the WAL records a snapshot installed at index ${base.index}, but no valid snapshot file at or after it exists (newest usable: ${s.index || "none"})`,
        );
      }
      if (base !== null && base.index === s.index && base.term !== s.term) {
        throw new InconsistentStorageError(`the WAL's snapshot marker (index ${base.index}, term ${base.term}) disagrees with the snapshot file (term ${s.term})`);
      }
      return { ents: [dummy(s.index, s.term)], reset: base !== null && base.index < s.index };
    }
    const start = this.start;
    const last = start + arr.length - 1;
    if (s.index < start - 1) {
      throw new InconsistentStorageError(
        `the WAL begins at index ${start} but the snapshot to restart from is at ${s.index || "none (index 0)"}: entries ${s.index + 1}..${start - 1} are missing`,
      );
    }
    if (s.index === start - 1) {
      if (base !== null && base.term !== s.term) {
        throw new InconsistentStorageError(`the WAL's snapshot marker (index ${base.index}, term ${base.term}) disagrees with the snapshot file (term ${s.term})`);
      }
      return { ents: [dummy(s.index, s.term)].concat(arr), reset: false };
    }
    // The snapshot covers all of the log, or disagrees with it at its own index: the entries are
    // superseded (a snapshot holds committed state; a conflicting entry was never committed).
    if (s.index > last || arr[s.index - start].term !== s.term) return { ents: [dummy(s.index, s.term)], reset: true };
    // Keep up to keepEntries before the snapshot, where the WAL still has them.
    const lowest = base !== null ? start - 1 : start;
    const d = Math.max(lowest, s.index - keepEntries);
    const term = d === start - 1 ? base!.term : arr[d - start].term;
    return { ents: [dummy(d, term)].concat(arr.slice(d - start + 1)), reset: false };
  }
}

/** One process per data dir: a LOCK file holding the owner's pid (stale if that pid is gone). */
async function acquireLock(root: string): Promise<() => Promise<void>> {
  if (openDirs.has(root)) throw new Error(`storage ${root} is already open in this process`);
  const path = join(root, "LOCK");
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.promises.writeFile(path, `${process.pid}\n`, { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
      const pid = Number((await fs.promises.readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new Error(`storage ${root} is in use by process ${pid} (${path}); stop that process, or remove the file if it is stale`);
      }
      await fs.promises.rm(path, { force: true });
    }
  }
  openDirs.add(root);
  return async () => {
    openDirs.delete(root);
    await fs.promises.rm(path, { force: true });
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
