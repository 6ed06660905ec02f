// A real Prometheus (Debian's) scraping three real exporters, each reading a node's /status
// (the node side is the status fixture until the node exists; the end-to-end test against a
// real cluster reuses prometheus-harness.ts and listPromQLExpressions()).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { parse as parseYaml } from "yaml";
import type { StatusDocument } from "../../services/common/status.js";
import { startExporterServer, type RunningExporter } from "../../services/exporter/server.js";
import { makeStatusDocument, startStatusServer, type StatusServer } from "../../services/exporter/status-fixture.js";
import { ALERTS_FILE, PROMETHEUS_DIR, prometheusAvailable, startPrometheus, type PrometheusHandle } from "./prometheus-harness.js";
import { DEFAULT_GRAFANA_VARIABLES, listPromQLExpressions } from "./promql-expressions.js";

const skip = prometheusAvailable() ? false : "prometheus is not installed (Debian package `prometheus`; .ci/run installs it)";
const VOTERS = ["n1", "n2", "n3"];

describe("a real Prometheus scraping raftkv exporters", { skip }, () => {
  const nodes: StatusServer[] = [];
  const exporters: RunningExporter[] = [];
  let tick: NodeJS.Timeout | undefined;
  let step = 0;
  let promMain: PrometheusHandle;
  let promK8s: PrometheusHandle;

  /** The cluster moves on between scrapes: more samples in every histogram, a higher commit index. */
  function documentFor(nodeId: string): StatusDocument {
    return makeStatusDocument({
      nodeId,
      voters: VOTERS,
      role: nodeId === "n1" ? "leader" : "follower",
      leaderId: "n1",
      term: 4,
      commitIndex: 1000 + step * 25,
      samples: 200 + step * 10,
      leaderChanges: 2,
    });
  }

  before(async () => {
    for (const id of VOTERS) {
      const node = await startStatusServer(documentFor(id));
      nodes.push(node);
      exporters.push(
        await startExporterServer({ statusUrl: node.url, host: "127.0.0.1", port: 0, timeoutMs: 500, logLevel: "silent" }, pino({ level: "silent" })),
      );
    }
    tick = setInterval(() => {
      step++;
      nodes.forEach((n, i) => (n.document = documentFor(VOTERS[i]!)));
    }, 250);
    // Both at once: Prometheus hands discovered targets to its scrapers only every 5 s.
    [promMain, promK8s] = await Promise.all([
      startPrometheus({ targets: exporters.map(hostPort), ruleFiles: [ALERTS_FILE] }),
      startPrometheus({ scrapeConfigs: [kubernetesJob()] }),
    ]);
  });
  after(async () => {
    await Promise.all([promMain?.stop(), promK8s?.stop()]);
    clearInterval(tick);
    await Promise.all(exporters.map((e) => e.close()));
    await Promise.all(nodes.map((n) => n.close()));
  });

  const hostPort = (e: RunningExporter) => `127.0.0.1:${e.port}`;

  /**
   * The Kubernetes scrape config, fed the labels pod discovery would produce through static
   * targets (Debian's Prometheus is built without Kubernetes discovery): the same
   * relabel_configs run in the real Prometheus.
   */
  function kubernetesJob(): Record<string, unknown> {
    const config = parseYaml(readFileSync(join(PROMETHEUS_DIR, "prometheus.kubernetes.yml"), "utf8")) as {
      scrape_configs: Array<Record<string, unknown>>;
    };
    const job = { ...config.scrape_configs[0]! };
    delete job.kubernetes_sd_configs;
    const pod = (e: RunningExporter, meta: Record<string, string>) => ({ targets: [hostPort(e)], labels: meta });
    const running = {
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: "true",
      __meta_kubernetes_pod_container_port_name: "metrics",
      __meta_kubernetes_pod_phase: "Running",
      __meta_kubernetes_namespace: "db",
      __meta_kubernetes_pod_controller_kind: "StatefulSet",
      __meta_kubernetes_pod_controller_name: "raftkv",
    };
    job.static_configs = [
      pod(exporters[0]!, { ...running, __meta_kubernetes_pod_name: "raftkv-0" }),
      pod(exporters[1]!, {
        ...running,
        __meta_kubernetes_pod_name: "orders-1",
        __meta_kubernetes_pod_controller_name: "orders",
        __meta_kubernetes_pod_label_app_kubernetes_io_instance: "orders-prod",
        __meta_kubernetes_pod_annotation_prometheus_io_path: "/metrics",
      }),
      pod(exporters[2]!, { ...running, __meta_kubernetes_pod_name: "raftkv-2", __meta_kubernetes_pod_container_port_name: "grpc" }),
      pod(exporters[2]!, { ...running, __meta_kubernetes_pod_name: "raftkv-3", __meta_kubernetes_pod_annotation_prometheus_io_scrape: "false" }),
      pod(exporters[2]!, { ...running, __meta_kubernetes_pod_name: "raftkv-4", __meta_kubernetes_pod_phase: "Pending" }),
    ];
    return job;
  }

  describe("with the static scrape config and the alert rules", () => {
    const prom = () => promMain;

    it("scrapes every exporter without errors, negotiating OpenMetrics", async () => {
      await prom().waitFor("raftkv_up == 1", (v) => v.length === 3);
      const { activeTargets } = await prom().targets();
      assert.equal(activeTargets.length, 3);
      for (const t of activeTargets) {
        assert.equal(t.health, "up", `${t.scrapeUrl}: ${t.lastError}`);
        assert.equal(t.lastError, "");
        assert.equal(t.labels.cluster, "local");
      }
      // Prometheus' real OpenMetrics parser read every scrape.
      const om = await prom().queryVector('raftkv_exporter_scrapes_total{format="openmetrics"} > 0');
      assert.equal(om.length, 3);
      const text = await prom().queryVector('raftkv_exporter_scrapes_total{format="prometheus"} > 0');
      assert.equal(text.length, 0);
    });

    it("sees exactly one leader, and every member in the same term", async () => {
      const leaders = await prom().waitFor("raftkv_server_is_leader == 1", (v) => v.length === 1);
      const info = await prom().queryVector(`raftkv_node_info * on (job, instance) group_left () (raftkv_server_is_leader == 1)`);
      assert.equal(info.length, 1);
      assert.equal(info[0]!.metric.node_id, "n1");
      assert.equal(leaders[0]!.metric.instance, hostPort(exporters[0]!));
      const terms = await prom().queryVector("raftkv_raft_term");
      assert.deepEqual(terms.map((t) => t.value), [4, 4, 4]);
      // The node's own cluster label survives next to the target's (honor_labels).
      assert.deepEqual([...new Set(info.map((s) => s.metric.cluster))], ["local"]);
    });

    it("stores counters under their _total names and histograms with the node's buckets", async () => {
      const changes = await prom().queryVector("raftkv_server_leader_changes_seen_total");
      assert.deepEqual(changes.map((c) => c.value), [2, 2, 2]);
      const buckets = await prom().queryVector('count by (instance) (raftkv_disk_wal_fsync_duration_seconds_bucket)');
      const bounds = nodes[0]!.document.histograms.walFsyncSeconds.buckets.length + 1;
      assert.deepEqual(buckets.map((b) => b.value), [bounds, bounds, bounds]);
      const p99 = await prom().waitFor(
        "histogram_quantile(0.99, rate(raftkv_disk_wal_fsync_duration_seconds_bucket[1m]))",
        (v) => v.length === 3 && v.every((s) => Number.isFinite(s.value) && s.value > 0),
      );
      for (const s of p99) assert.ok(s.value < 1, `p99 fsync ${s.value}s is in the fixture's range`);
    });

    it("runs every dashboard query with data, and every alert expression without error", async () => {
      // rate() needs two samples in its window.
      await prom().waitFor("count_over_time(raftkv_up[1m])", (v) => v.length === 3 && v.every((s) => s.value >= 3));
      const exprs = listPromQLExpressions({ variables: { ...DEFAULT_GRAFANA_VARIABLES, cluster: "local" } });
      const empty: string[] = [];
      const unlabelled: string[] = [];
      for (const e of exprs) {
        const data = await prom().query(e.query);
        const series = Array.isArray(data.result) ? (data.result as Array<{ metric: Record<string, string> }>) : [];
        if (e.expectsData && series.length === 0 && data.resultType !== "scalar") empty.push(`${e.where}: ${e.query}`);
        // A legend like {{node_id}} over series without that label shows blank names.
        for (const label of e.legendLabels) {
          if (series.some((s) => !(label in s.metric))) unlabelled.push(`${e.where}: {{${label}}} missing in ${JSON.stringify(series[0]?.metric)}`);
        }
      }
      assert.deepEqual(empty, [], "dashboard queries without data");
      assert.deepEqual(unlabelled, [], "legend labels the query does not return");
    });

    it("evaluates every alert rule without error, none firing on a healthy cluster", async () => {
      // Rules report health "unknown" until their first evaluation (every second here).
      const end = Date.now() + 10_000;
      let evaluated = await prom().rules();
      while (Date.now() < end && evaluated.some((x) => x.health !== "ok")) {
        await new Promise((res) => setTimeout(res, 250));
        evaluated = await prom().rules();
      }
      assert.equal(evaluated.length, 13);
      for (const r of evaluated) assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
      assert.deepEqual(await prom().queryVector("ALERTS"), []);
    });

    it("reports a dead node as raftkv_up 0, drops its other metrics, and raises RaftkvMembersDown (pending)", async () => {
      const dead = nodes[2]!;
      const port = dead.port;
      const instance = hostPort(exporters[2]!);
      await dead.close();
      await prom().waitFor(`raftkv_up{instance="${instance}"} == 0`, (v) => v.length === 1);
      await prom().waitFor("raftkv_raft_term", (v) => v.length === 2 && v.every((s) => s.metric.instance !== instance));
      await prom().waitFor('ALERTS{alertname="RaftkvMembersDown", alertstate="pending"}', (v) => v.length === 1 && v[0]!.metric.cluster === "local");
      // The exporter itself stays up: `up` still means "the sidecar answers".
      assert.deepEqual((await prom().queryVector(`up{instance="${instance}"}`)).map((s) => s.value), [1]);

      // The node comes back on its port: full metrics again.
      nodes[2] = await startStatusServer(documentFor("n3"), { port });
      await prom().waitFor(`raftkv_up{instance="${instance}"} == 1`, (v) => v.length === 1);
      await prom().waitFor("raftkv_raft_term", (v) => v.length === 3);
    });
  });

  describe("with the Kubernetes scrape config's relabeling", () => {
    const prom = () => promK8s;

    it("keeps annotated pods' metrics ports and labels them with namespace, pod and cluster", async () => {
      await prom().waitFor("raftkv_up == 1", (v) => v.length === 2);
      const { activeTargets, droppedTargets } = await prom().targets();
      const labels = activeTargets
        .map((t) => ({ namespace: t.labels.namespace, pod: t.labels.pod, cluster: t.labels.cluster, health: t.health }))
        .sort((a, b) => a.pod!.localeCompare(b.pod!));
      assert.deepEqual(labels, [
        { namespace: "db", pod: "orders-1", cluster: "orders-prod", health: "up" },
        { namespace: "db", pod: "raftkv-0", cluster: "raftkv", health: "up" },
      ]);
      assert.equal(droppedTargets.length, 3);
      // The dashboard's variables find them.
      const namespaces = await prom().queryVector('count by (namespace) (raftkv_up{namespace=~".*"})');
      assert.deepEqual(namespaces.map((s) => s.metric.namespace), ["db"]);
    });
  });
});
