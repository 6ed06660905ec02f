// Summarizes V8 .cpuprofile files (node --cpu-prof, or the inspector's Profiler): where a
// process spent its CPU, by area (grpc-js, protobuf, raft core, WAL, driver loop, ...), its
// hottest functions by self time, and the project's own functions by inclusive time.
// Usable on its own: node --import tsx bench/profile.ts FILE.cpuprofile...

import fs from "node:fs";
import { fileURLToPath } from "node:url";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  label: string;
  file: string;
  /** Wall time the profile covers and the part of it the thread was busy (not idle), ms. */
  wallMs: number;
  busyMs: number;
  /** Self time by area, ms, largest first. */
  areas: Array<{ area: string; ms: number }>;
  /** Hottest functions by self time. */
  topSelf: Array<{ fn: string; area: string; ms: number }>;
  /** The project's own functions (services/) by inclusive time. */
  topInclusive: Array<{ fn: string; area: string; ms: number }>;
}

const SPECIAL: Record<string, string> = {
  "(idle)": "idle",
  "(garbage collector)": "GC",
  "(program)": "V8/native (unattributed)",
  "(root)": "V8/native (unattributed)",
};

/** The bench runs a compiled node from node_modules/.cache/raftkv/bench-build: its files are the project's. */
function fromBenchBuild(url: string): string {
  return url.replace(/\/node_modules\/\.cache\/raftkv\/bench-build\//, "/");
}

/** The area a frame belongs to, by its script URL. */
export function areaOf(f: CallFrame): string {
  const special = SPECIAL[f.functionName];
  if (special && !f.url) return special;
  // Compiled project files are named .js; their areas are those of the .ts sources.
  const u = fromBenchBuild(f.url).replace(/(\/services\/.*)\.js$/, "$1.ts");
  if (!u) return "native builtins";
  if (u.includes("/node_modules/@grpc/grpc-js/")) return "grpc-js";
  if (u.includes("/node_modules/@grpc/proto-loader/") || u.includes("/node_modules/protobufjs/") || u.includes("/node_modules/@protobufjs/")) return "protobuf (protobufjs)";
  if (u.includes("/node_modules/@bufbuild/protobuf/") || u.includes("/services/common/gen/")) return "protobuf (ts-proto)";
  if (u.includes("/node_modules/etcd3/") || u.includes("/node_modules/cockatiel/")) return "etcd3 client";
  if (u.includes("/node_modules/pino") || u.includes("/node_modules/sonic-boom/")) return "logging";
  if (u.includes("/node_modules/fastify") || u.includes("/node_modules/find-my-way/") || u.includes("/node_modules/light-my-request/")) return "http (fastify)";
  if (u.includes("/node_modules/hdr-histogram-js/") || u.includes("/bench/")) return "bench harness";
  if (u.includes("/node_modules/tsx/") || u.includes("/node_modules/esbuild/")) return "tsx loader";
  if (u.includes("/node_modules/")) return "other packages";
  if (u.includes("/services/node/raft/")) return "raft core";
  if (u.includes("/services/node/storage/")) return "storage (WAL)";
  if (u.includes("/services/node/kv/")) return "kv state machine";
  if (u.includes("/services/node/server/driver.ts")) return "driver loop";
  if (u.includes("/services/node/server/transport.ts") || u.includes("/services/node/server/codec.ts")) return "peer transport";
  if (u.includes("/services/node/server/")) return "client API / status";
  if (u.includes("/services/cli/client.ts")) return "raftkv client";
  if (u.includes("/services/common/")) return "common";
  if (u.includes("/services/")) return "other project code";
  if (u.startsWith("node:internal/fs") || u === "node:fs" || u.startsWith("node:internal/fs/")) return "node fs";
  if (u.includes("http2")) return "node http2";
  if (u === "node:net" || u.includes("stream_base_commons") || u.includes("internal/streams") || u === "node:stream") return "node net/streams";
  if (u.includes("internal/timers") || u === "node:timers") return "node timers";
  if (u.includes("task_queues") || u.includes("internal/process/promises")) return "node microtasks/promises";
  if (u.startsWith("node:")) return "node (other)";
  return "other";
}

function frameName(f: CallFrame): string {
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const short = fromBenchBuild(f.url).replace(/^file:\/\//, "").replace(/^.*\/(node_modules\/)/, "$1").replace(/^.*\/(services|bench|test)\//, "$1/");
  // Code loaded through tsx reports line 0 for everything: show a line only where it means one.
  return f.lineNumber > 0 ? `${name} ${short}:${f.lineNumber + 1}` : `${name} ${short}`;
}

/** One summary of one or more profiles (e.g. the same process role over several runs), added up. */
export function summarizeProfile(files: string[], label: string, top = 20): ProfileSummary {
  const areas = new Map<string, number>();
  const fnSelf = new Map<string, { area: string; ms: number }>();
  const fnIncl = new Map<string, { area: string; ms: number }>();
  let total = 0;
  let idle = 0;
  let wallMs = 0;
  for (const file of files) {
    const p = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
    wallMs += (p.endTime - p.startTime) / 1000;
    const r = addProfile(p, areas, fnSelf, fnIncl);
    total += r.total;
    idle += r.idle;
  }
  const sorted = <T extends { ms: number }>(xs: T[]) => xs.sort((a, b) => b.ms - a.ms);
  return {
    label,
    file: files.join(", "),
    wallMs,
    busyMs: total - idle,
    areas: sorted([...areas].map(([area, ms]) => ({ area, ms }))),
    topSelf: sorted([...fnSelf].map(([fn, v]) => ({ fn, ...v }))).slice(0, top),
    topInclusive: sorted([...fnIncl].map(([fn, v]) => ({ fn, ...v }))).slice(0, top),
  };
}

function addProfile(
  p: CpuProfile,
  areas: Map<string, number>,
  fnSelf: Map<string, { area: string; ms: number }>,
  fnIncl: Map<string, { area: string; ms: number }>,
): { total: number; idle: number } {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    // timeDeltas[i] is the time since the previous sample: the previous sample's duration.
    const d = (p.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + d);
  }
  const pathKeys = new Map<number, string[]>();
  const keysOnPath = (id: number): string[] => {
    let ks = pathKeys.get(id);
    if (ks) return ks;
    const n = byId.get(id)!;
    const up = parent.has(id) ? keysOnPath(parent.get(id)!) : [];
    const k = n.callFrame.url.includes("/services/") ? frameName(n.callFrame) : "";
    ks = k && !up.includes(k) ? [...up, k] : up;
    pathKeys.set(id, ks);
    return ks;
  };
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const area = areaOf(n.callFrame);
    total += ms;
    if (area === "idle") {
      idle += ms;
      continue;
    }
    areas.set(area, (areas.get(area) ?? 0) + ms);
    const k = frameName(n.callFrame);
    const e = fnSelf.get(k) ?? { area, ms: 0 };
    e.ms += ms;
    fnSelf.set(k, e);
    for (const key of keysOnPath(id)) {
      const x = fnIncl.get(key) ?? { area: "", ms: 0 };
      x.ms += ms;
      fnIncl.set(key, x);
    }
  }
  for (const n of p.nodes) {
    const k = frameName(n.callFrame);
    const x = fnIncl.get(k);
    if (x && !x.area) x.area = areaOf(n.callFrame);
  }
  return { total, idle };
}

