// WAL record framing: [u32 length][u32 crc32c][u8 type][payload], little-endian.
// `length` counts type + payload (the bytes the checksum covers), so a record is never 0 long
// and a zero length field means "no record here" (the zero-filled tail of a preallocated
// segment). Integers are u64 written as two u32 halves; terms and indexes stay below 2^53.

import CRC32C from "crc-32/crc32c.js";
import type { Entry, HardState } from "../raft/types.js";

export const RECORD_HEADER_BYTES = 8;
/** Sanity bound on one record: an entry carries one command (values are <= 1 MiB by default). */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

export enum RecordType {
  /** First record of every segment: magic, format version, sequence number, first index. */
  SegmentHeader = 1,
  /** term, commit, vote (Figure 2's persistent state plus the commit index). */
  HardState = 2,
  /** One log entry: term, index, entry type, data. */
  Entry = 3,
  /** A snapshot was installed here: the log restarts after (index, term). */
  Snapshot = 4,
}
const MAX_TYPE = 4;

export const SEGMENT_MAGIC = 0x31574b52; // "RKW1" read little-endian
export const SEGMENT_VERSION = 1;

const ENTRY_FIXED = 1 + 8 + 8 + 1; // type byte + term + index + entry type
const HARD_STATE_FIXED = 1 + 8 + 8;
const SNAPSHOT_LEN = 1 + 16;
const HEADER_LEN = 1 + 4 + 4 + 8 + 8;
const TWO_32 = 4294967296;

export function crc32c(bytes: Uint8Array, seed?: number): number {
  return CRC32C.buf(bytes, seed) >>> 0;
}

/** Continues a running checksum (seed is a previous crc32c result). */
export function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  return CRC32C.buf(bytes, crc | 0) >>> 0;
}

function writeU64(buf: Buffer, off: number, n: number): void {
  buf.writeUInt32LE(n % TWO_32, off);
  buf.writeUInt32LE(Math.floor(n / TWO_32), off + 4);
}

function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32LE(off) + buf.readUInt32LE(off + 4) * TWO_32;
}

function checkU64(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
}

export type WalRecord =
  | { type: RecordType.SegmentHeader; seq: number; firstIndex: number }
  | { type: RecordType.HardState; hardState: HardState }
  | { type: RecordType.Entry; entry: Entry }
  | { type: RecordType.Snapshot; index: number; term: number };

/**
 * Encodes records into one reusable, growing buffer so that everything a save() persists is
 * a single write. Bytes stay in [0, length) until the owner calls reset().
 */
export class RecordEncoder {
  buf: Buffer;
  length = 0;

  constructor(initialBytes = 1 << 20) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  private reserve(n: number): number {
    const need = this.length + n;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = Buffer.allocUnsafe(size);
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    const off = this.length;
    this.length = need;
    return off;
  }

  private seal(off: number, len: number, type: RecordType): void {
    const buf = this.buf;
    buf.writeUInt32LE(len, off);
    buf[off + 8] = type;
    buf.writeUInt32LE(crc32c(buf.subarray(off + 8, off + 8 + len)), off + 4);
  }

  entry(e: Entry): void {
    checkU64("entry term", e.term);
    checkU64("entry index", e.index);
    if (!Number.isInteger(e.type) || e.type < 0 || e.type > 255) throw new RangeError(`entry ${e.index} has type ${e.type}; types are 0..255`);
    const len = ENTRY_FIXED + e.data.length;
    if (len > MAX_RECORD_BYTES) throw new RangeError(`entry ${e.index} is ${e.data.length} bytes; the limit is ${MAX_RECORD_BYTES - ENTRY_FIXED}`);
    const off = this.reserve(RECORD_HEADER_BYTES + len);
    const buf = this.buf;
    writeU64(buf, off + 9, e.term);
    writeU64(buf, off + 17, e.index);
    buf[off + 25] = e.type;
    buf.set(e.data, off + 26);
    this.seal(off, len, RecordType.Entry);
  }

