// npm run bench [-- --compare etcd] [--runs 3 --seconds 3 --warmup 1 --keys 10000]
//   [--rows put-seq,put-16,put-128,get-lin-128,get-ser-128] [--routing client|spread] [--calls stream|unary]
//   [--systems raftkv,etcd] [--profile DIR] [--dir PARENT] [--out FILE]
//
// Starts a fresh 3-node raftkv cluster on loopback (default timings: heartbeat 100 ms, election
// 1000 ms) and measures: one client's sequential puts (latency p50/p99 and throughput); puts with
// 16 and 128 requests in flight; linearizable and serializable gets with 128 in flight. 16-byte
// keys from a preloaded key space, 100-byte values, one gRPC channel per endpoint, warm-up not
// counted, a fixed measured duration per run. With `--compare etcd` it also starts a 3-member
// etcd (Debian's etcd-server, /usr/bin/etcd) on loopback and runs the same rows through the etcd3
// client in the same run, the two systems interleaved run by run (raftkv first on even runs,
// etcd first on odd ones) so a shared machine's load hits both alike; medians of the runs are
// reported with raftkv/etcd ratios. The raw fdatasync rate of the same disk (100 B write +
// fdatasync loop, in the same temp dir) is sampled before the rows and after each row.
// Also recorded per run: CPU of the client, each server process and everything else on the
// machine, and the servers' fsync rate, mean fsync and entries per fsync (group commit). On a
// shared machine the scheduler decides how much CPU each system gets, so the table also gives
// the ratio of operations per CPU-second (client + servers), which does not depend on that.
// RaftkvClient sends its requests as calls on a KV.Calls stream (its default); `--calls unary`
// makes it send one unary gRPC call per request, as etcd3 does.
// Extra rows for a latency ladder (not run by default): get-ser-seq, get-lin-seq.
//
// Progress goes to stderr, a Markdown table to stdout, JSON to bench/results/cluster.json.
// `--profile DIR` writes V8 CPU profiles of the raftkv nodes (whole life) and of the client
// during raftkv's measured windows to DIR and prints where the time goes.

import fs from "node:fs";
import os from "node:os";
import { execFileSync } from "node:child_process";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import { Session } from "node:inspector/promises";
import { Command } from "commander";
import { ROOT as ROOT_DIR, TestCluster } from "../test/cluster/harness.js";
import { ETCD_BIN, EtcdCluster } from "./etcd.js";
import { rawFdatasyncPerSec } from "./raw-fsync.js";
import { cpuSnapshot, cpuWindow, type CpuSnapshot, type CpuWindow } from "./procstat.js";
import { printProfileSummary, summarizeProfiles } from "./profile.js";
import { countersWindow, etcdCounters, raftkvCounters, type NodeCounters, type NodeWindow } from "./server-metrics.js";
import {
  etcdTarget,
  type KvTarget,
  makeKeys,
  preload,
  raftkvTarget,
  type Routing,
  type RunResult,
  runWorkload,
  type SystemName,
  xorshift,
} from "./workload.js";

interface RowSpec {
  id: string;
  label: string;
  op: "put" | "get";
  serializable?: boolean;
  concurrency: number;
  /** Not in the default set: a diagnostic row, run only when named in --rows. */
  extra?: boolean;
}

const ROWS: RowSpec[] = [
  { id: "put-seq", label: "put, 1 client sequential", op: "put", concurrency: 1 },
  { id: "put-16", label: "put, 16 in flight", op: "put", concurrency: 16 },
  { id: "put-128", label: "put, 128 in flight", op: "put", concurrency: 128 },
  { id: "get-lin-128", label: "linearizable get, 128 in flight", op: "get", serializable: false, concurrency: 128 },
  { id: "get-ser-128", label: "serializable get, 128 in flight", op: "get", serializable: true, concurrency: 128 },
  // Latency ladder (with put-seq): what one request costs without consensus, and with a ReadIndex round.
  { id: "get-ser-seq", label: "serializable get, 1 client sequential", op: "get", serializable: true, concurrency: 1, extra: true },
  { id: "get-lin-seq", label: "linearizable get, 1 client sequential", op: "get", serializable: false, concurrency: 1, extra: true },
];

