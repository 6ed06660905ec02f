import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StatusDocument } from "../common/status.js";
import { NODE_METRICS, registerFamilies, statusToMetrics, type MetricFamily } from "./convert.js";
import { newRegistry } from "./exporter.js";
import { clusterDocuments, makeStatusDocument } from "./status-fixture.js";

const [leaderDoc, followerDoc] = clusterDocuments(7, 5000) as [StatusDocument, StatusDocument, StatusDocument];

function families(doc: unknown): Map<string, MetricFamily> {
  return new Map(statusToMetrics(doc).families.map((f) => [f.name, f]));
}

function value(fams: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = fams.get(name);
  if (!f || f.type === "histogram") return undefined;
  return f.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))?.value;
}

async function render(doc: unknown, format: "prometheus" | "openmetrics" = "prometheus"): Promise<string> {
  const registry = newRegistry(format);
  registerFamilies(statusToMetrics(doc).families, registry);
  return registry.metrics();
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

describe("status -> metrics conversion", () => {
  it("a valid document is raftkv_up 1, first, and every metric of the catalogue that has data", () => {
    const result = statusToMetrics(leaderDoc);
    assert.equal(result.up, true);
    assert.equal(result.families[0]!.name, "raftkv_up");
    assert.deepEqual(result.families[0]!.type === "gauge" && result.families[0]!.samples, [{ labels: {}, value: 1 }]);
    // A leader with peers and requests has data for every metric in the catalogue.
    assert.deepEqual(new Set(result.families.map((f) => f.name)), new Set(Object.values(NODE_METRICS).map((m) => m.name)));
  });

  it("mirrors etcd's leader metrics: has_leader, is_leader, leader changes seen", () => {
    const l = families(leaderDoc);
    assert.equal(value(l, "raftkv_server_is_leader"), 1);
    assert.equal(value(l, "raftkv_server_has_leader"), 1);
    assert.equal(value(l, "raftkv_server_leader_changes_seen_total"), leaderDoc.counters.leaderChanges);
    const f = families(followerDoc);
    assert.equal(value(f, "raftkv_server_is_leader"), 0);
    assert.equal(value(f, "raftkv_server_has_leader"), 1);
    const lost = families({ ...followerDoc, leaderId: "", role: "candidate" });
    assert.equal(value(lost, "raftkv_server_has_leader"), 0);
    assert.equal(value(lost, "raftkv_server_is_leader"), 0);
  });

  it("carries term, commit and applied index, and the node's identity as raftkv_node_info labels", () => {
    const doc = { ...leaderDoc, term: 12, commitIndex: 900, appliedIndex: 880, nodeId: "raftkv-0", version: "1.2.3", cluster: "prod" };
    const m = families(doc);
    assert.equal(value(m, "raftkv_raft_term"), 12);
    assert.equal(value(m, "raftkv_raft_commit_index"), 900);
    assert.equal(value(m, "raftkv_raft_applied_index"), 880);
    assert.equal(value(m, "raftkv_node_info", { node_id: "raftkv-0", version: "1.2.3", cluster: "prod" }), 1);
  });

  it("maps the proposal counters and the pending gauge one to one", () => {
    const doc = { ...leaderDoc, counters: { ...leaderDoc.counters, proposalsCommitted: 41, proposalsApplied: 40, proposalsPending: 3, proposalsFailed: 2 } };
    const m = families(doc);
    assert.equal(value(m, "raftkv_server_proposals_committed_total"), 41);
    assert.equal(value(m, "raftkv_server_proposals_applied_total"), 40);
    assert.equal(value(m, "raftkv_server_proposals_pending"), 3);
    assert.equal(value(m, "raftkv_server_proposals_failed_total"), 2);
    assert.equal(m.get("raftkv_server_proposals_pending")!.type, "gauge");
    assert.equal(m.get("raftkv_server_proposals_failed_total")!.type, "counter");
  });

  it("exports replication lag and match index per peer from the leader only (followers report zeros that mean unknown)", () => {
    const l = families(leaderDoc);
    for (const p of leaderDoc.peers) {
      assert.equal(value(l, "raftkv_raft_replication_lag_entries", { peer: p.id }), p.lag);
      assert.equal(value(l, "raftkv_raft_peer_match_index", { peer: p.id }), p.matchIndex);
    }
    const f = families(followerDoc);
    assert.equal(f.has("raftkv_raft_replication_lag_entries"), false);
    assert.equal(f.has("raftkv_raft_peer_match_index"), false);
    // Connectivity and RTT are every member's own view.
    assert.equal(f.get("raftkv_network_peer_connected")!.samples.length, 2);
    assert.equal(f.get("raftkv_network_peer_round_trip_time_seconds")!.samples.length, 2);
  });

  it("leaves out a peer's last-contact gauge until the peer was ever heard from", () => {
    const doc = structuredClone(leaderDoc);
    doc.peers[0]!.lastContactSeconds = null;
    const m = families(doc);
    assert.deepEqual(
      m.get("raftkv_network_peer_last_contact_seconds")!.samples.map((s) => s.labels.peer),
      [doc.peers[1]!.id],
    );
  });

  it("counts client requests by method and code, with latency histograms by method", () => {
    const m = families(leaderDoc);
    for (const r of leaderDoc.requests) {
      for (const [code, n] of Object.entries(r.byCode)) assert.equal(value(m, "raftkv_client_requests_total", { method: r.method, code }), n);
    }
    const h = m.get("raftkv_client_request_duration_seconds")!;
    assert.equal(h.type, "histogram");
    assert.deepEqual(h.samples.map((s) => s.labels), leaderDoc.requests.map((r) => ({ method: r.method })));
  });

  it("omits families without series: a node with no peers and no requests yet", () => {
    const alone = makeStatusDocument({ nodeId: "solo", voters: ["solo"], role: "leader", leaderId: "solo", term: 1, commitIndex: 1 });
    alone.requests = [];
    const m = families(alone);
    for (const name of ["raftkv_network_peer_round_trip_time_seconds", "raftkv_raft_replication_lag_entries", "raftkv_client_requests_total", "raftkv_client_request_duration_seconds"]) {
      assert.equal(m.has(name), false, name);
    }
    assert.equal(value(m, "raftkv_raft_voters"), 1);
  });

  it("an invalid document is raftkv_up 0 and nothing else, with the reason", () => {
    for (const bad of [null, "garbage", { ...leaderDoc, term: "7" }, { ...leaderDoc, histograms: { walFsyncSeconds: leaderDoc.histograms.walFsyncSeconds } }]) {
      const result = statusToMetrics(bad);
      assert.equal(result.up, false);
      assert.ok(!result.up && result.error.length > 0);
      assert.deepEqual(
        result.families.map((f) => [f.name, f.type !== "histogram" && f.samples]),
        [["raftkv_up", [{ labels: {}, value: 0 }]]],
      );
    }
  });

  it("does not modify its input", () => {
    const doc = deepFreeze(structuredClone(leaderDoc));
    assert.equal(statusToMetrics(doc).up, true);
  });

  it("carries histograms through bucket by bucket: the node's bounds and counts, +Inf = count, _sum and _count", async () => {
    const text = await render(leaderDoc);
    const h = leaderDoc.histograms.walFsyncSeconds;
    h.buckets.forEach((bound, i) => {
      assert.ok(text.includes(`raftkv_disk_wal_fsync_duration_seconds_bucket{le="${bound}"} ${h.counts[i]}\n`), `bucket le=${bound}`);
    });
    assert.ok(text.includes(`raftkv_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} ${h.count}\n`));
    assert.ok(text.includes(`raftkv_disk_wal_fsync_duration_seconds_sum ${h.sum}\n`));
    assert.ok(text.includes(`raftkv_disk_wal_fsync_duration_seconds_count ${h.count}\n`));
    const peer = leaderDoc.peers[1]!;
    assert.ok(
      text.includes(`raftkv_network_peer_round_trip_time_seconds_bucket{peer="${peer.id}",le="${peer.rtt.buckets[2]}"} ${peer.rtt.counts[2]}\n`),
    );
    assert.match(text, /# TYPE raftkv_server_apply_duration_seconds histogram\n/);
  });

  it("keeps each series' own bucket layout (peers may use different bounds)", async () => {
    const doc = structuredClone(leaderDoc);
    doc.peers[0]!.rtt = { buckets: [0.5, 1], counts: [4, 6], count: 7, sum: 3.5 };
    const text = await render(doc);
    const lines = text.split("\n").filter((l) => l.startsWith(`raftkv_network_peer_round_trip_time_seconds_bucket{peer="${doc.peers[0]!.id}"`));
    assert.deepEqual(lines, [
      `raftkv_network_peer_round_trip_time_seconds_bucket{peer="${doc.peers[0]!.id}",le="0.5"} 4`,
      `raftkv_network_peer_round_trip_time_seconds_bucket{peer="${doc.peers[0]!.id}",le="1"} 6`,
      `raftkv_network_peer_round_trip_time_seconds_bucket{peer="${doc.peers[0]!.id}",le="+Inf"} 7`,
    ]);
  });

  it("follows the naming rules: raftkv_ prefix, HELP on all, counters and only counters end in _total, base units", () => {
    for (const m of Object.values(NODE_METRICS)) {
      assert.match(m.name, /^raftkv_[a-z0-9_]+$/);
      assert.ok(m.help.length > 10, `${m.name} has HELP`);
      assert.equal(m.name.endsWith("_total"), m.type === "counter", `${m.name}: _total iff counter`);
      if (m.type === "histogram") assert.match(m.name, /_seconds$/);
      assert.doesNotMatch(m.name, /_(ms|milliseconds|kb|mb)(_|$)/);
    }
  });

  it("renders counters for OpenMetrics with the family name without _total and samples with it", async () => {
    const text = await render(leaderDoc, "openmetrics");
    assert.match(text, /^# TYPE raftkv_server_leader_changes_seen counter$/m);
    assert.match(text, new RegExp(`^raftkv_server_leader_changes_seen_total ${leaderDoc.counters.leaderChanges}$`, "m"));
    assert.ok(text.endsWith("# EOF\n"));
  });

  it("escapes label values: quotes, backslashes and newlines in ids cannot break the exposition", async () => {
    const doc = { ...leaderDoc, nodeId: 'we"ird\\id\nx', version: "1.0.0-rc.1+build" };
    const text = await render(doc);
    assert.ok(text.includes(`raftkv_node_info{node_id="we\\"ird\\\\id\\nx",version="1.0.0-rc.1+build",cluster="local"} 1\n`));
  });
});
