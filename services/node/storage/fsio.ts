// Small promise wrappers over Node's callback fs API. The hot path (write, fdatasync) uses
// callbacks rather than fs/promises FileHandles: one libuv request each, no handle objects.

import fs from "node:fs";

export function pwrite(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Writes all of buf[off, off+len) at pos, looping over short writes. */
export async function pwriteAll(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<void> {
  while (len > 0) {
    const n = await pwrite(fd, buf, off, len, pos);
    if (n <= 0) throw new Error(`write returned ${n}`);
    off += n;
    len -= n;
    pos += n;
  }
}

/** pwriteAll on the calling thread (fs.writeSync), for writes that block the event loop by design. */
export function pwriteAllSync(fd: number, buf: Uint8Array, off: number, len: number, pos: number): void {
  while (len > 0) {
    const n = fs.writeSync(fd, buf, off, len, pos);
    if (n <= 0) throw new Error(`write returned ${n}`);
    off += n;
    len -= n;
    pos += n;
  }
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function fsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

export function open(path: string, flags: string | number, mode = 0o644): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function ftruncate(fd: number, len: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));
}

export function pread(fd: number, buf: Uint8Array, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Makes creations, renames and deletions in a directory durable (POSIX needs the directory fsynced). */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, fs.constants.O_RDONLY);
  try {
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

/** Truncates a file to len bytes and makes the new length durable. */
export async function truncateFile(path: string, len: number): Promise<void> {
  const fd = await open(path, "r+");
  try {
    await ftruncate(fd, len);
    await fsync(fd);
  } finally {
    await close(fd);
  }
}

/** Creates dir (and parents) if missing; fsyncs the parent when it had to create it. */
export async function ensureDir(dir: string, parent: string): Promise<void> {
  try {
    await fs.promises.mkdir(dir);
    await fsyncDir(parent);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
}
