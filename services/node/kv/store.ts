// The replicated state machine: applies committed Raft entries (encoded Command messages) to a
// B+ tree index, in log order, the same way on every node.
//
// Determinism is the contract: apply(index, data) depends only on the state and the entry, never
// on the clock, on configuration or on randomness, so every node that applies the same log
// holds the same keys, revisions and client sessions. That is why:
//  - the revision of a write is the Raft index of its entry (etcd's revisions, cluster-wide);
//  - configurable limits are checked before proposing (validateCommand), not at apply;
//  - sessions expire by log position, not by time (sessions.ts);
//  - bad entry data yields an error result, never an exception (a throw on one node but not on
//    another would be a divergence; the same bytes give the same error everywhere).
//
// Entries the node hands in (the node's side of the contract):
//  - every committed entry, in index order, exactly once each: normal entries with
//    apply(index, data); an empty normal entry (a new leader's no-op) may go to either apply
//    or applyNoop; conf-change entries go to applyNoop(index), so appliedIndex counts them too.
//  - an index <= appliedIndex is ignored (result "skipped"); a gap throws, since applying past
//    a missing entry would silently diverge.

import { Command, type KeyValue, type RequestId } from "../../common/gen/raftkv/v1/kv.js";
import { BTreeIndex, fromBinaryKey, toBinaryKey, type BinaryKey } from "./btree.js";
import { type ApplyResult, type OpResult, decodeOpResult, encodeOpResult } from "./results.js";
import { DEFAULT_MAX_SESSION_BYTES, DEFAULT_MAX_SESSIONS, SessionTable } from "./sessions.js";
import { type SnapshotState, decodeSnapshot, encodeSnapshot, SnapshotDecoder } from "./snapshot.js";
import {
  type Limits,
  type RangeQuery,
  commandProblem,
  effectiveRequestId,
  requestIdProblem,
  resolveLimits,
  validateCommand,
  validateKey,
  validateRange,
} from "./validate.js";

/** What the index stores per key. Immutable: a write replaces it, so clones stay consistent. */
export interface KeyRecord {
  readonly value: Buffer;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

export interface KvStoreOptions {
  /** Limits for validate()/range(). Config, so never enforced at apply (see validate.ts). */
  limits?: Partial<Limits>;
  /**
   * Client sessions kept (least recently used dropped first). Part of the replicated state
   * machine's behaviour: must be the same on every node of a cluster.
   */
  maxSessions?: number;
  /** Bytes of stored session results kept. Same on every node, like maxSessions. */
  maxSessionBytes?: number;
  /** B+ tree order (max node size). 128 unless a test wants deep trees. */
  order?: number;
}

export interface RangeResult {
  /** In key order. */
  kvs: KeyValue[];
  /** More keys matched than were returned (limit or maxResponseBytes). */
  more: boolean;
  /** How many keys matched in all. */
  count: number;
}

/** Applied index too far ahead: an entry between appliedIndex and index never reached apply. */
export class ApplyGapError extends Error {
  constructor(applied: number, index: number) {
    super(`entry ${index} applied after ${applied}: entries ${applied + 1}..${index - 1} were skipped`);
    this.name = "ApplyGapError";
  }
}

const EMPTY_VALUE = Buffer.alloc(0);
export const DEFAULT_SNAPSHOT_CHUNK_BYTES = 64 * 1024;

export class KvStore {
  readonly limits: Limits;
  private tree: BTreeIndex<KeyRecord>;
  private sessions: SessionTable;
  private applied = 0;

  constructor(opts: KvStoreOptions = {}) {
    this.limits = resolveLimits(opts.limits);
    this.tree = new BTreeIndex<KeyRecord>(opts.order ?? 128);
    this.sessions = new SessionTable(opts.maxSessions ?? DEFAULT_MAX_SESSIONS, opts.maxSessionBytes ?? DEFAULT_MAX_SESSION_BYTES);
  }

  /** Index of the last entry applied (the revision the server reports in headers). */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Number of keys. */
  get size(): number {
    return this.tree.size;
  }

  /** Number of client sessions held. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Throws InvalidArgumentError when cmd must not be proposed (this node's limits). */
  validate(cmd: Command): void {
    validateCommand(cmd, this.limits);
  }

  // ---- writes: committed entries ----

  /** Applies the committed entry at index. Never throws for bad data; see the header comment. */
  apply(index: number, data: Uint8Array): ApplyResult {
    if (!this.advance(index)) return { type: "skipped", index };
    if (data.length === 0) return { type: "noop", index };
    let cmd: Command;
    try {
      cmd = Command.decode(data);
    } catch (err) {
      return this.errorResult(index, undefined, "INVALID_ARGUMENT", `entry data is not a valid Command: ${(err as Error).message}`);
    }
    return this.applyDecoded(index, cmd);
  }

  /** Advances appliedIndex over an entry with no state-machine effect (no-op, conf change). */
  applyNoop(index: number): ApplyResult {
    return this.advance(index) ? { type: "noop", index } : { type: "skipped", index };
  }

