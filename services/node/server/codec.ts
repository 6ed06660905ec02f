// The wire form of the peer protocol (proto/raftkv/v1/raft.proto) for the consensus core's own
// types (services/node/raft/types.ts).
//
// MessageBatch and SnapshotChunk are encoded and decoded here by hand, straight between the
// core's objects and bytes, because they are the replication hot path: the generated ts-proto
// code goes through an intermediate object per message and entry, copies every `bytes` field on
// decode and turns every uint64 into a BigInt and a string before it becomes a number. Here an
// encode is one size pass and one write into a single Buffer, and a decoded entry's `data` is a
// view into the received buffer (no per-entry copy; the entries of one batch keep that batch's
// buffer alive). The output is byte-for-byte what the generated encoder writes (same field
// order, proto3 defaults omitted), and codec.test.ts checks both directions against it.
//
// toProto/fromProto convert to and from the generated types for everything that is not hot
// (tests, tools, hand-made clients).

import * as pb from "../../common/gen/raftkv/v1/raft.js";
import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  type EntryType,
  type Message,
  type MessageType,
  type Snapshot,
  type SnapshotMeta,
} from "../raft/types.js";

/** Bytes that are not a valid encoding of the expected message. */
export class DecodeError extends Error {
  override name = "DecodeError";
}

/** A MessageBatch as it arrived: messages are not validated beyond the wire format. */
export interface DecodedBatch {
  clusterId: string;
  messages: Message[];
}

/** One piece of a snapshot as it travels on InstallSnapshot. */
export interface SnapshotChunkFrame {
  clusterId: string;
  /** The Snap message (metadata only, `snapshot.data` empty); required on the first chunk. */
  message: Message | undefined;
  offset: number;
  data: Uint8Array;
  done: boolean;
  /** CRC32C (Castagnoli) of the whole payload, as an unsigned 32-bit integer; on the last chunk. */
  crc32c: number;
  totalSize: number;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_28 = 0x10000000;

// ---------------------------------------------------------------------------------------------
// Encoding

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < TWO_28) return 4;
  let size = 4;
  n = Math.floor(n / TWO_28);
  while (n > 0) {
    size++;
    n = Math.floor(n / 128);
  }
  return size;
}

function checkU64(n: number, field: string): void {
  // Fast path: a small non-negative integer.
  if (n >>> 0 === n) return;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`cannot encode ${field} = ${n}: not a non-negative safe integer`);
  }
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n > 0x7fffffff) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  while (n > 0x7f) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

/** Size of a uint64/int32/enum field with its tag (0 when it is the default and omitted). */
function numField(n: number): number {
  return n === 0 ? 0 : 1 + varintSize(n);
}

function bytesField(len: number): number {
  return len === 0 ? 0 : 1 + varintSize(len) + len;
}

function strLen(s: string): number {
  // Node ids and cluster ids are short and almost always ASCII.
  return s.length === 0 ? 0 : Buffer.byteLength(s, "utf8");
}

function entryBodySize(e: Entry): number {
  checkU64(e.term, "entry.term");
  checkU64(e.index, "entry.index");
  checkU64(e.type, "entry.type");
  return numField(e.term) + numField(e.index) + numField(e.type) + bytesField(e.data.length);
}

function confSize(c: ConfState): number {
  let n = 0;
  for (const v of c.voters) n += 1 + lenPrefixed(strLen(v));
  for (const l of c.learners) n += 1 + lenPrefixed(strLen(l));
  return n;
}

function lenPrefixed(len: number): number {
  return varintSize(len) + len;
}

function metaBodySize(meta: SnapshotMeta): number {
  checkU64(meta.index, "snapshot.index");
  checkU64(meta.term, "snapshot.term");
  // The conf field is always written (ts-proto writes a present sub-message even when empty).
  return numField(meta.index) + numField(meta.term) + 1 + lenPrefixed(confSize(meta.conf));
}

