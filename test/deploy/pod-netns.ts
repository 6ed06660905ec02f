// StatefulSet pods without Kubernetes: real node processes in a network namespace of their own
// (created with `ip netns`, so nothing on the machine can collide with their fixed ports), each
// with its own hostname (a UTS namespace, as a pod has), its own 127.0.0.x address as "pod IP",
// and an /etc/hosts the test controls standing in for the headless Service's DNS records.
//
// `ip netns exec NS CMD` bind-mounts /etc/netns/NS/hosts over /etc/hosts for CMD, so the test
// rewrites that one file to make a pod's DNS name appear. The file is rewritten in place (same
// inode): the bind mount of a running process follows the inode, so a rename would go unseen.
//
// Requires root (namespaces, /etc/netns). Every process here is started by us and stopped by PID.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { repoRoot } from "./render.js";
import { type AgentRequest } from "./netns-agent.js";

const NODE_MAIN = join(repoRoot, "services/node/main.ts");
const AGENT = resolve(repoRoot, "test/deploy/netns-agent.ts");

/** Whether this process may create network namespaces (root); the reason when it may not. */
export function netnsUnavailableReason(): string | undefined {
  if (process.platform !== "linux") return `network namespaces are Linux-only (this is ${process.platform})`;
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    return `needs root to create a network namespace (ip netns add) and /etc/netns/<name>/hosts; running as uid ${process.getuid()}`;
  }
  return undefined;
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 30_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${(e.stderr ?? "").trim() || e.message}`);
  }
}

export interface Pod {
  ordinal: number;
  /** The pod name, which is also its hostname inside its UTS namespace. */
  name: string;
  /** The exact environment the process was started with (nothing inherited: env -i). */
  env: Record<string, string>;
  proc: ChildProcess;
  logs: string[];
}

export class PodNetwork {
  readonly pods = new Map<number, Pod>();
  private agentProc?: ChildProcess;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private hosts: Record<string, string> = {};
  private destroyed = false;

  private constructor(readonly name: string) {}

  get hostsFile(): string {
    return `/etc/netns/${this.name}/hosts`;
  }

  /** Creates the namespace (loopback up) and its hosts file with localhost only, and starts the agent. */
  static async create(prefix = "raftkv-sts"): Promise<PodNetwork> {
    const net = new PodNetwork(`${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    sh("ip", ["netns", "add", net.name]);
    try {
      // 127.0.0.0/8 is routed to lo once it is up, so every pod's 127.0.0.x works without adding addresses.
      sh("ip", ["-n", net.name, "link", "set", "lo", "up"]);
      mkdirSync(`/etc/netns/${net.name}`, { recursive: true });
      net.setHosts({});
      await net.startAgent();
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Makes exactly these names resolve (name -> address) inside the namespace, from now on. */
  setHosts(entries: Record<string, string>): void {
    this.hosts = { ...entries };
    const lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", ...Object.entries(entries).map(([n, a]) => `${a}\t${n}`)];
    // writeFileSync truncates and writes the same inode (see the header).
    writeFileSync(this.hostsFile, `${lines.join("\n")}\n`);
  }

  addHost(name: string, address: string): void {
    this.setHosts({ ...this.hosts, [name]: address });
  }

  hostsText(): string {
    return readFileSync(this.hostsFile, "utf8");
  }

  /**
   * Starts pod `ordinal` as `ip netns exec NS unshare --uts sh -c 'hostname; exec env -i ENV node main.ts'`:
   * its hostname is `name` (what os.hostname() returns, as in a pod), its environment exactly `env`.
   * Every step execs, so the PID we hold is the node process itself.
   */
  spawnPod(ordinal: number, name: string, env: Record<string, string>): Pod {
    if (this.pods.has(ordinal)) throw new Error(`pod ${ordinal} already started`);
    const envArgs = Object.entries(env).map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`env name ${JSON.stringify(k)} cannot be passed through env(1)`);
      return `${k}=${v}`;
    });
    const setHostname = 'printf %s "$1" > /proc/sys/kernel/hostname && shift && exec "$@"';
    const proc = spawn(
      "ip",
      ["netns", "exec", this.name, "unshare", "--uts", "--", "/bin/sh", "-c", setHostname, "sh", name, "env", "-i", ...envArgs, process.execPath, "--import", "tsx", NODE_MAIN],
      // ip, unshare and sh need a PATH; env -i then gives node nothing but `env`.
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" } },
    );
    const logs: string[] = [];
    const onData = (b: Buffer) => {
      for (const l of b.toString().split("\n")) if (l) logs.push(l);
      if (logs.length > 2000) logs.splice(0, logs.length - 2000);
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    const pod: Pod = { ordinal, name, env, proc, logs };
    this.pods.set(ordinal, pod);
    return pod;
  }

  alive(ordinal: number): boolean {
    const p = this.pods.get(ordinal)?.proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  }

  /** What /proc says the process we hold for this pod is (after the exec chain it must be node, with the pod's hostname). */
  processInfo(ordinal: number): { comm: string; hostname: string } {
    const pid = this.pods.get(ordinal)!.proc.pid!;
    const comm = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    const hostname = sh("nsenter", ["--uts", "-t", String(pid), "hostname"]).trim();
    return { comm, hostname };
  }

  logTail(ordinal: number, n = 15): string {
    return (this.pods.get(ordinal)?.logs ?? []).slice(-n).join("\n");
  }

  private async startAgent(): Promise<void> {
    const proc = spawn("ip", ["netns", "exec", this.name, process.execPath, "--import", "tsx", AGENT], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
    this.agentProc = proc;
    let stderr = "";
    proc.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
    const ready = new Promise<void>((res, rej) => {
      this.pending.set(0, { resolve: () => res(), reject: rej });
      proc.once("exit", (code) => {
        const err = new Error(`the namespace agent exited (${code}): ${stderr.trim().split("\n").slice(-5).join(" | ")}`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
      });
    });
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      let msg: { id: number; ok: boolean; result?: unknown; error?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error));
    });
    const timeout = setTimeout(() => this.pending.get(0)?.reject(new Error(`the namespace agent did not start within 60 s: ${stderr}`)), 60_000);
    try {
      await ready;
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Runs one request in the agent inside the namespace. */
  call<T>(req: AgentRequest): Promise<T> {
    const proc = this.agentProc;
    if (!proc || proc.exitCode !== null) return Promise.reject(new Error("the namespace agent is not running"));
    const id = this.nextId++;
    return new Promise<T>((resolveP, reject) => {
      this.pending.set(id, { resolve: resolveP as (v: unknown) => void, reject });
      proc.stdin!.write(`${JSON.stringify({ id, ...req })}\n`);
    });
  }

  /** Stops every process we started (SIGKILL, by PID), deletes the namespace and /etc/netns/NAME. Idempotent. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const procs = [...[...this.pods.values()].map((p) => p.proc), ...(this.agentProc ? [this.agentProc] : [])];
    await Promise.all(
      procs.map((p) => {
        if (p.exitCode !== null || p.signalCode !== null) return undefined;
        const exited = new Promise((r) => p.once("exit", r));
        p.kill("SIGKILL");
        return exited;
      }),
    );
    try {
      sh("ip", ["netns", "delete", this.name]);
    } catch {
      /* not created, or already gone */
    }
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
  }
}
