// The Helm chart (helm/raftkv): rendered with its defaults and with other value sets, every object
// is one the API server accepts (unknown fields rejected), the workload is right for each, the
// values are checked by values.schema.json, and the embedded alert rules and dashboard are the
// repository's own.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import { parse as parseYaml, parseDocument, isMap, isPair, isScalar, type Node as YamlNode } from "yaml";
import { chartDir, chartPodEnv, only, renderChart, renderChartText, repoRoot, type ChartRenderOptions } from "./render.js";
import { validateObjects } from "./k8s-schema.js";
import { checkRaftkvWorkload } from "./workload-checks.js";
import { checkTemplates } from "./chart-files.js";

const MONITORING = ["monitoring.coreos.com/v1"];

/** The value sets the chart is proven with: name -> render options and what to expect. */
const valueSets: { name: string; opts: ChartRenderOptions; replicas: number; metrics: boolean; namespace: string }[] = [
  { name: "default values", opts: {}, replicas: 3, metrics: true, namespace: "default" },
  { name: "5 replicas", opts: { set: { replicaCount: 5 } }, replicas: 5, metrics: true, namespace: "default" },
  { name: "metrics off", opts: { set: { "metrics.enabled": false } }, replicas: 3, metrics: false, namespace: "default" },
  {
    name: "ServiceMonitor + PrometheusRule + dashboard on",
    opts: {
      values: { metrics: { serviceMonitor: { enabled: true, labels: { release: "kube-prom-stack" } }, prometheusRule: { enabled: true }, dashboard: { enabled: true } } },
      apiVersions: MONITORING,
    },
    replicas: 3,
    metrics: true,
    namespace: "default",
  },
  {
    name: "PodMonitor, release kv in namespace prod, hard anti-affinity, storage class, extra env",
    opts: {
      name: "kv",
      namespace: "prod",
      apiVersions: MONITORING,
      values: {
        metrics: { podMonitor: { enabled: true } },
        podAntiAffinityPreset: "hard",
        persistence: { storageClass: "microk8s-hostpath", size: "5Gi" },
        nodeSelector: { disktype: "ssd" },
        tolerations: [{ key: "dedicated", operator: "Equal", value: "raftkv", effect: "NoSchedule" }],
        extraEnv: [{ name: "RAFTKV_LOG_LEVEL", value: "debug" }],
        volumePermissions: { enabled: true },
      },
    },
    replicas: 3,
    metrics: true,
    namespace: "prod",
  },
];

function deepMerge(base: unknown, over: unknown): unknown {
  if (over && typeof over === "object" && !Array.isArray(over) && base && typeof base === "object" && !Array.isArray(base)) {
    const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
    for (const [k, v] of Object.entries(over)) out[k] = deepMerge(out[k], v);
    return out;
  }
  return over;
}

