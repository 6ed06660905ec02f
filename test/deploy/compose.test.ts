// docker-compose.yml: it validates with docker-compose itself, and once normalised by
// `docker-compose config` it is the stack the README promises: three nodes laid out like pods,
// an exporter beside each, Prometheus and Grafana provisioned from the repository, all buildable
// from a clean clone.
import { describe, it, before } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { repoRoot } from "./render.js";
import { readConfigurationDoc } from "./workload-checks.js";

interface Port {
  target: number;
  published: number;
  host_ip?: string;
}
interface Volume {
  type: string;
  source: string;
  target: string;
  read_only?: boolean;
}
interface Service {
  build?: { context: string; dockerfile: string; args?: Record<string, string> };
  image?: string;
  entrypoint?: string[];
  init?: boolean;
  network_mode?: string;
  environment?: Record<string, string>;
  ports?: Port[];
  volumes?: Volume[];
  command?: string[];
  depends_on?: Record<string, unknown>;
  healthcheck?: { disable?: boolean; test?: string[] };
  stop_grace_period?: string;
  restart?: string;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

/** docker-compose (v1, Debian's package) or `docker compose` (v2), whichever is installed. */
function composeCommand(): string[] {
  if (spawnSync("docker-compose", ["version"], { stdio: "ignore" }).status === 0) return ["docker-compose"];
  if (spawnSync("docker", ["compose", "version"], { stdio: "ignore" }).status === 0) return ["docker", "compose"];
  throw new Error("neither docker-compose nor `docker compose` is installed (apt-get install docker-compose)");
}

/** The environment of a fresh shell: none of the variables the compose file reads. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ["NODE_IMAGE", "RAFTKV_TAG", "RAFTKV_BIND_ADDRESS", "RAFTKV_LOG_LEVEL", "GRAFANA_ADMIN_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"]) delete env[k];
  return { ...env, ...extra };
}

/** A port as the long syntax has it; v1 prints "127.0.0.1:9091:9091/tcp". */
function normalisePort(p: unknown): Port {
  if (typeof p === "object" && p) {
    const o = p as { target: number; published: number | string; host_ip?: string };
    return { target: Number(o.target), published: Number(o.published), host_ip: o.host_ip };
  }
  const parts = String(p).replace(/\/(tcp|udp)$/, "").split(":");
  const [target, published, hostIp] = [parts.pop(), parts.pop(), parts.pop()];
  return { target: Number(target), published: Number(published), host_ip: hostIp };
}

/** A volume as the long syntax has it; v1 prints "source:target:mode". */
function normaliseVolume(v: unknown): Volume {
  if (typeof v === "object" && v) return v as Volume;
  const [source, target, mode] = String(v).split(":");
  return { type: source!.startsWith("/") || source!.startsWith(".") ? "bind" : "volume", source: source!, target: target!, read_only: mode === "ro" };
}

function composeConfig(extraEnv: Record<string, string> = {}): Compose {
  const [cmd, ...args] = composeCommand();
  const out = execFileSync(cmd!, [...args, "-f", join(repoRoot, "docker-compose.yml"), "config"], { cwd: repoRoot, env: cleanEnv(extraEnv), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const compose = parseYaml(out) as Compose;
  for (const svc of Object.values(compose.services)) {
    if (svc.ports) svc.ports = svc.ports.map(normalisePort);
    if (svc.volumes) svc.volumes = svc.volumes.map(normaliseVolume);
    if (svc.healthcheck?.test?.[0] === "NONE") svc.healthcheck = { disable: true };
  }
  return compose;
}

describe("docker-compose.yml", () => {
  let compose: Compose;
  before(() => {
    compose = composeConfig();
  });
  const nodes = [1, 2, 3];

  it("validates with docker-compose config -q", () => {
    const [cmd, ...args] = composeCommand();
    const r = spawnSync(cmd!, [...args, "-f", join(repoRoot, "docker-compose.yml"), "config", "-q"], { cwd: repoRoot, env: cleanEnv(), encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), "");
  });

  it("has three pods, three nodes, three exporters, Prometheus and Grafana", () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ["exporter1", "exporter2", "exporter3", "grafana", "node1", "node2", "node3", "pod1", "pod2", "pod3", "prometheus"]);
  });

  it("lays each node out like a pod: podN holds the network namespace, nodeN and exporterN join it", () => {
    for (const i of nodes) {
      const pod = compose.services[`pod${i}`]!;
      assert.deepEqual(pod.entrypoint, ["sleep", "infinity"]);
      assert.equal(pod.init, true, "sleep as PID 1 would ignore SIGTERM");
      assert.equal(pod.healthcheck?.disable, true);
      assert.equal(pod.network_mode, undefined, "the pod holder is on the compose network");
      assert.equal(compose.services[`node${i}`]!.network_mode, `service:pod${i}`);
      assert.equal(compose.services[`exporter${i}`]!.network_mode, `service:pod${i}`);
      // Ports can only be published by the namespace's owner.
      assert.equal(compose.services[`node${i}`]!.ports, undefined);
      assert.equal(compose.services[`exporter${i}`]!.ports, undefined);
    }
  });

  it("gives each node its id, the same peer list (podN:7001) and a named volume at RAFTKV_DATA_DIR", () => {
    const peers = nodes.map((i) => `node${i}=pod${i}:7001`).join(",");
    for (const i of nodes) {
      const node = compose.services[`node${i}`]!;
      const env = node.environment!;
      assert.equal(env.RAFTKV_NODE_ID, `node${i}`);
      assert.equal(env.RAFTKV_PEERS, peers);
      assert.equal(env.RAFTKV_CLUSTER, "compose");
      const data = node.volumes?.find((v) => v.target === env.RAFTKV_DATA_DIR);
      assert.deepEqual({ type: data?.type, source: data?.source }, { type: "volume", source: `node${i}-data` });
      assert.ok(compose.volumes && `node${i}-data` in compose.volumes);
      assert.match(String(node.stop_grace_period), /^30(s|\.0)?$/, "room for the leadership hand-off");
    }
  });

  it("points each exporter at its own node over 127.0.0.1", () => {
    for (const i of nodes) {
      const env = compose.services[`exporter${i}`]!.environment!;
      assert.equal(env.RAFTKV_STATUS_URL, `http://127.0.0.1:${compose.services[`node${i}`]!.environment!.RAFTKV_HTTP_PORT ?? 8080}/status`);
    }
  });

  it("sets only settings documented in docs/configuration.md", () => {
    const doc = readConfigurationDoc();
    for (const i of nodes) {
      for (const k of Object.keys(compose.services[`node${i}`]!.environment!)) assert.ok(doc.node.has(k), `node${i}: ${k} is not a node setting`);
      for (const k of Object.keys(compose.services[`exporter${i}`]!.environment!)) assert.ok(doc.exporter.has(k), `exporter${i}: ${k} is not an exporter setting`);
    }
  });

  it("publishes client 9091-9093, HTTP 8081-8083, exporters 9101-9103, Prometheus and Grafana on 127.0.0.1 by default", () => {
    const published = (svc: string) =>
      (compose.services[svc]!.ports ?? []).map((p) => `${p.host_ip}:${p.published}->${p.target}`).sort();
    for (const i of nodes) {
      assert.deepEqual(published(`pod${i}`), [`127.0.0.1:${8080 + i}->8080`, `127.0.0.1:${9090 + i}->9091`, `127.0.0.1:${9100 + i}->9100`].sort());
    }
    assert.deepEqual(published("prometheus"), ["127.0.0.1:9090->9090"]);
    assert.deepEqual(published("grafana"), ["127.0.0.1:3000->3000"]);
    const open = composeConfig({ RAFTKV_BIND_ADDRESS: "0.0.0.0" });
    assert.equal(open.services.pod1!.ports![0]!.host_ip, "0.0.0.0");
  });

  it("builds both images from this directory with NODE_IMAGE passed through (node:22-bookworm-slim by default)", () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      if (name === "prometheus" || name === "grafana") continue;
      const dockerfile = name.startsWith("exporter") ? "Dockerfile.exporter" : "Dockerfile.node";
      assert.deepEqual(svc.build, { context: repoRoot, dockerfile, args: { NODE_IMAGE: "node:22-bookworm-slim" } }, name);
      assert.equal(svc.image, name.startsWith("exporter") ? "raftkv-exporter:dev" : "raftkv-node:dev", name);
    }
    const standin = composeConfig({ NODE_IMAGE: "localhost/node-standin:latest" });
    assert.equal(standin.services.node1!.build!.args!.NODE_IMAGE, "localhost/node-standin:latest");
  });

