// The state machine's snapshot encoding: every key with its revisions, the client session table
// and the applied index, as a stream of chunks so a large state never sits in memory twice.
// (The storage layer wraps this payload in its own file format with index, term and voters.)
//
//   header   "RKVSTATE" | u32 version (1) | u64 appliedIndex | u64 keyCount | u32 sessionCount
//   key      u32 keyLen | u32 valueLen | u64 createRevision | u64 modRevision | u64 version | key | value
//            (keyCount of them, in strictly increasing key order)
//   session  u32 clientIdLen | u32 resultLen | u64 seq | u64 lastIndex | clientId (UTF-8) | result
//            (sessionCount of them, least recently used first: the order is part of the state)
//   trailer  u32 crc32c of every byte before it | "RKVSEND1"
//
// Integers are little-endian; u64 is two u32 halves (values stay below 2^53). Decoding checks
// everything it can (magic, version, lengths, key order, revision sanity, session results, the
// checksum, the counts, nothing after the trailer) and says what is wrong and where.

import CRC32C from "crc-32/crc32c.js";
import { BTreeIndex, type BinaryKey, type SortedBuilder } from "./btree.js";
import { decodeOpResult } from "./results.js";
import { type Session, SessionTable } from "./sessions.js";
import type { KeyRecord } from "./store.js";

export const SNAPSHOT_FORMAT_VERSION = 1;
const MAGIC = Buffer.from("RKVSTATE", "latin1");
const END_MAGIC = Buffer.from("RKVSEND1", "latin1");
const HEADER_BYTES = 8 + 4 + 8 + 8 + 4;
const KEY_FIXED = 4 + 4 + 8 + 8 + 8;
const SESSION_FIXED = 4 + 4 + 8 + 8;
const TRAILER_BYTES = 4 + 8;
/** Sanity bounds, independent of configured limits (which may differ between nodes). */
const MAX_KEY_BYTES = 16 * 1024 * 1024;
const MAX_VALUE_BYTES = 1024 * 1024 * 1024;
const MAX_CLIENT_ID_BYTES = 64 * 1024;
const MAX_RESULT_BYTES = 1024 * 1024 * 1024;
const TWO_32 = 4294967296;

/** The snapshot payload is malformed: truncated, corrupt, or not a snapshot at all. */
export class SnapshotFormatError extends Error {
  constructor(message: string) {
    super(`state machine snapshot: ${message}`);
    this.name = "SnapshotFormatError";
  }
}

export interface SnapshotState {
  index: number;
  tree: BTreeIndex<KeyRecord>;
  sessions: SessionTable;
}

function crcUpdate(crc: number, bytes: Uint8Array): number {
  return CRC32C.buf(bytes, crc) | 0;
}

/** Accumulates bytes into fixed-size chunks; large byte strings pass through uncopied. */
class ChunkWriter {
  private buf: Buffer;
  private off = 0;
  private out: Uint8Array[] = [];
  crc = 0;

  constructor(private readonly chunkBytes: number) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
  }

  private room(n: number): void {
    if (this.off + n > this.chunkBytes) this.flush();
  }

  u32(n: number): void {
    this.room(4);
    this.buf.writeUInt32LE(n, this.off);
    this.off += 4;
  }

  u64(n: number): void {
    this.room(8);
    this.buf.writeUInt32LE(n % TWO_32, this.off);
    this.buf.writeUInt32LE(Math.floor(n / TWO_32), this.off + 4);
    this.off += 8;
  }

  latin1(s: string): void {
    if (s.length > this.chunkBytes >> 2) {
      this.emit(Buffer.from(s, "latin1"));
      return;
    }
    this.room(s.length);
    this.off += this.buf.write(s, this.off, "latin1");
  }

  bytes(b: Uint8Array): void {
    if (b.length > this.chunkBytes >> 2) {
      this.emit(b);
      return;
    }
    this.room(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
  }

  /** Ends the current chunk (if any) and queues b as a chunk of its own. */
  private emit(b: Uint8Array): void {
    this.flush();
    this.crc = crcUpdate(this.crc, b);
    this.out.push(b);
  }

  flush(): void {
    if (this.off === 0) return;
    const chunk = this.buf.subarray(0, this.off);
    this.crc = crcUpdate(this.crc, chunk);
    this.out.push(chunk);
    this.buf = Buffer.allocUnsafe(this.chunkBytes);
    this.off = 0;
  }

  get pending(): number {
    return this.out.length;
  }

  take(): Uint8Array[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}

/** Streams the encoding of a frozen state (its tree and sessions must not change meanwhile). */
export async function* encodeSnapshot(state: SnapshotState, chunkBytes: number): AsyncGenerator<Uint8Array> {
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 64) throw new RangeError(`chunkBytes must be an integer >= 64, got ${chunkBytes}`);
  const w = new ChunkWriter(chunkBytes);
  w.bytes(MAGIC);
  w.u32(SNAPSHOT_FORMAT_VERSION);
  w.u64(state.index);
  w.u64(state.tree.size);
  w.u32(state.sessions.size);
  for (const [k, rec] of state.tree.entries()) {
    w.u32(k.length);
    w.u32(rec.value.length);
    w.u64(rec.createRevision);
    w.u64(rec.modRevision);
    w.u64(rec.version);
    w.latin1(k);
    w.bytes(rec.value);
    if (w.pending > 0) yield* w.take();
  }
  for (const [clientId, s] of state.sessions.entries()) {
    const id = Buffer.from(clientId, "utf8");
    w.u32(id.length);
    w.u32(s.result.length);
    w.u64(s.seq);
    w.u64(s.lastIndex);
    w.bytes(id);
    w.bytes(s.result);
    if (w.pending > 0) yield* w.take();
  }
  w.flush();
  const trailer = Buffer.allocUnsafe(TRAILER_BYTES);
  trailer.writeUInt32LE(w.crc >>> 0, 0);
  END_MAGIC.copy(trailer, 4);
  yield* w.take();
  yield trailer;
}

