// Snapshot files in <dataDir>/snap/, named <index:16 hex>-<term:16 hex>.snap:
//
//   "RKVSNAP1" | u32 metaLen | u32 crc32c(meta) | meta | payload | u64 payloadLen | u32 crc32c(payload) | "RKVE"
//   meta = index u64 | term u64 | u32 voters, each u16 len + utf8 | u32 learners, likewise
//
// Written to a temp file as the payload streams in (the state machine hands a copy-on-write
// clone, so writes go on meanwhile), fsynced, renamed into place, and the directory fsynced:
// a snapshot file is either complete and durable or absent.

import fs from "node:fs";
import { join } from "node:path";
import type { ConfState, SnapshotMeta } from "../raft/types.js";
import { CorruptSnapshotError } from "./errors.js";
import { close, fsync, fsyncDir, open, pread, pwriteAll } from "./fsio.js";
import { crc32c, crc32cUpdate } from "./record.js";
import { hex16 } from "./wal.js";

const MAGIC = Buffer.from("RKVSNAP1", "latin1");
const END_MAGIC = 0x45564b52; // "RKVE" little-endian
const TRAILER_BYTES = 16;
const MAX_META_BYTES = 16 << 20;
const TWO_32 = 4294967296;
const SNAP_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
const WRITE_CHUNK = 1 << 20;

export interface SnapshotFile {
  index: number;
  term: number;
  path: string;
  bytes: number;
}

export function snapshotFileName(index: number, term: number): string {
  return `${hex16(index)}-${hex16(term)}.snap`;
}

/** Snapshot files in dir, newest (highest index) first. Leftover temp files are removed. */
export async function listSnapshotFiles(dir: string): Promise<SnapshotFile[]> {
  const out: SnapshotFile[] = [];
  for (const name of await fs.promises.readdir(dir)) {
    const path = join(dir, name);
    if (name.endsWith(".tmp")) {
      await fs.promises.rm(path, { force: true });
      continue;
    }
    const m = SNAP_RE.exec(name);
    if (!m) continue;
    const st = await fs.promises.stat(path);
    out.push({ index: parseInt(m[1], 16), term: parseInt(m[2], 16), path, bytes: st.size });
  }
  return out.sort((a, b) => b.index - a.index);
}

function encodeMeta(meta: SnapshotMeta): Buffer {
  const strs = [...meta.conf.voters, ...meta.conf.learners].map((s) => Buffer.from(s, "utf8"));
  let len = 16 + 4 + 4;
  for (const s of strs) {
    if (s.length > 0xffff) throw new RangeError(`node id is too long (${s.length} bytes)`);
    len += 2 + s.length;
  }
  const buf = Buffer.alloc(len);
  let p = 0;
  const u64 = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`snapshot index/term must be a non-negative safe integer, got ${n}`);
    buf.writeUInt32LE(n % TWO_32, p);
    buf.writeUInt32LE(Math.floor(n / TWO_32), p + 4);
    p += 8;
  };
  u64(meta.index);
  u64(meta.term);
  let k = 0;
  for (const group of [meta.conf.voters, meta.conf.learners]) {
    buf.writeUInt32LE(group.length, p);
    p += 4;
    for (let j = 0; j < group.length; j++, k++) {
      buf.writeUInt16LE(strs[k].length, p);
      strs[k].copy(buf, p + 2);
      p += 2 + strs[k].length;
    }
  }
  return buf;
}