  /** Applies a decoded command; appliedIndex is already index. */
  private applyDecoded(index: number, cmd: Command): ApplyResult {
    const { requestId, problem: ridProblem } = effectiveRequestId(cmd);
    if (ridProblem !== undefined) return this.errorResult(index, requestId, "INVALID_ARGUMENT", ridProblem);
    if (requestId === undefined) {
      const problem = commandProblem(cmd, null);
      if (problem !== undefined) return this.errorResult(index, undefined, "INVALID_ARGUMENT", problem);
      return withMeta(this.execute(index, cmd), index, undefined, false);
    }
    const ridBad = requestIdProblem(requestId);
    if (ridBad !== undefined) return this.errorResult(index, requestId, "INVALID_ARGUMENT", ridBad);

    // Exactly-once (thesis §6.3).
    const { clientId, seq } = requestId;
    const session = this.sessions.get(clientId);
    if (session !== undefined) {
      if (seq === session.seq) {
        this.sessions.touch(clientId, index);
        return withMeta(decodeOpResult(session.result), index, requestId, true);
      }
      if (seq < session.seq) {
        return this.errorResult(
          index,
          requestId,
          "FAILED_PRECONDITION",
          `request superseded: client ${JSON.stringify(clientId)} seq ${seq} is older than its last answered seq ${session.seq}, whose result replaced it`,
        );
      }
    } else if (seq !== 1) {
      // Without a session we cannot tell a retry of an already applied request from a new one;
      // applying it could apply it twice. The thesis's answer: the session expired, the client
      // must start over (a new client id, from seq 1).
      return this.errorResult(
        index,
        requestId,
        "FAILED_PRECONDITION",
        `session expired: client ${JSON.stringify(clientId)} has no session (evicted, or it never began at seq 1) and sent seq ${seq}; use a new client id starting at seq 1`,
      );
    }
    const problem = commandProblem(cmd, null);
    const result: OpResult =
      problem !== undefined ? { type: "error", error: { code: "INVALID_ARGUMENT", message: problem } } : this.execute(index, cmd);
    this.sessions.record(clientId, seq, index, encodeOpResult(result));
    return withMeta(result, index, requestId, false);
  }

  // ---- reads: local state (the server decides when it is safe to read, e.g. ReadIndex) ----

  /** The key's pair, or undefined. Throws InvalidArgumentError for an empty or oversized key. */
  get(key: Uint8Array): KeyValue | undefined {
    validateKey(key, this.limits);
    const rec = this.tree.get(toBinaryKey(key));
    return rec === undefined ? undefined : keyValue(Buffer.from(key), rec, false);
  }

  /**
   * Keys in [start, end) or with a prefix, in key order, at most `limit` (0: all) and at most
   * limits.maxResponseBytes of keys and values (always at least one pair if any matched).
   * Throws InvalidArgumentError for a bad request. Value buffers are shared with the store:
   * treat them as read-only.
   */
  range(req: RangeQuery): RangeResult {
    validateRange(req, this.limits);
    const [low, high] = rangeBounds(req);
    const limit = req.limit ?? 0;
    const keysOnly = req.keysOnly ?? false;
    const maxBytes = this.limits.maxResponseBytes;
    const kvs: KeyValue[] = [];
    let bytes = 0;
    let full = false;
    let count = 0;
    this.tree.forRange(low, high, (k, rec) => {
      count++;
      if (full) return;
      if (limit > 0 && kvs.length >= limit) {
        full = true;
        return;
      }
      const size = k.length + (keysOnly ? 0 : rec.value.length);
      if (kvs.length > 0 && bytes + size > maxBytes) {
        full = true;
        return;
      }
      bytes += size;
      kvs.push(keyValue(fromBinaryKey(k), rec, keysOnly));
    });
    return { kvs, more: count > kvs.length, count };
  }

  // ---- snapshots ----

  /**
   * The state as of appliedIndex, encoded as a stream of chunks. Takes an O(1) copy-on-write
   * clone of the index and a copy of the session table, so the store keeps applying while the
   * chunks are consumed; the stream still describes exactly the state at `index`.
   */
  snapshot(opts: { chunkBytes?: number } = {}): { index: number; chunks: AsyncIterable<Uint8Array> } {
    const state: SnapshotState = { index: this.applied, tree: this.tree.clone(), sessions: this.sessions.clone() };
    return { index: state.index, chunks: encodeSnapshot(state, opts.chunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES) };
  }

  /** A store holding the state a snapshot encodes. Throws SnapshotFormatError on bad data. */
  static restore(data: Uint8Array, opts: KvStoreOptions = {}): KvStore {
    const store = new KvStore(opts);
    store.install(decodeSnapshot(data, store.newDecoder()));
    return store;
  }

  /** Like restore, from a stream of chunks (a file being read, an InstallSnapshot stream). */
  static async restoreFrom(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: KvStoreOptions = {}): Promise<KvStore> {
    const store = new KvStore(opts);
    const dec = store.newDecoder();
    for await (const chunk of chunks) dec.push(chunk);
    store.install(dec.finish());
    return store;
  }

  // ---- internals ----

  private newDecoder(): SnapshotDecoder {
    return new SnapshotDecoder(this.tree.maxNodeSize, this.sessions.maxSessions, this.sessions.maxBytes);
  }

