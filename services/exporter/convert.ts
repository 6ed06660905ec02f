// /status document -> Prometheus metric families. Pure: the same document always gives the
// same families, and nothing here does I/O or keeps state between scrapes, so a value can
// never outlive the scrape that read it. Names follow Prometheus conventions and mirror
// etcd's where etcd has the same idea (etcd_server_has_leader -> raftkv_server_has_leader,
// etcd_disk_wal_fsync_duration_seconds -> raftkv_disk_wal_fsync_duration_seconds, ...).

import { Counter, Gauge, type Registry } from "prom-client";
import type { StatusDocument, StatusHistogram } from "../common/status.js";
import { BucketHistogram } from "./bucket-histogram.js";
import { validateStatusDocument } from "./status-document.js";

export type MetricType = "gauge" | "counter" | "histogram";
export type Labels = Record<string, string>;

export interface MetricDefinition {
  name: string;
  help: string;
  type: MetricType;
  labelNames: readonly string[];
}

export interface ScalarFamily extends MetricDefinition {
  type: "gauge" | "counter";
  samples: Array<{ labels: Labels; value: number }>;
}

export interface HistogramFamily extends MetricDefinition {
  type: "histogram";
  samples: Array<{ labels: Labels; histogram: StatusHistogram }>;
}

export type MetricFamily = ScalarFamily | HistogramFamily;

function def<const N extends string>(name: N, type: MetricType, help: string, labelNames: readonly string[] = []): MetricDefinition & { name: N } {
  return { name, type, help, labelNames };
}

/**
 * Every node metric the exporter can emit, with its HELP text. Exported so that tests (and the
 * dashboard/rules check) can reason about the full set of names.
 */
