// Real containers, end to end (`npm run test:containers`): builds both images with podman-kit
// (rootful podman + docker-compose on a machine without a Docker engine or registry), brings up
// the raftkv services of docker-compose.yml, waits for a leader, puts and gets through the
// published ports with the CLI (and with the CLI inside the image), reads every exporter's
// /metrics, SIGKILLs the leader's container while a client keeps writing (a new leader; no
// acknowledged write lost), restarts it (it catches up, its exporter sees it again), stops the
// next leader with SIGTERM (it hands off and exits 0), and reports image sizes and timings.
// Everything it started is torn down at the end, whatever happened.
//
//   npm run test:containers [-- --keep] [--keep-kit] [--context DIR] [--kit PATH]
//     --keep      leave the cluster running (prints how to reach and remove it)
//     --keep-kit  leave podman-kit's API service running afterwards
//     --context   directory with docker-compose.yml and the sources to build (default: the repo)
//
// Prometheus and Grafana are not started: their images come from a registry this machine cannot
// reach (the compose and chart tests cover their configuration).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { KVClient, ReadConsistency } from "../../services/common/gen/raftkv/v1/kv.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const argv = process.argv.slice(2);
const KNOWN = new Set(["--keep", "--keep-kit", "--context", "--kit"]);
if (argv.includes("--help") || argv.includes("-h")) {
  process.stdout.write(`Usage: npm run test:containers [-- --keep] [--keep-kit] [--context DIR] [--kit PATH]

Builds both images with podman-kit (needs root), runs the compose cluster, puts and gets through
the published ports, reads each exporter's /metrics, SIGKILLs and restarts the leader's container,
stops the next leader with SIGTERM, reports image sizes and timings, and tears everything down.

  --keep       leave the cluster running (prints how to reach and remove it)
  --keep-kit   leave podman-kit's API service running afterwards
  --context    directory with docker-compose.yml and the sources to build (default: the repo)
  --kit        path of podman-kit (default: ../shared/tools/containers/podman-kit, or $PODMAN_KIT)
`);
  process.exit(0);
}
for (let i = 0; i < argv.length; i++) {
  if (!KNOWN.has(argv[i])) {
    process.stderr.write(`test:containers: unknown argument ${JSON.stringify(argv[i])} (see --help)\n`);
    process.exit(2);
  }
  if (argv[i] === "--context" || argv[i] === "--kit") i++;
}
const flag = (name: string) => argv.includes(name);
const option = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const context = resolve(option("--context") ?? repoRoot);
const kit = resolve(option("--kit") ?? process.env.PODMAN_KIT ?? join(repoRoot, "../shared/tools/containers/podman-kit"));
const project = `raftkvct${process.pid}`;
const HARD_DEADLINE_MS = 20 * 60_000;
const NODES = [1, 2, 3] as const;

// ---------------------------------------------------------------------------------------------
// Reporting: each check passes or fails; the first failure stops the run (later checks depend on
// earlier ones), teardown still happens, and the closing line counts them.

interface Check {
  name: string;
  ok: boolean;
  ms: number;
  detail?: string;
}
const checks: Check[] = [];
const numbers: Record<string, string> = {};
const t0 = performance.now();
const since = (t: number) => Math.round(performance.now() - t);
const log = (msg: string) => console.log(`[${(since(t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);

class Abort extends Error {}

async function check<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t = performance.now();
  log(`... ${name}`);
  try {
    const r = await fn();
    checks.push({ name, ok: true, ms: since(t) });
    log(`ok  ${name} (${since(t)} ms)`);
    return r;
  } catch (err) {
    const detail = (err as Error).message;
    checks.push({ name, ok: false, ms: since(t), detail });
    log(`FAIL ${name}: ${detail}`);
    throw new Abort(name);
  }
}

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a value (not undefined) or the time is up; the last error or value explains a timeout. */
async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, intervalMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ""}`);
}

// ---------------------------------------------------------------------------------------------
// Processes.

const kitEnv: Record<string, string> = {};

