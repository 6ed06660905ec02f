// Client sessions for exactly-once writes (Raft thesis §6.3). For each client id the table keeps
// the highest sequence number applied and the encoded result of that request, so a retry (same
// client id and seq) is answered with the first result instead of being applied again.
//
// Everything here is a function of the applied log alone, never of wall-clock time, so every
// node holds the same table: sessions expire by least recent use, measured in log entries. The
// table keeps at most maxSessions clients and maxBytes of stored results; past either, the
// client whose last request is oldest in the log is dropped. A Map iterates in insertion order,
// and a use re-inserts, so the Map's order is the LRU order and a snapshot preserves it.

export interface Session {
  /** Highest seq applied for this client. */
  readonly seq: number;
  /** Log index of the last entry that used this session (applied or answered a retry). */
  readonly lastIndex: number;
  /** encodeOpResult of the answer to `seq`. */
  readonly result: Uint8Array;
}

export const DEFAULT_MAX_SESSIONS = 10_000;
export const DEFAULT_MAX_SESSION_BYTES = 64 * 1024 * 1024;

/** Rough per-session overhead counted against maxBytes besides the id and the result. */
const SESSION_OVERHEAD_BYTES = 64;

export class SessionTable {
  private readonly map: Map<string, Session>;
  private bytes = 0;

  constructor(
    readonly maxSessions: number = DEFAULT_MAX_SESSIONS,
    readonly maxBytes: number = DEFAULT_MAX_SESSION_BYTES,
    from?: Iterable<[string, Session]>,
  ) {
    if (!Number.isSafeInteger(maxSessions) || maxSessions < 1) throw new RangeError(`maxSessions must be a positive integer, got ${maxSessions}`);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`maxSessionBytes must be a positive integer, got ${maxBytes}`);
    this.map = new Map();
    if (from) for (const [id, s] of from) this.put(id, s);
  }

  get size(): number {
    return this.map.size;
  }

  /** Bytes counted against maxBytes. */
  get usedBytes(): number {
    return this.bytes;
  }

  get(clientId: string): Session | undefined {
    return this.map.get(clientId);
  }

  /** Records the answer to (clientId, seq) applied at index, then evicts past the caps. */
  record(clientId: string, seq: number, index: number, result: Uint8Array): void {
    this.put(clientId, { seq, lastIndex: index, result });
  }

  /** A retry was answered from the table at index: the session counts as used. */
  touch(clientId: string, index: number): void {
    const s = this.map.get(clientId);
    if (s !== undefined) this.put(clientId, { seq: s.seq, lastIndex: index, result: s.result });
  }

  /** Sessions from least to most recently used. */
  entries(): IterableIterator<[string, Session]> {
    return this.map.entries();
  }

  /** A copy that later writes to this table do not affect (sessions are immutable values). */
  clone(): SessionTable {
    return new SessionTable(this.maxSessions, this.maxBytes, this.map.entries());
  }

  private put(clientId: string, s: Session): void {
    const old = this.map.get(clientId);
    if (old !== undefined) {
      this.bytes -= cost(clientId, old);
      this.map.delete(clientId);
    }
    this.map.set(clientId, s);
    this.bytes += cost(clientId, s);
    // Evict least recently used first; never the session just written.
    while (this.map.size > this.maxSessions || (this.bytes > this.maxBytes && this.map.size > 1)) {
      const [oldestId, oldest] = this.map.entries().next().value as [string, Session];
      if (oldestId === clientId) break;
      this.map.delete(oldestId);
      this.bytes -= cost(oldestId, oldest);
    }
  }
}

function cost(clientId: string, s: Session): number {
  return clientId.length * 2 + s.result.length + SESSION_OVERHEAD_BYTES;
}