export const NODE_METRICS = {
  up: def("raftkv_up", "gauge", "1 if the node's /status was fetched and valid in this scrape, 0 if it was unreachable, timed out or invalid (then no other raftkv_ node metric is exported)."),
  info: def("raftkv_node_info", "gauge", "Always 1; the labels identify the node: its id, the raftkv version and the cluster name it reports.", ["node_id", "version", "cluster"]),
  uptime: def("raftkv_node_uptime_seconds", "gauge", "Seconds since the node process started."),
  hasLeader: def("raftkv_server_has_leader", "gauge", "1 if this node knows a current leader, 0 otherwise (etcd_server_has_leader)."),
  isLeader: def("raftkv_server_is_leader", "gauge", "1 if this node is the leader, 0 otherwise (etcd_server_is_leader)."),
  ready: def("raftkv_server_ready", "gauge", "1 if the node serves clients: a leader is known and applied has caught up with commit."),
  leaderChanges: def("raftkv_server_leader_changes_seen_total", "counter", "Leader changes this node has seen since it started (etcd_server_leader_changes_seen_total)."),
  elections: def("raftkv_server_elections_started_total", "counter", "Elections this node started as a candidate (after a successful pre-vote)."),
  proposalsCommitted: def("raftkv_server_proposals_committed_total", "counter", "Proposals committed by the cluster, as seen by this node (etcd_server_proposals_committed_total)."),
  proposalsApplied: def("raftkv_server_proposals_applied_total", "counter", "Committed proposals applied to this node's state machine (etcd_server_proposals_applied_total)."),
  proposalsPending: def("raftkv_server_proposals_pending", "gauge", "Proposals accepted and not yet applied (etcd_server_proposals_pending)."),
  proposalsFailed: def("raftkv_server_proposals_failed_total", "counter", "Proposals that failed: not committed or rejected (etcd_server_proposals_failed_total)."),
  readIndex: def("raftkv_server_read_index_requests_total", "counter", "Linearizable read (ReadIndex) requests handled by this node."),
  applyDuration: def("raftkv_server_apply_duration_seconds", "histogram", "Time to apply a committed entry to the state machine, in seconds."),
  term: def("raftkv_raft_term", "gauge", "The node's current Raft term."),
  commitIndex: def("raftkv_raft_commit_index", "gauge", "The highest log index known to be committed on this node."),
  appliedIndex: def("raftkv_raft_applied_index", "gauge", "The highest log index applied to this node's state machine."),
  lastLogIndex: def("raftkv_raft_last_log_index", "gauge", "The index of the last entry in this node's log."),
  firstLogIndex: def("raftkv_raft_first_log_index", "gauge", "The index of the first entry still in this node's log (earlier ones are in the snapshot)."),
  snapshotIndex: def("raftkv_raft_snapshot_index", "gauge", "The last log index covered by this node's latest snapshot."),
  voters: def("raftkv_raft_voters", "gauge", "Number of voters in the configuration this node knows."),
  peerMatchIndex: def("raftkv_raft_peer_match_index", "gauge", "Leader only: the highest log index known to be replicated on the peer.", ["peer"]),
  replicationLag: def("raftkv_raft_replication_lag_entries", "gauge", "Leader only: entries the peer is behind the leader's commit index (commit index - match index).", ["peer"]),
  peerConnected: def("raftkv_network_peer_connected", "gauge", "1 if the stream to the peer is up, 0 otherwise.", ["peer"]),
  peerLastContact: def("raftkv_network_peer_last_contact_seconds", "gauge", "Seconds since the last message received from the peer (absent if none ever was).", ["peer"]),
  peerRtt: def("raftkv_network_peer_round_trip_time_seconds", "histogram", "Round-trip time of heartbeats to the peer, in seconds (etcd_network_peer_round_trip_time_seconds).", ["peer"]),
  walFsyncDuration: def("raftkv_disk_wal_fsync_duration_seconds", "histogram", "Latency of WAL fsyncs (one per group commit), in seconds (etcd_disk_wal_fsync_duration_seconds)."),
  walWriteBytes: def("raftkv_disk_wal_write_bytes_total", "counter", "Bytes written to the WAL (etcd_disk_wal_write_bytes_total)."),
  walSize: def("raftkv_disk_wal_size_bytes", "gauge", "Bytes in the WAL segments on disk."),
  walSegments: def("raftkv_disk_wal_segments", "gauge", "Number of WAL segment files on disk."),
  snapshotSize: def("raftkv_disk_snapshot_size_bytes", "gauge", "Bytes of the latest snapshot on disk."),
  snapshotsTaken: def("raftkv_snapshot_taken_total", "counter", "Snapshots this node took of its own state machine."),
  snapshotsInstalled: def("raftkv_snapshot_installed_total", "counter", "Snapshots received from a leader and installed."),
  keys: def("raftkv_kv_keys", "gauge", "Keys in the state machine."),
  requests: def("raftkv_client_requests_total", "counter", "Client requests finished, by gRPC method and final status code.", ["method", "code"]),
  requestDuration: def("raftkv_client_request_duration_seconds", "histogram", "Client request latency by gRPC method, in seconds.", ["method"]),
  residentMemory: def("raftkv_process_resident_memory_bytes", "gauge", "Resident memory of the node process, in bytes."),
  heapUsed: def("raftkv_process_heap_used_bytes", "gauge", "V8 heap used by the node process, in bytes."),
} as const;

function scalar(d: MetricDefinition, samples: ScalarFamily["samples"]): ScalarFamily {
  return { ...d, type: d.type as ScalarFamily["type"], samples };
}
function one(d: MetricDefinition, value: number): ScalarFamily {
  return scalar(d, [{ labels: {}, value }]);
}
function histogram(d: MetricDefinition, samples: HistogramFamily["samples"]): HistogramFamily {
  return { ...d, type: "histogram", samples };
}
const bit = (b: boolean): number => (b ? 1 : 0);

