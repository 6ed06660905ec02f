// Helpers for the storage tests (not used by production code).

import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import type { Entry } from "../raft/types.js";
import type { StorageLogger } from "./logger.js";

export interface LogLine {
  level: "info" | "warn" | "error";
  obj: Record<string, unknown>;
  msg: string;
}

/** A logger that remembers what it was told, so tests can assert on warnings. */
export class CapturingLogger implements StorageLogger {
  lines: LogLine[] = [];
  info(obj: object, msg: string): void {
    this.lines.push({ level: "info", obj: obj as Record<string, unknown>, msg });
  }
  warn(obj: object, msg: string): void {
    this.lines.push({ level: "warn", obj: obj as Record<string, unknown>, msg });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: "error", obj: obj as Record<string, unknown>, msg });
  }
  at(level: LogLine["level"]): LogLine[] {
    return this.lines.filter((l) => l.level === level);
  }
}

/** A fresh directory under the OS temp dir; remove it with the returned function. */
export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(join(os.tmpdir(), `raftkv-${tag}-`));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic entry data derived from (index, term), so a reader can check it is intact. */
export function payload(index: number, term: number, len = 16 + ((index * 7 + term * 13) % 200)): Uint8Array {
  const out = new Uint8Array(len);
  let x = (index * 2654435761 + term * 40503) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export function entry(index: number, term: number, data: Uint8Array = payload(index, term)): Entry {
  return { index, term, type: 0, data };
}

export function range(lo: number, hi: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = lo; i <= hi; i++) out.push(entry(i, term));
  return out;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

export const quietLogger: StorageLogger = { info() {}, warn() {}, error() {} };
