// Every acknowledged write survives SIGKILL. A child process (crash-child.ts) appends with group
// commit and reports each batch only after save() resolved; we kill it at random moments,
// reopen the directory, and check that the log holds exactly the acknowledged state (or that
// plus the one batch in flight, possibly cut short), intact, contiguous, with non-decreasing
// terms; that the commit index and snapshots never go back; then start the next child on it.

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { DiskStorage } from "../../services/node/storage/disk-storage.js";
import { CapturingLogger, payload, sameBytes, tempDir } from "../../services/node/storage/testutil.js";
import { CRASH_OPTIONS, snapshotPayload } from "./crash-shared.js";

const KILLS = Number(process.env.CRASH_KILLS ?? 50);
const WORKERS = 2;
const CHILD = fileURLToPath(new URL("./crash-child.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

const cleanups: Array<() => void> = [];
/** Children not yet reaped: killed before their directories are removed (e.g. on a timeout). */
const live = new Set<ChildProcess>();
let stopping = false;
after(() => {
  stopping = true;
  live.forEach((c) => c.kill("SIGKILL"));
  cleanups.forEach((c) => c());
});

/**
 * How to start the child. Bundled once with esbuild (tsx's own compiler) it starts in a
 * fraction of the time `--import tsx` takes, which is most of this test's run time; if that
 * fails for any reason, tsx it is.
 */
async function childArgs(): Promise<string[]> {
  try {
    const { build } = await import("esbuild");
    const out = join(ROOT, "node_modules", ".cache", "raftkv", `crash-child-${process.pid}.mjs`);
    await build({ entryPoints: [CHILD], outfile: out, bundle: true, platform: "node", format: "esm", packages: "external", logLevel: "silent" });
    cleanups.push(() => fs.rmSync(out, { force: true }));
    return [out];
  } catch {
    return ["--import", "tsx", CHILD];
  }
}

interface Intent {
  start: number;
  end: number;
  term: number;
  commit: number;
}

/** What the parent knows was made durable: index -> term for the live log, plus commit and snapshot. */
class Model {
  terms = new Map<number, number>();
  last = 0;
  commit = 0;
  snapshot = 0;

  /** The log with `it` written up to `upTo`, as a copy (the candidates a check compares with). */
  apply(it: Intent, upTo = it.end): Map<number, number> {
    return this.write(new Map(this.terms), it, upTo);
  }

  /** Folds in an acknowledged batch, in place: a report can hold tens of thousands of them. */
  ack(it: Intent): void {
    this.write(this.terms, it, it.end);
    this.last = it.end;
    this.commit = it.commit;
  }

  /** Writes `it` up to `upTo` into terms: from it.start on, the old suffix goes. */
  private write(terms: Map<number, number>, it: Intent, upTo: number): Map<number, number> {
    for (let i = it.start; i <= this.last; i++) terms.delete(i);
    for (let i = it.start; i <= upTo; i++) terms.set(i, it.term);
    return terms;
  }
}

function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

interface RunResult {
  signal: NodeJS.Signals | null;
  code: number | null;
  stderr: string;
  intent: Intent | null;
  acked: number;
  /** Acknowledged batches that overwrote an uncommitted suffix. */
  overwrites: number;
  ready: { last: number; commit: number } | null;
  readyMismatch?: string;
}

/**
 * Runs one child on dir, kills it after a random delay, and folds what it acknowledged into the
 * model. The child's stdout only says when it is ready (to time the kill); what it did is read
 * from its report file once it is dead (see crash-child.ts for why not from stdout).
 */
function runChild(args: string[], dir: string, report: string, seed: number, model: Model, pick: (n: number) => number): Promise<RunResult> {
  fs.rmSync(report, { force: true });
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [...args, dir, String(seed), report], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    live.add(child);
    const res: RunResult = { signal: null, code: null, stderr: "", intent: null, acked: 0, overwrites: 0, ready: null };
    const kill = () => child.kill("SIGKILL");
    // Usually kill while it appends; sometimes while it is still recovering.
    let timer: NodeJS.Timeout | null = pick(8) === 0 ? setTimeout(kill, 150 + pick(400)) : null;
    const hardStop = setTimeout(kill, 20_000);
    child.stderr!.on("data", (b: Buffer) => (res.stderr += b.toString()));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line === "ready" && timer === null) timer = setTimeout(kill, 5 + pick(150));
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      live.delete(child);
      if (timer) clearTimeout(timer);
      clearTimeout(hardStop);
      res.code = code;
      res.signal = signal;
      try {
        foldReport(fs.existsSync(report) ? fs.readFileSync(report, "utf8") : "", model, res);
      } catch (err) {
        reject(err);
        return;
      }
      resolve(res);
    });
  });
}

/** Folds the lines of a dead child's report into the model (and res: the batch in flight). */
function foldReport(text: string, model: Model, res: RunResult): void {
  // A line the kill cut short was not completely reported: an intent whose save never started,
  // or an ack the parent may not count (the batch stays in flight). Drop it.
  const lines = text.split("\n").slice(0, -1);
  for (const line of lines) {
    const [kind, ...rest] = line.split(" ");
    const n = rest.map(Number);
    if (kind === "ready") {
      res.ready = { last: n[0], commit: n[1] };
      // The child must recover exactly the state the last check saw.
      if (res.ready.last !== model.last || res.ready.commit !== model.commit) {
        res.readyMismatch = `child recovered last ${res.ready.last} commit ${res.ready.commit}, the check saw last ${model.last} commit ${model.commit}`;
      }
    } else if (kind === "intent") {
      res.intent = { start: n[0], end: n[1], term: n[2], commit: n[3] };
    } else if (kind === "ack") {
      const it = res.intent;
      if (!it) throw new Error(`the child's report has an ack without an intent:\n${lines.join("\n")}`);
      if (it.start <= model.last) res.overwrites++;
      model.ack(it);
      res.intent = null;
      res.acked++;
    } else if (kind === "snap") {
      model.snapshot = Math.max(model.snapshot, n[0]);
    } else {
      throw new Error(`unexpected line in the child's report: ${JSON.stringify(line)}`);
    }
  }
}

