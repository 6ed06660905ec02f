// Every PromQL expression the project ships, in one list: the Grafana dashboard's panel queries
// and variable queries, and the alert rules. Tests use it to check that each expression parses,
// references only metrics the exporter emits, and (against a real Prometheus scraping a real
// cluster) returns data.
//
//   for (const e of listPromQLExpressions()) await prom.query(e.query);

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { pino } from "pino";
import { parse as parseYaml } from "yaml";
import { Exporter } from "../../services/exporter/exporter.js";
import { clusterDocuments, startStatusServer } from "../../services/exporter/status-fixture.js";

const REPO = resolve(import.meta.dirname, "../..");
export const DASHBOARD_FILE = join(REPO, "grafana/dashboards/raftkv.json");
export const RULES_FILES = [join(REPO, "prometheus/alerts.yml")];

export interface PromQLExpression {
  /** Where it lives. */
  source: "dashboard-panel" | "dashboard-variable" | "alert-rule" | "recording-rule";
  /** Human pointer for failure messages, e.g. `panel "Term per member" A` or `alert RaftkvNoLeader`. */
  where: string;
  /** The expression as written (Grafana variables and all). */
  expr: string;
  /** What to send to Prometheus: Grafana variables replaced by `variables`. */
  query: string;
  /** Dashboard panels must show data on a healthy cluster; alert expressions are normally empty. */
  expectsData: boolean;
  /** Labels the panel's legend shows ({{node_id}} -> "node_id"): each result series must carry them. */
  legendLabels: string[];
}

/**
 * Values for Grafana's variables when an expression runs outside Grafana. `namespace`/`cluster`
 * as the "All" option (regex .*); `$__rate_interval` as one minute, which holds many samples at
 * any scrape interval up to 15s.
 */
export const DEFAULT_GRAFANA_VARIABLES: Readonly<Record<string, string>> = {
  namespace: ".*",
  cluster: ".*",
  datasource: "prometheus",
  __rate_interval: "1m",
  __interval: "15s",
  __range: "1h",
};

/** Replaces $name, ${name} and [[name]] by `variables[name]`; an unknown variable is an error. */
export function substituteGrafanaVariables(expr: string, variables: Readonly<Record<string, string>> = DEFAULT_GRAFANA_VARIABLES): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (_m, a: string | undefined, b: string | undefined, c: string | undefined) => {
    const name = (a ?? b ?? c)!;
    const value = variables[name];
    if (value === undefined) throw new Error(`unknown Grafana variable $${name} in ${JSON.stringify(expr)}`);
    return value;
  });
}

interface DashboardJson {
  panels?: Array<{ type: string; title?: string; targets?: Array<Record<string, unknown>>; panels?: DashboardJson["panels"] }>;
  templating?: { list?: Array<{ name: string; type: string; query?: unknown }> };
}

/** label_values(selector, label) -> selector; label_values(label) -> undefined (no metric). */
function variableSelector(query: string): string | undefined {
  const m = /^\s*label_values\(\s*(.+)\s*,\s*\w+\s*\)\s*$/s.exec(query);
  if (m) return m[1]!.trim();
  if (/^\s*label_values\(\s*\w+\s*\)\s*$/.test(query)) return undefined;
  const q = /^\s*query_result\((.+)\)\s*$/s.exec(query);
  if (q) return q[1]!.trim();
  throw new Error(`unsupported variable query ${JSON.stringify(query)}`);
}

