// Builds the GET /status document (services/common/status.ts is the contract the exporter reads).

import { STATUS_SCHEMA_VERSION, type StatusDocument } from "../../common/status.js";
import { Histogram } from "../../common/histogram.js";
import { VERSION } from "../../common/version.js";
import { Role } from "../raft/types.js";
import { type ClientApi } from "./client-api.js";
import { type Driver } from "./driver.js";

export interface StatusSources {
  driver: Driver;
  api: ClientApi;
  cluster: string;
  startedAt: number;
  peers: Array<{ id: string; address: string }>;
}

const EMPTY = new Histogram().toStatus();

/**
 * How far applied may trail commit and still count as caught up. Under load the two differ by
 * the entries committed during the current fsync; a node replaying a backlog (after a restart,
 * or a follower that was cut off) trails by far more.
 */
export const READY_MAX_APPLY_LAG = 1000;

/** Ready for clients: a leader is known and this node has applied (nearly) everything it knows committed. */
export function isReady(driver: Driver): boolean {
  const r = driver.node.raft;
  return !driver.failed && r.lead !== "" && r.log.committed - driver.kv.appliedIndex <= READY_MAX_APPLY_LAG;
}

export function buildStatus(s: StatusSources): StatusDocument {
  const d = s.driver;
  const st = d.node.status();
  const storage = d.storage.stats();
  const transport = new Map(d.transport.peerStatus().map((p) => [p.id, p]));
  const progress = new Map(st.progress.map((p) => [p.id, p]));
  const now = Date.now();
  const mem = process.memoryUsage();
  return {
    schemaVersion: STATUS_SCHEMA_VERSION,
    nodeId: d.id,
    cluster: s.cluster,
    version: VERSION,
    uptimeSeconds: (now - s.startedAt) / 1000,
    role: st.role,
    term: st.term,
    leaderId: st.lead,
    vote: st.vote,
    commitIndex: st.commit,
    appliedIndex: d.kv.appliedIndex,
    lastLogIndex: st.lastIndex,
    lastLogTerm: st.lastTerm,
    firstLogIndex: st.firstIndex,
    snapshotIndex: storage.snapshotIndex,
    voters: st.conf.voters,
    ready: isReady(d),
    peers: s.peers
      .filter((p) => p.id !== d.id)
      .map((p) => {
        const pr = st.role === Role.Leader ? progress.get(p.id) : undefined;
        const tp = transport.get(p.id);
        return {
          id: p.id,
          address: p.address,
          matchIndex: pr?.match ?? 0,
          nextIndex: pr?.next ?? 0,
          state: pr?.state ?? "",
          lag: pr ? Math.max(0, st.commit - pr.match) : 0,
          connected: tp?.connected ?? false,
          lastContactSeconds: tp?.lastContactMs != null ? Math.max(0, (now - tp.lastContactMs) / 1000) : null,
          rtt: d.rtt.get(p.id)?.toStatus() ?? EMPTY,
        };
      }),
    counters: {
      leaderChanges: st.stats.leaderChanges,
      elections: st.stats.elections,
      proposalsCommitted: d.metrics.proposalsCommitted,
      proposalsApplied: d.metrics.proposalsApplied,
      proposalsPending: d.pendingProposals,
      proposalsFailed: d.metrics.proposalsFailed,
      readIndexRequests: st.stats.readIndexRequests,
      snapshotsTaken: d.metrics.snapshotsTaken,
      snapshotsInstalled: d.metrics.snapshotsInstalled,
      walFsyncs: storage.fsyncs,
      walBytesWritten: storage.bytesWritten,
    },
    histograms: {
      walFsyncSeconds: d.metrics.walFsync.toStatus(),
      applySeconds: d.metrics.apply.toStatus(),
    },
    requests: s.api.requestStats(),
    storage: {
      walBytes: storage.walBytes,
      walSegments: storage.walSegments,
      snapshotBytes: storage.snapshotBytes,
      keys: d.kv.size,
    },
    process: { residentMemoryBytes: mem.rss, heapUsedBytes: mem.heapUsed },
  };
}