function decodeMeta(buf: Buffer): SnapshotMeta | string {
  let p = 0;
  const need = (n: number) => p + n <= buf.length;
  if (!need(16)) return "metadata too short";
  const index = buf.readUInt32LE(0) + buf.readUInt32LE(4) * TWO_32;
  const term = buf.readUInt32LE(8) + buf.readUInt32LE(12) * TWO_32;
  p = 16;
  const groups: string[][] = [];
  for (let g = 0; g < 2; g++) {
    if (!need(4)) return "metadata truncated in the configuration";
    const n = buf.readUInt32LE(p);
    p += 4;
    const ids: string[] = [];
    for (let j = 0; j < n; j++) {
      if (!need(2)) return "metadata truncated in the configuration";
      const l = buf.readUInt16LE(p);
      if (!need(2 + l)) return "metadata truncated in the configuration";
      ids.push(buf.toString("utf8", p + 2, p + 2 + l));
      p += 2 + l;
    }
    groups.push(ids);
  }
  if (p !== buf.length) return `metadata has ${buf.length - p} unexpected trailing bytes`;
  const conf: ConfState = { voters: groups[0], learners: groups[1] };
  return { index, term, conf };
}

function isAsyncIterable(x: unknown): x is AsyncIterable<Uint8Array> {
  return typeof x === "object" && x !== null && Symbol.asyncIterator in x;
}

/**
 * Writes a snapshot durably. `data` is the whole payload or a stream of chunks (small chunks
 * are coalesced so the file is written in large writes).
 */
export async function writeSnapshotFile(
  dir: string,
  meta: SnapshotMeta,
  data: Uint8Array | AsyncIterable<Uint8Array>,
): Promise<SnapshotFile> {
  const name = snapshotFileName(meta.index, meta.term);
  const path = join(dir, name);
  const tmp = path + ".tmp";
  const metaBytes = encodeMeta(meta);
  const head = Buffer.alloc(16);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(metaBytes.length, 8);
  head.writeUInt32LE(crc32c(metaBytes), 12);

  const fd = await open(tmp, "w");
  let pos = 0;
  let crc = 0;
  let payloadLen = 0;
  try {
    const write = async (b: Uint8Array) => {
      await pwriteAll(fd, b, 0, b.length, pos);
      pos += b.length;
    };
    await write(Buffer.concat([head, metaBytes]));
    if (data instanceof Uint8Array) {
      crc = crc32c(data);
      payloadLen = data.length;
      await write(data);
    } else if (isAsyncIterable(data)) {
      const pending = Buffer.allocUnsafe(WRITE_CHUNK);
      let fill = 0;
      for await (const chunk of data) {
        if (!(chunk instanceof Uint8Array)) throw new TypeError("snapshot data stream must yield Uint8Array chunks");
        crc = crc32cUpdate(crc, chunk);
        payloadLen += chunk.length;
        if (fill + chunk.length > pending.length && fill > 0) {
          await write(pending.subarray(0, fill));
          fill = 0;
        }
        if (chunk.length >= pending.length) {
          await write(chunk);
        } else {
          pending.set(chunk, fill);
          fill += chunk.length;
        }
      }
      if (fill > 0) await write(pending.subarray(0, fill));
    } else {
      throw new TypeError("snapshot data must be a Uint8Array or an AsyncIterable<Uint8Array>");
    }
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeUInt32LE(payloadLen % TWO_32, 0);
    trailer.writeUInt32LE(Math.floor(payloadLen / TWO_32), 4);
    trailer.writeUInt32LE(crc, 8);
    trailer.writeUInt32LE(END_MAGIC, 12);
    await write(trailer);
    await fsync(fd);
  } catch (err) {
    await close(fd).catch(() => {});
    await fs.promises.rm(tmp, { force: true });
    throw err;
  }
  await close(fd);
  await fs.promises.rename(tmp, path);
  await fsyncDir(dir);
  return { index: meta.index, term: meta.term, path, bytes: pos };
}

interface Layout {
  meta: SnapshotMeta;
  payloadStart: number;
  payloadLen: number;
  crc: number;
}