/** The encoded size of a Message's body (without its own tag and length prefix). */
export function messageBodySize(m: Message): number {
  checkU64(m.type, "type");
  checkU64(m.term, "term");
  checkU64(m.logTerm, "logTerm");
  checkU64(m.index, "index");
  checkU64(m.commit, "commit");
  checkU64(m.rejectHint, "rejectHint");
  let n =
    numField(m.type) +
    numField(m.term) +
    numField(m.logTerm) +
    numField(m.index) +
    numField(m.commit) +
    numField(m.rejectHint) +
    (m.reject ? 2 : 0) +
    bytesField(m.context.length);
  if (m.from.length !== 0) n += 1 + lenPrefixed(strLen(m.from));
  if (m.to.length !== 0) n += 1 + lenPrefixed(strLen(m.to));
  const ents = m.entries;
  for (let i = 0; i < ents.length; i++) n += 1 + lenPrefixed(entryBodySize(ents[i]!));
  if (m.snapshot !== undefined) n += 1 + lenPrefixed(metaBodySize(m.snapshot.meta));
  return n;
}

/** Bytes a message takes inside a MessageBatch (tag + length prefix + body). */
export function messageFrameSize(bodySize: number): number {
  return 1 + lenPrefixed(bodySize);
}

function writeString(buf: Buffer, pos: number, tag: number, s: string): number {
  if (s.length === 0) return pos;
  buf[pos++] = tag;
  const len = strLen(s);
  pos = writeVarint(buf, pos, len);
  return pos + buf.write(s, pos, len, "utf8");
}

function writeStringAlways(buf: Buffer, pos: number, tag: number, s: string): number {
  buf[pos++] = tag;
  const len = strLen(s);
  pos = writeVarint(buf, pos, len);
  return len === 0 ? pos : pos + buf.write(s, pos, len, "utf8");
}

function writeNum(buf: Buffer, pos: number, tag: number, n: number): number {
  if (n === 0) return pos;
  buf[pos++] = tag;
  return writeVarint(buf, pos, n);
}

function writeBytes(buf: Buffer, pos: number, tag: number, b: Uint8Array): number {
  if (b.length === 0) return pos;
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, b.length);
  buf.set(b, pos);
  return pos + b.length;
}

function writeMeta(buf: Buffer, pos: number, meta: SnapshotMeta): number {
  pos = writeNum(buf, pos, 0x08, meta.index);
  pos = writeNum(buf, pos, 0x10, meta.term);
  buf[pos++] = 0x1a;
  pos = writeVarint(buf, pos, confSize(meta.conf));
  for (const v of meta.conf.voters) pos = writeStringAlways(buf, pos, 0x0a, v);
  for (const l of meta.conf.learners) pos = writeStringAlways(buf, pos, 0x12, l);
  return pos;
}

function writeMessage(buf: Buffer, pos: number, m: Message): number {
  pos = writeNum(buf, pos, 0x08, m.type);
  pos = writeString(buf, pos, 0x12, m.from);
  pos = writeString(buf, pos, 0x1a, m.to);
  pos = writeNum(buf, pos, 0x20, m.term);
  pos = writeNum(buf, pos, 0x28, m.logTerm);
  pos = writeNum(buf, pos, 0x30, m.index);
  const ents = m.entries;
  for (let i = 0; i < ents.length; i++) {
    const e = ents[i]!;
    buf[pos++] = 0x3a;
    pos = writeVarint(buf, pos, numField(e.term) + numField(e.index) + numField(e.type) + bytesField(e.data.length));
    pos = writeNum(buf, pos, 0x08, e.term);
    pos = writeNum(buf, pos, 0x10, e.index);
    pos = writeNum(buf, pos, 0x18, e.type);
    pos = writeBytes(buf, pos, 0x22, e.data);
  }
  pos = writeNum(buf, pos, 0x40, m.commit);
  if (m.reject) {
    buf[pos++] = 0x48;
    buf[pos++] = 1;
  }
  pos = writeNum(buf, pos, 0x50, m.rejectHint);
  pos = writeBytes(buf, pos, 0x5a, m.context);
  if (m.snapshot !== undefined) {
    buf[pos++] = 0x62;
    pos = writeVarint(buf, pos, metaBodySize(m.snapshot.meta));
    pos = writeMeta(buf, pos, m.snapshot.meta);
  }
  return pos;
}

/**
 * Encodes a MessageBatch. `bodySizes[i]`, when given, must be messageBodySize(msgs[i]) (the
 * transport computes them once to split batches). A Snap message carries only its metadata;
 * the snapshot's bytes travel on InstallSnapshot.
 */