const KEY_BYTES = 16;
const VALUE_BYTES = 100;
const HEARTBEAT_MS = 100;
const ELECTION_MS = 1000;
const FSYNC_SAMPLE_SECONDS = 1;

const program = new Command()
  .name("bench")
  .description("raftkv cluster benchmark (optionally against etcd on the same machine and disk)")
  .option("--compare <system>", "also run etcd (the only choice: etcd)")
  .option("--runs <n>", "runs per row and system; medians are reported", "3")
  .option("--seconds <s>", "measured seconds per run", "2.5")
  .option("--warmup <s>", "warm-up seconds before each run (not counted)", "1")
  .option("--keys <n>", "key space; every key is written once before the rows", "10000")
  .option("--rows <ids>", `comma-separated rows to run (default ${ROWS.filter((r) => !r.extra).map((r) => r.id).join(",")}; also ${ROWS.filter((r) => r.extra).map((r) => r.id).join(",")})`)
  .option("--systems <names>", "with --compare: which systems to measure (raftkv,etcd)", "raftkv,etcd")
  .option("--calls <c>", "how RaftkvClient sends requests: stream (calls on its KV.Calls stream, its default) or unary (one unary gRPC call each, as etcd3 does)", "stream")
  .option("--routing <r>", "raftkv client pattern: client (RaftkvClient's own policy: writes to the leader, reads round-robin) or spread (a random node per request, as etcd3 does)", "client")
  .option("--profile <dir>", "write CPU profiles of the raftkv nodes and of the client's raftkv windows to dir, and summarize them")
  .option("--dir <path>", "parent of the temp dirs (data of both systems and the fdatasync file: one disk)", os.tmpdir())
  .option("--out <file>", "JSON result file (default bench/results/cluster.json, cluster-profile.json with --profile)")
  .showHelpAfterError()
  .parse();

interface Opts {
  compare?: string;
  runs: string;
  seconds: string;
  warmup: string;
  keys: string;
  rows?: string;
  systems: string;
  routing: string;
  calls: string;
  profile?: string;
  dir: string;
  out?: string;
}
const opt = program.opts<Opts>();

function fail(msg: string): never {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}
function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) fail(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}
function positiveNumber(name: string, v: string, allowZero = false): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) fail(`${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${JSON.stringify(v)}`);
  return n;
}

if (opt.compare !== undefined && opt.compare !== "etcd") fail(`--compare must be "etcd", got ${JSON.stringify(opt.compare)}`);
if (opt.routing !== "spread" && opt.routing !== "client") fail(`--routing must be client or spread, got ${JSON.stringify(opt.routing)}`);
const ROUTING = opt.routing as Routing;
if (opt.calls !== "stream" && opt.calls !== "unary") fail(`--calls must be stream or unary, got ${JSON.stringify(opt.calls)}`);
const STREAM_CALLS = opt.calls === "stream";
const RUNS = positiveInt("--runs", opt.runs);
const SECONDS = positiveNumber("--seconds", opt.seconds);
const WARMUP = positiveNumber("--warmup", opt.warmup, true);
const KEYS = positiveInt("--keys", opt.keys);
if (String(KEYS - 1).length > KEY_BYTES - 1) fail(`--keys must be below 10^${KEY_BYTES - 1}`);
const rowIds = opt.rows ? opt.rows.split(",").map((s) => s.trim()).filter(Boolean) : ROWS.filter((r) => !r.extra).map((r) => r.id);
for (const id of rowIds) if (!ROWS.some((r) => r.id === id)) fail(`unknown row ${JSON.stringify(id)}; rows are ${ROWS.map((r) => r.id).join(", ")}`);
const rows = ROWS.filter((r) => rowIds.includes(r.id));
const wanted = new Set(opt.systems.split(",").map((s) => s.trim()));
for (const s of wanted) if (s !== "raftkv" && s !== "etcd") fail(`--systems takes raftkv and/or etcd, got ${JSON.stringify(s)}`);
const systems: SystemName[] = (["raftkv", "etcd"] as const).filter((s) => wanted.has(s) && (s === "raftkv" || opt.compare === "etcd"));
if (systems.length === 0) fail("nothing to measure: --systems names no system that runs (etcd needs --compare etcd)");
const PROFILE_DIR = opt.profile ? resolve(opt.profile) : undefined;
const PARENT = resolve(opt.dir);
if (!fs.existsSync(PARENT)) fail(`--dir ${PARENT} does not exist`);
const OUT = resolve(opt.out ?? `bench/results/${PROFILE_DIR ? "cluster-profile" : "cluster"}.json`);

