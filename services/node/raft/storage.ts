// What the consensus core reads of the stable log. The core never writes storage: the driver
// persists what a Ready hands it (append, setHardState, applySnapshot) and the core reads it back
// through this interface. `MemoryStorage` keeps it all in memory (tests, the simulator); the disk
// implementation in services/node/storage/ implements the same interface over the WAL.

import {
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
  NONE,
  entrySize,
} from "./types.js";

/** The requested index is before the first index: it was compacted into a snapshot. */
export class CompactedError extends Error {
  constructor(index: number) {
    super(`log index ${index} is compacted`);
    this.name = "CompactedError";
  }
}

/** The requested index is after the last index. */
export class UnavailableError extends Error {
  constructor(index: number) {
    super(`log index ${index} is unavailable`);
    this.name = "UnavailableError";
  }
}

/** A snapshot older than the one storage already has. */
export class SnapshotOutOfDateError extends Error {
  constructor(index: number, have: number) {
    super(`snapshot at ${index} is older than the current one at ${have}`);
    this.name = "SnapshotOutOfDateError";
  }
}

export interface InitialState {
  hardState: HardState;
  confState: ConfState;
}

export interface LogStorage {
  /** Persisted hard state and the configuration as of the last snapshot or conf entry applied. */
  initialState(): InitialState;
  /**
   * Entries in [lo, hi), at most maxBytes of them but always at least one if any are in range.
   * Throws CompactedError if lo <= snapshot index, UnavailableError if hi > lastIndex + 1.
   */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /**
   * Term of the entry at i, for i in [firstIndex - 1, lastIndex] (firstIndex - 1 is the
   * snapshot's own index). Throws CompactedError / UnavailableError outside that range.
   */
  term(i: number): number;
  /** First index still in the log (snapshot index + 1). */
  firstIndex(): number;
  /** Last index in the log (the snapshot index if the log is empty). */
  lastIndex(): number;
  /** The most recent snapshot (meta.index 0 if none). */
  snapshot(): Snapshot;
}

export function emptySnapshot(): Snapshot {
  return { meta: { index: 0, term: 0, conf: { voters: [], learners: [] } }, data: new Uint8Array(0) };
}

/** Limits a list of entries to maxBytes, always keeping the first. */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySize(ents[0]);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySize(ents[n]);
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

/**
 * In-memory LogStorage. ents[0] is a dummy entry standing for the snapshot: its index and term
 * are the snapshot's, so term(firstIndex - 1) is answerable, as the §5.3 consistency check needs.
 */
export class MemoryStorage implements LogStorage {
  hardState: HardState = { term: 0, vote: NONE, commit: 0 };
  private snap: Snapshot = emptySnapshot();
  private ents: Entry[] = [{ term: 0, index: 0, type: 0, data: new Uint8Array(0) }];
  confState: ConfState;

  constructor(voters: string[] = []) {
    this.confState = { voters: [...voters], learners: [] };
    this.snap.meta.conf = { voters: [...voters], learners: [] };
  }

  initialState(): InitialState {
    return { hardState: { ...this.hardState }, confState: cloneConf(this.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  private get offset(): number {
    return this.ents[0].index;
  }

  firstIndex(): number {
    return this.offset + 1;
  }

  lastIndex(): number {
    return this.offset + this.ents.length - 1;
  }

  term(i: number): number {
    const off = this.offset;
    if (i < off) throw new CompactedError(i);
    if (i - off >= this.ents.length) throw new UnavailableError(i);
    return this.ents[i - off].term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.offset;
    if (lo <= off) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi);
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes);
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snap: Snapshot): void {
    if (snap.meta.index <= this.snap.meta.index) throw new SnapshotOutOfDateError(snap.meta.index, this.snap.meta.index);
    this.snap = snap;
    this.ents = [{ term: snap.meta.term, index: snap.meta.index, type: 0, data: new Uint8Array(0) }];
    this.confState = cloneConf(snap.meta.conf);
  }

  /** Records a snapshot of the local state machine at index i (<= applied). Does not compact. */
  createSnapshot(i: number, conf: ConfState, data: Uint8Array): Snapshot {
    if (i <= this.snap.meta.index) throw new SnapshotOutOfDateError(i, this.snap.meta.index);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    this.snap = { meta: { index: i, term: this.term(i), conf: cloneConf(conf) }, data };
    return this.snap;
  }

  /** Discards entries before compactIndex; compactIndex itself becomes the dummy entry. */
  compact(compactIndex: number): void {
    const off = this.offset;
    if (compactIndex <= off) return;
    if (compactIndex > this.lastIndex()) throw new UnavailableError(compactIndex);
    const i = compactIndex - off;
    const head = this.ents[i];
    this.ents = [{ term: head.term, index: head.index, type: 0, data: new Uint8Array(0) }, ...this.ents.slice(i + 1)];
  }

  /**
   * Appends entries, truncating any conflicting suffix first (a follower overwriting entries
   * a deposed leader sent it, §5.3). Entries already compacted are ignored.
   */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0].index + entries.length - 1;
    if (last < first) return;
    if (first > entries[0].index) entries = entries.slice(first - entries[0].index);
    const off = entries[0].index - this.offset;
    if (off > this.ents.length) {
      throw new Error(`missing log entry [last: ${this.lastIndex()}, append at: ${entries[0].index}]`);
    }
    this.ents = this.ents.slice(0, off).concat(entries);
  }

  setConfState(conf: ConfState): void {
    this.confState = cloneConf(conf);
  }
}

export function cloneConf(c: ConfState): ConfState {
  return { voters: [...c.voters], learners: [...c.learners] };
}