export function encodeBatch(clusterId: string, msgs: readonly Message[], bodySizes?: readonly number[]): Buffer {
  const sizes = bodySizes ?? msgs.map(messageBodySize);
  let total = clusterId.length === 0 ? 0 : 1 + lenPrefixed(strLen(clusterId));
  for (let i = 0; i < msgs.length; i++) total += messageFrameSize(sizes[i]!);
  const buf = Buffer.allocUnsafe(total);
  let pos = writeString(buf, 0, 0x0a, clusterId);
  for (let i = 0; i < msgs.length; i++) {
    buf[pos++] = 0x12;
    pos = writeVarint(buf, pos, sizes[i]!);
    const start = pos;
    pos = writeMessage(buf, pos, msgs[i]!);
    if (pos - start !== sizes[i]) throw new Error(`codec bug: message size ${pos - start} != ${sizes[i]}`);
  }
  if (pos !== total) throw new Error(`codec bug: batch size ${pos} != ${total}`);
  return buf;
}

/** Encodes one SnapshotChunk. `message`, if present, is written without the snapshot's data. */
export function encodeSnapshotChunk(c: SnapshotChunkFrame): Buffer {
  checkU64(c.offset, "offset");
  checkU64(c.totalSize, "totalSize");
  if (c.crc32c >>> 0 !== c.crc32c) throw new RangeError(`crc32c ${c.crc32c} is not an unsigned 32-bit integer`);
  const msgSize = c.message === undefined ? -1 : messageBodySize(c.message);
  const total =
    (c.clusterId.length === 0 ? 0 : 1 + lenPrefixed(strLen(c.clusterId))) +
    (msgSize < 0 ? 0 : 1 + lenPrefixed(msgSize)) +
    numField(c.offset) +
    bytesField(c.data.length) +
    (c.done ? 2 : 0) +
    numField(c.crc32c) +
    numField(c.totalSize);
  const buf = Buffer.allocUnsafe(total);
  let pos = writeString(buf, 0, 0x0a, c.clusterId);
  if (c.message !== undefined) {
    buf[pos++] = 0x12;
    pos = writeVarint(buf, pos, msgSize);
    pos = writeMessage(buf, pos, c.message);
  }
  pos = writeNum(buf, pos, 0x18, c.offset);
  pos = writeBytes(buf, pos, 0x22, c.data);
  if (c.done) {
    buf[pos++] = 0x28;
    buf[pos++] = 1;
  }
  pos = writeNum(buf, pos, 0x30, c.crc32c);
  pos = writeNum(buf, pos, 0x38, c.totalSize);
  if (pos !== total) throw new Error(`codec bug: chunk size ${pos} != ${total}`);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Decoding

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(end: number): number {
    const buf = this.buf;
    let pos = this.pos;
    let b = buf[pos++]!;
    let v = b & 0x7f;
    if (b >= 0x80) {
      b = buf[pos++]!;
      v |= (b & 0x7f) << 7;
      if (b >= 0x80) {
        b = buf[pos++]!;
        v |= (b & 0x7f) << 14;
        if (b >= 0x80) {
          b = buf[pos++]!;
          v |= (b & 0x7f) << 21;
          if (b >= 0x80) {
            // Beyond 28 bits: continue in floating point (exact up to 2^53).
            let mul = TWO_28;
            let i = 4;
            do {
              if (i === 10) throw new DecodeError(`varint longer than 10 bytes at offset ${this.pos}`);
              b = buf[pos++]!;
              v += (b & 0x7f) * mul;
              mul *= 128;
              i++;
            } while (b >= 0x80);
            if (v > MAX_SAFE) throw new DecodeError(`integer at offset ${this.pos} exceeds 2^53`);
          }
        }
      }
    }
    if (pos > end) throw new DecodeError(`truncated varint at offset ${this.pos}`);
    this.pos = pos;
    return v;
  }

  /** Reads a length prefix and returns the end offset of the delimited field. */
  delimited(end: number): number {
    const len = this.varint(end);
    const fieldEnd = this.pos + len;
    if (fieldEnd > end) throw new DecodeError(`length ${len} at offset ${this.pos} runs past the end (${end})`);
    return fieldEnd;
  }

  bytes(end: number): Uint8Array {
    const fieldEnd = this.delimited(end);
    const start = this.pos;
    this.pos = fieldEnd;
    return fieldEnd === start ? EMPTY_BYTES : this.buf.subarray(start, fieldEnd);
  }

  string(end: number): string {
    const fieldEnd = this.delimited(end);
    const start = this.pos;
    this.pos = fieldEnd;
    return this.buf.toString("utf8", start, fieldEnd);
  }

  /** Skips a field this decoder does not know (or whose wire type is not the expected one). */
  skip(tag: number, end: number): void {
    switch (tag & 7) {
      case 0: {
        let i = 0;
        while (this.buf[this.pos++]! >= 0x80) {
          if (++i === 10) throw new DecodeError(`varint longer than 10 bytes at offset ${this.pos}`);
        }
        break;
      }
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.delimited(end);
        break;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new DecodeError(`unsupported wire type ${tag & 7} (field ${tag >>> 3}) at offset ${this.pos}`);
    }
    if (this.pos > end) throw new DecodeError(`truncated field ${tag >>> 3} (ends at ${this.pos}, limit ${end})`);
  }

  tag(end: number): number {
    const tag = this.varint(end);
    if (tag >>> 3 === 0) throw new DecodeError(`invalid field number 0 at offset ${this.pos}`);
    return tag;
  }
}

