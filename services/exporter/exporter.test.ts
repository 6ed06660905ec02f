import assert from "node:assert/strict";
import { after, afterEach, describe, it } from "node:test";
import { pino } from "pino";
import { Exporter, negotiateFormat } from "./exporter.js";
import { clusterDocuments, makeStatusDocument, startStatusServer, type StatusMode, type StatusServer } from "./status-fixture.js";

/** A real pino logger writing into an array, to check what the exporter logs and how often. */
function capturingLogger() {
  const lines: Array<{ level: number; msg: string; result?: string }> = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

const PROMETHEUS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/** raftkv_ samples other than raftkv_up and the exporter's own: the node's metrics. */
function nodeSampleLines(body: string): string[] {
  return body.split("\n").filter((l) => l.startsWith("raftkv_") && !l.startsWith("raftkv_up ") && !l.startsWith("raftkv_exporter_"));
}

function sample(body: string, series: string): number | undefined {
  const line = body.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("content negotiation", () => {
  const cases: Array<[string | undefined, "openmetrics" | "prometheus"]> = [
    [undefined, "prometheus"],
    ["", "prometheus"],
    [PROMETHEUS_ACCEPT, "openmetrics"],
    ["application/openmetrics-text", "openmetrics"],
    ["application/openmetrics-text; version=1.0.0; charset=utf-8", "openmetrics"],
    // We only produce 1.0.0; a scraper that wants only 0.0.1 gets the classic text format.
    ["application/openmetrics-text;version=0.0.1", "prometheus"],
    ["text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5", "prometheus"],
    ["application/openmetrics-text;q=0.5, text/plain;q=0.5", "openmetrics"],
    ["text/plain", "prometheus"],
    ["*/*", "prometheus"],
    ["application/json", "prometheus"],
    ["application/openmetrics-text;q=0", "prometheus"],
    [";;;,,=garbage", "prometheus"],
  ];
  for (const [accept, expected] of cases) {
    it(`Accept ${JSON.stringify(accept)} gets ${expected}`, () => assert.equal(negotiateFormat(accept), expected));
  }
});

describe("exporter scrape", () => {
  const servers: StatusServer[] = [];
  const exporters: Exporter[] = [];
  afterEach(async () => {
    await Promise.all(exporters.splice(0).map((e) => e.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.close()));
  });

  async function setup(opts: { timeoutMs?: number } = {}) {
    const server = await startStatusServer(clusterDocuments()[0]!);
    servers.push(server);
    const log = capturingLogger();
    const exporter = new Exporter({ statusUrl: server.url, timeoutMs: opts.timeoutMs ?? 1000, logger: log.logger });
    exporters.push(exporter);
    return { server, exporter, log };
  }

  it("serves the node's metrics with raftkv_up 1 when the status is readable", async () => {
    const { exporter, server } = await setup();
    const out = await exporter.scrape("prometheus");
    assert.equal(out.up, true);
    assert.equal(out.contentType, "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(sample(out.body, "raftkv_up"), 1);
    assert.equal(sample(out.body, "raftkv_raft_term"), server.document.term);
    assert.equal(sample(out.body, "raftkv_server_is_leader"), 1);
    // The exporter's own process metrics come along.
    assert.match(out.body, /^process_resident_memory_bytes \d+/m);
    assert.match(out.body, /^raftkv_exporter_scrape_duration_seconds [0-9.e-]+$/m);
  });

  it("renders OpenMetrics 1.0 when asked, ending in # EOF", async () => {
    const { exporter } = await setup();
    const out = await exporter.scrape("openmetrics");
    assert.equal(out.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert.ok(out.body.endsWith("# EOF\n"));
    assert.match(out.body, /^# TYPE process_cpu_seconds counter$/m);
    assert.match(out.body, /^process_cpu_seconds_total [0-9.e-]+$/m);
  });

  const failures: Array<[StatusMode | "down", string]> = [
    ["down", "unreachable"],
    ["garbage", "invalid_json"],
    ["truncated", "invalid_json"],
    ["wrong-shape", "invalid_document"],
    ["http-500", "bad_response"],
    ["hang", "timeout"],
  ];
  for (const [mode, result] of failures) {
    it(`node ${mode}: raftkv_up 0, no node metric at all, counted as ${result}; then recovers`, async () => {
      const { exporter, server } = await setup({ timeoutMs: 300 });
      assert.equal((await exporter.scrape("prometheus")).up, true);
      let port = server.port;
      if (mode === "down") {
        port = server.port;
        await server.close();
      } else {
        server.mode = mode;
      }
      const started = performance.now();
      const out = await exporter.scrape("prometheus");
      const elapsed = performance.now() - started;
      assert.equal(out.up, false);
      assert.equal(sample(out.body, "raftkv_up"), 0);
      assert.deepEqual(nodeSampleLines(out.body), []);
      assert.equal(sample(out.body, `raftkv_exporter_status_fetches_total{result="${result}"}`), 1);
      assert.equal(sample(out.body, `raftkv_exporter_status_fetches_total{result="ok"}`), 1);
      assert.ok(elapsed < 1500, `a failing scrape is bounded by the timeout (took ${elapsed.toFixed(0)} ms)`);

      // Recovery: the next readable status is exported in full again.
      if (mode === "down") {
        const again = await startStatusServer(clusterDocuments(8)[0]!, { port });
        servers.push(again);
      } else {
        server.mode = "ok";
      }
      const back = await exporter.scrape("prometheus");
      assert.equal(back.up, true);
      assert.equal(sample(back.body, "raftkv_up"), 1);
      assert.ok(nodeSampleLines(back.body).length > 50);
    });
  }

  it("never exports a value from an earlier scrape: a removed peer disappears, a new term replaces the old", async () => {
    const { exporter, server } = await setup();
    const first = await exporter.scrape("prometheus");
    assert.match(first.body, /peer="n3"/);
    const voters = ["n1", "n2"];
    server.document = makeStatusDocument({ nodeId: "n1", voters, role: "leader", leaderId: "n1", term: 11, commitIndex: 2000 });
    const second = await exporter.scrape("prometheus");
    assert.doesNotMatch(second.body, /peer="n3"/);
    assert.equal(sample(second.body, "raftkv_raft_term"), 11);
    // And after a failure nothing of the last good document is left.
    server.mode = "garbage";
    const third = await exporter.scrape("prometheus");
    assert.equal(third.body.includes("raftkv_raft_term"), false);
  });

  it("logs one warning when the node goes down and one info when it is back, not one per scrape", async () => {
    const { exporter, server, log } = await setup({ timeoutMs: 300 });
    const sequence: StatusMode[] = ["ok", "ok", "garbage", "garbage", "http-500", "truncated", "ok", "ok", "wrong-shape", "ok"];
    for (const mode of sequence) {
      server.mode = mode;
      await exporter.scrape("prometheus");
    }
    const warnings = log.warnings();
    assert.equal(warnings.length, 2, JSON.stringify(warnings));
    assert.equal(warnings[0]!.result, "invalid_json");
    assert.match(warnings[0]!.msg, /raftkv_up 0/);
    assert.equal(warnings[1]!.result, "invalid_document");
    assert.match(warnings[1]!.msg, /not a valid status document: peers: must be an array, got null/);
    const recoveries = log.lines.filter((l) => l.level === 30 && /readable again/.test(l.msg));
    assert.equal(recoveries.length, 2);
  });

  it("reuses one keep-alive connection across scrapes", async () => {
    const { exporter, server } = await setup();
    for (let i = 0; i < 5; i++) {
      assert.equal((await exporter.scrape(i % 2 ? "openmetrics" : "prometheus")).up, true);
      // Real scrapes are seconds apart; undici frees the socket a tick after the body ends.
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(server.requests, 5);
    assert.equal(server.connections, 1);
  });

  it("keeps the /status fetch inside the scraper's own timeout", async () => {
    const { exporter, server } = await setup({ timeoutMs: 5000 });
    assert.equal(exporter.fetchTimeoutMs(undefined), 5000);
    assert.equal(exporter.fetchTimeoutMs(10), 5000);
    assert.equal(exporter.fetchTimeoutMs(1), 800);
    assert.equal(exporter.fetchTimeoutMs(Number.NaN), 5000);
    server.mode = "hang";
    const started = performance.now();
    const out = await exporter.scrape("prometheus", { scrapeTimeoutSeconds: 0.5 });
    assert.equal(out.up, false);
    assert.ok(performance.now() - started < 1000);
  });

  it("counts its scrapes by format", async () => {
    const { exporter } = await setup();
    await exporter.scrape("prometheus");
    await exporter.scrape("openmetrics");
    const out = await exporter.scrape("openmetrics");
    assert.equal(sample(out.body, 'raftkv_exporter_scrapes_total{format="openmetrics"}'), 2);
    assert.equal(sample(out.body, 'raftkv_exporter_scrapes_total{format="prometheus"}'), 1);
  });
});