function progress(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// ---- cleanup: every child process and temp dir, also on Ctrl-C -------------------------------

let raftkv: TestCluster | undefined;
let etcd: EtcdCluster | undefined;
let root: string | undefined;
const targets: KvTarget[] = [];
let aborted = false;
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const t of targets) {
      try {
        t.close();
      } catch {
        // already closed
      }
    }
    await Promise.allSettled([raftkv?.stop(), etcd?.stop()]);
    if (root) fs.rmSync(root, { recursive: true, force: true });
  })();
  return cleaning;
}

/** Last resort on exit: SIGKILL our children by PID and remove our dirs, synchronously. */
function cleanupSync(): void {
  if (raftkv) {
    for (const p of raftkv.procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    fs.rmSync(raftkv.dir, { recursive: true, force: true });
  }
  etcd?.killNow();
  if (root) fs.rmSync(root, { recursive: true, force: true });
}

for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(sig, () => {
    if (aborted) {
      cleanupSync();
      process.exit(130);
    }
    aborted = true;
    progress(`${sig}: stopping the clusters and removing the temp dirs (again to force)`);
    void cleanup().finally(() => process.exit(130));
  });
}
process.on("exit", cleanupSync);

// ---- the physical reference -------------------------------------------------------------------

/** 100 bytes written + fdatasync, in a tight loop, in a small file in our temp dir. */
function rawFdatasync(dir: string, seconds: number): number {
  return rawFdatasyncPerSec(join(dir, `fdatasync-${process.pid}`), VALUE_BYTES, seconds);
}

// ---- one measured run ---------------------------------------------------------------------------

interface RunRecord {
  row: string;
  system: SystemName;
  run: number;
  result: RunResult;
  cpu?: CpuWindow;
  nodes?: NodeWindow[];
}

interface SystemHandle {
  name: SystemName;
  target: KvTarget;
  pids: () => number[];
  counters: () => Promise<NodeCounters[]>;
}

let profileSession: Session | undefined;
/** Profiles of raftkv's measured windows: the nodes' (via bench/node-profiler.mjs) and the client's. */
const profiles: Array<{ row: string; who: "leader" | "follower" | "client"; file: string }> = [];
const profilesPerPid = new Map<number, number>();

/** Waits until a node has written its n-th profile (it does so right after the second SIGUSR2). */
async function nodeProfile(pid: number, n: number, timeoutMs = 10_000): Promise<string | undefined> {
  const file = join(PROFILE_DIR!, `node-${pid}-${n}.cpuprofile`);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (fs.existsSync(file)) return file;
    await new Promise((r) => setTimeout(r, 50));
  }
  progress(`no profile from pid ${pid} within ${timeoutMs} ms`);
  return undefined;
}

