// A real Prometheus for tests: Debian's /usr/bin/prometheus on a free 127.0.0.1 port, with a
// generated config (exporter targets, a 1s scrape interval, optional rule files), a temporary
// TSDB directory, and its HTTP API wrapped as query()/waitFor()/targets()/rules(). Stopped by
// PID (SIGTERM, then SIGKILL), never by name.
//
//   const prom = await startPrometheus({ targets: ["127.0.0.1:9101"], ruleFiles: [ALERTS_FILE] });
//   await prom.waitFor("raftkv_up", (v) => v.length === 1);
//   const leaders = await prom.queryVector("raftkv_server_is_leader == 1");
//   await prom.stop();

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { request } from "undici";
import { stringify } from "yaml";
import { stopChild } from "../lib/process.js";

export const PROMETHEUS_BIN = process.env.RAFTKV_PROMETHEUS_BIN ?? "/usr/bin/prometheus";

/** The repository's prometheus/ directory (alert rules, scrape config examples). */
export const PROMETHEUS_DIR = resolve(import.meta.dirname, "../../prometheus");
export const ALERTS_FILE = join(PROMETHEUS_DIR, "alerts.yml");

export function prometheusAvailable(): boolean {
  return existsSync(PROMETHEUS_BIN);
}

/** promtool's path if it is installed (Debian's `prometheus` package), else undefined. */
export function promtoolPath(): string | undefined {
  for (const p of [process.env.RAFTKV_PROMTOOL_BIN, "/usr/bin/promtool", "/usr/local/bin/promtool"]) {
    if (p && existsSync(p)) return p;
  }
  const which = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" });
  const found = which.stdout.trim();
  return which.status === 0 && found ? found : undefined;
}

export interface StartPrometheusOptions {
  /** host:port of exporters, scraped as job "raftkv" (ignored when scrapeConfigs is given). */
  targets?: string[];
  /** Target labels for `targets` (default { cluster: "local" }, as the shipped scrape configs). */
  labels?: Record<string, string>;
  /** Complete scrape_configs entries, for tests of relabeling and the like. */
  scrapeConfigs?: Record<string, unknown>[];
  /** Default 1. */
  scrapeIntervalSeconds?: number;
  /** Default 80% of the interval. */
  scrapeTimeoutSeconds?: number;
  /** Absolute paths of rule files to load (e.g. ALERTS_FILE); evaluated every interval. */
  ruleFiles?: string[];
  /** How long to wait for /-/ready. Default 30 s. */
  readyTimeoutMs?: number;
  binary?: string;
}

export interface VectorSample {
  metric: Record<string, string>;
  value: number;
  /** Unix seconds of the evaluation. */
  time: number;
}

export interface QueryData {
  resultType: "vector" | "matrix" | "scalar" | "string";
  result: unknown;
}

