// Test support: realistic /status documents and a small HTTP server that serves them the way a
// node does (GET /status -> JSON), plus the ways a node can misbehave (down, hanging, 500,
// garbage, truncated JSON). This is the node's side of the StatusDocument contract, used by
// the exporter's tests until (and besides) the real node; it is not imported by the exporter.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { STATUS_SCHEMA_VERSION, type StatusDocument, type StatusHistogram } from "../common/status.js";

/** Prometheus' default buckets, in seconds, extended down for fast disks and loopback RTTs. */
export const LATENCY_BOUNDS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Builds a cumulative histogram from raw samples, as the node does. */
export function histogramOf(samples: readonly number[], bounds: readonly number[] = LATENCY_BOUNDS): StatusHistogram {
  const counts = bounds.map((b) => samples.filter((s) => s <= b).length);
  return { buckets: [...bounds], counts, count: samples.length, sum: samples.reduce((a, b) => a + b, 0) };
}

/** Deterministic pseudo-random latencies (no Math.random in fixtures: failures must reproduce). */
export function latencies(n: number, seed: number, scaleSeconds: number): number[] {
  let x = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    // Exponential-ish: mostly small, a long tail, like real fsync and RTT distributions.
    out.push(-Math.log(1 - (x % 10_000) / 10_000) * scaleSeconds);
  }
  return out;
}

export interface NodeShape {
  nodeId: string;
  /** Every voter id, including this node's. */
  voters: string[];
  role: "leader" | "follower" | "candidate" | "pre-candidate";
  leaderId: string;
  term: number;
  commitIndex: number;
  /** How many samples the histograms hold (grows with "time"). */
  samples?: number;
  leaderChanges?: number;
  cluster?: string;
}

/** A complete, valid document for one node of a running cluster. */
export function makeStatusDocument(shape: NodeShape): StatusDocument {
  const n = shape.samples ?? 200;
  const seed = [...shape.nodeId].reduce((a, ch) => a * 31 + ch.charCodeAt(0), 7);
  const isLeader = shape.role === "leader";
  const peers = shape.voters
    .filter((id) => id !== shape.nodeId)
    .map((id, i) => {
      const matchIndex = isLeader ? Math.max(0, shape.commitIndex - i * 3) : 0;
      return {
        id,
        address: `127.0.0.1:${7001 + shape.voters.indexOf(id)}`,
        matchIndex,
        nextIndex: isLeader ? matchIndex + 1 : 0,
        state: isLeader ? "replicate" : "",
        lag: isLeader ? shape.commitIndex - matchIndex : 0,
        connected: true,
        lastContactSeconds: 0.05 + i * 0.01,
        rtt: histogramOf(latencies(n, seed + i + 1, 0.0004)),
      };
    });
  const committed = Math.max(0, shape.commitIndex - 1);
  return {
    schemaVersion: STATUS_SCHEMA_VERSION,
    nodeId: shape.nodeId,
    cluster: shape.cluster ?? "local",
    version: "0.1.0",
    uptimeSeconds: 3600.5,
    role: shape.role,
    term: shape.term,
    leaderId: shape.leaderId,
    vote: shape.leaderId,
    commitIndex: shape.commitIndex,
    appliedIndex: shape.commitIndex,
    lastLogIndex: shape.commitIndex,
    lastLogTerm: shape.term,
    firstLogIndex: 1,
    snapshotIndex: 0,
    voters: [...shape.voters],
    ready: shape.leaderId !== "",
    peers,
    counters: {
      leaderChanges: shape.leaderChanges ?? 1,
      elections: isLeader ? 1 : 0,
      proposalsCommitted: committed,
      proposalsApplied: committed,
      proposalsPending: isLeader ? 2 : 0,
      proposalsFailed: 3,
      readIndexRequests: n * 2,
      snapshotsTaken: 0,
      snapshotsInstalled: 0,
      walFsyncs: n,
      walBytesWritten: n * 4096,
    },
    histograms: {
      walFsyncSeconds: histogramOf(latencies(n, seed + 100, 0.002)),
      applySeconds: histogramOf(latencies(n, seed + 200, 0.00005)),
    },
    requests: [
      { method: "Put", byCode: { OK: n, UNAVAILABLE: 2 }, latencySeconds: histogramOf(latencies(n + 2, seed + 300, 0.004)) },
      { method: "Get", byCode: { OK: 2 * n, NOT_FOUND: 5 }, latencySeconds: histogramOf(latencies(2 * n + 5, seed + 400, 0.001)) },
    ],
    storage: { walBytes: n * 4096, walSegments: 1, snapshotBytes: 0, keys: n },
    process: { residentMemoryBytes: 80 * 1024 * 1024, heapUsedBytes: 30 * 1024 * 1024 },
  };
}

/** A three-node cluster "n1".."n3" with n1 leading term `term`. */
export function clusterDocuments(term = 3, commitIndex = 1000): StatusDocument[] {
  const voters = ["n1", "n2", "n3"];
  return voters.map((nodeId) =>
    makeStatusDocument({ nodeId, voters, role: nodeId === "n1" ? "leader" : "follower", leaderId: "n1", term, commitIndex }),
  );
}

/** How the fake node answers GET /status. */
export type StatusMode =
  | "ok"
  /** 200 with bytes that are not JSON. */
  | "garbage"
  /** 200 with the document cut in half (a crash mid-write, a proxy dropping the tail). */
  | "truncated"
  /** 200 with valid JSON that is not a status document. */
  | "wrong-shape"
  | "http-500"
  /** Accepts the request and never answers. */
  | "hang";

export interface StatusServer {
  /** Full URL of the status endpoint, e.g. http://127.0.0.1:41234/status */
  url: string;
  port: number;
  document: StatusDocument;
  mode: StatusMode;
  /** GET /status requests seen (all modes). */
  requests: number;
  /** TCP connections accepted (keep-alive reuses one across requests). */
  connections: number;
  close(): Promise<void>;
}

/** Starts a fake node's HTTP status endpoint on 127.0.0.1 (port 0 = any free port). */
export async function startStatusServer(document: StatusDocument, opts: { port?: number; host?: string } = {}): Promise<StatusServer> {
  const sockets = new Set<Socket>();
  const hanging = new Set<ServerResponse>();
  const state: StatusServer = {
    url: "",
    port: 0,
    document,
    mode: "ok",
    requests: 0,
    connections: 0,
    close: async () => {
      for (const res of hanging) res.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== "/status") {
      res.writeHead(404).end();
      return;
    }
    state.requests++;
    const json = JSON.stringify(state.document);
    switch (state.mode) {
      case "ok":
        res.writeHead(200, { "content-type": "application/json" }).end(json);
        return;
      case "garbage":
        res.writeHead(200, { "content-type": "application/json" }).end("<html>502 Bad Gateway</html>\n\u0000\u00ff");
        return;
      case "truncated":
        res.writeHead(200, { "content-type": "application/json" }).end(json.slice(0, Math.floor(json.length / 2)));
        return;
      case "wrong-shape":
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ...state.document, term: "3", peers: null }));
        return;
      case "http-500":
        res.writeHead(500, { "content-type": "text/plain" }).end("internal error\n");
        return;
      case "hang":
        hanging.add(res);
        res.on("close", () => hanging.delete(res));
        return;
    }
  });
  server.on("connection", (s: Socket) => {
    state.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  state.port = port;
  state.url = `http://${opts.host ?? "127.0.0.1"}:${port}/status`;
  return state;
}