/** Checks the directory against the model; returns whether recovery cut off a torn record. */
async function verify(dir: string, model: Model, inFlight: Intent | null): Promise<boolean> {
  const log = new CapturingLogger();
  const s = await DiskStorage.open(dir, { ...CRASH_OPTIONS, logger: log });
  try {
    const first = s.firstIndex();
    const last = s.lastIndex();
    const snap = s.snapshot().meta;
    const hs = s.initialState().hardState;
    assert.ok(first - 1 <= snap.index, `log starts at ${first} but the snapshot is at ${snap.index}`);
    assert.ok(snap.index >= model.snapshot, `snapshot ${snap.index} went back from acknowledged ${model.snapshot}`);
    assert.ok(hs.commit >= model.commit, `commit ${hs.commit} went back from acknowledged ${model.commit}`);
    if (snap.index > 0) assert.ok(sameBytes(await s.readSnapshotData(), snapshotPayload(snap.index)), `snapshot ${snap.index} intact`);

    const disk = new Map<number, number>();
    let prevTerm = s.term(first - 1);
    for (const e of first <= last ? s.entries(first, last + 1, Infinity) : []) {
      assert.ok(sameBytes(e.data, payload(e.index, e.term, e.data.length)), `entry ${e.index} intact`);
      assert.ok(e.term >= prevTerm, `terms go down at ${e.index}: ${prevTerm} -> ${e.term}`);
      prevTerm = e.term;
      disk.set(e.index, e.term);
    }

    // The disk holds the acknowledged state, or that plus a prefix of the batch in flight.
    const candidates: Array<{ name: string; last: number; terms: Map<number, number> }> = [{ name: "acknowledged", last: model.last, terms: model.terms }];
    if (inFlight) {
      for (let m = inFlight.start; m <= inFlight.end; m++) {
        candidates.push({ name: `in-flight batch up to ${m}`, last: m, terms: model.apply(inFlight, m) });
      }
    }
    const matches = (c: (typeof candidates)[number]) => {
      if (c.last !== last) return false;
      for (const [i, t] of disk) if (c.terms.has(i) && c.terms.get(i) !== t) return false;
      for (const [i, t] of c.terms) if (i >= first && disk.get(i) !== t) return false;
      return true;
    };
    const hit = candidates.find(matches);
    if (!hit) {
      const show = (m: Map<number, number>) => [...m].filter(([i]) => i >= Math.max(first, last - 12)).map(([i, t]) => `${i}:${t}`).join(" ");
      assert.fail(
        `the log after the crash is neither the acknowledged state nor it plus the in-flight batch.\n` +
          `disk [${first}..${last}] tail: ${show(disk)}\nacknowledged last ${model.last}: ${show(model.terms)}\n` +
          `in flight: ${JSON.stringify(inFlight)}\nwarnings: ${JSON.stringify(log.at("warn"))}`,
      );
    }
    // The disk is the truth the next child starts from.
    model.terms = new Map([...disk]);
    model.last = last;
    model.commit = hs.commit;
    model.snapshot = snap.index;
    return log.at("warn").some((l) => /torn record/.test(l.msg));
  } finally {
    await s.close();
  }
}

describe("crash safety with real processes", () => {
  // 180 s for the default 50 kills (a few times what they take); more if CRASH_KILLS asks for more.
  it(`keeps every acknowledged entry through ${KILLS} SIGKILLs at random moments`, { timeout: 3_600 * Math.max(50, KILLS) }, async () => {
    const t0 = Date.now();
    const args = await childArgs();
    const stats = { kills: 0, acked: 0, overwrites: 0, tornRecoveries: 0 };
    // The first failure stops both workers; wait for the other to stop before reporting it, so
    // that no child still runs when the directories are removed.
    const outcomes = await Promise.allSettled(
      Array.from({ length: WORKERS }, async (_, w) => {
        const t = tempDir(`crash${w}`);
        cleanups.push(t.cleanup);
        const dir = join(t.dir, "data");
        const report = join(t.dir, "report");
        const model = new Model();
        const pick = rng(1000 + w);
        try {
          for (let k = w; k < KILLS && !stopping; k += WORKERS) {
            const res = await runChild(args, dir, report, 7919 * (k + 1), model, pick);
            if (stopping) break;
            if (res.signal !== "SIGKILL") assert.fail(`child exited by itself (code ${res.code}, signal ${res.signal}):\n${res.stderr}`);
            if (res.readyMismatch) assert.fail(res.readyMismatch);
            stats.kills++;
            stats.acked += res.acked;
            stats.overwrites += res.overwrites;
            if (await verify(dir, model, res.intent)) stats.tornRecoveries++;
          }
        } catch (err) {
          stopping = true;
          throw err;
        }
      }),
    );
    for (const o of outcomes) if (o.status === "rejected") throw o.reason;
    assert.equal(stats.kills, KILLS);
    assert.ok(stats.acked > KILLS, `the children acknowledged ${stats.acked} batches in ${KILLS} runs`);
    process.stderr.write(
      `crash test: ${stats.kills} kills, ${stats.acked} acknowledged batches (${stats.overwrites} overwrote a suffix), ${stats.tornRecoveries} torn tails recovered, ${Date.now() - t0} ms\n`,
    );
  });
});