function readEntry(r: Reader, end: number): Entry {
  let term = 0;
  let index = 0;
  let type = 0;
  let data: Uint8Array = EMPTY_BYTES;
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case 0x08:
        term = r.varint(end);
        break;
      case 0x10:
        index = r.varint(end);
        break;
      case 0x18:
        type = r.varint(end);
        break;
      case 0x22:
        data = r.bytes(end);
        break;
      default:
        r.skip(tag, end);
    }
  }
  return { term, index, type: type as EntryType, data };
}

function readConf(r: Reader, end: number): ConfState {
  const voters: string[] = [];
  const learners: string[] = [];
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === 0x0a) voters.push(r.string(end));
    else if (tag === 0x12) learners.push(r.string(end));
    else r.skip(tag, end);
  }
  return { voters, learners };
}

function readMeta(r: Reader, end: number): SnapshotMeta {
  let index = 0;
  let term = 0;
  let conf: ConfState = { voters: [], learners: [] };
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === 0x08) index = r.varint(end);
    else if (tag === 0x10) term = r.varint(end);
    else if (tag === 0x1a) {
      const confEnd = r.delimited(end);
      conf = readConf(r, confEnd);
    } else r.skip(tag, end);
  }
  return { index, term, conf };
}

function readMessage(r: Reader, end: number): Message {
  let type = 0;
  let from = "";
  let to = "";
  let term = 0;
  let logTerm = 0;
  let index = 0;
  const entries: Entry[] = [];
  let commit = 0;
  let reject = false;
  let rejectHint = 0;
  let context: Uint8Array = EMPTY_BYTES;
  let snapshot: Snapshot | undefined;
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case 0x08:
        type = r.varint(end);
        break;
      case 0x12:
        from = r.string(end);
        break;
      case 0x1a:
        to = r.string(end);
        break;
      case 0x20:
        term = r.varint(end);
        break;
      case 0x28:
        logTerm = r.varint(end);
        break;
      case 0x30:
        index = r.varint(end);
        break;
      case 0x3a: {
        const entryEnd = r.delimited(end);
        entries.push(readEntry(r, entryEnd));
        break;
      }
      case 0x40:
        commit = r.varint(end);
        break;
      case 0x48:
        reject = r.varint(end) !== 0;
        break;
      case 0x50:
        rejectHint = r.varint(end);
        break;
      case 0x5a:
        context = r.bytes(end);
        break;
      case 0x62: {
        const metaEnd = r.delimited(end);
        snapshot = { meta: readMeta(r, metaEnd), data: EMPTY_BYTES };
        break;
      }
      default:
        r.skip(tag, end);
    }
  }
  // Same property order as emptyMessage(), so decoded messages share the core's object shape.
  const m: Message = {
    type: type as MessageType,
    from,
    to,
    term,
    logTerm,
    index,
    entries,
    commit,
    reject,
    rejectHint,
    context,
  };
  if (snapshot !== undefined) m.snapshot = snapshot;
  return m;
}