async function measure(sys: SystemHandle, row: RowSpec, run: number, keys: Buffer[], value: Buffer, seed: number): Promise<RunRecord> {
  let cpuA: CpuSnapshot | undefined;
  let cpu: CpuWindow | undefined;
  let ctrA: NodeCounters[] | undefined;
  let nodes: NodeWindow[] | undefined;
  let t0 = 0;
  const profiling = PROFILE_DIR !== undefined && sys.name === "raftkv";
  const isTty = process.stderr.isTTY;
  const tag = `${row.id} ${sys.name} run ${run + 1}/${RUNS}`;
  const result = await runWorkload(
    sys.target,
    keys,
    value,
    { op: row.op, serializable: row.serializable, concurrency: row.concurrency, warmupMs: WARMUP * 1000, durationMs: SECONDS * 1000 },
    xorshift(seed),
    {
      aborted: () => aborted,
      onWindowStart: async () => {
        ctrA = await sys.counters().catch(() => undefined);
        if (profiling) {
          for (const pid of sys.pids()) process.kill(pid, "SIGUSR2");
          profileSession ??= new Session();
          profileSession.connect();
          await profileSession.post("Profiler.enable");
          await profileSession.post("Profiler.start");
        }
        cpuA = cpuSnapshot(sys.pids());
        t0 = performance.now();
      },
      onWindowEnd: async () => {
        const b = cpuSnapshot(sys.pids());
        cpu = cpuA ? cpuWindow(cpuA, b) : undefined;
        const seconds = (performance.now() - t0) / 1000;
        if (profiling && profileSession) {
          for (const pid of sys.pids()) process.kill(pid, "SIGUSR2");
          const { profile } = await profileSession.post("Profiler.stop");
          const file = join(PROFILE_DIR!, `client-${row.id}-run${run + 1}.cpuprofile`);
          fs.writeFileSync(file, JSON.stringify(profile));
          profiles.push({ row: row.id, who: "client", file });
          profileSession.disconnect();
        }
        const ctrB = await sys.counters().catch(() => undefined);
        if (ctrA && ctrB) nodes = countersWindow(ctrA, ctrB, seconds);
        if (profiling) {
          const pids = sys.pids();
          const ids = raftkv!.specs.map((s) => s.id);
          for (const pid of pids) {
            const n = (profilesPerPid.get(pid) ?? 0) + 1;
            profilesPerPid.set(pid, n);
            const file = await nodeProfile(pid, n);
            const id = ids.find((i) => raftkv!.procs.get(i)?.pid === pid);
            const isLeader = ctrB?.find((c) => c.id === id)?.leader ?? false;
            if (file) profiles.push({ row: row.id, who: isLeader ? "leader" : "follower", file });
          }
        }
      },
      onTick: (ms, rate) => {
        if (isTty) process.stderr.write(`\r[bench] ${tag}: ${(ms / 1000).toFixed(0)}s ${rate.toFixed(0)} ops/s   `);
      },
    },
  );
  if (isTty) process.stderr.write("\r\x1b[K");
  if (aborted) return { row: row.id, system: sys.name, run, result, cpu, nodes };
  const leader = nodes?.find((n) => n.leader);
  progress(
    `${tag}: ${fmtInt(result.opsPerSec)} ops/s, p50 ${result.latencyMs.p50.toFixed(2)} ms, p99 ${result.latencyMs.p99.toFixed(2)} ms` +
      (result.errors ? `, ${result.errors} ERRORS (${result.firstError})` : "") +
      (result.misses ? `, ${result.misses} misses` : "") +
      (cpu ? `; cpu client ${pct(cpu.client)}, servers ${cpu.servers.map((s) => pct(s.cores)).join("/")}, other ${pct(cpu.other)}` : "") +
      (leader && leader.fsyncsPerSec > 0 ? `; leader ${fmtInt(leader.fsyncsPerSec)} fsync/s of ${leader.meanFsyncMs.toFixed(2)} ms, ${leader.entriesPerFsync.toFixed(1)} entries/fsync` : ""),
  );
  if (result.ops === 0 && !aborted) throw new Error(`${tag}: no operation succeeded (${result.errors} errors; first: ${result.firstError ?? "none"})`);
  return { row: row.id, system: sys.name, run, result, cpu, nodes };
}

function fmtInt(x: number): string {
  return Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "-";
}
function pct(cores: number): string {
  return `${Math.round(cores * 100)}%`;
}

// ---- summary --------------------------------------------------------------------------------------

interface SystemRow {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  errors: number;
  misses: number;
  cpu?: { clientCores: number; busiestServerCores: number; serversCores: number; otherCores: number; serverCpuMsPerOp: number; clientCpuMsPerOp: number; totalCpuMsPerOp: number };
  leader?: { fsyncsPerSec: number; meanFsyncMs: number; entriesPerFsync: number; serverPutMeanMs?: number; serverGetMeanMs?: number; readIndexPerSec?: number };
  runs: Array<Omit<RunRecord, "row" | "system">>;
}

