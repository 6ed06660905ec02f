// A real raftkv-exporter process for tests: `node --import tsx services/exporter/main.ts`, as the
// sidecar container runs it, pointed at a node's /status. Ready once it logs its "listening" line
// (which carries the /metrics URL, so port 0 works too); stopped by PID (SIGTERM, then SIGKILL),
// never by name.
//
//   const exp = await startExporterProcess({ statusUrl: "http://127.0.0.2:8080/status", port: 0 });
//   // Prometheus target: exp.target ("127.0.0.1:41234")
//   await exp.stop();

import { spawn, type ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { stopChild } from "../lib/process.js";

const ROOT = resolve(import.meta.dirname, "../..");
const EXPORTER_MAIN = join(ROOT, "services/exporter/main.ts");

export interface ExporterProcessOptions {
  statusUrl: string;
  /** 0 = any free port (read back from the log line). */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** The exporter's /status fetch deadline; keep it below the scrape timeout. Default 500. */
  timeoutMs?: number;
  /** How long to wait for the "listening" line. Default 20 s (tsx compiles on a loaded machine). */
  readyTimeoutMs?: number;
}

export interface ExporterProcess {
  pid: number;
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  /** host:port, as a Prometheus static target. */
  target: string;
  statusUrl: string;
  alive(): boolean;
  /** The process's output so far (pino JSON lines), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
// A crashed test must not leave exporters behind: kill ours (by PID) on the way out.
process.once("exit", () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** Spawns an exporter and resolves once it listens; rejects (with its output) if it exits or stays silent. */
export async function startExporterProcess(opts: ExporterProcessOptions): Promise<ExporterProcess> {
  const host = opts.host ?? "127.0.0.1";
  const args = [
    "--import",
    "tsx",
    EXPORTER_MAIN,
    "--status-url",
    opts.statusUrl,
    "--host",
    host,
    "--port",
    String(opts.port),
    "--timeout-ms",
    String(opts.timeoutMs ?? 500),
    "--log-level",
    "info",
  ];
  const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let output = "";
  let url: string | undefined;
  let onListening: (() => void) | undefined;
  const take = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-100_000);
    if (url !== undefined) return;
    for (const line of output.split("\n")) {
      const m = /"metrics":"(http:\/\/[^"]+)\/metrics"/.exec(line);
      if (m) {
        url = m[1]!;
        onListening?.();
        return;
      }
    }
  };
  child.stdout!.on("data", take);
  child.stderr!.on("data", take);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));

  const stop = async () => {
    await stopChild(child, 5000);
    running.delete(child);
  };

  const readyMs = opts.readyTimeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    new Promise<"ready">((r) => {
      onListening = () => r("ready");
      if (url !== undefined) r("ready");
    }),
    exited.then(() => "exited" as const),
    new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), readyMs))),
  ]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    await stop();
    const why = outcome === "exited" ? `exited with code ${child.exitCode ?? child.signalCode}` : `did not log "listening" within ${readyMs} ms`;
    throw new Error(`raftkv-exporter (${args.slice(2).join(" ")}) ${why}:\n${output.slice(-4000)}`);
  }
  const listening = new URL(url!);
  return {
    pid: child.pid!,
    url: url!,
    target: listening.host,
    statusUrl: opts.statusUrl,
    alive: () => child.exitCode === null && child.signalCode === null,
    log: () => output,
    stop,
  };
}
