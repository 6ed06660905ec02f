// What every rendering of raftkv for Kubernetes must get right (the kustomize base and the Helm
// chart alike), as a list of problems, so a test can show them all at once. The node's settings
// are read against docs/configuration.md, the contract of the node and the exporter.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { only, repoRoot, statefulSetPeerHosts, statefulSetPodEnv, type K8sObject } from "./render.js";

export interface ConfigurationDoc {
  /** Env vars of raftkv-node, from the first table of docs/configuration.md. */
  node: Set<string>;
  /** Env vars of the exporter sidecar, from the second table. */
  exporter: Set<string>;
}

/** The env var names documented in docs/configuration.md (node table first, exporter table second). */
export function readConfigurationDoc(): ConfigurationDoc {
  const text = readFileSync(join(repoRoot, "docs/configuration.md"), "utf8");
  const tables: Set<string>[] = [];
  let current: Set<string> | undefined;
  for (const line of text.split("\n")) {
    const m = /^\|\s*`(RAFTKV_[A-Z0-9_]+)`\s*\|/.exec(line);
    if (m) {
      if (!current) tables.push((current = new Set()));
      current.add(m[1]!);
    } else if (!line.startsWith("|")) {
      current = undefined;
    }
  }
  if (tables.length < 2) throw new Error("docs/configuration.md: expected a node table and an exporter table of RAFTKV_ variables");
  return { node: tables[0]!, exporter: tables[1]! };
}

export interface WorkloadExpectations {
  replicas: number;
  /** Whether the exporter sidecar is expected. */
  metrics: boolean;
  /** Namespace the objects are rendered for (the kustomize base carries none). */
  namespace: string;
  clusterDomain?: string;
}

