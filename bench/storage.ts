// npm run bench:storage [-- --runs 5 --seconds 1 --dir ./data/bench-storage --btree-keys 1000000]
//
// The WAL's durable append rate beside the physical limit of the same disk, measured in the
// same run and the same directory: a plain "write 100 bytes + fdatasync" loop. Batch sizes 1,
// 64 and 1024 entries of 100 bytes; the medians of several interleaved runs. Target: batch-1
// appends at >= 80% of the raw fdatasync rate. Then the B+ tree (bench/btree.ts).
// Progress goes to stderr; a Markdown table to stdout; JSON to bench/results/storage.json.

import fs from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { Command } from "commander";
import type { Entry } from "../services/node/raft/types.js";
import { DiskStorage, type DiskStorageOptions } from "../services/node/storage/disk-storage.js";
import { type BtreeBenchResult, benchBtree } from "./btree.js";
import { rawFdatasyncPerSec } from "./raw-fsync.js";

const program = new Command()
  .option("--runs <n>", "runs per measurement (the median is reported)", "5")
  .option("--seconds <s>", "seconds per run", "1")
  .option("--dir <path>", "directory on the disk to measure (created and removed)", "./data/bench-storage")
  .option("--btree-keys <n>", "keys for the B+ tree benchmark", "1000000")
  .option("--no-btree", "skip the B+ tree benchmark")
  .parse();
const opt = program.opts<{ runs: string; seconds: string; dir: string; btreeKeys: string; btree: boolean }>();
const RUNS = positiveInt("--runs", opt.runs);
const SECONDS = Number(opt.seconds);
if (!(SECONDS > 0)) throw new Error(`--seconds must be positive, got ${opt.seconds}`);
const ROOT = resolve(opt.dir, `run-${process.pid}`);
const ENTRY_BYTES = 100;

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
  return n;
}

