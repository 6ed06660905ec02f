// Real multi-process raftkv clusters on loopback for tests: start, SIGKILL, SIGTERM, restart,
// wait for a leader, read /status. Every node is a child process we started; we only ever signal
// our own children, by PID. Each node gets its own 127.0.0.x address, like a pod with its own IP.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type StatusDocument } from "../../services/common/status.js";

export const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");
const NODE_MAIN = join(ROOT, "services/node/main.ts");

export interface NodeSpec {
  id: string;
  host: string;
  clientPort: number;
  peerPort: number;
  httpPort: number;
  dataDir: string;
}

export interface ClusterOptions {
  nodes?: number;
  heartbeatMs?: number;
  electionMs?: number;
  snapshotInterval?: number;
  extraArgs?: string[];
  /** Environment for every node (in addition to the flags). */
  env?: NodeJS.ProcessEnv;
  /** A compiled node entry point (.js, e.g. from `tsc -p tsconfig.build.json`) instead of the source through tsx. */
  nodeMain?: string;
  logLevel?: string;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolveP, reject) => {
    const s = createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, host, () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolveP(port));
    });
  });
}

export class TestCluster {
  readonly specs: NodeSpec[] = [];
  readonly procs = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  readonly dir: string;
  readonly opts: Required<Omit<ClusterOptions, "env" | "extraArgs" | "nodeMain">> & Pick<ClusterOptions, "env" | "extraArgs" | "nodeMain">;

  private constructor(opts: ClusterOptions) {
    this.opts = { nodes: 3, heartbeatMs: 50, electionMs: 500, snapshotInterval: 10_000, logLevel: "info", ...opts };
    this.dir = mkdtempSync(join(tmpdir(), "raftkv-cluster-"));
  }

  static async start(opts: ClusterOptions = {}): Promise<TestCluster> {
    const c = new TestCluster(opts);
    // 127.0.0.x per node; a random block of x per cluster so parallel test files do not collide.
    const block = 10 + Math.floor(Math.random() * 200);
    for (let i = 1; i <= c.opts.nodes; i++) {
      const host = `127.0.${block}.${i}`;
      c.specs.push({
        id: `n${i}`,
        host,
        clientPort: await freePort(host),
        peerPort: await freePort(host),
        httpPort: await freePort(host),
        dataDir: join(c.dir, `n${i}`),
      });
    }
    for (const s of c.specs) c.spawn(s.id);
    return c;
  }

  get peersFlag(): string {
    return this.specs.map((s) => `${s.id}=${s.host}:${s.peerPort}`).join(",");
  }

  spec(id: string): NodeSpec {
    const s = this.specs.find((x) => x.id === id);
    if (!s) throw new Error(`no node ${id}`);
    return s;
  }

  endpoints(ids?: string[]): string[] {
    return this.specs.filter((s) => !ids || ids.includes(s.id)).map((s) => `${s.host}:${s.clientPort}`);
  }

  spawn(id: string, extra: string[] = []): ChildProcess {
    const s = this.spec(id);
    const main = this.opts.nodeMain;
    const args = [
      // A compiled entry point runs exactly as the image runs it (`node dist/...`, no flags).
      ...(main ? [main] : ["--import", "tsx", NODE_MAIN]),
      "--id",
      s.id,
      "--peers",
      this.peersFlag,
      "--listen-host",
      s.host,
      "--client-port",
      String(s.clientPort),
      "--peer-port",
      String(s.peerPort),
      "--http-port",
      String(s.httpPort),
      "--data-dir",
      s.dataDir,
      "--heartbeat-ms",
      String(this.opts.heartbeatMs),
      "--election-ms",
      String(this.opts.electionMs),
      "--snapshot-interval",
      String(this.opts.snapshotInterval),
      "--log-level",
      this.opts.logLevel,
      ...(this.opts.extraArgs ?? []),
      ...extra,
    ];
    const p = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...this.opts.env }, stdio: ["ignore", "pipe", "pipe"] });
    const lines = this.logs.get(id) ?? [];
    this.logs.set(id, lines);
    const onData = (b: Buffer) => {
      for (const l of b.toString().split("\n")) if (l) lines.push(l);
      if (lines.length > 5000) lines.splice(0, lines.length - 5000);
    };
    p.stdout!.on("data", onData);
    p.stderr!.on("data", onData);
    this.procs.set(id, p);
    return p;
  }

  alive(id: string): boolean {
    const p = this.procs.get(id);
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  /** SIGKILL: the process dies at once, losing everything not fsynced. */
  async kill(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (!p || !this.alive(id)) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await exited;
  }

  /** SIGTERM and wait for exit; resolves with the exit code. */
  async terminate(id: string, timeoutMs = 15_000): Promise<number | null> {
    const p = this.procs.get(id);
    if (!p || !this.alive(id)) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((r) => p.once("exit", (code) => r(code)));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
    const code = await exited;
    clearTimeout(t);
    return code;
  }

  async restart(id: string): Promise<void> {
    await this.kill(id);
    this.spawn(id);
  }

  async status(id: string, timeoutMs = 1000): Promise<StatusDocument | undefined> {
    const s = this.spec(id);
    try {
      const res = await fetch(`http://${s.host}:${s.httpPort}/status`, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) return undefined;
      return (await res.json()) as StatusDocument;
    } catch {
      return undefined;
    }
  }

  async statuses(): Promise<Map<string, StatusDocument>> {
    const out = new Map<string, StatusDocument>();
    await Promise.all(
      this.specs.map(async (s) => {
        if (!this.alive(s.id)) return;
        const st = await this.status(s.id);
        if (st) out.set(s.id, st);
      }),
    );
    return out;
  }

  /**
   * Waits until the live nodes (or `among`) agree on one leader that is itself leader, and
   * returns its id. `not`: a leader other than this one.
   */
  async waitForLeader(opts: { timeoutMs?: number; not?: string; among?: string[] } = {}): Promise<string> {
    const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
    let last = "";
    while (Date.now() < deadline) {
      const sts = await this.statuses();
      const ids = (opts.among ?? this.specs.map((s) => s.id)).filter((id) => this.alive(id));
      const views = ids.map((id) => sts.get(id));
      const leaders = views.filter((v) => v?.role === "leader");
      if (leaders.length === 1 && views.every((v) => v && v.leaderId === leaders[0]!.nodeId && v.term === leaders[0]!.term)) {
        const id = leaders[0]!.nodeId;
        if (id !== opts.not) return id;
      }
      last = views.map((v, i) => `${ids[i]}:${v ? `${v.role}@${v.term} leader=${v.leaderId || "-"}` : "down"}`).join(" ");
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no agreed leader within ${opts.timeoutMs ?? 15_000} ms: ${last}`);
  }

  /** Waits until every live node has applied at least `index`. */
  async waitForApplied(index: number, timeoutMs = 15_000, ids?: string[]): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const sts = await this.statuses();
      const want = (ids ?? this.specs.map((s) => s.id)).filter((id) => this.alive(id));
      if (want.every((id) => (sts.get(id)?.appliedIndex ?? -1) >= index)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`not every node applied ${index} within ${timeoutMs} ms`);
  }

  logText(id: string): string {
    return (this.logs.get(id) ?? []).join("\n");
  }

  /** Stops every node we started (SIGKILL) and removes the data directory. */
  async stop(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((id) => this.kill(id)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