  hardState(hs: HardState): void {
    checkU64("hard state term", hs.term);
    checkU64("hard state commit", hs.commit);
    const voteLen = Buffer.byteLength(hs.vote, "utf8");
    const len = HARD_STATE_FIXED + voteLen;
    const off = this.reserve(RECORD_HEADER_BYTES + len);
    const buf = this.buf;
    writeU64(buf, off + 9, hs.term);
    writeU64(buf, off + 17, hs.commit);
    buf.write(hs.vote, off + 25, voteLen, "utf8");
    this.seal(off, len, RecordType.HardState);
  }

  snapshot(index: number, term: number): void {
    checkU64("snapshot index", index);
    checkU64("snapshot term", term);
    const off = this.reserve(RECORD_HEADER_BYTES + SNAPSHOT_LEN);
    writeU64(this.buf, off + 9, index);
    writeU64(this.buf, off + 17, term);
    this.seal(off, SNAPSHOT_LEN, RecordType.Snapshot);
  }

  segmentHeader(seq: number, firstIndex: number): void {
    const off = this.reserve(RECORD_HEADER_BYTES + HEADER_LEN);
    const buf = this.buf;
    buf.writeUInt32LE(SEGMENT_MAGIC, off + 9);
    buf.writeUInt32LE(SEGMENT_VERSION, off + 13);
    writeU64(buf, off + 17, seq);
    writeU64(buf, off + 25, firstIndex);
    this.seal(off, HEADER_LEN, RecordType.SegmentHeader);
  }

  /** Forgets the encoded bytes; a buffer grown for one huge batch is given back. */
  reset(): void {
    this.length = 0;
    if (this.buf.length > 16 << 20) this.buf = Buffer.allocUnsafe(1 << 20);
  }
}

/** Why the bytes at an offset are not a valid record. */
export interface RecordProblem {
  offset: number;
  reason: string;
}

export type ReadResult =
  | { kind: "record"; record: WalRecord; next: number }
  | { kind: "end" }
  | { kind: "bad"; problem: RecordProblem };

/** True if buf[from, to) holds only zero bytes. */
export function allZero(buf: Buffer, from: number, to: number): boolean {
  const CHUNK = 65536;
  let zeros = ZERO_CHUNK;
  for (let p = from; p < to; p += CHUNK) {
    const end = Math.min(to, p + CHUNK);
    if (end - p !== zeros.length) zeros = ZERO_CHUNK.subarray(0, end - p);
    if (!buf.subarray(p, end).equals(zeros)) return false;
  }
  return true;
}
const ZERO_CHUNK = Buffer.alloc(65536);

/**
 * Reads the record at `off`. "end" means no more records: the end of the buffer or a zero
 * length field followed only by zeros (a preallocated segment's unused tail).
 */
export function readRecord(buf: Buffer, off: number): ReadResult {
  const size = buf.length;
  if (off === size) return { kind: "end" };
  if (off + RECORD_HEADER_BYTES > size) {
    return allZero(buf, off, size) ? { kind: "end" } : bad(off, `truncated record header (${size - off} of 8 bytes)`);
  }
  const len = buf.readUInt32LE(off);
  if (len === 0) {
    return allZero(buf, off, size) ? { kind: "end" } : bad(off, "zero-length record followed by non-zero bytes");
  }
  if (len > MAX_RECORD_BYTES) return bad(off, `record length ${len} exceeds the ${MAX_RECORD_BYTES}-byte limit`);
  if (off + RECORD_HEADER_BYTES + len > size) {
    return bad(off, `record of ${len} bytes runs past the end of the file (${size - off - RECORD_HEADER_BYTES} bytes left)`);
  }
  const stored = buf.readUInt32LE(off + 4);
  const actual = crc32c(buf.subarray(off + 8, off + 8 + len));
  if (stored !== actual) {
    return bad(off, `checksum mismatch (stored ${hex32(stored)}, computed ${hex32(actual)}) over a ${len}-byte record`);
  }
  const record = decodeRecord(buf, off + 8, len);
  if (typeof record === "string") return bad(off, record);
  return { kind: "record", record, next: off + RECORD_HEADER_BYTES + len };
}