export function listPromQLExpressions(
  opts: { dashboardFile?: string; rulesFiles?: string[]; variables?: Readonly<Record<string, string>> } = {},
): PromQLExpression[] {
  const variables = opts.variables ?? DEFAULT_GRAFANA_VARIABLES;
  const out: PromQLExpression[] = [];
  const dashboard = JSON.parse(readFileSync(opts.dashboardFile ?? DASHBOARD_FILE, "utf8")) as DashboardJson;
  const visit = (panels: DashboardJson["panels"]) => {
    for (const p of panels ?? []) {
      if (p.type === "row") {
        visit(p.panels);
        continue;
      }
      for (const t of p.targets ?? []) {
        if (typeof t.expr !== "string") throw new Error(`panel ${JSON.stringify(p.title)} target ${String(t.refId)} has no expr`);
        if (t.hide === true) continue;
        out.push({
          source: "dashboard-panel",
          where: `panel ${JSON.stringify(p.title)} ${String(t.refId)}`,
          expr: t.expr,
          query: substituteGrafanaVariables(t.expr, variables),
          expectsData: true,
          legendLabels: [...String(t.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!),
        });
      }
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : (v.query as { query?: string } | undefined)?.query;
    if (typeof q !== "string") throw new Error(`variable ${v.name} has no query`);
    const selector = variableSelector(q);
    if (selector === undefined) continue;
    out.push({
      source: "dashboard-variable",
      where: `variable $${v.name}`,
      expr: selector,
      query: substituteGrafanaVariables(selector, variables),
      expectsData: true,
      legendLabels: [],
    });
  }
  for (const file of opts.rulesFiles ?? RULES_FILES) {
    const doc = parseYaml(readFileSync(file, "utf8")) as { groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string }> }> };
    for (const g of doc.groups) {
      for (const r of g.rules) {
        const expr = String(r.expr).trim();
        out.push({
          source: r.alert ? "alert-rule" : "recording-rule",
          where: r.alert ? `alert ${r.alert} (${g.name})` : `record ${r.record} (${g.name})`,
          expr,
          query: expr,
          expectsData: false,
          legendLabels: [],
        });
      }
    }
  }
  return out;
}

/**
 * Metric names an expression selects (`foo{...}`, `{__name__="foo"}`), read with Prometheus's
 * own PromQL grammar (lezer-promql, as the Prometheus UI uses). Throws on a syntax error.
 */
export function metricNamesIn(query: string): string[] {
  const tree = parser.parse(query);
  const names = new Set<string>();
  let error: number | undefined;
  tree.iterate({
    enter(node) {
      if (node.type.isError && error === undefined) error = node.from;
      if (node.name === "Identifier" && node.node.parent?.name === "VectorSelector") names.add(query.slice(node.from, node.to));
      if (node.name === "UnquotedLabelMatcher") {
        const m = /^__name__\s*=\s*"([^"]+)"$/.exec(query.slice(node.from, node.to));
        if (m) names.add(m[1]!);
      }
    },
  });
  if (error !== undefined) throw new Error(`PromQL syntax error at offset ${error} in ${JSON.stringify(query)}: ...${query.slice(error, error + 30)}`);
  return [...names].sort();
}

/** Series Prometheus adds to every target itself. */
export const PROMETHEUS_SYNTHETIC_METRICS = ["up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"];

/** Sample names in an exposition (text 0.0.4 or OpenMetrics): `foo_bucket`, `foo_total`, ... */
export function sampleNamesIn(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (m) names.add(m[1]!);
  }
  return names;
}

/**
 * Every sample name the exporter emits for a full cluster (a leader's and a follower's status,
 * through the real Exporter and its HTTP fetch), plus the series Prometheus adds itself.
 */
export async function exportedMetricNames(): Promise<Set<string>> {
  const names = new Set<string>(PROMETHEUS_SYNTHETIC_METRICS);
  for (const doc of clusterDocuments().slice(0, 2)) {
    const server = await startStatusServer(doc);
    const exporter = new Exporter({ statusUrl: server.url, timeoutMs: 2000, logger: pino({ level: "silent" }) });
    try {
      const out = await exporter.scrape("prometheus");
      if (!out.up) throw new Error("the exporter did not read the fixture status");
      for (const n of sampleNamesIn(out.body)) names.add(n);
    } finally {
      await exporter.close();
      await server.close();
    }
  }
  return names;
}