/** The families for a valid document (raftkv_up 1 first). */
export function documentToFamilies(doc: StatusDocument): MetricFamily[] {
  const M = NODE_METRICS;
  const c = doc.counters;
  const isLeader = doc.role === "leader";
  // Per-peer replication progress is the leader's view; on followers the node reports zeros
  // that mean "unknown", and exporting them would read as "caught up".
  const leaderPeers = isLeader ? doc.peers : [];
  const families: MetricFamily[] = [
    one(M.up, 1),
    scalar(M.info, [{ labels: { node_id: doc.nodeId, version: doc.version, cluster: doc.cluster }, value: 1 }]),
    one(M.uptime, doc.uptimeSeconds),
    one(M.hasLeader, bit(doc.leaderId !== "")),
    one(M.isLeader, bit(isLeader)),
    one(M.ready, bit(doc.ready)),
    one(M.leaderChanges, c.leaderChanges),
    one(M.elections, c.elections),
    one(M.proposalsCommitted, c.proposalsCommitted),
    one(M.proposalsApplied, c.proposalsApplied),
    one(M.proposalsPending, c.proposalsPending),
    one(M.proposalsFailed, c.proposalsFailed),
    one(M.readIndex, c.readIndexRequests),
    histogram(M.applyDuration, [{ labels: {}, histogram: doc.histograms.applySeconds }]),
    one(M.term, doc.term),
    one(M.commitIndex, doc.commitIndex),
    one(M.appliedIndex, doc.appliedIndex),
    one(M.lastLogIndex, doc.lastLogIndex),
    one(M.firstLogIndex, doc.firstLogIndex),
    one(M.snapshotIndex, doc.snapshotIndex),
    one(M.voters, doc.voters.length),
    scalar(M.peerMatchIndex, leaderPeers.map((p) => ({ labels: { peer: p.id }, value: p.matchIndex }))),
    scalar(M.replicationLag, leaderPeers.map((p) => ({ labels: { peer: p.id }, value: p.lag }))),
    scalar(M.peerConnected, doc.peers.map((p) => ({ labels: { peer: p.id }, value: bit(p.connected) }))),
    scalar(
      M.peerLastContact,
      doc.peers.flatMap((p) => (p.lastContactSeconds === null ? [] : [{ labels: { peer: p.id }, value: p.lastContactSeconds }])),
    ),
    histogram(M.peerRtt, doc.peers.map((p) => ({ labels: { peer: p.id }, histogram: p.rtt }))),
    histogram(M.walFsyncDuration, [{ labels: {}, histogram: doc.histograms.walFsyncSeconds }]),
    one(M.walWriteBytes, c.walBytesWritten),
    one(M.walSize, doc.storage.walBytes),
    one(M.walSegments, doc.storage.walSegments),
    one(M.snapshotSize, doc.storage.snapshotBytes),
    one(M.snapshotsTaken, c.snapshotsTaken),
    one(M.snapshotsInstalled, c.snapshotsInstalled),
    one(M.keys, doc.storage.keys),
    scalar(
      M.requests,
      doc.requests.flatMap((r) => Object.entries(r.byCode).map(([code, n]) => ({ labels: { method: r.method, code }, value: n }))),
    ),
    histogram(M.requestDuration, doc.requests.map((r) => ({ labels: { method: r.method }, histogram: r.latencySeconds }))),
    one(M.residentMemory, doc.process.residentMemoryBytes),
    one(M.heapUsed, doc.process.heapUsedBytes),
  ];
  // A family with no series (no peers yet, no requests yet) is left out rather than shown empty.
  return families.filter((f) => f.samples.length > 0);
}

export type ConversionResult =
  | { up: true; doc: StatusDocument; families: MetricFamily[] }
  | { up: false; error: string; families: MetricFamily[] };

/**
 * Validates a parsed /status body and converts it. Never throws: an invalid document yields
 * `up: false`, the reason, and exactly one family, `raftkv_up 0`.
 */
export function statusToMetrics(body: unknown): ConversionResult {
  const v = validateStatusDocument(body);
  if (!v.ok) return { up: false, error: v.error, families: [downFamily()] };
  return { up: true, doc: v.doc, families: documentToFamilies(v.doc) };
}

/** What a scrape exports when the node could not be read: raftkv_up 0 and nothing else. */
export function downFamily(): ScalarFamily {
  return one(NODE_METRICS.up, 0);
}

/** Registers the families into a (fresh) prom-client registry for rendering. */
export function registerFamilies(families: readonly MetricFamily[], registry: Registry): void {
  for (const f of families) {
    const config = { name: f.name, help: f.help, labelNames: [...f.labelNames], registers: [registry] };
    if (f.type === "histogram") {
      const h = new BucketHistogram(config);
      for (const s of f.samples) h.addSeries(s.labels, s.histogram);
    } else if (f.type === "counter") {
      const counter = new Counter(config);
      for (const s of f.samples) counter.inc(s.labels, s.value);
    } else {
      const gauge = new Gauge(config);
      for (const s of f.samples) gauge.set(s.labels, s.value);
    }
  }
}
