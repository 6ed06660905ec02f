// B+ tree index benchmark: random inserts and gets of N 16-byte keys (1M by default) into the
// state machine's index (services/node/kv/btree.ts, order 128), beside the seed system's
// headline of ~250,000 inserts/s and, standalone, `sorted-btree` at the same order and keys.
//
//   node --import tsx bench/btree.ts [--keys 1000000] [--runs 5] [--no-compare]
//
// Rates are wall-clock medians over runs. Keys are converted to the index's binary-string form
// before timing (the state machine converts each key once per command, outside the tree).
// Results go to stdout as a table and to bench/results/btree.json. bench/storage.ts calls
// benchBtree() for its combined report.

import fs from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import vm from "node:vm";
import sortedBtree from "sorted-btree";
import { BTreeIndex, toBinaryKey } from "../services/node/kv/btree.js";

const SortedBTree = sortedBtree.default;
const SEED_HEADLINE_INSERTS_PER_SEC = 250000 as const;
const KEY_BYTES = 16;

export interface BtreeBenchOptions {
  keys: number;
  runs: number;
  onProgress?: (msg: string) => void;
  /** Also measure sorted-btree (maxNodeSize 128) on the same keys. */
  compareSortedBtree?: boolean;
}

export interface BtreeBenchResult {
  /** Median wall-clock rates: the headline numbers. */
  insertsPerSec: number;
  getsPerSec: number;
  seedHeadlineInsertsPerSec: 250000;
  /**
   * Median rates per second of the process's CPU time. On a shared machine other processes
   * stretch wall-clock time; CPU time shows what the code itself does per core.
   */
  cpuInsertsPerSec: number;
  cpuGetsPerSec: number;
  keys: number;
  runs: number;
  /** Per-run wall-clock rates, in run order. */
  insertRuns: number[];
  getRuns: number[];
  sortedBtree?: { insertsPerSec: number; getsPerSec: number; cpuInsertsPerSec: number; cpuGetsPerSec: number };
  /** 1-minute load average when the runs ended (other work on the machine skews wall clock). */
  loadAverage: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** n random 16-byte keys from a seeded PRNG (xorshift128+ style), so a run can be repeated. */
function randomKeys(n: number, seed: number): string[] {
  const raw = Buffer.allocUnsafe(n * KEY_BYTES);
  let a = (seed * 0x9e3779b9) | 1;
  let b = 0x6a09e667 ^ seed;
  for (let off = 0; off < raw.length; off += 4) {
    let t = a ^ (a << 11);
    a = b;
    b = b ^ (b >>> 19) ^ (t ^ (t >>> 8));
    t = b;
    raw.writeInt32LE(t | 0, off);
  }
  const keys = new Array<string>(n);
  for (let i = 0; i < n; i++) keys[i] = toBinaryKey(raw.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES));
  return keys;
}

/** Ops per second of wall-clock time and of this process's CPU time (user + system, all threads). */
interface Rates {
  wall: number;
  cpu: number;
}

function timed(n: number, fn: () => void): Rates {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { wall: n / wall, cpu: n / ((c.user + c.system) / 1e6) };
}

interface RunRates {
  insert: Rates;
  get: Rates;
}

function runIndex(keys: string[]): RunRates {
  const tree = new BTreeIndex<number>(128);
  const insert = timed(keys.length, () => {
    for (let i = 0; i < keys.length; i++) tree.set(keys[i], i);
  });
  let found = 0;
  const get = timed(keys.length, () => {
    for (let i = 0; i < keys.length; i++) if (tree.get(keys[i]) !== undefined) found++;
  });
  if (found !== keys.length || tree.size !== keys.length) throw new Error(`index lost keys: ${found}/${tree.size} of ${keys.length}`);
  return { insert, get };
}

function runSortedBtree(keys: string[]): RunRates {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const tree = new SortedBTree<string, number>(undefined, cmp, 128);
  const insert = timed(keys.length, () => {
    for (let i = 0; i < keys.length; i++) tree.set(keys[i], i);
  });
  let found = 0;
  const get = timed(keys.length, () => {
    for (let i = 0; i < keys.length; i++) if (tree.get(keys[i]) !== undefined) found++;
  });
  if (found !== keys.length) throw new Error("sorted-btree lost keys");
  return { insert, get };
}

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * A full garbage collection between runs (outside the timed loops), so a run does not pay for
 * collecting the previous run's million-key tree.
 */
const collectGarbage: () => void = (() => {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    if (typeof gc === "function") return () => gc();
  } catch {
    // fall through: no forced collections
  }
  return () => {};
})();