function progress(msg: string): void {
  process.stderr.write(`[bench:storage] ${msg}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const silent = { info() {}, warn() {}, error() {} };
let runSeq = 0;
function freshDir(tag: string): string {
  const d = join(ROOT, `${tag}-${runSeq++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** The physical limit: 100 bytes appended + fdatasync, in a tight synchronous loop. */
function rawSync(seconds: number): number {
  const dir = freshDir("raw");
  try {
    return rawFdatasyncPerSec(join(dir, "raw"), ENTRY_BYTES, seconds);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The same loop through Node's async fs (two thread-pool round trips per op). */
async function rawAsync(): Promise<number> {
  const dir = freshDir("raw-async");
  const fd = fs.openSync(join(dir, "raw"), "w");
  const buf = Buffer.alloc(ENTRY_BYTES, 0x61);
  const write = (pos: number) => new Promise<void>((res, rej) => fs.write(fd, buf, 0, buf.length, pos, (e) => (e ? rej(e) : res())));
  const sync = () => new Promise<void>((res, rej) => fs.fdatasync(fd, (e) => (e ? rej(e) : res())));
  let n = 0;
  const t0 = performance.now();
  const end = t0 + SECONDS * 1000;
  let now = t0;
  while (now < end) {
    await write(n * buf.length);
    await sync();
    n++;
    now = performance.now();
  }
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  return n / ((now - t0) / 1000);
}

interface WalRun {
  batchesPerSec: number;
  entriesPerSec: number;
  p99Ms: number;
}

/** One storage per variant, opened once and appended to across the interleaved runs. */
class WalVariant {
  private index = 0;
  private constructor(
    readonly name: string,
    readonly batch: number,
    private readonly s: DiskStorage,
    private readonly dir: string,
  ) {}

  static async open(name: string, batch: number, extra: DiskStorageOptions): Promise<WalVariant> {
    const dir = freshDir(`wal${batch}`);
    const s = await DiskStorage.open(dir, { logger: silent, initialVoters: ["n1"], ...extra });
    // Preallocating the next segment is background work done once per segment: not timed.
    await s.idle();
    return new WalVariant(name, batch, s, dir);
  }

  async run(seconds: number): Promise<WalRun> {
    const { batch, s } = this;
    const data = Buffer.alloc(ENTRY_BYTES, 0x62);
    let batches = 0;
    const lat: number[] = [];
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let now = t0;
    while (now < end) {
      const entries: Entry[] = new Array(batch);
      for (let i = 0; i < batch; i++) entries[i] = { term: 1, index: ++this.index, type: 0, data };
      const b0 = now;
      await s.save({ entries, hardState: { term: 1, vote: "n1", commit: this.index }, mustSync: true });
      batches++;
      now = performance.now();
      lat.push(now - b0);
    }
    const secs = (now - t0) / 1000;
    // As the node does every N applied entries: snapshot, so the in-memory log is compacted
    // (otherwise millions of retained entries make this a garbage-collector benchmark).
    await s.createSnapshot(this.index, { voters: ["n1"], learners: [] }, new Uint8Array(0));
    await s.idle();
    lat.sort((a, b) => a - b);
    return { batchesPerSec: batches / secs, entriesPerSec: (batches * batch) / secs, p99Ms: lat[Math.floor(lat.length * 0.99)] };
  }

  async close(): Promise<void> {
    await this.s.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  fs.mkdirSync(ROOT, { recursive: true });
  progress(`disk under ${ROOT}; ${RUNS} runs x ${SECONDS}s per measurement, interleaved`);
  const raw: number[] = [];
  const rawA: number[] = [];
  const ratios: number[] = [];
  const wal: Record<string, WalRun[]> = {};
  const specs: Array<[string, number, DiskStorageOptions]> = [
    ["batch 1", 1, {}],
    ["batch 64", 64, {}],
    ["batch 1024", 1024, {}],
    ["batch 1, syncMode fdatasync", 1, { syncMode: "fdatasync" }],
    ["batch 1, thread-pool writes", 1, { writes: "threadpool" }],
    ["batch 1, no preallocation", 1, { preallocate: false }],
  ];
  const variants: WalVariant[] = [];
  try {
    for (const [name, batch, extra] of specs) variants.push(await WalVariant.open(name, batch, extra));
    // Warm up (JIT, page cache, the disk's queue) once, untimed.
    rawSync(0.2);
    for (const v of variants) await v.run(0.1);
    for (let r = 0; r < RUNS; r++) {
      // Let writeback from the previous run settle; then raw and batch-1 together, so their
      // ratio is measured under the same load; the others in a rotating order, so that none
      // always follows the heavy batch-1024 run.
      await new Promise((res) => setTimeout(res, 300));
      // Raw is measured half before and half after batch-1, bracketing it.
      const rawBefore = rawSync(SECONDS / 2);
      (wal[variants[0].name] ??= []).push(await variants[0].run(SECONDS));
      raw.push((rawBefore + rawSync(SECONDS / 2)) / 2);
      const rest = variants.slice(1);
      for (let k = 0; k < rest.length; k++) {
        const v = rest[(k + r) % rest.length];
        (wal[v.name] ??= []).push(await v.run(SECONDS));
      }
      rawA.push(await rawAsync());
      ratios.push(wal["batch 1"][r].batchesPerSec / raw[r]);
      progress(
        `run ${r + 1}/${RUNS}: raw ${raw[r].toFixed(0)}/s, node async raw ${rawA[r].toFixed(0)}/s, ` +
          variants.map((v) => `${v.name} ${wal[v.name][r].batchesPerSec.toFixed(0)} batches/s`).join(", "),
      );
    }
  } finally {
    for (const v of variants) await v.close().catch(() => {});
    fs.rmSync(ROOT, { recursive: true, force: true });
  }

  const rawMed = median(raw);
  const rows = specs.map(([name, batch]) => {
    const runs = wal[name];
    const batchesPerSec = median(runs.map((x) => x.batchesPerSec));
    return {
      name,
      batch,
      batchesPerSec,
      entriesPerSec: median(runs.map((x) => x.entriesPerSec)),
      p99Ms: median(runs.map((x) => x.p99Ms)),
      ofRawFdatasync: batchesPerSec / rawMed,
    };
  });

  let btree: BtreeBenchResult | null = null;
  if (opt.btree) {
    progress(`B+ tree: ${opt.btreeKeys} keys`);
    btree = await benchBtree({ keys: positiveInt("--btree-keys", opt.btreeKeys), runs: RUNS, onProgress: progress });
  }

  const f = (n: number) => Math.round(n).toLocaleString("en-US");
  const lines = [
    `| measurement | batches/s | entries/s | p99 batch latency | vs raw fdatasync |`,
    `|---|---:|---:|---:|---:|`,
    `| raw: write 100 B + fdatasync (sync loop, the disk's limit) | ${f(rawMed)} | ${f(rawMed)} | | 100% |`,
    `| raw through Node async fs (write, then fdatasync) | ${f(median(rawA))} | ${f(median(rawA))} | | ${((median(rawA) / rawMed) * 100).toFixed(0)}% |`,
    ...rows.map(
      (r) => `| WAL append + sync, ${r.name} x 100 B | ${f(r.batchesPerSec)} | ${f(r.entriesPerSec)} | ${r.p99Ms.toFixed(2)} ms | ${(r.ofRawFdatasync * 100).toFixed(0)}% |`,
    ),
  ];
  // The headline: batch-1 over raw, each run's pair measured back to back, median over runs.
  const paired = median(ratios);
  lines.push(
    "",
    `Batch-1 WAL appends reach ${(paired * 100).toFixed(0)}% of the raw fdatasync rate (median of per-run ratios; ` +
      `${(rows[0].ofRawFdatasync * 100).toFixed(0)}% as a ratio of medians). Target >= 80%: ${paired >= 0.8 ? "met" : "NOT met"}.`,
  );
  if (btree) {
    lines.push(
      "",
      `| B+ tree, ${f(btree.keys)} random keys (median of ${btree.runs}) | inserts/s | gets/s | inserts per CPU-s | gets per CPU-s |`,
      `|---|---:|---:|---:|---:|`,
      `| raftkv index (order 128) | ${f(btree.insertsPerSec)} | ${f(btree.getsPerSec)} | ${f(btree.cpuInsertsPerSec)} | ${f(btree.cpuGetsPerSec)} |`,
      `| seed system's headline | ${f(btree.seedHeadlineInsertsPerSec)} | | | |`,
      "",
      `B+ tree target >= 1,000,000 inserts/s: ${btree.insertsPerSec >= 1_000_000 ? "met" : "NOT met"} ` +
        `(${(btree.insertsPerSec / btree.seedHeadlineInsertsPerSec).toFixed(1)}x the seed headline).`,
    );
  }
  lines.push("", `Load average ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} CPUs at the end (other work on a shared machine skews these numbers).`);
  process.stdout.write(lines.join("\n") + "\n");

  const out = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    dir: resolve(opt.dir),
    runs: RUNS,
    secondsPerRun: SECONDS,
    entryBytes: ENTRY_BYTES,
    rawFdatasyncPerSec: { median: rawMed, runs: raw },
    rawAsyncFdatasyncPerSec: { median: median(rawA), runs: rawA },
    wal: rows.map((r) => ({ ...r, runs: wal[r.name] })),
    batch1OfRawFdatasync: { medianOfPairedRatios: paired, ratioOfMedians: rows[0].ofRawFdatasync, pairedRatios: ratios },
    targetMet: paired >= 0.8,
    btree,
    loadAverage: os.loadavg()[0],
  };
  fs.mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const file = new URL("./results/storage.json", import.meta.url);
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + "\n");
  progress(`wrote ${file.pathname}`);
}

await main();