function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd ?? repoRoot, env: { ...process.env, ...kitEnv, ...opts.env }, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        if (err) rej(new Error(`${cmd} ${args.join(" ")}: ${(stderr || err.message).trim().split("\n").slice(-6).join(" | ")}`));
        else res({ stdout, stderr });
      },
    );
  });
}

let composeFile = "";
const compose = (args: string[], timeoutMs = 300_000) => run("docker-compose", ["-p", project, "-f", composeFile, ...args], { timeoutMs });
const podman = (args: string[], timeoutMs = 60_000) => run("podman", args, { timeoutMs });

// ---------------------------------------------------------------------------------------------
// The cluster as seen from the host.

interface Endpoints {
  client: number;
  http: number;
  metrics: number;
}
const endpoints = new Map<number, Endpoints>();
/** The image names docker-compose.yml gives the node and the exporter. */
const images = { node: "", exporter: "" };

interface Status {
  nodeId: string;
  role: string;
  term: number;
  leaderId: string;
  commitIndex: number;
  appliedIndex: number;
}

async function status(i: number): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${endpoints.get(i)!.http}/status`, { signal: AbortSignal.timeout(1500) });
  assert(r.ok, `node${i} /status: HTTP ${r.status}`);
  return (await r.json()) as Status;
}

async function statuses(nodes: readonly number[]): Promise<Map<number, Status>> {
  const out = new Map<number, Status>();
  await Promise.all(
    nodes.map(async (i) => {
      try {
        out.set(i, await status(i));
      } catch {
        /* unreachable counts as absent */
      }
    }),
  );
  return out;
}

/** The leader all the given nodes agree on, once they do and it says so itself. */
async function agreedLeader(nodes: readonly number[], notId?: string): Promise<{ id: string; term: number; commitIndex: number } | undefined> {
  const s = await statuses(nodes);
  if (s.size !== nodes.length) return undefined;
  const ids = new Set([...s.values()].map((x) => x.leaderId));
  if (ids.size !== 1) return undefined;
  const [id] = ids;
  if (!id || id === notId) return undefined;
  const leader = [...s.values()].find((x) => x.nodeId === id);
  if (!leader || leader.role !== "leader") return undefined;
  return { id, term: leader.term, commitIndex: leader.commitIndex };
}

async function metrics(i: number): Promise<Map<string, number>> {
  const r = await fetch(`http://127.0.0.1:${endpoints.get(i)!.metrics}/metrics`, { signal: AbortSignal.timeout(3000) });
  assert(r.ok, `exporter${i} /metrics: HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of (await r.text()).split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && !out.has(m[1]!)) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

const nodeIndex = (id: string) => {
  const i = Number(/^node(\d)$/.exec(id)?.[1]);
  assert(NODES.includes(i as 1), `leader id ${id} is not one of node1..node3`);
  return i;
};

// The CLI, as a user runs it from a checkout.
async function cli(args: string[]): Promise<string> {
  const all = NODES.map((i) => `127.0.0.1:${endpoints.get(i)!.client}`).join(",");
  const { stdout } = await run(process.execPath, ["--import", "tsx", join(repoRoot, "services/cli/main.ts"), ...args, ...(args.includes("--endpoints") ? [] : ["--endpoints", all])], { timeoutMs: 30_000 });
  return stdout.trim();
}

// A client that writes sequentially with retries, the way an application would, and remembers
// which writes were acknowledged.
class Writer {
  private clients: InstanceType<typeof KVClient>[];
  private next = 0;
  private preferred = 0;
  private stopped = false;
  private loop?: Promise<void>;
  readonly clientId = `containers-${process.pid}-${Date.now()}`;
  readonly acked = new Map<string, string>();
  failedAttempts = 0;
  abandoned = 0;
  /** Why attempts failed: "node<i>: <gRPC code> <details>" -> count. */
  readonly failures = new Map<string, number>();

  constructor(ports: number[]) {
    this.clients = ports.map((p) => new KVClient(`127.0.0.1:${p}`, credentials.createInsecure()));
  }

  private call<Req, Res>(method: "put" | "get", client: InstanceType<typeof KVClient>, req: Req, ms: number): Promise<Res> {
    return new Promise((res, rej) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (client as any)[method](req, new Metadata(), { deadline: Date.now() + ms }, (err: ServiceError | null, r: Res) => (err ? rej(err) : res(r)));
    });
  }

  /** One write, retried on every endpoint with the same request id for up to 30 s. */
  async put(key: string, value: string): Promise<boolean> {
    const seq = ++this.next;
    const end = Date.now() + 30_000;
    for (let attempt = 0; Date.now() < end; attempt++) {
      const c = (this.preferred + attempt) % this.clients.length;
      try {
        await this.call("put", this.clients[c]!, { key: Buffer.from(key), value: Buffer.from(value), requestId: { clientId: this.clientId, seq }, prevKv: false }, 2000);
        this.preferred = c;
        this.acked.set(key, value);
        return true;
      } catch (err) {
        this.failedAttempts++;
        const e = err as ServiceError;
        const why = `node${c + 1}: ${e.code ?? ""} ${(e.details ?? e.message ?? "").slice(0, 120)}`;
        this.failures.set(why, (this.failures.get(why) ?? 0) + 1);
        await sleep(100);
      }
    }
    this.abandoned++;
    return false;
  }

  async get(key: string, via?: number): Promise<string | undefined> {
    const end = Date.now() + 30_000;
    for (let attempt = 0; Date.now() < end; attempt++) {
      const c = via ?? (this.preferred + attempt) % this.clients.length;
      try {
        const r = await this.call<unknown, { found: boolean; kv?: { value: Buffer } }>("get", this.clients[c]!, { key: Buffer.from(key), consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE }, 2000);
        return r.found ? Buffer.from(r.kv!.value).toString() : undefined;
      } catch (err) {
        if (via !== undefined && Date.now() + 200 >= end) throw err;
        await sleep(100);
      }
    }
    throw new Error(`get ${key}: no answer within 30 s`);
  }

  /** Writes ct/<n> in the background until stop(), at most `limit` writes. */
  start(prefix: string, limit = 5000): void {
    this.stopped = false;
    this.loop = (async () => {
      for (let n = 0; n < limit && !this.stopped; n++) await this.put(`${prefix}/${n}`, `v${n}-${Date.now()}`);
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Keys whose acknowledged value is not what a linearizable read returns now. */
  async lost(): Promise<string[]> {
    const lost: string[] = [];
    for (const [k, v] of this.acked) if ((await this.get(k)) !== v) lost.push(k);
    return lost;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

/**
 * The node's log lines since its last SIGTERM (pino JSON behind docker-compose's "name | "
 * prefix), and the hand-off and exit times it logged.
 */
async function shutdownLog(i: number): Promise<{ lines: string[]; handedOffMs?: number; stoppedMs?: number }> {
  const { stdout } = await compose(["logs", "--no-color", `node${i}`], 60_000);
  const events = stdout
    .split("\n")
    .map((l) => l.slice(l.indexOf("|") + 1).trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as { msg?: string; ms?: number; signal?: string }];
      } catch {
        return [];
      }
    });
  let from = -1;
  events.forEach((e, k) => {
    if (e.signal === "SIGTERM") from = k;
  });
  const tail = from < 0 ? [] : events.slice(from);
  const handed = tail.find((e) => e.msg?.startsWith("handed LEADER role"));
  const stopped = tail.find((e) => e.msg === "stopped cleanly");
  return { lines: tail.map((e) => e.msg ?? "").slice(0, 12), handedOffMs: handed?.ms, stoppedMs: stopped?.ms };
}

// ---------------------------------------------------------------------------------------------
// Setup helpers.

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

const parsePort = (p: unknown): { ip?: string; host: number; target: number } => {
  if (typeof p === "object" && p) {
    const o = p as { host_ip?: string; published: number | string; target: number };
    return { ip: o.host_ip, host: Number(o.published), target: Number(o.target) };
  }
  const parts = String(p).replace(/\/tcp$/, "").split(":");
  const [target, host, ip] = [parts.pop(), parts.pop(), parts.pop()];
  return { ip, host: Number(host), target: Number(target) };
};

/**
 * The repository's compose file as docker-compose itself resolves it, narrowed to the raftkv
 * services, with host ports moved only if the documented ones are taken on this machine.
 */
async function prepareComposeFile(dir: string): Promise<void> {
  const { stdout } = await run("docker-compose", ["-f", join(context, "docker-compose.yml"), "config"], { cwd: context, env: { RAFTKV_BIND_ADDRESS: "127.0.0.1" } });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const config = parseYaml(stdout) as { services: Record<string, any>; volumes?: Record<string, unknown>; [k: string]: unknown };
  const keep = NODES.flatMap((i) => [`pod${i}`, `node${i}`, `exporter${i}`]);
  for (const name of Object.keys(config.services)) if (!keep.includes(name)) delete config.services[name];
  for (const name of Object.keys(config.volumes ?? {})) if (!/^node\d-data$/.test(name)) delete config.volumes![name];
  const wanted = NODES.flatMap((i) => (config.services[`pod${i}`].ports as unknown[]).map(parsePort).map((p) => p.host));
  const allFree = (await Promise.all(wanted.map(portFree))).every(Boolean);
  if (!allFree) log(`some of the documented host ports (${wanted.join(",")}) are taken here: publishing on free ports instead`);
  for (const i of NODES) {
    const ports = (config.services[`pod${i}`].ports as unknown[]).map(parsePort);
    const e: Partial<Endpoints> = {};
    const out: string[] = [];
    for (const p of ports) {
      const host = allFree ? p.host : await freePort();
      out.push(`127.0.0.1:${host}:${p.target}`);
      if (p.target === 9091) e.client = host;
      if (p.target === 8080) e.http = host;
      if (p.target === 9100) e.metrics = host;
    }
    assert(e.client && e.http && e.metrics, `pod${i} does not publish 9091, 8080 and 9100`);
    config.services[`pod${i}`].ports = out;
    endpoints.set(i, e as Endpoints);
  }
  images.node = config.services.node1.image;
  images.exporter = config.services.exporter1.image;
  assert(images.node && images.exporter, "node1 and exporter1 need an image name");
  composeFile = join(dir, "docker-compose.yml");
  writeFileSync(composeFile, stringifyYaml(config));
}

/** The container of a compose service, by id. */
async function containerId(service: string): Promise<string> {
  const { stdout } = await compose(["ps", "-q", service], 60_000);
  const id = stdout.trim();
  assert(/^[0-9a-f]{12,64}$/.test(id), `docker-compose ps -q ${service} printed ${JSON.stringify(id)}`);
  return id;
}

async function imageInfo(image: string): Promise<{ size: number; user: string; healthcheck: boolean }> {
  const { stdout } = await podman(["image", "inspect", image, "--format", "{{.Size}}|{{.Config.User}}|{{json .Config.Healthcheck}}"]);
  const [size, user, hc] = stdout.trim().split("|");
  return { size: Number(size), user: user!, healthcheck: hc !== "null" && hc !== "" };
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

// ---------------------------------------------------------------------------------------------
// Teardown: always, once.

let tmp = "";
let writer: Writer | undefined;
let tornDown = false;

async function teardown(): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  writer?.close();
  if (composeFile && flag("--keep")) {
    log(`--keep: the cluster is still up. Remove it with: eval "$(${kit} env)" && docker-compose -p ${project} -f ${composeFile} down -v`);
    return;
  }
  if (composeFile && checks.some((c) => !c.ok)) {
    // The containers' logs go with them: keep a copy to explain the failure.
    const file = join(tmpdir(), `${project}-logs.txt`);
    await compose(["logs", "--no-color", "--timestamps"], 60_000)
      .then(({ stdout }) => {
        writeFileSync(file, stdout);
        log(`the containers' logs are in ${file}`);
      })
      .catch((err: Error) => log(`could not save the containers' logs: ${err.message}`));
  }
  if (composeFile) {
    log("tearing down the compose project");
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        // The nodes and exporters first: podman refuses to remove a pod holder that still has
        // containers in its network namespace, and `down` removes them all in parallel.
        await compose(["rm", "-f", "-s", "-v", ...NODES.flatMap((i) => [`node${i}`, `exporter${i}`])], 180_000);
        await compose(["down", "-v", "--remove-orphans", "-t", "30"], 180_000);
        const { stdout } = await compose(["ps", "-q"], 60_000);
        if (!stdout.trim()) break;
      } catch (err) {
        log(`down (attempt ${attempt}): ${(err as Error).message}`);
      }
    }
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  // Each build leaves its untagged stage images behind; drop them so repeated runs do not fill the disk.
  if (Object.keys(kitEnv).length) await podman(["image", "prune", "-f"], 120_000).catch(() => undefined);
  if (Object.keys(kitEnv).length && !flag("--keep-kit")) {
    await run(kit, ["down"], { timeoutMs: 120_000 }).catch((err: Error) => log(`podman-kit down: ${err.message}`));
  }
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    log(`${sig}: tearing down`);
    void teardown().finally(() => process.exit(130));
  });
}
const hardStop = setTimeout(() => {
  log(`the run exceeded ${HARD_DEADLINE_MS / 60_000} minutes: tearing down`);
  checks.push({ name: "finishes within the time limit", ok: false, ms: HARD_DEADLINE_MS });
  void teardown().finally(() => finish());
}, HARD_DEADLINE_MS);
hardStop.unref();