/** Reads and checks the header and trailer (not the payload checksum). */
async function readLayout(fd: number, path: string): Promise<Layout> {
  const size = (await fs.promises.stat(path)).size;
  const bad = (why: string) => new CorruptSnapshotError(path, why);
  if (size < 16 + TRAILER_BYTES) throw bad(`file is ${size} bytes, too short for a snapshot`);
  const head = Buffer.alloc(16);
  await preadFull(fd, head, 0);
  if (!head.subarray(0, 8).equals(MAGIC)) throw bad("bad magic (not a snapshot file)");
  const metaLen = head.readUInt32LE(8);
  if (metaLen > MAX_META_BYTES || 16 + metaLen + TRAILER_BYTES > size) throw bad(`metadata length ${metaLen} does not fit the file`);
  const metaBytes = Buffer.alloc(metaLen);
  await preadFull(fd, metaBytes, 16);
  if (crc32c(metaBytes) !== head.readUInt32LE(12)) throw bad("metadata checksum mismatch");
  const meta = decodeMeta(metaBytes);
  if (typeof meta === "string") throw bad(meta);
  const trailer = Buffer.alloc(TRAILER_BYTES);
  await preadFull(fd, trailer, size - TRAILER_BYTES);
  if (trailer.readUInt32LE(12) !== END_MAGIC) throw bad("bad trailer magic (incomplete file?)");
  const payloadLen = trailer.readUInt32LE(0) + trailer.readUInt32LE(4) * TWO_32;
  const payloadStart = 16 + metaLen;
  if (payloadStart + payloadLen + TRAILER_BYTES !== size) {
    throw bad(`trailer says ${payloadLen} payload bytes but the file holds ${size - payloadStart - TRAILER_BYTES}`);
  }
  return { meta, payloadStart, payloadLen, crc: trailer.readUInt32LE(8) };
}

async function preadFull(fd: number, buf: Buffer, pos: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const n = await pread(fd, buf, off, buf.length - off, pos + off);
    if (n === 0) throw new Error("unexpected end of file");
    off += n;
  }
}

/** Streams the payload in chunks of at most chunkBytes; throws CorruptSnapshotError at the end on a bad checksum. */
export async function* snapshotFileChunks(path: string, chunkBytes = 1 << 20): AsyncGenerator<Uint8Array> {
  if (!(chunkBytes > 0)) throw new RangeError(`chunkBytes must be positive, got ${chunkBytes}`);
  const fd = await open(path, "r");
  try {
    const { payloadStart, payloadLen, crc } = await readLayout(fd, path);
    let got = 0;
    let running = 0;
    while (got < payloadLen) {
      const buf = Buffer.allocUnsafe(Math.min(chunkBytes, payloadLen - got));
      await preadFull(fd, buf, payloadStart + got);
      running = crc32cUpdate(running, buf);
      got += buf.length;
      if (got === payloadLen && running !== crc) throw new CorruptSnapshotError(path, "payload checksum mismatch");
      yield new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
    }
    if (payloadLen === 0 && crc !== 0) throw new CorruptSnapshotError(path, "payload checksum mismatch");
  } finally {
    await close(fd);
  }
}

/** Checks the whole file (streaming) and returns its metadata. */
export async function verifySnapshotFile(path: string): Promise<SnapshotMeta> {
  const fd = await open(path, "r");
  let layout: Layout;
  try {
    layout = await readLayout(fd, path);
  } finally {
    await close(fd);
  }
  for await (const _ of snapshotFileChunks(path, 4 << 20)) {
    // the generator checks the checksum at the end
  }
  return layout.meta;
}

/** Reads and checks the whole snapshot. */
export async function readSnapshotFile(path: string): Promise<{ meta: SnapshotMeta; data: Uint8Array }> {
  const fd = await open(path, "r");
  try {
    const { meta, payloadStart, payloadLen, crc } = await readLayout(fd, path);
    const data = new Uint8Array(payloadLen);
    await preadFull(fd, Buffer.from(data.buffer, data.byteOffset, data.length), payloadStart);
    if (crc32c(data) !== crc) throw new CorruptSnapshotError(path, "payload checksum mismatch");
    return { meta, data };
  } finally {
    await close(fd);
  }
}