interface Container {
  name: string;
  image: string;
  imagePullPolicy?: string;
  ports?: { name: string; containerPort: number }[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [k: string]: any;
}

const SETTINGS_THAT_ARE_INTEGERS = [
  "RAFTKV_REPLICAS",
  "RAFTKV_CLIENT_PORT",
  "RAFTKV_PEER_PORT",
  "RAFTKV_HTTP_PORT",
  "RAFTKV_HEARTBEAT_MS",
  "RAFTKV_ELECTION_MS",
  "RAFTKV_SNAPSHOT_INTERVAL",
  "RAFTKV_MAX_KEY_BYTES",
  "RAFTKV_MAX_VALUE_BYTES",
  "RAFTKV_REQUEST_TIMEOUT_MS",
  "RAFTKV_EXPORTER_PORT",
  "RAFTKV_EXPORTER_TIMEOUT_MS",
];

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

/** Every way these objects fall short of a working, locked-down raftkv StatefulSet ([] = none). */
export function checkRaftkvWorkload(objects: K8sObject[], expect: WorkloadExpectations): string[] {
  const problems: string[] = [];
  const problem = (p: string) => problems.push(p);
  const doc = readConfigurationDoc();
  const sts = only(objects, "StatefulSet");
  const spec = sts.spec;
  const pod = spec.template;
  const podLabels: Record<string, string> = pod.metadata?.labels ?? {};
  const ns = sts.metadata.namespace ?? expect.namespace;
  const domain = expect.clusterDomain ?? "cluster.local";

  // The set.
  if (spec.replicas !== expect.replicas) problem(`StatefulSet replicas ${spec.replicas}, want ${expect.replicas}`);
  if (spec.podManagementPolicy !== "Parallel") problem("podManagementPolicy must be Parallel: no pod is ready before a quorum is up");
  if (!selects(spec.selector?.matchLabels, podLabels)) problem("the StatefulSet's selector does not match its pod labels");
  const headless = objects.find((o) => o.kind === "Service" && o.metadata.name === spec.serviceName);
  if (!headless) problem(`serviceName ${spec.serviceName} is not a rendered Service`);
  else {
    if (headless.spec.clusterIP !== "None") problem("the governing Service must be headless (clusterIP: None)");
    if (headless.spec.publishNotReadyAddresses !== true) problem("the headless Service needs publishNotReadyAddresses: true, or peers cannot resolve each other before a leader exists");
    if (!selects(headless.spec.selector, podLabels)) problem("the headless Service does not select the pods");
  }
  const clients = objects.filter((o) => o.kind === "Service" && o !== headless && selects(o.spec.selector, podLabels));
  if (clients.length !== 1) problem(`want exactly one client Service selecting the pods, found ${clients.length}`);
  else if (!clients[0]!.spec.ports?.some((p: { targetPort: unknown }) => p.targetPort === "client")) problem("the client Service does not expose the client port");
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
  if (pdbs.length !== 1) problem(`want one PodDisruptionBudget, found ${pdbs.length}`);
  else {
    if (pdbs[0]!.spec.maxUnavailable !== 1) problem(`PodDisruptionBudget maxUnavailable ${pdbs[0]!.spec.maxUnavailable}, want 1`);
    if (!selects(pdbs[0]!.spec.selector?.matchLabels, podLabels)) problem("the PodDisruptionBudget does not select the pods");
  }
  const claims: { metadata: { name: string }; spec: { accessModes?: string[]; resources?: { requests?: { storage?: string } } } }[] = spec.volumeClaimTemplates ?? [];
  const data = claims.find((c) => c.metadata.name === "data");
  if (!data) problem("no volumeClaimTemplate named data: the WAL would not survive the pod");
  else if (!data.spec.resources?.requests?.storage || !data.spec.accessModes?.includes("ReadWriteOnce")) problem("the data claim needs ReadWriteOnce and a storage request");

  // The pod.
  const ps = pod.spec;
  if (ps.enableServiceLinks !== false) problem("enableServiceLinks must be false: a Service named raftkv would inject RAFTKV_PORT=tcp://... and friends");
  if (ps.automountServiceAccountToken !== false) problem("the pod must not mount a service account token");
  const sa = objects.find((o) => o.kind === "ServiceAccount" && o.metadata.name === ps.serviceAccountName);
  if (!sa) problem(`ServiceAccount ${ps.serviceAccountName} is not rendered`);
  else if (sa.automountServiceAccountToken !== false) problem("the ServiceAccount must set automountServiceAccountToken: false");
  const grace = ps.terminationGracePeriodSeconds;
  if (!(grace >= 20 && grace <= 120)) problem(`terminationGracePeriodSeconds ${grace}: the leadership hand-off needs ~10 s with margin (20..120)`);
  const psc = ps.securityContext ?? {};
  if (psc.runAsNonRoot !== true || !(psc.runAsUser > 0)) problem("the pod must run as a non-root uid");
  if (psc.seccompProfile?.type !== "RuntimeDefault") problem("the pod needs seccompProfile RuntimeDefault");
  const dataMountedFromClaim = !(ps.volumes ?? []).some((v: { name: string }) => v.name === "data");
  if (!dataMountedFromClaim) problem("a pod volume named data would shadow the volumeClaimTemplate");

  const containers: Container[] = ps.containers ?? [];
  for (const c of [...containers, ...((ps.initContainers ?? []) as Container[])]) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.allowPrivilegeEscalation !== false) problem(`${where}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true) problem(`${where}: readOnlyRootFilesystem must be true`);
    if (!sc.capabilities?.drop?.includes("ALL")) problem(`${where}: must drop ALL capabilities`);
    if (sc.privileged === true) problem(`${where}: must not be privileged`);
    const tag = /:([^:/]+)$/.exec(c.image)?.[1];
    if (!tag || tag === "latest") problem(`${where}: image ${c.image} needs a pinned tag`);
    if (!c.imagePullPolicy) problem(`${where}: set imagePullPolicy (locally imported images need IfNotPresent)`);
  }
  for (const c of containers) {
    const where = `container ${c.name}`;
    if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory) problem(`${where}: needs cpu and memory requests and a memory limit`);
  }
  const names = containers.map((c) => c.name).sort();
  const wantNames = expect.metrics ? ["exporter", "node"] : ["node"];
  if (names.join() !== wantNames.join()) problem(`containers ${names.join(",")}, want ${wantNames.join(",")}`);

  const node = containers.find((c) => c.name === "node");
  if (!node) return problems;
  const port = (c: Container, name: string) => c.ports?.find((p) => p.name === name)?.containerPort;

  // The node's settings, for each pod of the set.
  for (let ordinal = 0; ordinal < expect.replicas; ordinal++) {
    const env = statefulSetPodEnv(objects, ordinal, { namespace: ns });
    const who = `pod ${sts.metadata.name}-${ordinal}`;
    if (env.HOSTNAME !== `${sts.metadata.name}-${ordinal}`) problem(`${who}: HOSTNAME ${env.HOSTNAME}`);
    for (const k of Object.keys(env).filter((k) => k.startsWith("RAFTKV_"))) {
      if (!doc.node.has(k)) problem(`${who}: ${k} is not a node setting in docs/configuration.md`);
    }
    for (const k of ["RAFTKV_NODE_ID", "RAFTKV_PEERS"]) {
      if (k in env) problem(`${who}: ${k} must be left to StatefulSet mode (id from the hostname, peers from the headless service)`);
    }
    for (const k of ["RAFTKV_REPLICAS", "RAFTKV_HEADLESS_SERVICE", "RAFTKV_DATA_DIR"]) {
      if (!env[k]) problem(`${who}: ${k} is not set`);
    }
    for (const k of SETTINGS_THAT_ARE_INTEGERS) {
      if (k in env && !/^[1-9][0-9]*$/.test(env[k]!)) problem(`${who}: ${k}=${env[k]} is not a positive integer`);
    }
    if (env.RAFTKV_REPLICAS !== String(spec.replicas)) problem(`${who}: RAFTKV_REPLICAS=${env.RAFTKV_REPLICAS} but the StatefulSet has ${spec.replicas} replicas`);
    const wantHeadless = `${spec.serviceName}.${ns}.svc.${domain}`;
    if (env.RAFTKV_HEADLESS_SERVICE !== wantHeadless) problem(`${who}: RAFTKV_HEADLESS_SERVICE=${env.RAFTKV_HEADLESS_SERVICE}, want ${wantHeadless}`);
    if (env.RAFTKV_STATEFULSET_NAME !== undefined && env.RAFTKV_STATEFULSET_NAME !== sts.metadata.name) problem(`${who}: RAFTKV_STATEFULSET_NAME=${env.RAFTKV_STATEFULSET_NAME}, the set is ${sts.metadata.name}`);
    const peers = statefulSetPeerHosts(env);
    const wantPeers = Array.from({ length: expect.replicas }, (_, i) => `${sts.metadata.name}-${i}.${wantHeadless}`);
    if (peers.join() !== wantPeers.join()) problem(`${who}: peers ${peers.join()} , want ${wantPeers.join()}`);
    if (ordinal > 0) continue;
    // Ports: the env, the container and the probes agree (defaults from docs/configuration.md).
    const envPort = (k: string, dflt: number) => Number(env[k] ?? dflt);
    const want = { client: envPort("RAFTKV_CLIENT_PORT", 9091), peer: envPort("RAFTKV_PEER_PORT", 7001), http: envPort("RAFTKV_HTTP_PORT", 8080) };
    for (const [name, n] of Object.entries(want)) {
      if (port(node, name) !== n) problem(`node port ${name} is ${port(node, name)}, the node listens on ${n}`);
    }
    if (headless && !headless.spec.ports?.some((p: { port: number; targetPort: string }) => p.port === want.peer && p.targetPort === "peer")) {
      problem("the headless Service must expose the peer port under the same number the peers dial");
    }
    const mount = node.volumeMounts?.find((m: { name: string }) => m.name === "data");
    if (mount?.mountPath !== env.RAFTKV_DATA_DIR) problem(`RAFTKV_DATA_DIR=${env.RAFTKV_DATA_DIR} but the data volume is mounted at ${mount?.mountPath}`);
  }
  const probe = (p: { httpGet?: { path: string; port: string } } | undefined, path: string, portName: string) =>
    p?.httpGet?.path === path && p.httpGet.port === portName;
  if (!probe(node.startupProbe, "/livez", "http")) problem("node: startupProbe must GET /livez on the http port");
  if (!probe(node.livenessProbe, "/livez", "http")) problem("node: livenessProbe must GET /livez on the http port");
  if (!probe(node.readinessProbe, "/readyz", "http")) problem("node: readinessProbe must GET /readyz on the http port");

  // The sidecar.
  const exporter = containers.find((c) => c.name === "exporter");
  const headlessMetrics = headless?.spec.ports?.some((p: { name: string }) => p.name === "metrics");
  if (!exporter) {
    if (headlessMetrics) problem("metrics are off but the headless Service still has a metrics port");
    return problems;
  }
  if (!headlessMetrics) problem("the headless Service has no metrics port for ServiceMonitors");
  const env = statefulSetPodEnv(objects, 0, { namespace: ns, container: "exporter" });
  for (const k of Object.keys(env).filter((k) => k.startsWith("RAFTKV_"))) {
    if (!doc.exporter.has(k)) problem(`exporter: ${k} is not an exporter setting in docs/configuration.md`);
  }
  for (const k of SETTINGS_THAT_ARE_INTEGERS) {
    if (k in env && !/^[1-9][0-9]*$/.test(env[k]!)) problem(`exporter: ${k}=${env[k]} is not a positive integer`);
  }
  const nodeEnv = statefulSetPodEnv(objects, 0, { namespace: ns });
  const wantUrl = `http://127.0.0.1:${nodeEnv.RAFTKV_HTTP_PORT ?? 8080}/status`;
  if ((env.RAFTKV_STATUS_URL ?? "http://127.0.0.1:8080/status") !== wantUrl) problem(`exporter: RAFTKV_STATUS_URL=${env.RAFTKV_STATUS_URL}, the node serves ${wantUrl}`);
  const metricsPort = Number(env.RAFTKV_EXPORTER_PORT ?? 9100);
  if (port(exporter, "metrics") !== metricsPort) problem(`exporter: metrics port ${port(exporter, "metrics")} but it listens on ${metricsPort}`);
  if (!probe(exporter.livenessProbe, "/livez", "metrics")) problem("exporter: livenessProbe must GET /livez on the metrics port");
  if (exporter.readinessProbe) problem("exporter: no readinessProbe: the pod's client traffic must not depend on the sidecar");
  return problems;
}