/** The values Helm would check against the schema: values.yaml, then -f values, then --set. */
function effectiveValues(opts: ChartRenderOptions): Record<string, unknown> {
  let values = deepMerge(parseYaml(readFileSync(join(chartDir, "values.yaml"), "utf8")), opts.values ?? {});
  for (const [path, v] of Object.entries(opts.set ?? {})) {
    const patch = path.split(".").reduceRight<unknown>((acc, key) => ({ [key]: acc }), v);
    values = deepMerge(values, patch);
  }
  return values as Record<string, unknown>;
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validateValues = ajv.compile(JSON.parse(readFileSync(join(chartDir, "values.schema.json"), "utf8")) as object);
const schemaErrors = (values: unknown) => (validateValues(values) ? [] : validateValues.errors!.map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`));

describe("helm/raftkv renders and validates", () => {
  for (const set of valueSets) {
    it(`with ${set.name}: every object passes the Kubernetes schema and the workload checks`, () => {
      assert.deepEqual(schemaErrors(effectiveValues(set.opts)), [], "values.schema.json rejects this value set");
      const objects = renderChart(set.opts);
      assert.deepEqual(validateObjects(objects), []);
      assert.deepEqual(checkRaftkvWorkload(objects, { replicas: set.replicas, metrics: set.metrics, namespace: set.namespace }), []);
    });
  }

  it("names everything after the release and derives the peers' DNS names from it", () => {
    const env = chartPodEnv(1, { name: "kv", namespace: "prod" });
    assert.equal(env.HOSTNAME, "kv-raftkv-1");
    assert.equal(env.RAFTKV_STATEFULSET_NAME, "kv-raftkv");
    assert.equal(env.RAFTKV_HEADLESS_SERVICE, "kv-raftkv-headless.prod.svc.cluster.local");
    assert.equal(env.RAFTKV_CLUSTER, "kv");
    // A release named like the chart does not repeat it: pods raftkv-0.., as in the kustomize base.
    assert.equal(chartPodEnv(0).HOSTNAME, "raftkv-0");
  });

  it("with 5 replicas every pod is told there are 5 voters", () => {
    const objects = renderChart({ set: { replicaCount: 5 } });
    assert.equal(only(objects, "StatefulSet").spec.replicas, 5);
    assert.equal(only(objects, "ConfigMap").data.RAFTKV_REPLICAS, "5");
    assert.equal(only(objects, "PodDisruptionBudget").spec.maxUnavailable, 1);
  });

  it("with metrics off there is no sidecar, no scrape annotation and no metrics port", () => {
    const objects = renderChart({ set: { "metrics.enabled": false } });
    const sts = only(objects, "StatefulSet");
    assert.deepEqual(sts.spec.template.spec.containers.map((c: { name: string }) => c.name), ["node"]);
    assert.equal(sts.spec.template.metadata.annotations["prometheus.io/scrape"], undefined);
    assert.ok(!only(objects, "Service", "raftkv-headless").spec.ports.some((p: { name: string }) => p.name === "metrics"));
  });

  it("the ServiceMonitor scrapes the sidecars through the headless Service, which lists unready pods", () => {
    const objects = renderChart({ set: { "metrics.serviceMonitor.enabled": true, "metrics.serviceMonitor.labels.release": "kube-prom-stack" }, apiVersions: MONITORING });
    const sm = only(objects, "ServiceMonitor");
    assert.equal(sm.metadata.labels!.release, "kube-prom-stack");
    const headless = only(objects, "Service", "raftkv-headless");
    assert.ok(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => headless.metadata.labels![k] === v), "selects the headless Service");
    const client = only(objects, "Service", "raftkv");
    assert.ok(!Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => client.metadata.labels![k] === v), "must not also select the client Service");
    assert.deepEqual(sm.spec.endpoints.map((e: { port: string }) => e.port), ["metrics"]);
  });

  it("both monitors label the series job=raftkv and cluster=<the nodes' RAFTKV_CLUSTER>, as the alert rules expect", () => {
    for (const monitor of ["serviceMonitor", "podMonitor"]) {
      const objects = renderChart({ name: "kv", set: { [`metrics.${monitor}.enabled`]: true }, apiVersions: MONITORING });
      const m = objects.find((o) => o.kind === "ServiceMonitor" || o.kind === "PodMonitor")!;
      const [endpoint] = m.spec.endpoints ?? m.spec.podMetricsEndpoints;
      const labels = Object.fromEntries(endpoint.relabelings.map((r: { targetLabel: string; replacement: string }) => [r.targetLabel, r.replacement]));
      assert.deepEqual(labels, { job: "raftkv", cluster: only(objects, "ConfigMap", "kv-raftkv-config").data.RAFTKV_CLUSTER });
      assert.equal(endpoint.honorLabels, true);
    }
    // The rules find exporter targets by job name.
    assert.match(readFileSync(join(repoRoot, "prometheus/alerts.yml"), "utf8"), /up\{job=~"\.\*raftkv\.\*"\}/);
  });

  it("the PrometheusRule carries exactly the groups of prometheus/alerts.yml", () => {
    const objects = renderChart({ set: { "metrics.prometheusRule.enabled": true }, apiVersions: MONITORING });
    const rules = parseYaml(readFileSync(join(repoRoot, "prometheus/alerts.yml"), "utf8")) as { groups: unknown[] };
    assert.ok(rules.groups.length > 0);
    assert.deepEqual(only(objects, "PrometheusRule").spec.groups, rules.groups);
  });

  it("the dashboard ConfigMap carries grafana/dashboards/raftkv.json for Grafana's sidecar", () => {
    const objects = renderChart({ values: { metrics: { dashboard: { enabled: true, namespace: "observability" } } } });
    const cm = only(objects, "ConfigMap", "raftkv-dashboard");
    assert.equal(cm.metadata.namespace, "observability");
    assert.equal(cm.metadata.labels!.grafana_dashboard, "1");
    const want = JSON.parse(readFileSync(join(repoRoot, "grafana/dashboards/raftkv.json"), "utf8")) as unknown;
    assert.deepEqual(JSON.parse(cm.data["raftkv.json"]), want);
  });

  it("the embedded alert rules and dashboard are up to date with their sources", () => {
    for (const { file, upToDate, error } of checkTemplates()) {
      assert.ok(upToDate, `${file.target}: ${error ?? `out of date with ${file.source}`}; run: node --import tsx test/deploy/chart-files.ts --write`);
    }
  });

  it("the anti-affinity preset is soft by default, hard or none on request, and affinity replaces it", () => {
    const affinity = (opts: ChartRenderOptions) => only(renderChart(opts), "StatefulSet").spec.template.spec.affinity;
    assert.ok(affinity({}).podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution);
    assert.ok(affinity({ set: { podAntiAffinityPreset: "hard" } }).podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution);
    assert.equal(affinity({ set: { podAntiAffinityPreset: "none" } }), undefined);
    const custom = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator: "In", values: ["a"] }] }] } } };
    assert.deepEqual(affinity({ values: { affinity: custom } }), custom);
  });

  it("extraEnv reaches the node and wins over the chart's own setting", () => {
    const env = chartPodEnv(0, { values: { extraEnv: [{ name: "RAFTKV_LOG_LEVEL", value: "debug" }, { name: "NODE_OPTIONS", value: "--max-old-space-size=256" }] } });
    assert.equal(env.RAFTKV_LOG_LEVEL, "debug");
    assert.equal(env.NODE_OPTIONS, "--max-old-space-size=256");
  });

  it("volumePermissions adds an init container that may only chown the data volume", () => {
    const sts = only(renderChart({ set: { "volumePermissions.enabled": true } }), "StatefulSet");
    const [init] = sts.spec.template.spec.initContainers;
    assert.deepEqual(init.command, ["chown", "-R", "1000:1000", "/var/lib/raftkv"]);
    assert.deepEqual(init.securityContext.capabilities, { drop: ["ALL"], add: ["CHOWN"] });
  });

  it("a settings change changes the pod template (so the StatefulSet rolls)", () => {
    const checksum = (opts: ChartRenderOptions) => only(renderChart(opts), "StatefulSet").spec.template.metadata.annotations["checksum/config"];
    assert.notEqual(checksum({}), checksum({ set: { "raft.electionMs": 1500 } }));
    assert.equal(checksum({}), checksum({}));
  });
});

describe("helm/raftkv refuses bad values with a message that says what to change", () => {
  const failure = (opts: ChartRenderOptions): string => {
    try {
      renderChartText(opts);
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail("rendering should have failed");
  };

  it("an even replicaCount", () => {
    assert.match(failure({ set: { replicaCount: 4 } }), /replicaCount must be odd and at least 1 \(3 or 5\), got 4/);
  });

  it("a ServiceMonitor or PrometheusRule on a cluster without the Prometheus Operator's API", () => {
    assert.match(failure({ set: { "metrics.serviceMonitor.enabled": true } }), /need the Prometheus Operator's CRDs \(API monitoring.coreos.com\/v1\)/);
    assert.match(failure({ set: { "metrics.prometheusRule.enabled": true } }), /--api-versions monitoring.coreos.com\/v1/);
  });

  it("a ServiceMonitor without the sidecar, and both monitors at once", () => {
    assert.match(failure({ set: { "metrics.enabled": false, "metrics.serviceMonitor.enabled": true }, apiVersions: MONITORING }), /metrics.serviceMonitor.enabled needs metrics.enabled=true/);
    assert.match(failure({ set: { "metrics.serviceMonitor.enabled": true, "metrics.podMonitor.enabled": true }, apiVersions: MONITORING }), /not both/);
  });
});

describe("values.schema.json", () => {
  it("accepts values.yaml as it is", () => {
    assert.deepEqual(schemaErrors(effectiveValues({})), []);
  });

  it("rejects a misspelt key, an even or zero replicaCount, an unknown preset and a bad duration", () => {
    assert.match(schemaErrors(effectiveValues({ values: { replicaCont: 5 } })).join(), /must NOT have additional properties.*replicaCont/);
    assert.match(schemaErrors(effectiveValues({ values: { metrics: { serviceMonitor: { intervall: "5s" } } } })).join(), /intervall/);
    assert.match(schemaErrors(effectiveValues({ set: { replicaCount: 4 } })).join(), /\/replicaCount must NOT be valid/);
    assert.match(schemaErrors(effectiveValues({ set: { replicaCount: 0 } })).join(), /\/replicaCount must be >= 1/);
    assert.match(schemaErrors(effectiveValues({ set: { podAntiAffinityPreset: "sometimes" } })).join(), /podAntiAffinityPreset must be equal to one of the allowed values/);
    assert.match(schemaErrors(effectiveValues({ set: { "metrics.serviceMonitor.interval": "15 seconds" } })).join(), /interval must match pattern/);
    assert.deepEqual(schemaErrors(effectiveValues({ set: { replicaCount: 5 } })), []);
  });

  it("values.yaml documents every setting with a comment above it", () => {
    const doc = parseDocument(readFileSync(join(chartDir, "values.yaml"), "utf8"));
    // Below these keys are plain Kubernetes objects or lists, documented by the key itself.
    const freeForm = new Set(["resources", "podSecurityContext", "containerSecurityContext", "startup", "liveness", "readiness", "requests", "limits", "accessModes", "labels"]);
    const undocumented: string[] = [];
    const walk = (node: YamlNode | null | undefined, path: string[]) => {
      if (!isMap(node)) return;
      node.items.forEach((pair, i) => {
        if (!isPair(pair) || !isScalar(pair.key)) return;
        const key = String(pair.key.value);
        const documented = Boolean(pair.key.commentBefore) || (i === 0 && Boolean(node.commentBefore)) || (path.length === 0 && i === 0 && Boolean(doc.commentBefore));
        if (!documented) undocumented.push([...path, key].join("."));
        if (!freeForm.has(key)) walk(pair.value as YamlNode, [...path, key]);
      });
    };
    walk(doc.contents as YamlNode, []);
    assert.deepEqual(undocumented, []);
  });
});

describe("NOTES.txt", () => {
  it("tells how to put/get and how to watch a failover, with the release's own names", () => {
    // The offline renderer skips NOTES.txt; render it as a template of a copy of the chart.
    const dir = mkdtempSync(join(tmpdir(), "raftkv-chart-"));
    try {
      cpSync(chartDir, join(dir, "raftkv"), { recursive: true });
      renameSync(join(dir, "raftkv/templates/NOTES.txt"), join(dir, "raftkv/templates/zz-notes.yaml"));
      const out = renderChartText({ chart: join(dir, "raftkv"), name: "kv", namespace: "prod", set: { replicaCount: 5 } });
      const notes = out.slice(out.indexOf("# Source: raftkv/templates/zz-notes.yaml"));
      assert.match(notes, /5 nodes \(kv-raftkv-0 \.\. kv-raftkv-4\) in namespace prod/);
      assert.match(notes, /kubectl -n prod exec kv-raftkv-0 -c node -- raftkv put greeting hello --endpoints kv-raftkv:9091/);
      assert.match(notes, /kubectl -n prod exec kv-raftkv-4 -c node -- raftkv get greeting --endpoints kv-raftkv:9091/);
      assert.match(notes, /kubectl -n prod port-forward svc\/kv-raftkv 9091:9091/);
      assert.match(notes, /logs -f -l app.kubernetes.io\/instance=kv -c node --prefix --max-log-requests 5 \| grep LEADER/);
      assert.match(notes, /kubectl -n prod delete pod <the leader, e.g. kv-raftkv-0>/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

