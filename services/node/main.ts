// raftkv-node: wiring only. config -> storage -> raft driver -> servers; signals.

import { Server, ServerCredentials } from "@grpc/grpc-js";
import { CommanderError } from "commander";
import { ClusterService } from "../common/gen/raftkv/v1/cluster.js";
import { KVService } from "../common/gen/raftkv/v1/kv.js";
import { createLogger } from "../common/logger.js";
import { VERSION } from "../common/version.js";
import { ConfigError, type Config, loadConfig } from "./config.js";
import { ClientApi } from "./server/client-api.js";
import { Driver, sleep } from "./server/driver.js";
import { startHttp } from "./server/http.js";
import { PEER_SERVER_OPTIONS } from "./server/transport.js";
import { buildStatus, isReady } from "./server/status.js";
import { DiskStorage } from "./storage/disk-storage.js";
import { Role } from "./raft/types.js";

function bind(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host.includes(":") ? `[${host}]` : host}:${port}`, ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
}

function shutdownServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.argv.slice(2));
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    if (e instanceof ConfigError) {
      process.stderr.write(`raftkv-node: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const startedAt = Date.now();
  const log = createLogger("raftkv-node", config.logLevel, { node: config.id });
  log.info({ version: VERSION, config }, `raftkv ${VERSION} starting node ${config.id} (${config.mode} mode)`);

  let storage: DiskStorage;
  try {
    storage = await DiskStorage.open(config.dataDir, {
      logger: log.child({ component: "storage" }),
      repair: config.repairWal,
      initialVoters: config.peers.map((p) => p.id),
      keepEntries: config.snapshotKeepEntries,
      writes: config.walWrites,
    });
  } catch (e) {
    log.fatal({ err: (e as Error).message, dataDir: config.dataDir }, `cannot open the data directory: ${(e as Error).message}`);
    process.stderr.write(`raftkv-node: cannot open ${config.dataDir}: ${(e as Error).message}\n`);
    process.exit(1);
  }

  // One Raft tick per heartbeat interval; the election timeout in ticks.
  const electionTicks = Math.max(3, Math.round(config.electionMs / config.heartbeatMs));
  const driver = await Driver.create({
    id: config.id,
    clusterId: config.cluster,
    peers: config.peers,
    storage,
    logger: log,
    tickMs: config.heartbeatMs,
    electionTicks,
    heartbeatTicks: 1,
    snapshotInterval: config.snapshotInterval,
    kvOptions: { limits: { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes } },
  });
  const api = new ClientApi({ driver, logger: log, requestTimeoutMs: config.requestTimeoutMs, peers: config.peers, startedAt });

  const messageLimit = Math.max(4 * 1024 * 1024, config.maxValueBytes + config.maxKeyBytes + 64 * 1024);
  const clientServer = new Server({ "grpc.max_receive_message_length": messageLimit, "grpc.max_send_message_length": 16 * 1024 * 1024 });
  clientServer.addService(KVService, api.kvService());
  clientServer.addService(ClusterService, api.clusterService());
  const peerServer = new Server(PEER_SERVER_OPTIONS);
  driver.transport.addToServer(peerServer);

  let clientPort: number;
  let peerPort: number;
  let http: Awaited<ReturnType<typeof startHttp>>;
  try {
    peerPort = await bind(peerServer, config.listenHost, config.peerPort);
    clientPort = await bind(clientServer, config.listenHost, config.clientPort);
    http = await startHttp({
      host: config.listenHost,
      port: config.httpPort,
      status: () => buildStatus({ driver, api, cluster: config.cluster, startedAt, peers: config.peers }),
      live: () => (driver.failed ? { ok: false, reason: driver.failed.message } : { ok: true }),
      ready: () => {
        if (isReady(driver)) return { ok: true };
        const r = driver.node.raft;
        return { ok: false, reason: r.lead === "" ? "no leader known" : `catching up: applied ${driver.kv.appliedIndex}, commit ${r.log.committed}` };
      },
    });
  } catch (e) {
    log.fatal({ err: (e as Error).message }, `cannot listen: ${(e as Error).message}`);
    process.exit(1);
  }
  driver.start();
  log.info(
    { clientPort, peerPort, httpPort: http.port, peers: config.peers },
    `node ${config.id} serving clients on ${config.listenHost}:${clientPort}, peers on ${peerPort}, HTTP on ${http.port}`,
  );

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const t0 = Date.now();
    log.info({ signal }, `${signal}: shutting down`);
    try {
      // Hand leadership to the most caught-up follower first, so clients barely notice.
      if (driver.node.raft.role === Role.Leader && driver.node.raft.config.size > 1) {
        try {
          const to = await driver.transferLeadership(undefined, Date.now() + Math.min(3 * config.electionMs, 8000));
          log.info({ to, ms: Date.now() - t0 }, `handed LEADER role to ${to}`);
        } catch (e) {
          log.warn({ err: (e as Error).message }, "leadership hand-off did not complete; stopping anyway");
        }
      }
      api.stopAccepting();
      // Let in-flight requests finish (they complete as the new leader commits them).
      await shutdownServer(clientServer, 3000);
      await driver.stop();
      await shutdownServer(peerServer, 500);
      await http.app.close();
      log.info({ ms: Date.now() - t0 }, "stopped cleanly");
      await sleep(20);
      process.exit(0);
    } catch (e) {
      log.error({ err: (e as Error).message }, "error during shutdown");
      process.exit(1);
    }
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("uncaughtException", (e) => {
    log.fatal({ err: e.message, stack: e.stack }, "uncaught exception");
    process.exit(1);
  });
  process.on("unhandledRejection", (e) => {
    log.fatal({ err: (e as Error)?.message ?? String(e), stack: (e as Error)?.stack }, "unhandled rejection");
    process.exit(1);
  });
}

void main();
