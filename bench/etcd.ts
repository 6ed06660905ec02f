// A 3-member etcd cluster on loopback for the comparison benchmark: Debian's etcd-server
// (/usr/bin/etcd), each member on its own 127.0.0.x address with its own data dir under a
// temp dir we create, default timings (heartbeat 100 ms, election 1000 ms) and default
// durability (fsync on). We never touch the system service: every member is a child process
// we started, stopped by its PID.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { freePort } from "../test/cluster/harness.js";

export const ETCD_BIN = "/usr/bin/etcd";

export interface EtcdMember {
  name: string;
  host: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
}

export interface EtcdClusterOptions {
  members?: number;
  /** Parent of the cluster's temp dir (pick one on the disk you measure). Default os.tmpdir(). */
  parentDir?: string;
  heartbeatMs?: number;
  electionMs?: number;
  binary?: string;
}

export class EtcdCluster {
  readonly members: EtcdMember[] = [];
  readonly procs = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  readonly dir: string;
  private readonly binary: string;

  private constructor(dir: string, binary: string) {
    this.dir = dir;
    this.binary = binary;
  }

  /** Starts the members (all at once, as `--initial-cluster-state new` needs) and returns. */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const binary = opts.binary ?? ETCD_BIN;
    if (!existsSync(binary)) {
      throw new Error(`${binary} not found: install Debian's etcd-server package (apt-get install -y etcd-server)`);
    }
    const n = opts.members ?? 3;
    const dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), "raftkv-bench-etcd-"));
    const c = new EtcdCluster(dir, binary);
    // 127.0.0.x per member; a random block so a parallel run elsewhere on the machine does not collide.
    const base = 100 + Math.floor(Math.random() * 140);
    for (let i = 1; i <= n; i++) {
      const host = `127.0.0.${base + i}`;
      const dataDir = join(dir, `e${i}`);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      c.members.push({ name: `e${i}`, host, clientPort: await freePort(host), peerPort: await freePort(host), dataDir });
    }
    const initialCluster = c.members.map((m) => `${m.name}=http://${m.host}:${m.peerPort}`).join(",");
    const env: NodeJS.ProcessEnv = {};
    // Only our flags configure the members: an ETCD_* variable in the caller's environment must not.
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ETCD")) env[k] = v;
    for (const m of c.members) {
      const args = [
        "--name", m.name,
        "--data-dir", m.dataDir,
        "--listen-client-urls", `http://${m.host}:${m.clientPort}`,
        "--advertise-client-urls", `http://${m.host}:${m.clientPort}`,
        "--listen-peer-urls", `http://${m.host}:${m.peerPort}`,
        "--initial-advertise-peer-urls", `http://${m.host}:${m.peerPort}`,
        "--initial-cluster", initialCluster,
        "--initial-cluster-token", `raftkv-bench-${process.pid}-${base}`,
        "--initial-cluster-state", "new",
        "--heartbeat-interval", String(opts.heartbeatMs ?? 100),
        "--election-timeout", String(opts.electionMs ?? 1000),
        "--logger", "zap",
        "--log-outputs", "stderr",
        "--log-level", "warn",
      ];
      const p = spawn(binary, args, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
      const lines: string[] = [];
      c.logs.set(m.name, lines);
      const onData = (b: Buffer) => {
        for (const l of b.toString().split("\n")) if (l) lines.push(l);
        if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      };
      p.stdout!.on("data", onData);
      p.stderr!.on("data", onData);
      p.on("error", (e) => lines.push(`spawn error: ${e.message}`));
      c.procs.set(m.name, p);
    }
    return c;
  }

  endpoints(): string[] {
    return this.members.map((m) => `${m.host}:${m.clientPort}`);
  }

  pids(): number[] {
    return [...this.procs.values()].map((p) => p.pid).filter((p): p is number => typeof p === "number");
  }

  alive(name: string): boolean {
    const p = this.procs.get(name);
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  /** Waits until every member answers a status with the same, known leader. */
  async waitForLeader(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = "";
    while (Date.now() < deadline) {
      for (const m of this.members) {
        if (!this.alive(m.name)) throw new Error(`etcd member ${m.name} exited: ${this.logText(m.name).slice(-2000)}`);
      }
      const views = await Promise.all(
        this.members.map(async (m) => {
          const c = new Etcd3({ hosts: `http://${m.host}:${m.clientPort}`, defaultCallOptions: () => ({ deadline: Date.now() + 1000 }) });
          try {
            const st = await c.maintenance.status();
            return String(st.leader);
          } catch (e) {
            return `error: ${(e as Error).message}`;
          } finally {
            c.close();
          }
        }),
      );
      if (views.every((v) => v === views[0] && v !== "0" && !v.startsWith("error"))) return;
      last = views.join(" ");
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd: no agreed leader within ${timeoutMs} ms (${last})`);
  }

  logText(name: string): string {
    return (this.logs.get(name) ?? []).join("\n");
  }

  /** SIGTERM every member by PID (SIGKILL after graceMs) and removes the data dirs. */
  async stop(graceMs = 5000): Promise<void> {
    await Promise.all(
      [...this.procs.values()].map(async (p) => {
        if (p.exitCode !== null || p.signalCode !== null) return;
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGTERM");
        const t = setTimeout(() => p.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(t);
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): SIGKILL by PID, remove the dir. */
  killNow(): void {
    for (const p of this.procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}