function finish(): never {
  const passed = checks.filter((c) => c.ok).length;
  const failed = checks.length - passed;
  console.log("\nraftkv containers:");
  for (const c of checks) console.log(`  ${c.ok ? "ok  " : "FAIL"} ${c.name} (${c.ms} ms)${c.detail ? `: ${c.detail}` : ""}`);
  if (Object.keys(numbers).length) {
    console.log("\nmeasured:");
    const width = Math.max(...Object.keys(numbers).map((k) => k.length));
    for (const [k, v] of Object.entries(numbers)) console.log(`  ${k.padEnd(width)}  ${v}`);
    console.log(`\n${JSON.stringify({ containers: numbers })}`);
  }
  console.log(`\n${passed} passed, ${failed} failed`);
  process.exit(failed || checks.length === 0 ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------
// The run.

async function main(): Promise<void> {
  await check("podman-kit is up (rootful podman, a Docker-compatible socket, docker-compose)", async () => {
    const { stdout } = await run(kit, ["up"], { timeoutMs: 600_000 });
    for (const m of stdout.matchAll(/^export ([A-Z_]+)='([^']*)'$/gm)) kitEnv[m[1]!] = m[2]!;
    assert(kitEnv.DOCKER_HOST && kitEnv.NODE_IMAGE, `podman-kit up printed no DOCKER_HOST/NODE_IMAGE: ${stdout.slice(0, 300)}`);
  });

  tmp = mkdtempSync(join(tmpdir(), "raftkv-containers-"));
  await check("docker-compose.yml resolves; the raftkv services are taken from it as they are", () => prepareComposeFile(tmp));

  await check("both images build from a clean context", async () => {
    const t = performance.now();
    await compose(["build", "node1", "exporter1"], 900_000);
    numbers["build time, both images"] = `${(since(t) / 1000).toFixed(1)} s`;
  });

  await check("the images are small, run as uid 1000 and keep their HEALTHCHECK", async () => {
    const base = await imageInfo(kitEnv.NODE_IMAGE!);
    for (const [name, image] of [["node", images.node], ["exporter", images.exporter]] as const) {
      const info = await imageInfo(image);
      numbers[`${name} image size`] = `${mb(info.size)} (${mb(info.size - base.size)} over the base ${mb(base.size)})`;
      assert(info.user === "1000:1000", `${image} runs as "${info.user}"`);
      assert(info.healthcheck, `${image} lost its HEALTHCHECK (built in OCI format?)`);
      assert(info.size - base.size < 100e6, `${image} adds ${mb(info.size - base.size)} to the base image`);
    }
  });

  await check("docker-compose up starts 3 pods, 3 nodes and 3 exporters", async () => {
    const t = performance.now();
    await compose(["up", "-d", "--no-build", ...NODES.flatMap((i) => [`pod${i}`, `node${i}`, `exporter${i}`])], 300_000);
    numbers["compose up"] = `${(since(t) / 1000).toFixed(1)} s`;
  });

  const firstLeader = await check("the nodes elect a leader that all of them know", async () => {
    const t = performance.now();
    const l = await waitFor("a leader all three nodes agree on", 120_000, () => agreedLeader(NODES));
    numbers["first leader after up"] = `${(since(t) / 1000).toFixed(1)} s (${l.id}, term ${l.term})`;
    return l;
  });

  await check("the CLI puts through one published port and gets through another", async () => {
    await cli(["put", "containers/hello", "world", "--endpoints", `127.0.0.1:${endpoints.get(1)!.client}`]);
    const got = await cli(["get", "containers/hello", "--endpoints", `127.0.0.1:${endpoints.get(3)!.client}`]);
    assert(got.includes("world"), `get printed ${JSON.stringify(got)}`);
  });

  await check("the CLI inside the node image reads the same key (docker exec ... raftkv get)", async () => {
    const { stdout } = await compose(["exec", "-T", "node2", "raftkv", "get", "containers/hello", "--endpoints", "127.0.0.1:9091"], 60_000);
    assert(stdout.includes("world"), `in-container get printed ${JSON.stringify(stdout.trim())}`);
  });

  await check("every exporter serves /metrics: node up, a leader known, exactly one node is leader", async () => {
    await waitFor("all exporters to report the leader", 30_000, async () => {
      const all = await Promise.all(NODES.map(metrics));
      for (const [k, m] of all.entries()) {
        if (m.get("raftkv_up") !== 1) throw new Error(`exporter${k + 1}: raftkv_up ${m.get("raftkv_up")}`);
        if (m.get("raftkv_server_has_leader") !== 1) throw new Error(`exporter${k + 1}: raftkv_server_has_leader ${m.get("raftkv_server_has_leader")}`);
      }
      const leaders = all.flatMap((m, k) => (m.get("raftkv_server_is_leader") === 1 ? [k + 1] : []));
      if (leaders.length !== 1) throw new Error(`raftkv_server_is_leader is 1 on exporters [${leaders.join(",")}]`);
      return true;
    });
  });

  writer = new Writer(NODES.map((i) => endpoints.get(i)!.client));
  await check("writes before the failure are acknowledged", async () => {
    for (let n = 0; n < 50; n++) assert(await writer!.put(`before/${n}`, `b${n}`), `write before/${n} was not acknowledged within 30 s`);
  });

  const killed = nodeIndex(firstLeader.id);
  const survivors = NODES.filter((i) => i !== killed);
  const second = await check(`SIGKILL the leader's container (node${killed}) under writes: the others elect a new leader`, async () => {
    // podman itself signals the container: docker-compose (Python, through the API socket) takes
    // seconds to start on a loaded machine, which would be counted as failover time.
    const id = await containerId(`node${killed}`);
    writer!.start("during-kill");
    await sleep(1000);
    await podman(["kill", "--signal", "KILL", id]);
    const t = performance.now();
    const l = await waitFor("a new leader among the survivors", 60_000, () => agreedLeader(survivors, firstLeader.id), 100);
    numbers["failover after SIGKILL (killed -> new leader known to both survivors)"] = `${since(t)} ms (${l.id}, term ${l.term})`;
    assert(l.term > firstLeader.term, `new term ${l.term} is not above ${firstLeader.term}`);
    await sleep(2000);
    await writer!.stop();
    return l;
  });

  await check("the killed node's exporter says raftkv_up 0", async () => {
    await waitFor(`exporter${killed} to report raftkv_up 0`, 20_000, async () => ((await metrics(killed)).get("raftkv_up") === 0 ? true : undefined));
  });

  await check("no acknowledged write is lost", async () => {
    const lost = await writer!.lost();
    numbers["writes acknowledged / retried attempts / abandoned"] = `${writer!.acked.size} / ${writer!.failedAttempts} / ${writer!.abandoned}`;
    assert(lost.length === 0, `${lost.length} acknowledged writes read back wrong: ${lost.slice(0, 5).join(", ")}`);
  });

  await check(`the restarted node${killed} rejoins as a follower and catches up`, async () => {
    const leader = await status(nodeIndex(second.id));
    const t = performance.now();
    await compose(["start", `node${killed}`], 120_000);
    await waitFor(`node${killed} to catch up to index ${leader.commitIndex}`, 90_000, async () => {
      const s = await status(killed);
      return s.leaderId === second.id && s.role === "follower" && s.appliedIndex >= leader.commitIndex ? s : undefined;
    });
    numbers["catch-up after restart (docker-compose start -> applied >= leader's commit)"] = `${since(t)} ms`;
    const v = await writer!.get("before/49", NODES.indexOf(killed as 1));
    assert(v === "b49", `a read through node${killed} returned ${v}`);
  });

  await check(`exporter${killed} sees its restarted node (the pod's network namespace outlived the node)`, async () => {
    await waitFor(`exporter${killed} to report raftkv_up 1`, 30_000, async () => ((await metrics(killed)).get("raftkv_up") === 1 ? true : undefined));
  });

  const handedOff = nodeIndex(second.id);
  await check(`SIGTERM the leader (node${handedOff}): it hands off leadership and exits 0 within the grace period`, async () => {
    const id = await containerId(`node${handedOff}`);
    writer!.start("during-stop");
    await sleep(1000);
    const failedBefore = writer!.failedAttempts;
    const t = performance.now();
    const others = NODES.filter((i) => i !== handedOff);
    const newLeader = waitFor("a leader other than the stopped one", 60_000, () => agreedLeader(others, second.id), 100).then((l) => ({ l, ms: since(t) }));
    // `podman stop` sends SIGTERM at once and returns when the container has exited (SIGKILL after 30 s).
    await podman(["stop", "-t", "30", id], 120_000);
    const stopMs = since(t);
    const { l, ms } = await newLeader;
    await sleep(1000);
    await writer!.stop();
    const { stdout: code } = await podman(["inspect", "--format", "{{.State.ExitCode}}", id]);
    numbers["SIGTERM hand-off (podman stop -> new leader known to the others) / stop time"] = `${ms} ms (${l.id}, term ${l.term}) / ${stopMs} ms`;
    numbers["client attempts that failed during the hand-off"] = String(writer!.failedAttempts - failedBefore);
    numbers["why client attempts failed (whole run)"] = [...writer!.failures].map(([why, n]) => `${n}x ${why}`).join("; ") || "-";
    // The node's own account of its shutdown: a new leader could also come from an election
    // after the leader vanished, so the hand-off itself is checked in the node's log.
    const shutdown = await shutdownLog(handedOff);
    numbers["shutdown inside the node (SIGTERM -> handed off / -> exit)"] = `${shutdown.handedOffMs ?? "-"} ms / ${shutdown.stoppedMs ?? "-"} ms`;
    assert(code.trim() === "0", `node${handedOff} exited with ${code.trim()}`);
    assert(shutdown.handedOffMs !== undefined, `node${handedOff} did not log a completed hand-off after SIGTERM: ${shutdown.lines.join(" | ")}`);
    assert(stopMs < 25_000, `stopping took ${stopMs} ms: the node did not exit on SIGTERM`);
    const lost = await writer!.lost();
    assert(lost.length === 0, `${lost.length} acknowledged writes read back wrong after the hand-off`);
    await compose(["start", `node${handedOff}`], 120_000);
    await waitFor(`node${handedOff} to rejoin`, 90_000, async () => ((await status(handedOff)).leaderId === l.id ? true : undefined));
  });

  await check("docker compose logs show the elections (lines with LEADER)", async () => {
    const { stdout } = await compose(["logs", "--no-color", ...NODES.map((i) => `node${i}`)], 60_000);
    const lines = stdout.split("\n").filter((l) => l.includes("LEADER"));
    assert(lines.length >= 3, `only ${lines.length} LEADER lines in the nodes' logs`);
    numbers["LEADER lines in the logs"] = String(lines.length);
  });
}

main()
  .catch((err) => {
    if (!(err instanceof Abort)) checks.push({ name: "the run itself", ok: false, ms: since(t0), detail: (err as Error).stack ?? String(err) });
  })
  .finally(async () => {
    await teardown();
    numbers["whole run"] = `${(since(t0) / 1000).toFixed(1)} s`;
    finish();
  });