export interface TargetInfo {
  labels: Record<string, string>;
  discoveredLabels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

export interface RuleInfo {
  name: string;
  query: string;
  health: string;
  lastError?: string;
  type: "alerting" | "recording";
  state?: string;
}

export interface PrometheusHandle {
  /** e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  pid: number;
  /** Temporary directory holding prometheus.yml and the TSDB (removed by stop()). */
  dir: string;
  /** The generated configuration, as written. */
  config: string;
  /** Instant query via /api/v1/query; throws with Prometheus's own message on a bad expression. */
  query(expr: string, time?: number): Promise<QueryData>;
  /** Instant query whose result must be an instant vector (or a scalar, given as one sample). */
  queryVector(expr: string, time?: number): Promise<VectorSample[]>;
  /** Re-runs queryVector until `until` holds; throws with the last result after the timeout. */
  waitFor(expr: string, until: (v: VectorSample[]) => boolean, opts?: { timeoutMs?: number; intervalMs?: number }): Promise<VectorSample[]>;
  targets(): Promise<{ activeTargets: TargetInfo[]; droppedTargets: Array<{ discoveredLabels: Record<string, string> }> }>;
  rules(): Promise<RuleInfo[]>;
  /** Prometheus's own log so far (stderr), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

const running = new Set<ChildProcess>();
// A crashed test must not leave a Prometheus behind: kill ours (by PID) on the way out.
process.once("exit", () => {
  for (const child of running) if (child.pid !== undefined && child.exitCode === null) child.kill("SIGKILL");
});

/** Prometheus durations take no fractions: 0.8 s is "800ms". */
function duration(seconds: number): string {
  const ms = Math.round(seconds * 1000);
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

function buildConfig(opts: StartPrometheusOptions): string {
  const interval = opts.scrapeIntervalSeconds ?? 1;
  const timeout = opts.scrapeTimeoutSeconds ?? interval * 0.8;
  const scrapeConfigs = opts.scrapeConfigs ?? [
    {
      job_name: "raftkv",
      honor_labels: true,
      static_configs: [{ targets: opts.targets ?? [], labels: opts.labels ?? { cluster: "local" } }],
    },
  ];
  return stringify({
    global: { scrape_interval: duration(interval), scrape_timeout: duration(timeout), evaluation_interval: duration(interval) },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: scrapeConfigs,
  });
}

async function getJson(url: string): Promise<{ status: string; data?: unknown; error?: string; errorType?: string }> {
  const res = await request(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const text = await res.body.text();
  try {
    return JSON.parse(text) as { status: string; data?: unknown; error?: string };
  } catch {
    throw new Error(`GET ${url}: HTTP ${res.statusCode}, not JSON: ${text.slice(0, 200)}`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts Prometheus and waits until it is ready. Throws (with its log) if it does not get there. */
export async function startPrometheus(opts: StartPrometheusOptions = {}): Promise<PrometheusHandle> {
  const binary = opts.binary ?? PROMETHEUS_BIN;
  if (!existsSync(binary)) throw new Error(`prometheus binary not found at ${binary} (Debian package "prometheus")`);
  const config = buildConfig(opts);
  let lastError = "";
  // A free port can be taken between our probe and Prometheus's bind: retry a couple of times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), "raftkv-prometheus-"));
    const configFile = join(dir, "prometheus.yml");
    writeFileSync(configFile, config);
    const port = await freePort();
    const child = spawn(
      binary,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1d",
        "--log.level=info",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    running.add(child);
    let stderr = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (s: string) => {
      // Keep the tail only: a long test must not grow this without bound.
      stderr = (stderr + s).slice(-200_000);
    });
    const url = `http://127.0.0.1:${port}`;

    const stop = async () => {
      await stopChild(child, 10_000);
      running.delete(child);
      rmSync(dir, { recursive: true, force: true });
    };

    const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
    let ready = false;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        const res = await request(`${url}/-/ready`, { headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.dump();
        if (res.statusCode === 200) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    if (!ready) {
      await stop();
      lastError = `prometheus did not become ready on ${url}:\n${stderr.slice(-4000)}`;
      if (/address already in use/i.test(stderr)) continue;
      throw new Error(lastError);
    }

    const query = async (expr: string, time?: number): Promise<QueryData> => {
      const params = new URLSearchParams({ query: expr });
      if (time !== undefined) params.set("time", String(time));
      const body = await getJson(`${url}/api/v1/query?${params}`);
      if (body.status !== "success") throw new Error(`PromQL ${JSON.stringify(expr)}: ${body.errorType ?? "error"}: ${body.error}`);
      return body.data as QueryData;
    };
    const queryVector = async (expr: string, time?: number): Promise<VectorSample[]> => {
      const data = await query(expr, time);
      if (data.resultType === "scalar") {
        const [t, v] = data.result as [number, string];
        return [{ metric: {}, value: Number(v), time: t }];
      }
      if (data.resultType !== "vector") throw new Error(`PromQL ${JSON.stringify(expr)}: expected a vector, got ${data.resultType}`);
      return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({
        metric: s.metric,
        value: Number(s.value[1]),
        time: s.value[0],
      }));
    };
    const handle: PrometheusHandle = {
      url,
      port,
      pid: child.pid!,
      dir,
      config,
      query,
      queryVector,
      async waitFor(expr, until, waitOpts = {}) {
        const end = Date.now() + (waitOpts.timeoutMs ?? 20_000);
        let last: VectorSample[] = [];
        let lastErr: unknown;
        while (Date.now() < end) {
          try {
            last = await queryVector(expr);
            lastErr = undefined;
            if (until(last)) return last;
          } catch (err) {
            lastErr = err;
          }
          await sleep(waitOpts.intervalMs ?? 250);
        }
        throw new Error(
          `timed out waiting on ${JSON.stringify(expr)}; last result: ${JSON.stringify(last)}${lastErr ? `; last error: ${String(lastErr)}` : ""}`,
        );
      },
      async targets() {
        const body = await getJson(`${url}/api/v1/targets`);
        return body.data as Awaited<ReturnType<PrometheusHandle["targets"]>>;
      },
      async rules() {
        const body = await getJson(`${url}/api/v1/rules`);
        const groups = (body.data as { groups: Array<{ rules: RuleInfo[] }> }).groups;
        return groups.flatMap((g) => g.rules);
      },
      log: () => stderr,
      stop,
    };
    return handle;
  }
  throw new Error(lastError);
}
