// `raftkv cluster up`: a local cluster on loopback in one command. Starts N nodes (n1..nN) and,
// unless told not to, one metrics exporter per node; prefixes and shortens their log lines; waits
// for a leader and says so; on SIGINT/SIGTERM stops every child (SIGTERM, then SIGKILL after a
// grace period) and exits 0. A child that dies on its own is reported with the command that
// restarts it, and the rest keep running (that is how a failover is tried by hand).
//
// Children run with the same loader as this CLI: from source (`node --import tsx .../main.ts`)
// they get tsx and the .ts entry points; from the build (dist/, the containers) plain node and .js.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { RaftkvClient } from "./client.js";
import { ANSI, formatLogLine, PREFIX_COLOURS } from "./log-format.js";

/** A repeated SIGINT/SIGTERM later than this after the first forces SIGKILL. */
const REPEAT_SIGNAL_MS = 1000;

export interface ClusterUpOptions {
  nodes: number;
  dataDir: string;
  exporters: boolean;
  host: string;
  baseClientPort: number;
  basePeerPort: number;
  baseHttpPort: number;
  baseExporterPort: number;
  heartbeatMs?: number;
  electionMs?: number;
  logLevel: string;
  rawLogs: boolean;
  /** ms between SIGTERM and SIGKILL when stopping. */
  graceMs: number;
  /** ms to wait for a leader before saying there is none yet. */
  readyTimeoutMs: number;
}

export const CLUSTER_UP_DEFAULTS: ClusterUpOptions = {
  nodes: 3,
  dataDir: "./data",
  exporters: true,
  host: "127.0.0.1",
  baseClientPort: 9091,
  basePeerPort: 7001,
  baseHttpPort: 8081,
  baseExporterPort: 9101,
  logLevel: "info",
  rawLogs: false,
  graceMs: 10_000,
  readyTimeoutMs: 30_000,
};

/** How to start a TypeScript-or-JavaScript entry point of this repository. */
export interface Runtime {
  /** "ts" from source through tsx, "js" from dist/. */
  kind: "ts" | "js";
  execPath: string;
  /** node options that load the code (`--import <tsx>` from source). */
  nodeArgs: string[];
  nodeMain: string;
  exporterMain: string;
}

/** The runtime this CLI module runs in, from its own URL (a .ts file means tsx is loaded). */
export function detectRuntime(moduleUrl: string, resolveSpecifier: (s: string) => string): Runtime {
  const file = fileURLToPath(moduleUrl);
  const kind = file.endsWith(".ts") ? "ts" : "js";
  const services = dirname(dirname(file)); // services/cli/main.ts -> services
  return {
    kind,
    execPath: process.execPath,
    // An absolute loader URL: `--import tsx` alone would resolve from the current directory.
    nodeArgs: kind === "ts" ? ["--import", resolveSpecifier("tsx")] : ["--enable-source-maps"],
    nodeMain: join(services, "node", `main.${kind}`),
    exporterMain: join(services, "exporter", `main.${kind}`),
  };
}

export interface ProcessPlan {
  /** Log prefix and name: "n1" or "n1-exp". */
  name: string;
  kind: "node" | "exporter";
  nodeId: string;
  args: string[];
  /** Ports it listens on (checked free before starting). */
  ports: number[];
}

export interface NodeAddresses {
  id: string;
  client: string;
  peer: string;
  http: string;
  exporter?: string;
  dataDir: string;
}

export interface ClusterPlan {
  nodes: NodeAddresses[];
  processes: ProcessPlan[];
  endpoints: string[];
}

/** Ids, ports, data directories and command lines of every process (no side effects). */
export function planCluster(o: ClusterUpOptions, runtime: Pick<Runtime, "nodeArgs" | "nodeMain" | "exporterMain">): ClusterPlan {
  const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`);
  const hostPort = (port: number) => (o.host.includes(":") ? `[${o.host}]:${port}` : `${o.host}:${port}`);
  const peers = ids.map((id, i) => `${id}=${hostPort(o.basePeerPort + i)}`).join(",");
  const nodes: NodeAddresses[] = [];
  const processes: ProcessPlan[] = [];
  ids.forEach((id, i) => {
    const client = o.baseClientPort + i;
    const peer = o.basePeerPort + i;
    const http = o.baseHttpPort + i;
    const dataDir = resolve(o.dataDir, id);
    const args = [
      ...runtime.nodeArgs,
      runtime.nodeMain,
      "--id", id,
      "--peers", peers,
      "--cluster", "local",
      "--data-dir", dataDir,
      "--listen-host", o.host,
      "--client-port", String(client),
      "--peer-port", String(peer),
      "--http-port", String(http),
      "--log-level", o.logLevel,
    ];
    if (o.heartbeatMs !== undefined) args.push("--heartbeat-ms", String(o.heartbeatMs));
    if (o.electionMs !== undefined) args.push("--election-ms", String(o.electionMs));
    processes.push({ name: id, kind: "node", nodeId: id, args, ports: [client, peer, http] });
    const addr: NodeAddresses = { id, client: hostPort(client), peer: hostPort(peer), http: `http://${hostPort(http)}`, dataDir };
    if (o.exporters) {
      const port = o.baseExporterPort + i;
      processes.push({
        name: `${id}-exp`,
        kind: "exporter",
        nodeId: id,
        args: [...runtime.nodeArgs, runtime.exporterMain, "--status-url", `http://${hostPort(http)}/status`, "--port", String(port), "--host", o.host, "--log-level", o.logLevel],
        ports: [port],
      });
      addr.exporter = `http://${hostPort(port)}`;
    }
    nodes.push(addr);
  });
  return { nodes, processes, endpoints: nodes.map((n) => n.client) };
}