  it("pins Prometheus and Grafana and mounts configuration that exists in the repository", () => {
    for (const svc of ["prometheus", "grafana"]) {
      const image = compose.services[svc]!.image!;
      assert.match(image, /:[^:]+$/, `${svc} image needs a tag`);
      assert.doesNotMatch(image, /:latest$/);
      for (const v of compose.services[svc]!.volumes ?? []) {
        if (v.type !== "bind") continue;
        assert.ok(existsSync(v.source), `${svc} mounts ${v.source}, which does not exist`);
        assert.equal(v.read_only, true, `${svc} mounts ${v.source} writable`);
      }
    }
    const configArg = compose.services.prometheus!.command!.find((a) => a.startsWith("--config.file="))!;
    const mount = compose.services.prometheus!.volumes!.find((v) => configArg.slice("--config.file=".length).startsWith(v.target + "/"))!;
    const configFile = join(mount.source, configArg.slice("--config.file=".length + mount.target.length + 1));
    assert.ok(existsSync(configFile), `${configFile} does not exist`);
    const home = compose.services.grafana!.environment!.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH!;
    const dashMount = compose.services.grafana!.volumes!.find((v) => home.startsWith(v.target + "/"))!;
    assert.ok(existsSync(join(dashMount.source, home.slice(dashMount.target.length + 1))), `the home dashboard ${home} is not in the repository`);
  });

  it("Prometheus scrapes every exporter at podN:9100 and loads the alert rules", () => {
    const prom = parseYaml(readFileSync(join(repoRoot, "prometheus/prometheus.compose.yml"), "utf8")) as {
      rule_files?: string[];
      scrape_configs: { static_configs?: { targets: string[] }[] }[];
    };
    const targets = prom.scrape_configs.flatMap((s) => (s.static_configs ?? []).flatMap((c) => c.targets)).sort();
    assert.deepEqual(targets, nodes.map((i) => `pod${i}:9100`));
    for (const f of prom.rule_files ?? []) assert.ok(existsSync(join(repoRoot, "prometheus", f)), `rule file ${f} is missing`);
  });
});
