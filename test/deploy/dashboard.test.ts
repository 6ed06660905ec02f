// The Grafana dashboard (grafana/dashboards/raftkv.json) and the compose provisioning.
//
// Schema: generated at test time from Grafana's own dashboard types in @grafana/schema (the
// TypeScript that Grafana generates from its CUE dashboard kind), with ts-json-schema-generator,
// closed the way CUE definitions are (no unknown properties), and checked with ajv.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { before, describe, it } from "node:test";
import { parser } from "@prometheus-io/lezer-promql";
import { Ajv, type ValidateFunction } from "ajv";
import { createGenerator } from "ts-json-schema-generator";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { promtoolPath } from "./prometheus-harness.js";
import { DASHBOARD_FILE, exportedMetricNames, listPromQLExpressions, metricNamesIn, substituteGrafanaVariables } from "./promql-expressions.js";

const promtool = promtoolPath();
const REPO = resolve(import.meta.dirname, "../..");

interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; datasource?: { type?: string; uid?: string }; includeAll?: boolean; allValue?: string }> };
}

const raw = readFileSync(DASHBOARD_FILE, "utf8");
const dashboard = JSON.parse(raw) as Dashboard;
const panels = dashboard.panels.flatMap((p) => (p.type === "row" ? [p, ...(p.panels ?? [])] : [p]));
const queryPanels = panels.filter((p) => p.type !== "row");

/** Grafana's dashboard JSON schema, from the installed @grafana/schema's generated types. */
function grafanaDashboardSchema(): { schema: object; version: string } {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve("@grafana/schema/package.json");
  const version = (JSON.parse(readFileSync(pkgJson, "utf8")) as { version: string }).version;
  const path = join(dirname(pkgJson), "dist/esm/raw/dashboard/x/dashboard_types.gen.d.ts");
  const schema = createGenerator({ path, type: "Dashboard", skipTypeCheck: true, additionalProperties: false, expose: "all", topRef: true }).createSchema(
    "Dashboard",
  );
  return { schema, version };
}

function panelMetrics(p: Panel): string[] {
  return (p.targets ?? []).flatMap((t) => metricNamesIn(substituteGrafanaVariables(t.expr)));
}

