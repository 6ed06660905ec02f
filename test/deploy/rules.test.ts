// The alert rules (prometheus/alerts.yml), their promtool unit tests, and the scrape configs.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { ALERTS_FILE, PROMETHEUS_DIR, promtoolPath } from "./prometheus-harness.js";
import { exportedMetricNames, listPromQLExpressions, metricNamesIn } from "./promql-expressions.js";

const promtool = promtoolPath();
const skipWithoutPromtool = promtool ? false : "promtool is not installed (Debian package `prometheus`; .ci/run installs it)";

function runPromtool(args: string[]) {
  const r = spawnSync(promtool!, args, { cwd: PROMETHEUS_DIR, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (parseYaml(readFileSync(ALERTS_FILE, "utf8")) as { groups: Array<{ rules: AlertRule[] }> }).groups.flatMap((g) => g.rules);
const alertNames = [...new Set(rules.map((r) => r.alert))];

describe("alert rules", () => {
  it("promtool check rules accepts alerts.yml", { skip: skipWithoutPromtool }, () => {
    const r = runPromtool(["check", "rules", "alerts.yml"]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it("promtool test rules passes alerts.test.yml", { skip: skipWithoutPromtool }, () => {
    const r = runPromtool(["test", "rules", "alerts.test.yml"]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /SUCCESS/);
  });

  it("covers etcd's mixin: no leader, insufficient members, members down, leader changes, fsync, apply, failed proposals, lagging follower", () => {
    for (const name of [
      "RaftkvNoLeader",
      "RaftkvInsufficientMembers",
      "RaftkvMembersDown",
      "RaftkvHighNumberOfLeaderChanges",
      "RaftkvHighFsyncDurations",
      "RaftkvHighApplyDurations",
      "RaftkvHighNumberOfFailedProposals",
      "RaftkvFollowerLagging",
    ]) {
      assert.ok(alertNames.includes(name), name);
    }
  });

  it("gives every alert a for:, a severity, a summary and a description", () => {
    for (const r of rules) {
      assert.match(r.for ?? "", /^\d+[smh]$/, `${r.alert}: for`);
      assert.ok(["warning", "critical"].includes(r.labels?.severity ?? ""), `${r.alert}: severity`);
      assert.ok((r.annotations?.summary ?? "").length > 10, `${r.alert}: summary`);
      assert.ok((r.annotations?.description ?? "").length > 20, `${r.alert}: description`);
    }
  });

  it("has a promtool unit test where each alert fires and one where it does not", () => {
    const tests = (parseYaml(readFileSync(join(PROMETHEUS_DIR, "alerts.test.yml"), "utf8")) as {
      rule_files: string[];
      tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
    });
    assert.deepEqual(tests.rule_files, ["alerts.yml"]);
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const name of alertNames) {
      const mine = cases.filter((c) => c.alertname === name);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: a case where it fires`);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: a case where it does not fire`);
    }
    for (const severity of ["warning", "critical"]) {
      // The two-level alerts are tested at both levels.
      for (const name of alertNames.filter((n) => rules.filter((r) => r.alert === n).length > 1)) {
        const fired = cases.filter((c) => c.alertname === name).flatMap((c) => (c.exp_alerts ?? []) as Array<{ exp_labels: Record<string, string> }>);
        assert.ok(fired.some((a) => a.exp_labels.severity === severity), `${name} ${severity}`);
      }
    }
  });

  it("references only metrics the exporter emits (or Prometheus' own `up`)", async () => {
    const known = await exportedMetricNames();
    for (const e of listPromQLExpressions().filter((x) => x.source === "alert-rule")) {
      for (const name of metricNamesIn(e.query)) assert.ok(known.has(name), `${e.where}: ${name} is not exported`);
    }
  });
});

describe("scrape configs", () => {
  for (const file of ["prometheus.compose.yml", "prometheus.local.yml"]) {
    it(`promtool check config accepts ${file} (and the rule file it loads)`, { skip: skipWithoutPromtool }, () => {
      const r = runPromtool(["check", "config", file]);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /SUCCESS: 1 rule files found/);
    });
  }

  it("the compose config scrapes the three exporters with the cluster label the nodes use", () => {
    const c = parseYaml(readFileSync(join(PROMETHEUS_DIR, "prometheus.compose.yml"), "utf8")) as {
      scrape_configs: Array<{ job_name: string; honor_labels?: boolean; static_configs: Array<{ targets: string[]; labels: Record<string, string> }> }>;
    };
    const job = c.scrape_configs.find((j) => j.job_name === "raftkv")!;
    assert.deepEqual(job.static_configs[0]!.targets, ["pod1:9100", "pod2:9100", "pod3:9100"]);
    assert.equal(job.static_configs[0]!.labels.cluster, "compose");
    assert.equal(job.honor_labels, true);
  });

  it("the Kubernetes config discovers pods (its relabeling runs in a real Prometheus in metrics-prometheus.test.ts)", () => {
    const c = parseYaml(readFileSync(join(PROMETHEUS_DIR, "prometheus.kubernetes.yml"), "utf8")) as {
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; kubernetes_sd_configs: Array<{ role: string }>; relabel_configs: unknown[] }>;
    };
    assert.deepEqual(c.rule_files, ["alerts.yml"]);
    const job = c.scrape_configs.find((j) => j.job_name === "raftkv")!;
    assert.deepEqual(job.kubernetes_sd_configs, [{ role: "pod" }]);
    assert.ok(job.relabel_configs.length >= 5);
  });
});
