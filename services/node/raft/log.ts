// The raft log as the core sees it: the stable part (LogStorage, already persisted) followed by
// the unstable part (appended but not yet handed to the driver and persisted). Modelled on
// etcd-io/raft's raftLog and unstable.

import { CompactedError, UnavailableError, limitSize, type LogStorage } from "./storage.js";
import { type Entry, type Snapshot } from "./types.js";

/** Entries (and possibly a snapshot) not yet persisted. entries[i] has index offset + i. */
export class Unstable {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.meta.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot ? this.snapshot.meta.index : undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot && this.snapshot.meta.index === i) return this.snapshot.meta.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset].term;
  }

  /** Entries up to (i, t) reached stable storage. A term mismatch means they were replaced meanwhile. */
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot && this.snapshot.meta.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.meta.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: Entry[]): void {
    const after = ents[0].index;
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(ents);
    } else if (after <= this.offset) {
      // The log is being truncated to before our unstable part: replace it all.
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(ents);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: Unstable;
  /** Highest index known to be committed (Figure 2: commitIndex). */
  committed: number;
  /** Highest index handed to the state machine (Figure 2: lastApplied). */
  applied: number;

  constructor(storage: LogStorage) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of entry i. Throws CompactedError/UnavailableError when the log no longer/not yet holds it. */
  term(i: number): number {
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw new CompactedError(i);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    return this.storage.term(i);
  }

  /**
   * term(i), or undefined when the log does not hold i (compacted or past the end). No
   * exception: this is on the replication hot path (every AppendEntries checks terms).
   */
  termIfPresent(i: number): number | undefined {
    if (i < this.firstIndex() - 1 || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof CompactedError || e instanceof UnavailableError) return undefined;
      throw e;
    }
  }

  /** term(i), or 0 when unknown (compacted or past the end). */
  termOrZero(i: number): number {
    return this.termIfPresent(i) ?? 0;
  }

  matchTerm(i: number, t: number): boolean {
    return this.termIfPresent(i) === t;
  }

  /**
   * The AppendEntries receiver rules (Figure 2): reply false if the log does not contain an
   * entry at prevLogIndex whose term matches prevLogTerm; delete a conflicting entry and all
   * that follow it; append new entries; advance commitIndex to min(leaderCommit, last new entry).
   * Returns the index of the last new entry, or undefined on a mismatch.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new Error(`entry ${ci} conflicts with committed entry [committed(${this.committed})]`);
      }
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    if (after < this.committed) {
      throw new Error(`after(${after}) is out of range [committed(${this.committed})]`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * Index of the first entry in ents that is not in the log with the same term (a conflict, or
   * simply new), or 0 if all are already present.
   */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking (§5.3, "the follower can include the term of the conflicting entry and the
   * first index it stores for that term"): the largest index <= `index` whose term is <= `term`,
   * and that term. A leader uses it to skip a whole conflicting term per round trip.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (; index > 0; index--) {
      const ourTerm = this.termIfPresent(index);
      // Unknown (compacted or not yet held): assume a possible match, with an unknown term.
      if (ourTerm === undefined) return [index, 0];
      if (ourTerm <= term) return [index, ourTerm];
    }
    return [0, 0];
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /** Committed entries not yet applied: (applied, committed]. */
  nextCommittedEntries(maxBytes = Infinity): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, maxBytes);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /**
   * §5.4.2: a leader commits an entry by counting replicas only if it is from its current
   * term; earlier entries commit indirectly (Figure 8).
   */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrZero(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  commitTo(toCommit: number): void {
    if (toCommit <= this.committed) return; // never decrease commit
    if (toCommit > this.lastIndex()) {
      throw new Error(`tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]`);
    }
    this.committed = toCommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (this.committed < i || i < this.applied) {
      throw new Error(`applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    }
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** §5.4.1: a log is at least as up-to-date if its last term is higher, or equal with an index as long. */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries from i on, at most maxBytes (at least one). */
  entriesFrom(i: number, maxBytes: number): Entry[] {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  /** Entries [lo, hi) across storage and unstable. Throws CompactedError if lo is compacted. */
  slice(lo: number, hi: number, maxBytes = Infinity): Entry[] {
    if (lo === hi) return [];
    const first = this.firstIndex();
    if (lo < first) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi);
    let ents: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      const stored = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      // A short read from storage means the byte limit was hit: do not add unstable entries.
      if (stored.length < Math.min(hi, off) - lo) return stored;
      ents = stored;
    }
    if (hi > off) {
      const un = this.unstable.slice(Math.max(lo, off), hi);
      ents = ents.length > 0 ? ents.concat(un) : un;
    }
    return maxBytes === Infinity ? ents : limitSize(ents, maxBytes);
  }

  restore(s: Snapshot): void {
    this.committed = s.meta.index;
    this.unstable.restore(s);
  }

  /** All entries from firstIndex to lastIndex (tests and the simulator's invariant checks). */
  allEntries(): Entry[] {
    return this.slice(this.firstIndex(), this.lastIndex() + 1);
  }
}
