import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { request } from "undici";
import { startExporterServer, type RunningExporter } from "./server.js";
import { clusterDocuments, startStatusServer, type StatusServer } from "./status-fixture.js";

const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await request(url, { headers, headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, contentType: String(res.headers["content-type"] ?? ""), body: await res.body.text() };
}

describe("exporter HTTP server", () => {
  let node: StatusServer;
  let exporter: RunningExporter;
  before(async () => {
    node = await startStatusServer(clusterDocuments()[0]!);
    exporter = await startExporterServer(
      { statusUrl: node.url, host: "127.0.0.1", port: 0, timeoutMs: 3000, logLevel: "silent" },
      pino({ level: "silent" }),
    );
  });
  after(async () => {
    await exporter.close();
    await node.close();
  });

  it("serves the Prometheus text format 0.0.4 to a client that does not ask for OpenMetrics", async () => {
    const res = await get(`${exporter.url}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.contentType, "text/plain; version=0.0.4; charset=utf-8");
    assert.match(res.body, /^raftkv_up 1$/m);
    assert.match(res.body, /^# TYPE raftkv_server_leader_changes_seen_total counter$/m);
    assert.doesNotMatch(res.body, /# EOF/);
  });

  it("serves OpenMetrics 1.0.0 to Prometheus' Accept header", async () => {
    const res = await get(`${exporter.url}/metrics`, { accept: PROMETHEUS_ACCEPT });
    assert.equal(res.status, 200);
    assert.equal(res.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert.match(res.body, /^# TYPE raftkv_server_leader_changes_seen counter$/m);
    assert.ok(res.body.endsWith("# EOF\n"));
  });

  it("answers 200 with raftkv_up 0 while the node is down (so `up` keeps meaning the exporter), and recovers", async () => {
    node.mode = "http-500";
    const down = await get(`${exporter.url}/metrics`);
    assert.equal(down.status, 200);
    assert.match(down.body, /^raftkv_up 0$/m);
    assert.doesNotMatch(down.body, /^raftkv_raft_term /m);
    node.mode = "ok";
    const up = await get(`${exporter.url}/metrics`);
    assert.match(up.body, /^raftkv_up 1$/m);
    assert.match(up.body, /^raftkv_raft_term 3$/m);
  });

  it("keeps a scrape inside X-Prometheus-Scrape-Timeout-Seconds when the node hangs", async () => {
    node.mode = "hang";
    const started = performance.now();
    const res = await get(`${exporter.url}/metrics`, { "x-prometheus-scrape-timeout-seconds": "0.5" });
    const elapsed = performance.now() - started;
    node.mode = "ok";
    assert.equal(res.status, 200);
    assert.match(res.body, /^raftkv_up 0$/m);
    assert.ok(elapsed < 600, `answered in ${elapsed.toFixed(0)} ms, inside the 500 ms scrape timeout`);
  });

  it("answers /livez whatever the node's state", async () => {
    node.mode = "garbage";
    const res = await get(`${exporter.url}/livez`);
    node.mode = "ok";
    assert.equal(res.status, 200);
    assert.equal(res.body, "ok\n");
  });

  it("answers 404 for other paths", async () => {
    assert.equal((await get(`${exporter.url}/status`)).status, 404);
  });
});

describe("raftkv-exporter command", () => {
  const main = join(import.meta.dirname, "main.ts");

  function run(args: string[], env: Record<string, string> = {}) {
    const child = spawn(process.execPath, ["--import", "tsx", main, ...args], {
      env: { ...process.env, RAFTKV_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const exit = once(child, "exit") as Promise<[number | null, string | null]>;
    return { child, exit, out: () => stdout, err: () => stderr };
  }

  it("prints its usage for --help and exits 0", async () => {
    const p = run(["--help"]);
    const [code] = await p.exit;
    assert.equal(code, 0);
    assert.match(p.out(), /Usage: raftkv-exporter \[options\]/);
    assert.match(p.out(), /RAFTKV_EXPORTER_TIMEOUT_MS/);
  });

  it("refuses a bad setting with exit code 2 and a message naming it", async () => {
    const p = run([], { RAFTKV_EXPORTER_PORT: "ninety-one hundred" });
    const [code] = await p.exit;
    assert.equal(code, 2);
    assert.match(p.err(), /raftkv-exporter: RAFTKV_EXPORTER_PORT: must be an integer in 0\.\.65535, got "ninety-one hundred"/);
  });

  it("runs as a process: serves /metrics for its node and stops cleanly on SIGTERM", async () => {
    const node = await startStatusServer(clusterDocuments()[1]!);
    const p = run(["--port", "0", "--host", "127.0.0.1", "--status-url", node.url]);
    try {
      // The listening line carries the real port (0 = any free one).
      const deadline = Date.now() + 15_000;
      let url: string | undefined;
      while (!url && Date.now() < deadline && p.child.exitCode === null) {
        url = /"metrics":"(http:\/\/127\.0\.0\.1:\d+\/metrics)"/.exec(p.out())?.[1];
        if (!url) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(url, `no listening line; stdout: ${p.out()} stderr: ${p.err()}`);
      const res = await get(url);
      assert.match(res.body, /^raftkv_up 1$/m);
      assert.match(res.body, /^raftkv_node_info\{node_id="n2",version="0.1.0",cluster="local"\} 1$/m);
      p.child.kill("SIGTERM");
      const [code] = await p.exit;
      assert.equal(code, 0);
      assert.match(p.out(), /"msg":"stopping"/);
    } finally {
      if (p.child.exitCode === null) p.child.kill("SIGKILL");
      await node.close();
    }
  });
});