function summarize(recs: RunRecord[]): SystemRow {
  const r = recs.map((x) => x.result);
  const cpus = recs.map((x) => x.cpu).filter((c): c is CpuWindow => !!c);
  const leaders = recs.map((x) => x.nodes?.find((n) => n.leader)).filter((n): n is NodeWindow => !!n);
  const out: SystemRow = {
    opsPerSec: median(r.map((x) => x.opsPerSec)),
    p50Ms: median(r.map((x) => x.latencyMs.p50)),
    p99Ms: median(r.map((x) => x.latencyMs.p99)),
    meanMs: median(r.map((x) => x.latencyMs.mean)),
    errors: r.reduce((s, x) => s + x.errors, 0),
    misses: r.reduce((s, x) => s + x.misses, 0),
    runs: recs.map(({ run, result, cpu, nodes }) => ({ run, result, cpu, nodes })),
  };
  if (cpus.length > 0) {
    const sum = (c: CpuWindow) => c.servers.reduce((s, x) => s + x.cores, 0);
    out.cpu = {
      clientCores: median(cpus.map((c) => c.client)),
      busiestServerCores: median(cpus.map((c) => Math.max(...c.servers.map((s) => s.cores)))),
      serversCores: median(cpus.map(sum)),
      otherCores: median(cpus.map((c) => c.other)),
      serverCpuMsPerOp: median(recs.filter((x) => x.cpu).map((x) => (sum(x.cpu!) * 1000) / Math.max(1, x.result.opsPerSec))),
      clientCpuMsPerOp: median(recs.filter((x) => x.cpu).map((x) => (x.cpu!.client * 1000) / Math.max(1, x.result.opsPerSec))),
      totalCpuMsPerOp: median(recs.filter((x) => x.cpu).map((x) => ((x.cpu!.client + sum(x.cpu!)) * 1000) / Math.max(1, x.result.opsPerSec))),
    };
  }
  if (leaders.length > 0) {
    const opt = (xs: Array<number | undefined>) => (xs.some((x) => x !== undefined) ? median(xs.filter((x): x is number => x !== undefined)) : undefined);
    out.leader = {
      fsyncsPerSec: median(leaders.map((l) => l.fsyncsPerSec)),
      meanFsyncMs: median(leaders.map((l) => l.meanFsyncMs)),
      entriesPerFsync: median(leaders.map((l) => l.entriesPerFsync)),
      serverPutMeanMs: opt(leaders.map((l) => l.serverPutMeanMs)),
      serverGetMeanMs: opt(leaders.map((l) => l.serverGetMeanMs)),
      readIndexPerSec: opt(leaders.map((l) => l.readIndexPerSec)),
    };
  }
  return out;
}

