// The physical reference both benchmarks report against: how many `bytes`-long writes, each
// followed by fdatasync, the disk under `file` takes per second in a synchronous loop.

import fs from "node:fs";
import { performance } from "node:perf_hooks";

export function rawFdatasyncPerSec(file: string, bytes: number, seconds: number): number {
  const fd = fs.openSync(file, "w");
  const buf = Buffer.alloc(bytes, 0x61);
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let now = t0;
  try {
    while (now < end) {
      fs.writeSync(fd, buf, 0, buf.length, n * buf.length);
      fs.fdatasyncSync(fd);
      n++;
      now = performance.now();
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return n / ((now - t0) / 1000);
}