function bad(offset: number, reason: string): ReadResult {
  return { kind: "bad", problem: { offset, reason } };
}

function hex32(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}

/** Decodes type + payload at buf[p, p + len); returns a reason string if malformed. */
function decodeRecord(buf: Buffer, p: number, len: number): WalRecord | string {
  const type = buf[p];
  switch (type) {
    case RecordType.Entry: {
      if (len < ENTRY_FIXED) return `entry record too short (${len} bytes)`;
      const data = new Uint8Array(len - ENTRY_FIXED);
      data.set(buf.subarray(p + ENTRY_FIXED, p + len));
      return {
        type,
        entry: { term: readU64(buf, p + 1), index: readU64(buf, p + 9), type: buf[p + 17], data },
      };
    }
    case RecordType.HardState: {
      if (len < HARD_STATE_FIXED) return `hard state record too short (${len} bytes)`;
      return {
        type,
        hardState: {
          term: readU64(buf, p + 1),
          commit: readU64(buf, p + 9),
          vote: buf.toString("utf8", p + HARD_STATE_FIXED, p + len),
        },
      };
    }
    case RecordType.Snapshot:
      if (len !== SNAPSHOT_LEN) return `snapshot record has length ${len}, expected ${SNAPSHOT_LEN}`;
      return { type, index: readU64(buf, p + 1), term: readU64(buf, p + 9) };
    case RecordType.SegmentHeader: {
      if (len !== HEADER_LEN) return `segment header has length ${len}, expected ${HEADER_LEN}`;
      const magic = buf.readUInt32LE(p + 1);
      if (magic !== SEGMENT_MAGIC) return `segment header magic ${hex32(magic)} is not ${hex32(SEGMENT_MAGIC)}`;
      const version = buf.readUInt32LE(p + 5);
      if (version !== SEGMENT_VERSION) return `segment format version ${version} is not supported (this build reads ${SEGMENT_VERSION})`;
      return { type, seq: readU64(buf, p + 9), firstIndex: readU64(buf, p + 17) };
    }
    default:
      return `unknown record type ${type}`;
  }
}

/**
 * Finds the next offset after `from` where a checksum-valid record starts, or -1. Recovery uses
 * it to tell a torn tail (nothing valid follows) from corruption in the middle of the log
 * (valid records follow). Work is bounded by `budgetBytes` of checksumming; past it the answer
 * is "found" (-2), the safe side: refuse rather than silently drop data.
 */
export function findNextValidRecord(buf: Buffer, from: number, budgetBytes = 256 << 20): number {
  const size = buf.length;
  let budget = budgetBytes;
  for (let p = from + 1; p + RECORD_HEADER_BYTES + 1 <= size; p++) {
    // Skip zero runs a page at a time: any record starting inside an all-zero run has length 0.
    if ((p & 4095) === 0 && p + 4096 <= size && buf[p] === 0 && allZero(buf, p, p + 4096)) {
      p += 4092;
      continue;
    }
    const len = buf.readUInt32LE(p);
    if (len === 0 || len > MAX_RECORD_BYTES || p + RECORD_HEADER_BYTES + len > size) continue;
    const type = buf[p + 8];
    if (type < 1 || type > MAX_TYPE) continue;
    budget -= len;
    if (budget < 0) return -2;
    if (crc32c(buf.subarray(p + 8, p + 8 + len)) === buf.readUInt32LE(p + 4)) {
      if (typeof decodeRecord(buf, p + 8, len) !== "string") return p;
    }
  }
  return -1;
}
