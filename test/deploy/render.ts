// Renders raftkv's Kubernetes manifests the way a cluster would see them (the Helm chart through
// ../shared/tools/helm-template or a real `helm`, the kustomize base through `kubectl kustomize`)
// and works out the environment a StatefulSet pod gets, so tests can start real node processes
// with exactly what Kubernetes would give them.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const chartDir = join(repoRoot, "helm/raftkv");
export const kustomizeDir = join(repoRoot, "k8s");

/** A rendered Kubernetes object (loosely typed: tests narrow what they read). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [field: string]: any;
}

/** The helm-template tool (../shared/tools), or $HELM_TEMPLATE. It defers to `helm template` when helm is on PATH. */
export function helmTemplateCommand(): string {
  const cmd = process.env.HELM_TEMPLATE ?? resolve(repoRoot, "../shared/tools/helm-template/helm-template");
  if (!existsSync(cmd)) {
    throw new Error(`helm-template not found at ${cmd}: set HELM_TEMPLATE or check out shared/ beside the repository`);
  }
  return cmd;
}

/** Splits a multi-document YAML stream into objects, dropping empty documents; YAML errors throw. */
export function parseManifests(text: string, source: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const obj = doc.toJS() as K8sObject | null;
    if (obj == null) continue;
    if (typeof obj !== "object" || typeof obj.kind !== "string" || typeof obj.apiVersion !== "string") {
      throw new Error(`${source}: a document that is not a Kubernetes object: ${JSON.stringify(obj).slice(0, 200)}`);
    }
    out.push(obj);
  }
  return out;
}

export interface ChartRenderOptions {
  /** Values merged over values.yaml (written to a file and passed with -f). */
  values?: Record<string, unknown>;
  /** `--set` pairs, e.g. { replicaCount: 5 }. */
  set?: Record<string, string | number | boolean>;
  /** Release name (default "raftkv", so objects are named raftkv, raftkv-headless, pods raftkv-0...). */
  name?: string;
  /** Release namespace (default "default"). */
  namespace?: string;
  /** Extra API versions the "cluster" serves, e.g. ["monitoring.coreos.com/v1"]. */
  apiVersions?: string[];
  /** Chart directory (default helm/raftkv). */
  chart?: string;
}

/** Runs the chart's templates; throws with the renderer's message when a template fails. */
export function renderChartText(opts: ChartRenderOptions = {}): string {
  const args = [opts.chart ?? chartDir, "--name", opts.name ?? "raftkv", "--namespace", opts.namespace ?? "default"];
  const tmp = mkdtempSync(join(tmpdir(), "raftkv-values-"));
  try {
    if (opts.values) {
      const file = join(tmp, "values.json");
      writeFileSync(file, JSON.stringify(opts.values));
      args.push("-f", file);
    }
    for (const [k, v] of Object.entries(opts.set ?? {})) args.push("--set", `${k}=${String(v)}`);
    if (opts.apiVersions?.length) args.push("--api-versions", opts.apiVersions.join(","));
    return execFileSync(helmTemplateCommand(), args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 300_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`helm template failed: ${(e.stderr ?? "").trim() || e.message}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The chart rendered into objects. */
export function renderChart(opts: ChartRenderOptions = {}): K8sObject[] {
  return parseManifests(renderChartText(opts), "helm template");
}

/** `kubectl kustomize DIR` rendered into objects (default: the k8s/ base). */
export function renderKustomize(dir: string = kustomizeDir): K8sObject[] {
  let text: string;
  try {
    text = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`kubectl kustomize ${dir} failed: ${(e.stderr ?? "").trim() || e.message}`);
  }
  return parseManifests(text, `kubectl kustomize ${dir}`);
}

/** The one object of a kind (and name, if given); throws if there is not exactly one. */
export function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${found.length}`);
  return found[0]!;
}

export interface PodEnvOptions {
  /** The container (default "node"). */
  container?: string;
  /** Namespace if the objects carry none (default "default"). */
  namespace?: string;
  /** What status.podIP would be, if the env refers to it. */
  podIP?: string;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    secretKeyRef?: unknown;
    resourceFieldRef?: unknown;
  };
}

/**
 * The environment Kubernetes gives `container` of the StatefulSet's pod with this ordinal:
 * HOSTNAME (the pod name, as the runtime sets it for StatefulSet pods), then envFrom ConfigMaps in
 * order, then env entries in order (later wins), with $(VAR) references expanded against what
 * was defined before them and `$$` as a literal `$`, as the kubelet does. Only what the objects
 * themselves define is returned (no service links: the manifests turn them off).
 */