enum Phase {
  Header,
  Keys,
  Sessions,
  Trailer,
  Done,
}

/**
 * Incremental decoder: push() chunks as they arrive (any sizes), then finish(). Throws
 * SnapshotFormatError as soon as the bytes cannot be a valid snapshot.
 */
export class SnapshotDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Absolute offset of the first buffered byte (for error messages). */
  private offset = 0;
  private crc = 0;
  private phase = Phase.Header;
  private index = 0;
  private keyCount = 0;
  private sessionCount = 0;
  private keysRead = 0;
  private sessionsRead = 0;
  private lastKey: BinaryKey | undefined;
  private readonly tree: SortedBuilder<KeyRecord>;
  private readonly sessionList: Array<[string, Session]> = [];
  private readonly clientIds = new Set<string>();

  constructor(
    order: number,
    private readonly maxSessions: number,
    private readonly maxSessionBytes: number,
  ) {
    this.tree = BTreeIndex.builder<KeyRecord>(order);
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.phase === Phase.Done) throw this.fail("bytes after the trailer");
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.chunks.push(b);
    this.buffered += b.length;
    this.parse();
  }

  finish(): SnapshotState {
    if (this.phase !== Phase.Done) {
      const where =
        this.phase === Phase.Header
          ? "in the header"
          : this.phase === Phase.Keys
            ? `after ${this.keysRead} of ${this.keyCount} keys`
            : this.phase === Phase.Sessions
              ? `after ${this.sessionsRead} of ${this.sessionCount} sessions`
              : "in the trailer";
      throw this.fail(`truncated ${where} (${this.offset + this.buffered} bytes in all)`);
    }
    const sessions = new SessionTable(this.maxSessions, this.maxSessionBytes, this.sessionList);
    return { index: this.index, tree: this.tree.finish(), sessions };
  }

  private fail(what: string): SnapshotFormatError {
    return new SnapshotFormatError(`${what} (at byte ${this.offset})`);
  }

  /** The next n bytes as one contiguous Buffer if buffered (not consumed), else undefined. */
  private peek(n: number): Buffer | undefined {
    if (this.buffered < n) return undefined;
    if (this.chunks[0].length < n) {
      const all = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [all];
    }
    return this.chunks[0];
  }

  /** Consumes n bytes (which peek has made contiguous), folding them into the checksum. */
  private consume(n: number, countInCrc = true): void {
    const head = this.chunks[0];
    if (countInCrc) this.crc = crcUpdate(this.crc, head.subarray(0, n));
    if (head.length === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.buffered -= n;
    this.offset += n;
  }

  private parse(): void {
    for (;;) {
      switch (this.phase) {
        case Phase.Header: {
          const b = this.peek(HEADER_BYTES);
          if (!b) return;
          if (!b.subarray(0, 8).equals(MAGIC)) throw this.fail("not a raftkv state machine snapshot (bad magic)");
          const version = b.readUInt32LE(8);
          if (version !== SNAPSHOT_FORMAT_VERSION) {
            throw this.fail(`unsupported format version ${version} (this build reads version ${SNAPSHOT_FORMAT_VERSION})`);
          }
          this.index = this.u64(b, 12, "applied index");
          this.keyCount = this.u64(b, 20, "key count");
          this.sessionCount = b.readUInt32LE(28);
          this.consume(HEADER_BYTES);
          this.phase = this.keyCount > 0 ? Phase.Keys : this.sessionCount > 0 ? Phase.Sessions : Phase.Trailer;
          break;
        }
        case Phase.Keys: {
          const h = this.peek(KEY_FIXED);
          if (!h) return;
          const keyLen = h.readUInt32LE(0);
          const valueLen = h.readUInt32LE(4);
          if (keyLen === 0 || keyLen > MAX_KEY_BYTES) throw this.fail(`key ${this.keysRead} has impossible length ${keyLen}`);
          if (valueLen > MAX_VALUE_BYTES) throw this.fail(`key ${this.keysRead} has impossible value length ${valueLen}`);
          const createRevision = this.u64(h, 8, "create revision");
          const modRevision = this.u64(h, 16, "mod revision");
          const version = this.u64(h, 24, "version");
          if (createRevision < 1 || createRevision > modRevision || modRevision > this.index || version < 1) {
            throw this.fail(
              `key ${this.keysRead} has inconsistent revisions (create ${createRevision}, mod ${modRevision}, version ${version}, applied index ${this.index})`,
            );
          }
          const b = this.peek(KEY_FIXED + keyLen + valueLen);
          if (!b) return;
          const key = b.toString("latin1", KEY_FIXED, KEY_FIXED + keyLen);
          if (this.lastKey !== undefined && !(this.lastKey < key)) throw this.fail(`key ${this.keysRead} is out of order`);
          // Copy the value out of the chunk so the store does not pin the whole chunk.
          const value = Buffer.from(b.subarray(KEY_FIXED + keyLen, KEY_FIXED + keyLen + valueLen));
          this.tree.add(key, { value, createRevision, modRevision, version });
          this.lastKey = key;
          this.consume(KEY_FIXED + keyLen + valueLen);
          if (++this.keysRead === this.keyCount) this.phase = this.sessionCount > 0 ? Phase.Sessions : Phase.Trailer;
          break;
        }
        case Phase.Sessions: {
          const h = this.peek(SESSION_FIXED);
          if (!h) return;
          const idLen = h.readUInt32LE(0);
          const resultLen = h.readUInt32LE(4);
          if (idLen === 0 || idLen > MAX_CLIENT_ID_BYTES) throw this.fail(`session ${this.sessionsRead} has impossible client id length ${idLen}`);
          if (resultLen === 0 || resultLen > MAX_RESULT_BYTES) throw this.fail(`session ${this.sessionsRead} has impossible result length ${resultLen}`);
          const seq = this.u64(h, 8, "session seq");
          const lastIndex = this.u64(h, 16, "session last index");
          if (seq < 1 || lastIndex < 1 || lastIndex > this.index) {
            throw this.fail(`session ${this.sessionsRead} has inconsistent seq ${seq} / last index ${lastIndex} (applied index ${this.index})`);
          }
          const b = this.peek(SESSION_FIXED + idLen + resultLen);
          if (!b) return;
          const clientId = b.toString("utf8", SESSION_FIXED, SESSION_FIXED + idLen);
          if (Buffer.byteLength(clientId, "utf8") !== idLen) throw this.fail(`session ${this.sessionsRead} client id is not valid UTF-8`);
          const result = new Uint8Array(b.subarray(SESSION_FIXED + idLen, SESSION_FIXED + idLen + resultLen));
          if (this.clientIds.has(clientId)) throw this.fail(`session ${this.sessionsRead} repeats client id ${JSON.stringify(clientId)}`);
          this.clientIds.add(clientId);
          try {
            decodeOpResult(result);
          } catch (err) {
            throw this.fail(`session ${this.sessionsRead} holds an undecodable result: ${(err as Error).message}`);
          }
          this.sessionList.push([clientId, { seq, lastIndex, result }]);
          this.consume(SESSION_FIXED + idLen + resultLen);
          if (++this.sessionsRead === this.sessionCount) this.phase = Phase.Trailer;
          break;
        }
        case Phase.Trailer: {
          const b = this.peek(TRAILER_BYTES);
          if (!b) return;
          if (!b.subarray(4, TRAILER_BYTES).equals(END_MAGIC)) throw this.fail("missing end marker (corrupt, or more entries than the header counts)");
          const want = b.readUInt32LE(0);
          const got = this.crc >>> 0;
          if (want !== got) throw this.fail(`checksum mismatch: stored crc32c ${hex(want)}, computed ${hex(got)}`);
          this.consume(TRAILER_BYTES, false);
          this.phase = Phase.Done;
          if (this.buffered > 0) throw this.fail("bytes after the trailer");
          return;
        }
        case Phase.Done:
          return;
      }
    }
  }

  private u64(b: Buffer, off: number, what: string): number {
    const hi = b.readUInt32LE(off + 4);
    if (hi >= 0x200000) throw this.fail(`${what} does not fit in 53 bits`);
    return hi * TWO_32 + b.readUInt32LE(off);
  }
}

/** Decodes a whole snapshot held in memory. */
export function decodeSnapshot(data: Uint8Array, decoder: SnapshotDecoder): SnapshotState {
  decoder.push(data);
  return decoder.finish();
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}
