// Environment + flags -> one typed, validated Config (docs/configuration.md is the reference).
// StatefulSet mode derives the identity from the pod's hostname ordinal and the peers from the
// headless service, so every pod of a StatefulSet runs with the same env.

import { Command, InvalidArgumentError } from "commander";
import { hostname } from "node:os";
import { resolve } from "node:path";

export interface Peer {
  id: string;
  /** host:port of the peer (Raft) service. */
  address: string;
}

export interface Config {
  id: string;
  cluster: string;
  peers: Peer[];
  dataDir: string;
  listenHost: string;
  clientPort: number;
  peerPort: number;
  httpPort: number;
  heartbeatMs: number;
  electionMs: number;
  snapshotInterval: number;
  /** Log entries kept behind a snapshot, so a briefly lagging follower needs no InstallSnapshot. */
  snapshotKeepEntries: number;
  maxKeyBytes: number;
  maxValueBytes: number;
  requestTimeoutMs: number;
  logLevel: string;
  /** Truncate a corrupt WAL at the first bad record instead of refusing to start. */
  repairWal: boolean;
  /** Where durable WAL writes run: on the event loop ("inline") or libuv's thread pool. */
  walWrites: "inline" | "threadpool";
  /** "static" (RAFTKV_PEERS) or "statefulset" (hostname ordinal + headless service). */
  mode: "static" | "statefulset";
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

interface Setting {
  flag: string;
  env: string;
  description: string;
  default?: string;
  boolean?: boolean;
}

const SETTINGS: Record<string, Setting> = {
  id: { flag: "--id <id>", env: "RAFTKV_NODE_ID", description: "this node's id (StatefulSet mode: the hostname)" },
  peers: { flag: "--peers <list>", env: "RAFTKV_PEERS", description: "every voter including this node: id=host:port,... (peer ports)" },
  cluster: { flag: "--cluster <name>", env: "RAFTKV_CLUSTER", description: "cluster name; peers of another cluster are refused", default: "local" },
  replicas: { flag: "--replicas <n>", env: "RAFTKV_REPLICAS", description: "StatefulSet mode: number of pods" },
  headlessService: { flag: "--headless-service <dns>", env: "RAFTKV_HEADLESS_SERVICE", description: "StatefulSet mode: DNS suffix of the headless service" },
  statefulsetName: { flag: "--statefulset-name <name>", env: "RAFTKV_STATEFULSET_NAME", description: "StatefulSet mode: pod name prefix (default: hostname without -<ordinal>)" },
  dataDir: { flag: "--data-dir <dir>", env: "RAFTKV_DATA_DIR", description: "WAL and snapshots (default ./data/<id>)" },
  listenHost: { flag: "--listen-host <addr>", env: "RAFTKV_LISTEN_HOST", description: "address the servers bind", default: "0.0.0.0" },
  clientPort: { flag: "--client-port <port>", env: "RAFTKV_CLIENT_PORT", description: "gRPC client API (KV, Cluster)", default: "9091" },
  peerPort: { flag: "--peer-port <port>", env: "RAFTKV_PEER_PORT", description: "gRPC peer API (Raft)", default: "7001" },
  httpPort: { flag: "--http-port <port>", env: "RAFTKV_HTTP_PORT", description: "HTTP /status /livez /readyz", default: "8080" },
  heartbeatMs: { flag: "--heartbeat-ms <ms>", env: "RAFTKV_HEARTBEAT_MS", description: "leader heartbeat interval (one Raft tick)", default: "100" },
  electionMs: { flag: "--election-ms <ms>", env: "RAFTKV_ELECTION_MS", description: "election timeout (randomized in [T, 2T))", default: "1000" },
  snapshotInterval: { flag: "--snapshot-interval <n>", env: "RAFTKV_SNAPSHOT_INTERVAL", description: "applied entries between snapshots", default: "10000" },
  snapshotKeepEntries: { flag: "--snapshot-keep-entries <n>", env: "RAFTKV_SNAPSHOT_KEEP_ENTRIES", description: "log entries kept behind a snapshot for lagging followers", default: "5000" },
  maxKeyBytes: { flag: "--max-key-bytes <n>", env: "RAFTKV_MAX_KEY_BYTES", description: "largest key accepted", default: "4096" },
  maxValueBytes: { flag: "--max-value-bytes <n>", env: "RAFTKV_MAX_VALUE_BYTES", description: "largest value accepted", default: "1048576" },
  requestTimeoutMs: { flag: "--request-timeout-ms <ms>", env: "RAFTKV_REQUEST_TIMEOUT_MS", description: "server-side deadline of a client request", default: "5000" },
  logLevel: { flag: "--log-level <level>", env: "RAFTKV_LOG_LEVEL", description: "pino level (trace..fatal)", default: "info" },
  walWrites: { flag: "--wal-writes <mode>", env: "RAFTKV_WAL_WRITES", description: "inline (on the event loop: fastest on a fast disk) or threadpool (keeps serving during slow disk writes)", default: "inline" },
  repairWal: { flag: "--repair-wal", env: "RAFTKV_REPAIR_WAL", description: "truncate a corrupt WAL at the first bad record (says what it discards)", boolean: true },
};

export function buildCommand(): Command {
  const cmd = new Command()
    .name("raftkv-node")
    .description("A raftkv node: Raft consensus, a WAL, a B+ tree state machine; gRPC for clients and peers, HTTP /status.")
    .allowExcessArguments(false)
    .exitOverride();
  for (const s of Object.values(SETTINGS)) {
    const help = `${s.description} [env ${s.env}]${s.default !== undefined ? ` (default ${s.default})` : ""}`;
    cmd.option(s.flag, help);
  }
  return cmd;
}

function int(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return n;
}

export function parsePeers(raw: string): Peer[] {
  const peers: Peer[] = [];
  const seen = new Set<string>();
  for (const part of raw.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._-]+)=(.+):(\d+)$/.exec(part);
    if (!m) throw new ConfigError(`RAFTKV_PEERS: "${part}" is not id=host:port`);
    const [, id, host, port] = m;
    int(`RAFTKV_PEERS port of ${id}`, port, 1, 65535);
    if (seen.has(id)) throw new ConfigError(`RAFTKV_PEERS: id ${id} appears twice`);
    seen.add(id);
    peers.push({ id, address: `${host}:${port}` });
  }
  if (peers.length === 0) throw new ConfigError("RAFTKV_PEERS is empty");
  return peers;
}