function etcdVersion(): string {
  try {
    return /etcd Version: (\S+)/.exec(execFileSync(ETCD_BIN, ["--version"], { encoding: "utf8" }))?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Compiles the node as the container image runs it (tsc, tsconfig.build.json: plain JS, no tsx
 * loader or its per-closure name helpers) into node_modules/.cache, where the dependencies
 * resolve; returns its main.js.
 */
function buildNode(): string {
  const out = join(ROOT_DIR, "node_modules", ".cache", "raftkv", "bench-build");
  progress(`compiling the node (tsc -p tsconfig.build.json) into ${out}`);
  fs.rmSync(out, { recursive: true, force: true });
  execFileSync(process.execPath, [join(ROOT_DIR, "node_modules", "typescript", "bin", "tsc"), "-p", join(ROOT_DIR, "tsconfig.build.json"), "--outDir", out], {
    cwd: ROOT_DIR,
    stdio: ["ignore", "inherit", "inherit"],
  });
  // Under node_modules, Node does not look further up for the project's "type": "module".
  fs.writeFileSync(join(out, "package.json"), JSON.stringify({ type: "module" }));
  return join(out, "services", "node", "main.js");
}

// ---- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = Date.now();
  const compare = systems.includes("etcd");
  const etcdVer = compare ? etcdVersion() : undefined;
  root = fs.mkdtempSync(join(PARENT, "raftkv-bench-"));
  if (PROFILE_DIR) fs.mkdirSync(PROFILE_DIR, { recursive: true });
  const loadStart = os.loadavg();
  progress(
    `systems ${systems.join(" + ")}${etcdVer ? ` (etcd ${etcdVer})` : ""}; rows ${rows.map((r) => r.id).join(", ")}; ` +
      `${RUNS} run(s) x (${WARMUP}s warm-up + ${SECONDS}s) per row and system; ${KEYS} keys of ${KEY_BYTES} B, values ${VALUE_BYTES} B; ` +
      `raftkv routing ${ROUTING}, ${opt.calls} calls; data under ${root}; load ${loadStart.map((l) => l.toFixed(2)).join(" ")}`,
  );

  const fsyncSamples: number[] = [];
  const sampleFsync = (when: string) => {
    const r = rawFdatasync(root!, FSYNC_SAMPLE_SECONDS);
    fsyncSamples.push(r);
    progress(`raw fdatasync (${when}): ${fmtInt(r)}/s`);
  };
  sampleFsync("before");

  const handles: SystemHandle[] = [];
  const rand = xorshift(0x5eed);
  if (systems.includes("raftkv")) {
    const nodeMain = buildNode();
    progress("starting raftkv (3 nodes)");
    // The harness puts its data dir in os.tmpdir(): point that at our root, so both systems share one disk.
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = root;
    try {
      raftkv = await TestCluster.start({
        nodes: 3,
        heartbeatMs: HEARTBEAT_MS,
        electionMs: ELECTION_MS,
        nodeMain,
        // Node 20 refuses --cpu-prof in NODE_OPTIONS; a preloaded module profiles on SIGUSR2 instead.
        env: PROFILE_DIR
          ? {
              NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${pathToFileURL(join(import.meta.dirname, "node-profiler.mjs")).href}`.trim(),
              RAFTKV_BENCH_PROFILE_DIR: PROFILE_DIR,
            }
          : {},
      });
    } finally {
      if (savedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = savedTmp;
    }
    let leader: string;
    try {
      leader = await raftkv.waitForLeader({ timeoutMs: 30_000 });
    } catch (e) {
      for (const s of raftkv.specs) progress(`${s.id} log tail:\n${raftkv.logText(s.id).split("\n").slice(-15).join("\n")}`);
      throw e;
    }
    progress(`raftkv ready: leader ${leader}; endpoints ${raftkv.endpoints().join(" ")}`);
    const c = raftkv;
    const t = raftkvTarget(c.endpoints(), ROUTING, rand, STREAM_CALLS);
    targets.push(t);
    handles.push({
      name: "raftkv",
      target: t,
      pids: () => c.specs.map((s) => c.procs.get(s.id)?.pid).filter((p): p is number => typeof p === "number"),
      counters: () => raftkvCounters(c.specs),
    });
  }
  if (compare) {
    progress("starting etcd (3 members)");
    etcd = await EtcdCluster.start({ parentDir: root, heartbeatMs: HEARTBEAT_MS, electionMs: ELECTION_MS });
    await etcd.waitForLeader(30_000);
    progress(`etcd ready: endpoints ${etcd.endpoints().join(" ")}`);
    const e = etcd;
    const t = etcdTarget(e.endpoints());
    targets.push(t);
    handles.push({ name: "etcd", target: t, pids: () => e.pids(), counters: () => etcdCounters(e.members) });
  }

  // Every data dir must be on the disk the fdatasync reference measures.
  const dev = fs.statSync(root).dev;
  for (const d of [raftkv?.dir, ...(etcd?.members.map((m) => m.dataDir) ?? [])]) {
    if (d && fs.statSync(d).dev !== dev) throw new Error(`${d} is not on the same device as ${root}`);
  }

  const keys = makeKeys(KEYS, KEY_BYTES);
  const value = Buffer.alloc(VALUE_BYTES);
  for (let i = 0; i < VALUE_BYTES; i++) value[i] = 0x21 + Math.floor(rand() * 94);
  const preloadRates: Record<string, number> = {};
  for (const h of handles) {
    progress(`${h.name}: preloading ${KEYS} keys (128 in flight, not measured)`);
    preloadRates[h.name] = await preload(h.target, keys, value, 128, 120_000);
    progress(`${h.name}: preloaded at ${fmtInt(preloadRates[h.name]!)} puts/s`);
    if (aborted) return;
  }

  const records: RunRecord[] = [];
  let seed = 1;
  for (const row of rows) {
    for (let run = 0; run < RUNS; run++) {
      // Alternate which system goes first, so a drift in the machine's load hits both alike.
      const order = run % 2 === 0 ? handles : [...handles].reverse();
      for (const h of order) {
        if (aborted) return;
        records.push(await measure(h, row, run, keys, value, seed++));
      }
    }
    sampleFsync(`after ${row.id}`);
  }
  if (aborted) return;

  // ---- stop, then report -------------------------------------------------------------------------
  for (const t of targets) t.close();
  targets.length = 0;
  await cleanup();

  const loadEnd = os.loadavg();
  const summary = rows.map((row) => {
    const per: Partial<Record<SystemName, SystemRow>> = {};
    for (const s of systems) per[s] = summarize(records.filter((r) => r.row === row.id && r.system === s));
    const ratio = per.raftkv && per.etcd ? per.raftkv.opsPerSec / per.etcd.opsPerSec : undefined;
    // Operations per CPU-second (client + servers), raftkv over etcd: how the two compare when the
    // machine is shared and the scheduler, not the systems, decides who gets how much CPU.
    const cpuRatio = per.raftkv?.cpu && per.etcd?.cpu ? per.etcd.cpu.totalCpuMsPerOp / per.raftkv.cpu.totalCpuMsPerOp : undefined;
    return { ...row, ...per, ratio, cpuRatio };
  });
  const rawMedian = median(fsyncSamples);
  const doc = {
    benchmark: "cluster",
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? "", memoryGiB: os.totalmem() / 2 ** 30, kernel: os.release(), loadavgStart: loadStart, loadavgEnd: loadEnd },
    node: process.version,
    etcdVersion: etcdVer,
    config: {
      runs: RUNS,
      warmupSeconds: WARMUP,
      secondsPerRun: SECONDS,
      keys: KEYS,
      keyBytes: KEY_BYTES,
      valueBytes: VALUE_BYTES,
      heartbeatMs: HEARTBEAT_MS,
      electionMs: ELECTION_MS,
      channelsPerEndpoint: 1,
      order: "per row: runs interleaved, raftkv first on even runs and etcd first on odd runs",
      raftkvRouting: ROUTING,
      raftkvCalls: opt.calls,
      clients: Object.fromEntries(handles.map((h) => [h.name, h.target.description])),
      disk: `every data dir and the fdatasync file under one temp dir in ${PARENT}`,
      profile: PROFILE_DIR ?? null,
    },
    rawFdatasyncPerSec: { median: rawMedian, samples: fsyncSamples },
    preloadPutsPerSec: preloadRates,
    rows: summary,
  };
  fs.mkdirSync(resolve(OUT, ".."), { recursive: true });
  fs.writeFileSync(OUT, JSON.stringify(doc, null, 2) + "\n");
  progress(`wrote ${OUT} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);

  // ---- Markdown -------------------------------------------------------------------------------------
  const lines: string[] = [];
  const ms = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "-" : x < 10 ? x.toFixed(2) : x.toFixed(1));
  lines.push(
    `3-node clusters on loopback (heartbeat ${HEARTBEAT_MS} ms, election ${ELECTION_MS} ms, fsync on), ${KEY_BYTES} B keys (${KEYS} preloaded), ${VALUE_BYTES} B values, ` +
      `one gRPC channel per endpoint, ${ROUTING === "spread" ? "a random endpoint per request" : "each system's own client policy (raftkv: writes to the leader, reads round-robin; etcd3: a random endpoint per request)"}, ` +
      `${STREAM_CALLS ? "RaftkvClient's calls on one KV.Calls stream per channel (etcd3: unary calls)" : "unary calls for both"}; median of ${RUNS} run(s) of ${SECONDS} s after ${WARMUP} s warm-up; ` +
      `${os.cpus().length} CPUs, load ${loadStart[0]!.toFixed(1)} -> ${loadEnd[0]!.toFixed(1)}; raw fdatasync of the same disk ${fmtInt(rawMedian)}/s (median of ${fsyncSamples.length}: ${fsyncSamples.map(fmtInt).join(", ")}).`,
    "",
  );
  if (compare && systems.includes("raftkv")) {
    lines.push(
      `| workload | raftkv ops/s | raftkv p50 / p99 ms | etcd ${etcdVer} ops/s | etcd p50 / p99 ms | raftkv/etcd | raftkv/etcd per CPU-second |`,
      "|---|---:|---:|---:|---:|---:|---:|",
    );
    for (const r of summary) {
      const a = r.raftkv!;
      const b = r.etcd!;
      lines.push(
        `| ${r.label} | ${fmtInt(a.opsPerSec)} | ${ms(a.p50Ms)} / ${ms(a.p99Ms)} | ${fmtInt(b.opsPerSec)} | ${ms(b.p50Ms)} / ${ms(b.p99Ms)} | ` +
          `${r.ratio!.toFixed(2)}${r.ratio! >= 1 ? "" : " ✗"} | ${r.cpuRatio === undefined ? "-" : r.cpuRatio.toFixed(2)} |`,
      );
    }
  } else {
    const s = systems[0]!;
    lines.push(`| workload | ${s} ops/s | p50 / p99 ms |`, "|---|---:|---:|");
    for (const r of summary) lines.push(`| ${r.label} | ${fmtInt(r[s]!.opsPerSec)} | ${ms(r[s]!.p50Ms)} / ${ms(r[s]!.p99Ms)} |`);
  }
  lines.push(
    "",
    "Where the time goes (medians; CPU in cores, 1.0 = one core busy, from /proc; \"other work\" is everything else on the machine;",
    "fsync figures from the leader's own counters: raftkv's is the WAL save as its driver awaits it, event-loop wake-up included; etcd's is the fdatasync call):",
    "",
    "| workload | system | client CPU | busiest server | all servers | other work | CPU ms/op client + servers | leader fsync/s | mean fsync ms | entries/fsync | errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  for (const r of summary) {
    for (const s of systems) {
      const x = r[s]!;
      const c = x.cpu;
      const l = x.leader;
      lines.push(
        `| ${r.label} | ${s} | ${c ? c.clientCores.toFixed(2) : "-"} | ${c ? c.busiestServerCores.toFixed(2) : "-"} | ${c ? c.serversCores.toFixed(2) : "-"} | ${c ? c.otherCores.toFixed(2) : "-"} | ` +
          `${c ? `${c.clientCpuMsPerOp.toFixed(3)} + ${c.serverCpuMsPerOp.toFixed(3)}` : "-"} | ${l && l.fsyncsPerSec > 0 ? fmtInt(l.fsyncsPerSec) : "-"} | ${l && l.fsyncsPerSec > 0 ? ms(l.meanFsyncMs) : "-"} | ${l && l.fsyncsPerSec > 0 ? l.entriesPerFsync.toFixed(1) : "-"} | ${x.errors}${x.misses ? ` (+${x.misses} misses)` : ""} |`,
      );
    }
  }
  process.stdout.write(lines.join("\n") + "\n");

  if (PROFILE_DIR) {
    const groups = rows.flatMap((row) =>
      (["leader", "follower", "client"] as const).map((who) => ({
        label: `${row.id}: raftkv ${who === "follower" ? "followers (both, added up)" : who === "client" ? "client (bench process)" : "leader"}, ${RUNS} run(s)`,
        files: profiles.filter((p) => p.row === row.id && p.who === who).map((p) => p.file),
      })),
    );
    process.stdout.write(`\n## CPU profiles of raftkv's measured windows (files in ${PROFILE_DIR})\n`);
    printProfileSummary(summarizeProfiles(groups), process.stdout);
  }
}

main().then(
  () => {
    if (aborted) return; // the signal handler exits once cleanup is done
    process.exit(0);
  },
  async (e: Error) => {
    process.stderr.write(`bench: ${e.stack ?? e.message}\n`);
    await cleanup();
    process.exit(1);
  },
);
