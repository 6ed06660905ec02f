// The kustomize base (k8s/): it renders, every object is one the API server accepts (unknown
// fields rejected), and it is a working, locked-down raftkv StatefulSet.
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parse as parseYaml } from "yaml";
import {
  expandEnvReferences,
  kustomizeDir,
  only,
  renderKustomize,
  repoRoot,
  statefulSetPeerHosts,
  statefulSetPodEnv,
  type K8sObject,
} from "./render.js";
import { validateObject, validateObjects } from "./k8s-schema.js";
import { checkRaftkvWorkload } from "./workload-checks.js";

describe("k8s/ kustomize base", () => {
  let objects: K8sObject[];
  before(() => {
    objects = renderKustomize();
  });

  it("renders a ServiceAccount, a ConfigMap, two Services, a StatefulSet and a PodDisruptionBudget", () => {
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, "-<hash>")}`).sort();
    assert.deepEqual(kinds, [
      "ConfigMap/raftkv-config-<hash>",
      "PodDisruptionBudget/raftkv",
      "Service/raftkv",
      "Service/raftkv-headless",
      "ServiceAccount/raftkv",
      "StatefulSet/raftkv",
    ]);
  });

  it("every object validates against the Kubernetes schema, unknown fields rejected", () => {
    assert.deepEqual(validateObjects(objects), []);
  });

  it("is a three-voter StatefulSet with peer DNS, probes, a PDB and a restrictive security context", () => {
    assert.deepEqual(checkRaftkvWorkload(objects, { replicas: 3, metrics: true, namespace: "raftkv" }), []);
  });

  it("gives pod raftkv-2 its identity and its peers through the environment alone", () => {
    const env = statefulSetPodEnv(objects, 2, { namespace: "kv" });
    assert.equal(env.HOSTNAME, "raftkv-2");
    assert.equal(env.POD_NAMESPACE, "kv");
    assert.equal(env.RAFTKV_HEADLESS_SERVICE, "raftkv-headless.kv.svc.cluster.local");
    assert.equal(env.RAFTKV_REPLICAS, "3");
    assert.equal(env.RAFTKV_DATA_DIR, "/var/lib/raftkv");
    assert.deepEqual(statefulSetPeerHosts(env), [
      "raftkv-0.raftkv-headless.kv.svc.cluster.local",
      "raftkv-1.raftkv-headless.kv.svc.cluster.local",
      "raftkv-2.raftkv-headless.kv.svc.cluster.local",
    ]);
    assert.throws(() => statefulSetPodEnv(objects, 3), /outside the StatefulSet's 3 replicas/);
  });

  it("tags both images with the chart's appVersion, which is package.json's version", () => {
    const version = (JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { version: string }).version;
    const chart = parseYaml(readFileSync(join(repoRoot, "helm/raftkv/Chart.yaml"), "utf8")) as { appVersion: string };
    assert.equal(chart.appVersion, version);
    const images = only(objects, "StatefulSet").spec.template.spec.containers.map((c: { image: string }) => c.image).sort();
    assert.deepEqual(images, [`raftkv-exporter:${version}`, `raftkv-node:${version}`]);
  });

  it("the five-voter overlay in docs/kubernetes.md keeps RAFTKV_REPLICAS in step with replicas", () => {
    const docs = readFileSync(join(repoRoot, "docs/kubernetes.md"), "utf8");
    const block = [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes("kind: Kustomization"));
    assert.ok(block, "docs/kubernetes.md has no kustomization overlay example");
    const dir = mkdtempSync(join(tmpdir(), "raftkv-overlay-"));
    try {
      const overlay = parseYaml(block) as { resources: string[] };
      assert.equal(overlay.resources.length, 1);
      overlay.resources = [relative(dir, kustomizeDir)];
      writeFileSync(join(dir, "kustomization.yaml"), JSON.stringify(overlay));
      const five = renderKustomize(dir);
      assert.deepEqual(validateObjects(five), []);
      const ns = only(five, "StatefulSet").metadata.namespace!;
      assert.deepEqual(checkRaftkvWorkload(five, { replicas: 5, metrics: true, namespace: ns }), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("changing replicas without RAFTKV_REPLICAS is caught", () => {
    const dir = mkdtempSync(join(tmpdir(), "raftkv-overlay-"));
    try {
      writeFileSync(join(dir, "kustomization.yaml"), JSON.stringify({ resources: [relative(dir, kustomizeDir)], replicas: [{ name: "raftkv", count: 5 }] }));
      const problems = checkRaftkvWorkload(renderKustomize(dir), { replicas: 5, metrics: true, namespace: "default" });
      assert.ok(problems.some((p) => /RAFTKV_REPLICAS=3 but the StatefulSet has 5 replicas/.test(p)), problems.join("\n"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the Kubernetes schema check", () => {
  const base = (): K8sObject[] => renderKustomize();

  it("rejects a typo'd field at any depth, naming the path", () => {
    const sts = only(base(), "StatefulSet");
    sts.spec.template.spec.containers[0].securityContxt = { runAsNonRoot: true };
    sts.spec.template.spec.containers[1].livenessProbe.httpGet.prot = "metrics";
    sts.spec.volumeClaimTemplates[0].spec.acessModes = ["ReadWriteOnce"];
    sts.spec.podManagmentPolicy = "Parallel";
    assert.deepEqual(validateObject(sts), [
      "StatefulSet raftkv: spec.podManagmentPolicy: unknown field",
      "StatefulSet raftkv: spec.template.spec.containers[0].securityContxt: unknown field",
      "StatefulSet raftkv: spec.template.spec.containers[1].livenessProbe.httpGet.prot: unknown field",
      "StatefulSet raftkv: spec.volumeClaimTemplates[0].spec.acessModes: unknown field",
    ]);
  });

  it("rejects wrong types, bad enum values and missing required fields", () => {
    const objects = base();
    const sts = only(objects, "StatefulSet");
    sts.spec.replicas = "3";
    sts.spec.podManagementPolicy = "parallel";
    delete sts.spec.template.spec.containers[0].name;
    const errors = validateObject(sts).join("\n");
    assert.match(errors, /replicas must be integer/);
    assert.match(errors, /podManagementPolicy must be equal to one of the allowed values/);
    assert.match(errors, /containers\/0 must have required property name/);
  });

  it("accepts free-form maps (labels, resource quantities) but not unknown kinds", () => {
    const objects = base();
    const svc = only(objects, "Service", "raftkv");
    svc.metadata.labels = { ...svc.metadata.labels, "example.com/anything": "x" };
    assert.deepEqual(validateObject(svc), []);
    assert.deepEqual(validateObject({ apiVersion: "apps/v1", kind: "StatefulSett", metadata: { name: "x" } }), [
      "StatefulSett x: no schema for apps/v1/StatefulSett (add it to builtinKinds or crd-schemas.ts)",
    ]);
  });
});

describe("Kubernetes $(VAR) expansion", () => {
  it("replaces known names, leaves unknown ones and reads $$ as a literal $", () => {
    const env = { POD_NAMESPACE: "kv" };
    assert.equal(expandEnvReferences("a.$(POD_NAMESPACE).svc", env), "a.kv.svc");
    assert.equal(expandEnvReferences("$(NOPE)-$$(POD_NAMESPACE)", env), "$(NOPE)-$(POD_NAMESPACE)");
  });
});