/**
 * Parses argv (without node and script) and env into a Config. Throws ConfigError with a
 * message naming the setting; commander's own errors (unknown flag) come as CommanderError.
 */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv = process.env, host = hostname()): Config {
  const cmd = buildCommand();
  cmd.parse(argv, { from: "user" });
  const flags = cmd.opts<Record<string, string | boolean | undefined>>();
  const get = (key: keyof typeof SETTINGS): string | undefined => {
    const v = flags[key];
    if (typeof v === "string") return v;
    if (v === true) return "true";
    const e = env[SETTINGS[key].env];
    if (e !== undefined && e !== "") return e;
    return SETTINGS[key].default;
  };

  let id = get("id");
  let peers: Peer[];
  let mode: Config["mode"] = "static";
  const peerPort = int("RAFTKV_PEER_PORT", get("peerPort")!, 1, 65535);
  const peersRaw = get("peers");
  const replicasRaw = get("replicas");
  if (peersRaw) {
    peers = parsePeers(peersRaw);
  } else if (replicasRaw) {
    mode = "statefulset";
    const replicas = int("RAFTKV_REPLICAS", replicasRaw, 1, 99);
    const headless = get("headlessService");
    if (!headless) throw new ConfigError("RAFTKV_HEADLESS_SERVICE is required with RAFTKV_REPLICAS (StatefulSet mode)");
    const podName = id ?? host;
    const m = /^(.*)-(\d+)$/.exec(podName);
    if (!m) throw new ConfigError(`StatefulSet mode: the hostname "${podName}" does not end in -<ordinal>`);
    const sts = get("statefulsetName") ?? m[1];
    const ordinal = Number(m[2]);
    if (ordinal >= replicas) throw new ConfigError(`StatefulSet mode: ordinal ${ordinal} of ${podName} is not below RAFTKV_REPLICAS=${replicas}`);
    id = `${sts}-${ordinal}`;
    peers = Array.from({ length: replicas }, (_, i) => ({ id: `${sts}-${i}`, address: `${sts}-${i}.${headless}:${peerPort}` }));
  } else {
    throw new ConfigError("set RAFTKV_PEERS (id=host:port,...) or RAFTKV_REPLICAS + RAFTKV_HEADLESS_SERVICE (StatefulSet mode)");
  }
  if (!id) throw new ConfigError("RAFTKV_NODE_ID is required with RAFTKV_PEERS");
  if (!peers.some((p) => p.id === id)) throw new ConfigError(`node id ${id} is not in the peer list (${peers.map((p) => p.id).join(", ")})`);

  const heartbeatMs = int("RAFTKV_HEARTBEAT_MS", get("heartbeatMs")!, 1, 60_000);
  const electionMs = int("RAFTKV_ELECTION_MS", get("electionMs")!, 2, 600_000);
  if (electionMs < 3 * heartbeatMs) {
    throw new ConfigError(`RAFTKV_ELECTION_MS (${electionMs}) must be at least 3x RAFTKV_HEARTBEAT_MS (${heartbeatMs})`);
  }
  const logLevel = get("logLevel")!;
  if (!["trace", "debug", "info", "warn", "error", "fatal", "silent"].includes(logLevel)) {
    throw new ConfigError(`RAFTKV_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent; got ${JSON.stringify(logLevel)}`);
  }
  const repair = get("repairWal");
  const walWrites = get("walWrites")!;
  if (walWrites !== "inline" && walWrites !== "threadpool") {
    throw new ConfigError(`RAFTKV_WAL_WRITES must be inline or threadpool; got ${JSON.stringify(walWrites)}`);
  }
  return {
    id,
    cluster: get("cluster")!,
    peers,
    dataDir: resolve(get("dataDir") ?? `./data/${id}`),
    listenHost: get("listenHost")!,
    clientPort: int("RAFTKV_CLIENT_PORT", get("clientPort")!, 0, 65535),
    peerPort,
    httpPort: int("RAFTKV_HTTP_PORT", get("httpPort")!, 0, 65535),
    heartbeatMs,
    electionMs,
    snapshotInterval: int("RAFTKV_SNAPSHOT_INTERVAL", get("snapshotInterval")!, 1, 1e9),
    snapshotKeepEntries: int("RAFTKV_SNAPSHOT_KEEP_ENTRIES", get("snapshotKeepEntries")!, 0, 1e9),
    maxKeyBytes: int("RAFTKV_MAX_KEY_BYTES", get("maxKeyBytes")!, 1, 64 * 1024),
    maxValueBytes: int("RAFTKV_MAX_VALUE_BYTES", get("maxValueBytes")!, 1, 3 * 1024 * 1024),
    requestTimeoutMs: int("RAFTKV_REQUEST_TIMEOUT_MS", get("requestTimeoutMs")!, 10, 600_000),
    logLevel,
    repairWal: repair === "true" || repair === "1",
    walWrites,
    mode,
  };
}

export { InvalidArgumentError };