export function summarizeProfiles(groups: Array<{ files: string[]; label: string }>, top = 20): ProfileSummary[] {
  return groups.filter((g) => g.files.length > 0).map((g) => summarizeProfile(g.files, g.label, top));
}

export function printProfileSummary(sums: ProfileSummary[], out: NodeJS.WritableStream): void {
  const lines: string[] = [];
  const pct = (ms: number, of: number) => `${((100 * ms) / Math.max(1e-9, of)).toFixed(1)}%`;
  for (const s of sums) {
    lines.push(
      "",
      `### ${s.label}: ${(s.busyMs / 1000).toFixed(1)} s busy of ${(s.wallMs / 1000).toFixed(1)} s profiled (${pct(s.busyMs, s.wallMs)} of one core)`,
      "",
      "| area (self time) | ms | share of busy |",
      "|---|---:|---:|",
      ...s.areas.map((a) => `| ${a.area} | ${a.ms.toFixed(0)} | ${pct(a.ms, s.busyMs)} |`),
      "",
      "| hottest functions (self) | area | ms | share |",
      "|---|---|---:|---:|",
      ...s.topSelf.map((f) => `| \`${f.fn}\` | ${f.area} | ${f.ms.toFixed(0)} | ${pct(f.ms, s.busyMs)} |`),
      "",
      "| project functions (inclusive) | area | ms | share |",
      "|---|---|---:|---:|",
      ...s.topInclusive.map((f) => `| \`${f.fn}\` | ${f.area} | ${f.ms.toFixed(0)} | ${pct(f.ms, s.busyMs)} |`),
    );
  }
  out.write(lines.join("\n") + "\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write("usage: node --import tsx bench/profile.ts FILE.cpuprofile...\n");
    process.exit(2);
  }
  printProfileSummary(
    summarizeProfiles(files.map((f) => ({ files: [f], label: f.split("/").pop()! }))),
    process.stdout,
  );
}