export function statefulSetPodEnv(objects: K8sObject[], ordinal: number, opts: PodEnvOptions = {}): Record<string, string> {
  const sts = only(objects, "StatefulSet");
  const replicas: number = sts.spec.replicas ?? 1;
  if (!Number.isInteger(ordinal) || ordinal < 0 || ordinal >= replicas) {
    throw new Error(`ordinal ${ordinal} is outside the StatefulSet's ${replicas} replicas`);
  }
  const namespace = sts.metadata.namespace ?? opts.namespace ?? "default";
  const podName = `${sts.metadata.name}-${ordinal}`;
  const containerName = opts.container ?? "node";
  const pod = sts.spec.template;
  const container = (pod.spec.containers as { name: string; env?: EnvVar[]; envFrom?: unknown[] }[]).find((c) => c.name === containerName);
  if (!container) throw new Error(`StatefulSet ${sts.metadata.name} has no container ${containerName}`);

  const configMap = (name: string): Record<string, string> => {
    const cm = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === name);
    if (!cm) throw new Error(`container ${containerName} refers to ConfigMap ${name}, which is not among the rendered objects`);
    return (cm.data ?? {}) as Record<string, string>;
  };
  const fieldValue = (path: string): string => {
    switch (path) {
      case "metadata.name":
        return podName;
      case "metadata.namespace":
        return namespace;
      case "spec.nodeName":
        return "node-1";
      case "spec.serviceAccountName":
        return pod.spec.serviceAccountName ?? "default";
      case "status.podIP":
        if (!opts.podIP) throw new Error("the env refers to status.podIP: pass opts.podIP");
        return opts.podIP;
      default: {
        const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
        if (m) return (pod.metadata?.[m[1]!]?.[m[2]!] as string | undefined) ?? "";
        throw new Error(`unsupported fieldRef ${path}`);
      }
    }
  };

  const env: Record<string, string> = { HOSTNAME: podName };
  for (const from of (container.envFrom ?? []) as { prefix?: string; configMapRef?: { name: string }; secretRef?: unknown }[]) {
    if (from.secretRef) throw new Error("envFrom secretRef cannot be resolved from manifests");
    if (!from.configMapRef) throw new Error(`unsupported envFrom ${JSON.stringify(from)}`);
    for (const [k, v] of Object.entries(configMap(from.configMapRef.name))) env[(from.prefix ?? "") + k] = String(v);
  }
  for (const v of container.env ?? []) {
    if (v.value !== undefined) {
      env[v.name] = expandEnvReferences(String(v.value), env);
    } else if (v.valueFrom?.fieldRef) {
      env[v.name] = fieldValue(v.valueFrom.fieldRef.fieldPath);
    } else if (v.valueFrom?.configMapKeyRef) {
      const ref = v.valueFrom.configMapKeyRef;
      const data = configMap(ref.name);
      if (data[ref.key] === undefined) {
        if (ref.optional) continue;
        throw new Error(`ConfigMap ${ref.name} has no key ${ref.key}`);
      }
      env[v.name] = data[ref.key]!;
    } else if (v.valueFrom) {
      throw new Error(`env ${v.name}: unsupported valueFrom ${JSON.stringify(v.valueFrom)}`);
    } else {
      env[v.name] = "";
    }
  }
  return env;
}

/** Kubernetes' $(VAR) expansion: known names are replaced, unknown ones left as written, $$ is a literal $. */
export function expandEnvReferences(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === "$$") return "$";
    return env[name!] ?? match;
  });
}

/** The node env of pod `ordinal` of the chart rendered with these options (default values: release raftkv in namespace default). */
export function chartPodEnv(ordinal: number, opts: ChartRenderOptions & PodEnvOptions = {}): Record<string, string> {
  return statefulSetPodEnv(renderChart(opts), ordinal, opts);
}

/** The node env of pod `ordinal` of the kustomize base (objects carry no namespace: pass opts.namespace). */
export function kustomizePodEnv(ordinal: number, opts: PodEnvOptions & { dir?: string } = {}): Record<string, string> {
  return statefulSetPodEnv(renderKustomize(opts.dir), ordinal, opts);
}

/**
 * The peer host names a node in StatefulSet mode dials, from its env: <sts>-<i>.<headless> for
 * i < RAFTKV_REPLICAS, where <sts> is RAFTKV_STATEFULSET_NAME or the hostname without its ordinal
 * (docs/configuration.md). A test that runs the nodes on loopback maps these to 127.0.0.x.
 */
export function statefulSetPeerHosts(env: Record<string, string>): string[] {
  const replicas = Number(env.RAFTKV_REPLICAS);
  const headless = env.RAFTKV_HEADLESS_SERVICE;
  if (!Number.isInteger(replicas) || replicas < 1) throw new Error(`RAFTKV_REPLICAS is not a positive integer: ${env.RAFTKV_REPLICAS}`);
  if (!headless) throw new Error("RAFTKV_HEADLESS_SERVICE is not set");
  const sts = env.RAFTKV_STATEFULSET_NAME || (env.HOSTNAME ?? "").replace(/-\d+$/, "");
  if (!sts) throw new Error("neither RAFTKV_STATEFULSET_NAME nor HOSTNAME names the StatefulSet");
  return Array.from({ length: replicas }, (_, i) => `${sts}-${i}.${headless}`);
}