describe("Grafana dashboard", () => {
  let validate: ValidateFunction;
  let schemaVersion = "";
  before(() => {
    const { schema, version } = grafanaDashboardSchema();
    schemaVersion = version;
    validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  });

  it("validates against Grafana's dashboard schema (@grafana/schema, closed as in CUE)", () => {
    const ok = validate(dashboard);
    assert.ok(ok, `@grafana/schema ${schemaVersion}: ${JSON.stringify(validate.errors?.slice(0, 5), null, 1)}`);
  });

  it("the schema check can fail: a misspelt panel field or a wrong type is rejected", () => {
    const typo = structuredClone(dashboard) as unknown as { panels: Array<Record<string, unknown>> };
    typo.panels[0]!.titel = "Leader";
    assert.equal(validate(typo), false);
    const wrongType = structuredClone(dashboard) as unknown as { schemaVersion: unknown };
    wrongType.schemaVersion = "39";
    assert.equal(validate(wrongType), false);
  });

  it("is provisionable: a stable uid, a title, and a Grafana 10/11 schemaVersion", () => {
    assert.equal(dashboard.uid, "raftkv-overview");
    assert.ok(dashboard.title.length > 0);
    assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, String(dashboard.schemaVersion));
  });

  it("has datasource, namespace and cluster variables, the latter two queried through the datasource variable", () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    assert.equal(vars.get("datasource")?.type, "datasource");
    assert.equal(vars.get("datasource")?.query, "prometheus");
    for (const name of ["namespace", "cluster"]) {
      const v = vars.get(name)!;
      assert.equal(v.type, "query", name);
      assert.deepEqual(v.datasource, { type: "prometheus", uid: "${datasource}" }, name);
      assert.equal(v.includeAll, true, name);
      assert.equal(v.allValue, ".*", name);
    }
  });

  it("queries every panel through the datasource variable, with unique refIds", () => {
    assert.ok(queryPanels.length >= 15);
    for (const p of queryPanels) {
      assert.deepEqual(p.datasource, { type: "prometheus", uid: "${datasource}" }, p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has queries`);
      const refIds = p.targets!.map((t) => t.refId);
      assert.equal(new Set(refIds).size, refIds.length, `${p.title}: refIds unique`);
      for (const t of p.targets!) {
        assert.deepEqual(t.datasource, { type: "prometheus", uid: "${datasource}" }, `${p.title} ${t.refId}`);
        assert.ok(t.expr.trim().length > 0);
      }
    }
  });

  it("filters every selector in every panel by $namespace and $cluster", () => {
    for (const p of queryPanels) {
      for (const t of p.targets!) {
        const expr = substituteGrafanaVariables(t.expr, { namespace: "$namespace", cluster: "$cluster", __rate_interval: "1m" });
        const tree = parser.parse(expr);
        tree.iterate({
          enter(node) {
            if (node.name !== "VectorSelector") return;
            const text = expr.slice(node.from, node.to);
            assert.ok(text.includes('namespace=~"$namespace"') && text.includes('cluster=~"$cluster"'), `${p.title} ${t.refId}: ${text}`);
          },
        });
      }
    }
  });

  it("puts the leader and term panels first, in the top row", () => {
    const top = queryPanels.filter((p) => p.gridPos.y === 0);
    assert.ok(top.some((p) => panelMetrics(p).includes("raftkv_server_is_leader")), "which member leads, in the top row");
    assert.ok(top.some((p) => panelMetrics(p).includes("raftkv_raft_term")), "the term, in the top row");
    assert.equal(dashboard.panels[0]!.gridPos.y, 0);
    assert.deepEqual(panelMetrics(dashboard.panels[0]!).sort(), ["raftkv_node_info", "raftkv_server_is_leader"]);
    // Before the first row header: only term/leader/membership panels.
    const firstRow = dashboard.panels.findIndex((p) => p.type === "row");
    for (const p of dashboard.panels.slice(0, firstRow)) {
      assert.ok(
        panelMetrics(p).some((m) => /^raftkv_(raft_term|server_is_leader|server_has_leader|up|server_leader_changes_seen_total)$/.test(m)),
        p.title,
      );
    }
    assert.ok(dashboard.panels.slice(0, firstRow).some((p) => p.type === "timeseries" && panelMetrics(p).includes("raftkv_raft_term")), "term per node over time, before the first row");
  });

  it("has the panels the issue asks for", () => {
    const has = (what: string, pred: (p: Panel, metrics: string[], exprs: string) => boolean) =>
      assert.ok(
        queryPanels.some((p) => pred(p, panelMetrics(p), p.targets!.map((t) => t.expr).join("\n"))),
        what,
      );
    has("members up", (_p, m) => m.includes("raftkv_up"));
    has("has leader", (_p, m) => m.includes("raftkv_server_has_leader"));
    has("which node is leader", (_p, m) => m.includes("raftkv_server_is_leader"));
    has("term per node over time", (p, m) => p.type === "timeseries" && m.includes("raftkv_raft_term"));
    has("leader changes per day", (_p, _m, e) => /increase\(raftkv_server_leader_changes_seen_total\{[^}]*\}\[1d\]\)/.test(e));
    has("commit vs applied index", (_p, m) => m.includes("raftkv_raft_commit_index") && m.includes("raftkv_raft_applied_index"));
    has("proposal rates", (_p, m) => m.includes("raftkv_server_proposals_committed_total") && m.includes("raftkv_server_proposals_applied_total"));
    has("proposal failures", (_p, m) => m.includes("raftkv_server_proposals_failed_total"));
    has("WAL fsync p99", (_p, _m, e) => /histogram_quantile\(0\.99, .*raftkv_disk_wal_fsync_duration_seconds_bucket/.test(e));
    has("apply p99", (_p, _m, e) => /histogram_quantile\(0\.99, .*raftkv_server_apply_duration_seconds_bucket/.test(e));
    has("peer RTT p99", (_p, _m, e) => /histogram_quantile\(0\.99, .*raftkv_network_peer_round_trip_time_seconds_bucket/.test(e));
    has("follower lag", (_p, m) => m.includes("raftkv_raft_replication_lag_entries"));
    has("request rate", (_p, _m, e) => /rate\(raftkv_client_requests_total/.test(e));
    has("request latency", (_p, m) => m.includes("raftkv_client_request_duration_seconds_bucket"));
    has("memory", (_p, m) => m.includes("raftkv_process_resident_memory_bytes"));
  });

  it("lays panels out on Grafana's 24-column grid without overlaps, with unique ids", () => {
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    for (const p of panels) {
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.y >= 0 && g.h > 0, `${p.title}: ${JSON.stringify(g)}`);
    }
    for (let i = 0; i < panels.length; i++) {
      for (let j = i + 1; j < panels.length; j++) {
        const a = panels[i]!.gridPos;
        const b = panels[j]!.gridPos;
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!overlap, `${panels[i]!.title} overlaps ${panels[j]!.title}`);
      }
    }
  });

  it("references only metrics the exporter emits, in every panel and variable", async () => {
    const known = await exportedMetricNames();
    const exprs = listPromQLExpressions().filter((e) => e.source !== "alert-rule" && e.source !== "recording-rule");
    assert.ok(exprs.length >= 20);
    for (const e of exprs) {
      for (const name of metricNamesIn(e.query)) assert.ok(known.has(name), `${e.where}: ${name} is not exported`);
    }
  });

  it("every query parses with Prometheus' own PromQL parser (promtool)", { skip: promtool ? false : "promtool is not installed (Debian package `prometheus`)" }, () => {
    const exprs = listPromQLExpressions().filter((e) => e.source !== "alert-rule");
    const dir = mkdtempSync(join(tmpdir(), "raftkv-dashboard-"));
    try {
      const file = join(dir, "dashboard-queries.yml");
      writeFileSync(file, stringifyYaml({ groups: [{ name: "dashboard", rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: e.query })) }] }));
      const r = spawnSync(promtool!, ["check", "rules", file], { encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      assert.match(r.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("Grafana provisioning for docker compose", () => {
  it("provisions Prometheus at http://prometheus:9090 as the default prometheus datasource", () => {
    const ds = parseYaml(readFileSync(join(REPO, "grafana/provisioning/datasources/prometheus.yml"), "utf8")) as {
      apiVersion: number;
      datasources: Array<{ name: string; type: string; url: string; access: string; isDefault: boolean }>;
    };
    assert.equal(ds.apiVersion, 1);
    assert.equal(ds.datasources.length, 1);
    assert.equal(ds.datasources[0]!.type, "prometheus");
    assert.equal(ds.datasources[0]!.url, "http://prometheus:9090");
    assert.equal(ds.datasources[0]!.access, "proxy");
    assert.equal(ds.datasources[0]!.isDefault, true);
  });

  it("loads the dashboards directory through a file provider", () => {
    const p = parseYaml(readFileSync(join(REPO, "grafana/provisioning/dashboards/raftkv.yml"), "utf8")) as {
      apiVersion: number;
      providers: Array<{ type: string; options: { path: string } }>;
    };
    assert.equal(p.apiVersion, 1);
    assert.equal(p.providers[0]!.type, "file");
    assert.equal(p.providers[0]!.options.path, "/var/lib/grafana/dashboards");
  });
});