  private install(state: SnapshotState): void {
    this.tree = state.tree;
    this.sessions = state.sessions;
    this.applied = state.index;
  }

  /** Moves appliedIndex to index. False if index was applied already; throws on a gap. */
  private advance(index: number): boolean {
    if (!Number.isSafeInteger(index) || index < 1) throw new RangeError(`entry index must be a positive integer, got ${index}`);
    if (index <= this.applied) return false;
    if (index !== this.applied + 1) throw new ApplyGapError(this.applied, index);
    this.applied = index;
    return true;
  }

  private errorResult(index: number, requestId: RequestId | undefined, code: "INVALID_ARGUMENT" | "FAILED_PRECONDITION", message: string): ApplyResult {
    return { type: "error", error: { code, message }, index, requestId, duplicate: false };
  }

  /** Executes a structurally valid command at revision `index`. */
  private execute(index: number, cmd: Command): OpResult {
    const op = cmd.op!;
    switch (op.$case) {
      case "put": {
        const { key, value, prevKv } = op.value;
        const k = toBinaryKey(key);
        const prev = this.tree.get(k);
        const rec = this.write(k, prev, value, index);
        return {
          type: "put",
          response: {
            header: undefined,
            kv: keyValue(key, rec, false),
            prevKv: prevKv && prev !== undefined ? keyValue(key, prev, false) : undefined,
          },
        };
      }
      case "delete": {
        const { key, prevKv } = op.value;
        const prev = this.tree.delete(toBinaryKey(key));
        return {
          type: "delete",
          response: {
            header: undefined,
            deleted: prev === undefined ? 0 : 1,
            prevKv: prevKv && prev !== undefined ? keyValue(key, prev, false) : undefined,
          },
        };
      }
      case "deleteRange": {
        const [low, high] = rangeBounds(op.value);
        const deleted = this.tree.deleteRange(low, high);
        return { type: "deleteRange", response: { header: undefined, deleted } };
      }
      case "cas": {
        const { key, expectedValue, expectedVersion, newValue } = op.value;
        const k = toBinaryKey(key);
        const cur = this.tree.get(k);
        const matches =
          expectedVersion !== undefined
            ? expectedVersion === 0
              ? cur === undefined
              : cur !== undefined && cur.version === expectedVersion
            : cur !== undefined && cur.value.equals(expectedValue!);
        if (!matches) {
          return { type: "cas", response: { header: undefined, succeeded: false, kv: cur && keyValue(key, cur, false) } };
        }
        const rec = this.write(k, cur, newValue, index);
        return { type: "cas", response: { header: undefined, succeeded: true, kv: keyValue(key, rec, false) } };
      }
    }
  }

  /** Writes value under k at revision index: version counts writes since (re)creation. */
  private write(k: BinaryKey, prev: KeyRecord | undefined, value: Buffer, index: number): KeyRecord {
    const rec: KeyRecord =
      prev === undefined
        ? { value, createRevision: index, modRevision: index, version: 1 }
        : { value, createRevision: prev.createRevision, modRevision: index, version: prev.version + 1 };
    this.tree.set(k, rec);
    return rec;
  }
}

/** An OpResult with the apply metadata. (Built field by field: object spread measured slow here.) */
function withMeta(r: OpResult, index: number, requestId: RequestId | undefined, duplicate: boolean): ApplyResult {
  switch (r.type) {
    case "put":
      return { type: "put", response: r.response, index, requestId, duplicate };
    case "delete":
      return { type: "delete", response: r.response, index, requestId, duplicate };
    case "deleteRange":
      return { type: "deleteRange", response: r.response, index, requestId, duplicate };
    case "cas":
      return { type: "cas", response: r.response, index, requestId, duplicate };
    case "error":
      return { type: "error", error: r.error, index, requestId, duplicate };
  }
}

function keyValue(key: Buffer, rec: KeyRecord, keysOnly: boolean): KeyValue {
  return {
    key,
    value: keysOnly ? EMPTY_VALUE : rec.value,
    createRevision: rec.createRevision,
    modRevision: rec.modRevision,
    version: rec.version,
  };
}

/** [low, high) of a range or prefix as binary-string keys; high undefined means no upper bound. */
export function rangeBounds(r: { start?: Uint8Array; end?: Uint8Array; prefix?: Uint8Array | undefined }): [BinaryKey, BinaryKey | undefined] {
  if (r.prefix !== undefined) {
    const p = toBinaryKey(r.prefix);
    return [p, prefixEnd(p)];
  }
  const low = r.start !== undefined ? toBinaryKey(r.start) : "";
  const high = r.end !== undefined && r.end.length > 0 ? toBinaryKey(r.end) : undefined;
  return [low, high];
}

/** The smallest key greater than every key with prefix p, or undefined if there is none. */
export function prefixEnd(p: BinaryKey): BinaryKey | undefined {
  let n = p.length;
  while (n > 0 && p.charCodeAt(n - 1) === 0xff) n--;
  if (n === 0) return undefined;
  return p.slice(0, n - 1) + String.fromCharCode(p.charCodeAt(n - 1) + 1);
}