/** Ports planned twice (overlapping port ranges), as a message, or "" when all differ. */
export function portClash(plan: ClusterPlan): string {
  const seen = new Map<number, string>();
  for (const p of plan.processes) {
    for (const port of p.ports) {
      const other = seen.get(port);
      if (other !== undefined) return `port ${port} would be used by both ${other} and ${p.name}; choose base ports whose ranges do not overlap`;
      seen.set(port, p.name);
    }
  }
  return "";
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const s = createServer();
    s.once("error", () => resolvePort(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolvePort(true)));
  });
}

export interface ClusterIo {
  out(line: string): void;
  color: boolean;
  /** The command users type for the CLI, for the examples ("raftkv" or "npm run raftkv --"). */
  cliName: string;
}

interface Child {
  plan: ProcessPlan;
  proc: ChildProcess;
  exited: Promise<void>;
  alive: boolean;
  prefix: string;
}

/**
 * Runs the cluster until SIGINT/SIGTERM (returns 0 after stopping every child) or until every
 * node has died (returns 1). Returns 1 at once if it cannot start (a port in use, no program).
 */
export async function clusterUp(o: ClusterUpOptions, runtime: Runtime, io: ClusterIo): Promise<number> {
  const plan = planCluster(o, runtime);
  const say = (msg: string) => io.out(`${io.color ? ANSI.bold : ""}cluster | ${msg}${io.color ? ANSI.reset : ""}`);

  const clash = portClash(plan);
  if (clash) {
    say(`cannot start: ${clash}`);
    return 1;
  }
  for (const main of [runtime.nodeMain, ...(o.exporters ? [runtime.exporterMain] : [])]) {
    if (!existsSync(main)) {
      say(`cannot start: ${main} does not exist${runtime.kind === "js" ? " (run `npm run build` first)" : ""}`);
      return 1;
    }
  }
  const busy: string[] = [];
  for (const p of plan.processes) for (const port of p.ports) if (!(await portFree(o.host, port))) busy.push(`${port} (${p.name})`);
  if (busy.length > 0) {
    say(`cannot start: port${busy.length > 1 ? "s" : ""} ${busy.join(", ")} already in use on ${o.host}; is another cluster running? Stop it, or choose other ports (--base-client-port, --base-peer-port, --base-http-port, --base-exporter-port)`);
    return 1;
  }
  for (const n of plan.nodes) mkdirSync(n.dataDir, { recursive: true });

  const width = Math.max(...plan.processes.map((p) => p.name.length));
  const colourOf = new Map(plan.nodes.map((n, i) => [n.id, PREFIX_COLOURS[i % PREFIX_COLOURS.length]!]));
  const children: Child[] = [];
  let stopping = false;
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => (finish = r));

  const commandLine = (p: ProcessPlan) => [runtime.execPath, ...p.args].map((a) => (/^[\w./:=,@+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");

  const start = (p: ProcessPlan): Child => {
    const proc = spawn(runtime.execPath, p.args, {
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: a terminal's Ctrl-C reaches only this launcher, which then stops
      // the children in order instead of every process racing on the same SIGINT.
      detached: true,
      env: process.env,
    });
    const colour = colourOf.get(p.nodeId) ?? "";
    const label = `${p.name.padEnd(width)} |`;
    const prefix = io.color ? `${colour}${label}${ANSI.reset}` : label;
    const child: Child = { plan: p, proc, alive: true, prefix, exited: Promise.resolve() };
    for (const stream of [proc.stdout, proc.stderr]) {
      if (!stream) continue;
      const rl = createInterface({ input: stream, crlfDelay: Infinity });
      rl.on("line", (line) => io.out(`${prefix} ${o.rawLogs ? line : formatLogLine(line, { color: io.color })}`));
    }
    child.exited = new Promise<void>((resolveExit) => {
      let reported = false;
      const onGone = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
        if (reported) return;
        reported = true;
        child.alive = false;
        if (!stopping) {
          const how = err ? `could not start: ${err.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
          io.out(`${prefix} ${io.color ? ANSI.red + ANSI.bold : ""}${p.name} ${how}, unexpectedly; the other processes keep running${io.color ? ANSI.reset : ""}`);
          io.out(`${prefix} to restart it: ${commandLine(p)}`);
          const nodesLeft = children.filter((c) => c.alive && c.plan.kind === "node").length;
          if (nodesLeft === 0) {
            say("every node has exited; stopping");
            void stopAll("no nodes left").then(() => finish(1));
          }
        }
        resolveExit();
      };
      proc.once("exit", (code, signal) => onGone(code, signal));
      proc.once("error", (err) => onGone(null, null, err));
    });
    return child;
  };

  const stopAll = async (reason: string): Promise<void> => {
    stopping = true;
    const alive = children.filter((c) => c.alive);
    if (alive.length > 0) say(`stopping (${reason}): SIGTERM to ${alive.map((c) => c.plan.name).join(", ")}`);
    for (const c of alive) c.proc.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const c of children.filter((x) => x.alive)) {
        say(`${c.plan.name} did not stop within ${o.graceMs} ms; SIGKILL`);
        c.proc.kill("SIGKILL");
      }
    }, o.graceMs);
    await Promise.all(children.map((c) => c.exited));
    clearTimeout(timer);
  };

  let firstSignalAt = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    if (firstSignalAt === 0) {
      firstSignalAt = Date.now();
      void stopAll(sig).then(() => {
        say("all processes stopped");
        finish(0);
      });
    } else if (Date.now() - firstSignalAt > REPEAT_SIGNAL_MS) {
      // Ctrl-C pressed again: the user does not want to wait for the grace period.
      say(`${sig} again: SIGKILL to every process still running`);
      for (const c of children.filter((x) => x.alive)) c.proc.kill("SIGKILL");
    }
    // A second signal right after the first is the same Ctrl-C: the terminal signals the whole
    // foreground group and `npm start` forwards its own copy to us.
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  say(`starting ${o.nodes} node${o.nodes === 1 ? "" : "s"}${o.exporters ? " and their exporters" : ""} on ${o.host}, data in ${resolve(o.dataDir)}`);
  for (const p of plan.processes) children.push(start(p));

  const rows = plan.nodes.map((n) => {
    const pids = children.filter((c) => c.plan.nodeId === n.id).map((c) => `${c.plan.kind} pid ${c.proc.pid ?? "?"}`);
    return `  ${n.id}  client ${n.client}  peer ${n.peer}  status ${n.http}/status${n.exporter ? `  metrics ${n.exporter}/metrics` : ""}  (${pids.join(", ")})`;
  });
  const defaultEndpoints = plan.endpoints.join(",") === "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093";
  const ep = defaultEndpoints ? "" : ` --endpoints ${plan.endpoints.join(",")}`;
  say("listening:");
  for (const r of rows) io.out(r);
  io.out("try:");
  io.out(`  ${io.cliName} put greeting hello${ep}`);
  io.out(`  ${io.cliName} get greeting${ep}`);
  io.out(`  ${io.cliName} status${ep}`);
  io.out(`  ${io.cliName} leader transfer${ep}`);
  if (!defaultEndpoints) io.out(`  (or export RAFTKV_ENDPOINTS=${plan.endpoints.join(",")})`);
  io.out("Ctrl-C stops the cluster.");

  void waitForLeader(plan.endpoints, o.readyTimeoutMs, () => stopping).then((leader) => {
    if (stopping) return;
    if (leader) say(`leader elected: ${leader.id} (term ${leader.term}); the cluster is ready`);
    else say(`no leader after ${o.readyTimeoutMs} ms; the nodes keep trying (see their logs above)`);
  });

  const code = await done;
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  return code;
}

/** Polls every node's Status until one is leader (or the time is up). */
async function waitForLeader(endpoints: string[], timeoutMs: number, cancelled: () => boolean): Promise<{ id: string; term: number } | undefined> {
  const client = new RaftkvClient({ endpoints, timeoutMs: 1000, attemptTimeoutMs: 500 });
  const until = Date.now() + timeoutMs;
  try {
    while (Date.now() < until && !cancelled()) {
      const answers = await Promise.allSettled(endpoints.map((e) => client.status(e, { timeoutMs: 500 })));
      for (const a of answers) {
        if (a.status === "fulfilled" && a.value.role === "leader") return { id: a.value.memberId, term: a.value.term };
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return undefined;
  } finally {
    client.close();
  }
}
