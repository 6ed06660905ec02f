// `npm run sim -- [--seeds N] [--steps M] [--nodes 3|5|both] [--start S] [--seed S] [--fault F]`
// Runs the deterministic simulator over many seeds with a progress bar, and prints the first
// failure with its trace and the one command that replays it.

import { Command, Option } from "commander";
import { type SimResult, type StorageFault, formatFailure, runSeed } from "./simulator.js";

const program = new Command()
  .name("npm run sim --")
  .description("Deterministic simulation of the Raft core: many seeded schedules of drops, duplicates, reordering, partitions and crash-restarts, with the Raft invariants checked after every step.")
  .option("--seeds <n>", "how many seeds to run", "500")
  .option("--steps <n>", "steps per seed", "2000")
  .option("--start <n>", "first seed", "1")
  .option("--seed <n>", "run just this seed (replay)")
  .addOption(new Option("--nodes <n>", "cluster size").choices(["3", "5", "both"]).default("both"))
  .addOption(new Option("--fault <f>", "break storage on purpose").choices(["none", "forget-vote", "ack-unpersisted"]).default("none"))
  .option("--trace <n>", "trace lines to keep for a failure", "40")
  .option("--disk", "run the nodes on the real DiskStorage (a temp dir) instead of memory")
  .option("--keep-going", "run all seeds even after a failure");
program.parse();
const o = program.opts<{ seeds: string; steps: string; start: string; seed?: string; nodes: string; fault: StorageFault; trace: string; keepGoing?: boolean; disk?: boolean }>();

function int(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const steps = int("steps", o.steps);
const start = o.seed !== undefined ? int("seed", o.seed) : int("start", o.start);
const count = o.seed !== undefined ? 1 : int("seeds", o.seeds);
const sizeFor = (seed: number): number => (o.nodes === "both" ? (seed % 2 === 0 ? 5 : 3) : Number(o.nodes));

const tty = process.stderr.isTTY;
const t0 = performance.now();
const failures: SimResult[] = [];
let totalSteps = 0;
let lastDraw = 0;
const agg = { leadersSeen: 0, writesAcked: 0, readsServed: 0, crashes: 0, snapshotsSent: 0, messages: 0 };

function progress(done: number, force = false): void {
  const now = performance.now();
  if (!force && now - lastDraw < 200) return;
  lastDraw = now;
  const secs = (now - t0) / 1000;
  const width = 30;
  const filled = Math.round((done / count) * width);
  const line = `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${count} seeds  ${(totalSteps / Math.max(secs, 1e-3)).toFixed(0)} steps/s  ${failures.length} failed`;
  if (tty) process.stderr.write(`\r${line}`);
  else if (force || done % Math.max(1, Math.floor(count / 10)) === 0) process.stderr.write(`${line}\n`);
}

for (let i = 0; i < count; i++) {
  const seed = start + i;
  const r = await runSeed({ seed, steps, nodes: sizeFor(seed), fault: o.fault, traceLines: int("trace", o.trace), storage: o.disk ? "disk" : "memory" });
  totalSteps += steps;
  for (const k of Object.keys(agg) as Array<keyof typeof agg>) agg[k] += r.stats[k];
  if (!r.ok) {
    failures.push(r);
    if (!o.keepGoing) break;
  }
  progress(i + 1);
}
progress(Math.round(totalSteps / steps), true);
if (tty) process.stderr.write("\n");
const secs = (performance.now() - t0) / 1000;
const ran = Math.round(totalSteps / steps);
console.log(
  `${ran} seeds x ${steps} steps in ${secs.toFixed(1)} s: ${(ran / secs).toFixed(1)} seeds/s, ${(totalSteps / secs).toFixed(0)} steps/s; ` +
    `leaders ${agg.leadersSeen}, writes acked ${agg.writesAcked}, linearizable reads ${agg.readsServed}, crashes ${agg.crashes}, snapshots sent ${agg.snapshotsSent}, messages ${agg.messages}`,
);
if (failures.length) {
  for (const f of failures.slice(0, 3)) console.log(formatFailure(f, o.fault));
  console.log(`${failures.length} of ${ran} seeds violated an invariant`);
  process.exit(1);
}
console.log("no invariant violated");
