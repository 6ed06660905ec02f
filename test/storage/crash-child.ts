// Child process for crash.test.ts: appends to a DiskStorage as a raft follower would (batches
// with group commit, sometimes overwriting an uncommitted suffix with a newer term, snapshots
// streamed in the background) until it is SIGKILLed. It reports to <report>, one line each:
//   ready <lastIndex> <commit>            after recovery
//   intent <start> <end> <term> <commit>  before a save
//   ack                                   after that save resolved (the batch is durable)
//   snap <index>                          after a snapshot is durable
// and prints just "ready" on stdout, so the parent knows when to start the clock for the kill.
//
// The report is a file written with write(2) (fs.writeSync): once the call returns, the line is
// in the kernel's page cache, which a SIGKILL of this process cannot take back. stdout cannot
// carry it: the parent's end is a UNIX socket, whose send buffer fills after a few hundred
// small writes when the parent does not read for a moment (2 cores, the parent verifying the
// other worker); Node then queues further writes in this process's memory, and the kill drops
// them, so the parent would miss acknowledgements of batches that are on disk.
// Usage: node --import tsx test/storage/crash-child.ts <dir> <seed> <report>

import fs from "node:fs";
import { DiskStorage } from "../../services/node/storage/disk-storage.js";
import type { Entry } from "../../services/node/raft/types.js";
import { payload } from "../../services/node/storage/testutil.js";
import { CRASH_OPTIONS, entryBytes, snapshotPayload } from "./crash-shared.js";

const [dir, seedArg, reportPath] = process.argv.slice(2);
if (!dir || !seedArg || !reportPath) {
  process.stderr.write("usage: crash-child.ts <dir> <seed> <report>\n");
  process.exit(2);
}
let x = Number(seedArg) >>> 0 || 1;
function rnd(n: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) % n;
}
const report = fs.openSync(reportPath, "wx"); // the parent removed the last run's
function out(line: string): void {
  const b = Buffer.from(line + "\n");
  for (let off = 0; off < b.length; ) off += fs.writeSync(report, b, off, b.length - off);
}

const logger = {
  info() {},
  warn: (o: object, m: string) => process.stderr.write(`warn: ${m} ${JSON.stringify(o)}\n`),
  error: (o: object, m: string) => process.stderr.write(`error: ${m} ${JSON.stringify(o)}\n`),
};
// Both places a durable write can run: on the event loop (the default) and on the thread pool.
const s = await DiskStorage.open(dir, { ...CRASH_OPTIONS, logger, writes: Number(seedArg) % 2 === 0 ? "threadpool" : "inline" });
let last = s.lastIndex();
let commit = s.initialState().hardState.commit;
let term = Math.max(s.initialState().hardState.term, s.term(last), 1);
out(`ready ${last} ${commit}`);
process.stdout.write("ready\n");

let snapshotting = false;
const deadline = Date.now() + 30_000; // the parent kills long before; never outlive it
while (Date.now() < deadline) {
  let start = last + 1;
  if (last > commit && rnd(100) < 15) start = last - rnd(Math.min(5, last - commit)); // overwrite an uncommitted suffix
  if (start <= last || rnd(100) < 3) term++;
  const n = 1 + rnd(16);
  const big = rnd(100) < 8;
  const ents: Entry[] = [];
  for (let i = start; i < start + n; i++) ents.push({ index: i, term, type: 0, data: payload(i, term, entryBytes(i, term, big)) });
  const end = start + n - 1;
  // The commit index moves on by n + 1.5 on average, a little faster than the log grows, so the
  // uncommitted tail stays short (a dozen entries or so) as a follower's does. (Slower, the tail
  // would grow with every run and so would each check's work: the test got slower than linear
  // in CRASH_KILLS.)
  const newCommit = Math.min(end, commit + rnd(2 * n + 4));
  out(`intent ${start} ${end} ${term} ${newCommit}`);
  await s.save({ entries: ents, hardState: { term, vote: "n1", commit: newCommit }, mustSync: true });
  out("ack");
  last = end;
  commit = newCommit;
  if (!snapshotting && commit > s.snapshot().meta.index && rnd(100) < 6) {
    snapshotting = true;
    const at = commit;
    const data = snapshotPayload(at);
    async function* chunks() {
      for (let p = 0; p < data.length; p += 700) {
        yield data.subarray(p, p + 700);
        await new Promise((r) => setImmediate(r));
      }
    }
    s.createSnapshot(at, { voters: ["n1"], learners: [] }, chunks()).then(
      () => {
        out(`snap ${at}`);
        snapshotting = false;
      },
      (err: unknown) => {
        process.stderr.write(`snapshot failed: ${String(err)}\n`);
        process.exit(3);
      },
    );
  }
}
await s.close();