export async function benchBtree(opts: BtreeBenchOptions): Promise<BtreeBenchResult> {
  const { keys: n, runs } = opts;
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`keys must be a positive integer, got ${n}`);
  if (!Number.isSafeInteger(runs) || runs < 1) throw new RangeError(`runs must be a positive integer, got ${runs}`);
  const progress = opts.onProgress ?? (() => {});
  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const mine: RunRates[] = [];
  const sb: RunRates[] = [];
  runIndex(randomKeys(Math.min(n, 50_000), 0)); // warm up the JIT
  // All runs of the index first, then sorted-btree's on the same keys (regenerated from the
  // seed, not kept: a few million live strings would tax every run's garbage collection).
  for (let r = 0; r < runs; r++) {
    let keys: string[] | null = randomKeys(n, r + 1); // fresh keys per run, from a seed
    collectGarbage();
    const m = runIndex(keys);
    keys = null;
    mine.push(m);
    progress(`btree run ${r + 1}/${runs}: ${f(m.insert.wall)} inserts/s, ${f(m.get.wall)} gets/s (per CPU-second ${f(m.insert.cpu)} / ${f(m.get.cpu)})`);
    await yieldToLoop();
  }
  if (opts.compareSortedBtree) {
    runSortedBtree(randomKeys(Math.min(n, 50_000), 0));
    for (let r = 0; r < runs; r++) {
      const keys = randomKeys(n, r + 1);
      collectGarbage();
      const x = runSortedBtree(keys);
      sb.push(x);
      progress(`sorted-btree run ${r + 1}/${runs}: ${f(x.insert.wall)} inserts/s, ${f(x.get.wall)} gets/s (per CPU-second ${f(x.insert.cpu)} / ${f(x.get.cpu)})`);
      await yieldToLoop();
    }
  }
  const med = (rs: RunRates[], pick: (r: RunRates) => number) => median(rs.map(pick));
  return {
    insertsPerSec: med(mine, (r) => r.insert.wall),
    getsPerSec: med(mine, (r) => r.get.wall),
    seedHeadlineInsertsPerSec: SEED_HEADLINE_INSERTS_PER_SEC,
    cpuInsertsPerSec: med(mine, (r) => r.insert.cpu),
    cpuGetsPerSec: med(mine, (r) => r.get.cpu),
    keys: n,
    runs,
    insertRuns: mine.map((r) => r.insert.wall),
    getRuns: mine.map((r) => r.get.wall),
    ...(sb.length > 0
      ? {
          sortedBtree: {
            insertsPerSec: med(sb, (r) => r.insert.wall),
            getsPerSec: med(sb, (r) => r.get.wall),
            cpuInsertsPerSec: med(sb, (r) => r.insert.cpu),
            cpuGetsPerSec: med(sb, (r) => r.get.cpu),
          },
        }
      : {}),
    loadAverage: os.loadavg()[0],
  };
}

function flag(args: string[], name: string, def: number): number {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isSafeInteger(v) || v < 1) {
    process.stderr.write(`${name} needs a positive integer, got ${args[i + 1]}\n`);
    process.exit(2);
  }
  return v;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const keys = flag(args, "--keys", 1_000_000);
  const runs = flag(args, "--runs", 5);
  const compare = !args.includes("--no-compare");
  const res = await benchBtree({ keys, runs, compareSortedBtree: compare, onProgress: (m) => process.stderr.write(m + "\n") });
  const f = (x: number) => Math.round(x).toLocaleString("en-US");
  const lines = [
    `| B+ tree, ${f(keys)} random ${KEY_BYTES}-byte keys (median of ${runs}) | inserts/s | gets/s | inserts per CPU-s | gets per CPU-s |`,
    `|---|---:|---:|---:|---:|`,
    `| raftkv index (services/node/kv/btree.ts, order 128) | ${f(res.insertsPerSec)} | ${f(res.getsPerSec)} | ${f(res.cpuInsertsPerSec)} | ${f(res.cpuGetsPerSec)} |`,
    ...(res.sortedBtree
      ? [
          `| sorted-btree 2.x, maxNodeSize 128, same keys | ${f(res.sortedBtree.insertsPerSec)} | ${f(res.sortedBtree.getsPerSec)} | ${f(res.sortedBtree.cpuInsertsPerSec)} | ${f(res.sortedBtree.cpuGetsPerSec)} |`,
        ]
      : []),
    `| seed system's headline | ${f(res.seedHeadlineInsertsPerSec)} | | | |`,
    "",
    `Target >= 1,000,000 inserts/s: ${res.insertsPerSec >= 1_000_000 ? "met" : "NOT met"} in wall-clock time (${(res.insertsPerSec / res.seedHeadlineInsertsPerSec).toFixed(1)}x the seed headline), ` +
      `${res.cpuInsertsPerSec >= 1_000_000 ? "met" : "NOT met"} per CPU-second. Load average ${res.loadAverage.toFixed(2)} on ${os.cpus().length} CPUs.`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  const out = join(dirname(fileURLToPath(import.meta.url)), "results", "btree.json");
  fs.mkdirSync(dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, ...res }, null, 2) + "\n");
  process.stderr.write(`wrote ${out}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === fs.realpathSync(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