/**
 * Decodes a MessageBatch. Entry data and contexts are views into `buf`. Throws DecodeError on
 * bytes that are not a valid encoding; message types and addressing are the caller's to check.
 */
export function decodeBatch(buf: Buffer): DecodedBatch {
  const r = new Reader(buf);
  const end = buf.length;
  let clusterId = "";
  const messages: Message[] = [];
  while (r.pos < end) {
    const tag = r.tag(end);
    if (tag === 0x0a) clusterId = r.string(end);
    else if (tag === 0x12) {
      const msgEnd = r.delimited(end);
      messages.push(readMessage(r, msgEnd));
    } else r.skip(tag, end);
  }
  return { clusterId, messages };
}

/** Decodes a SnapshotChunk; `data` is a view into `buf`. Throws DecodeError on malformed bytes. */
export function decodeSnapshotChunk(buf: Buffer): SnapshotChunkFrame {
  const r = new Reader(buf);
  const end = buf.length;
  const c: SnapshotChunkFrame = {
    clusterId: "",
    message: undefined,
    offset: 0,
    data: EMPTY_BYTES,
    done: false,
    crc32c: 0,
    totalSize: 0,
  };
  while (r.pos < end) {
    const tag = r.tag(end);
    switch (tag) {
      case 0x0a:
        c.clusterId = r.string(end);
        break;
      case 0x12: {
        const msgEnd = r.delimited(end);
        c.message = readMessage(r, msgEnd);
        break;
      }
      case 0x18:
        c.offset = r.varint(end);
        break;
      case 0x22:
        c.data = r.bytes(end);
        break;
      case 0x28:
        c.done = r.varint(end) !== 0;
        break;
      case 0x30:
        // uint32: a conforming encoder never writes more than 32 bits; keep the low 32 like protobuf.
        c.crc32c = r.varint(end) % 0x100000000;
        break;
      case 0x38:
        c.totalSize = r.varint(end);
        break;
      default:
        r.skip(tag, end);
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Conversions to and from the generated (ts-proto) types

/** A Buffer view of the same memory (no copy). */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function entryToProto(e: Entry): pb.Entry {
  return { term: e.term, index: e.index, type: e.type as number as pb.EntryType, data: asBuffer(e.data) };
}

export function entryFromProto(e: pb.Entry): Entry {
  return { term: e.term, index: e.index, type: e.type as number as EntryType, data: e.data };
}

export function snapshotMetaToProto(meta: SnapshotMeta): pb.SnapshotMeta {
  return {
    index: meta.index,
    term: meta.term,
    conf: { voters: [...meta.conf.voters], learners: [...meta.conf.learners] },
  };
}

export function snapshotMetaFromProto(meta: pb.SnapshotMeta): SnapshotMeta {
  return {
    index: meta.index,
    term: meta.term,
    conf: { voters: [...(meta.conf?.voters ?? [])], learners: [...(meta.conf?.learners ?? [])] },
  };
}

/** The generated form of a core message; a snapshot contributes its metadata only. */
export function toProto(m: Message): pb.Message {
  return {
    type: m.type as number as pb.MessageType,
    from: m.from,
    to: m.to,
    term: m.term,
    logTerm: m.logTerm,
    index: m.index,
    entries: m.entries.map(entryToProto),
    commit: m.commit,
    reject: m.reject,
    rejectHint: m.rejectHint,
    context: asBuffer(m.context),
    snapshot: m.snapshot === undefined ? undefined : snapshotMetaToProto(m.snapshot.meta),
  };
}

/** A core message from its generated form; a snapshot arrives with empty data. */
export function fromProto(pm: pb.Message): Message {
  const m: Message = {
    type: pm.type as number as MessageType,
    from: pm.from,
    to: pm.to,
    term: pm.term,
    logTerm: pm.logTerm,
    index: pm.index,
    entries: pm.entries.map(entryFromProto),
    commit: pm.commit,
    reject: pm.reject,
    rejectHint: pm.rejectHint,
    context: pm.context.length === 0 ? EMPTY_BYTES : pm.context,
  };
  if (pm.snapshot !== undefined) m.snapshot = { meta: snapshotMetaFromProto(pm.snapshot), data: EMPTY_BYTES };
  return m;
}
