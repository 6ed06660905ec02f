// Child process for crash.test.ts: appends to a DiskStorage as a raft follower would (batches
// with group commit, sometimes overwriting an uncommitted suffix with a newer term, snapshots
// streamed in the background) until it is SIGKILLed. It reports on stdout, one line each:
//   ready <lastIndex> <commit>            after recovery
//   intent <start> <end> <term> <commit>  before a save
//   ack                                   after that save resolved (the batch is durable)
//   snap <index>                          after a snapshot is durable
// Usage: node --import tsx test/storage/crash-child.ts <dir> <seed>

import { DiskStorage } from "../../services/node/storage/disk-storage.js";
import type { Entry } from "../../services/node/raft/types.js";
import { payload } from "../../services/node/storage/testutil.js";
import { CRASH_OPTIONS, entryBytes, snapshotPayload } from "./crash-shared.js";

const [dir, seedArg] = process.argv.slice(2);
if (!dir || !seedArg) {
  process.stderr.write("usage: crash-child.ts <dir> <seed>\n");
  process.exit(2);
}
let x = Number(seedArg) >>> 0 || 1;
function rnd(n: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return (x >>> 0) % n;
}
const out = (line: string) => process.stdout.write(line + "\n"); // synchronous for pipes on Linux

const logger = {
  info() {},
  warn: (o: object, m: string) => process.stderr.write(`warn: ${m} ${JSON.stringify(o)}\n`),
  error: (o: object, m: string) => process.stderr.write(`error: ${m} ${JSON.stringify(o)}\n`),
};
const s = await DiskStorage.open(dir, { ...CRASH_OPTIONS, logger });
let last = s.lastIndex();
let commit = s.initialState().hardState.commit;
let term = Math.max(s.initialState().hardState.term, s.term(last), 1);
out(`ready ${last} ${commit}`);

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
  const newCommit = Math.min(end, commit + rnd(n + 4));
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
