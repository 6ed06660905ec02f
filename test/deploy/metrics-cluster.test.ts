// End to end, with nothing stood in: a real 3-node raftkv cluster (TestCluster), one real
// raftkv-exporter process per node reading that node's /status, and a real Prometheus (Debian's)
// scraping the three exporters every second with the shipped alert rules loaded. Everything is
// checked through Prometheus's HTTP API, as an operator's dashboard and alerts would see it:
// one leader and one term, client writes in the request/proposal metrics, a SIGKILLed leader
// replaced in a higher term and its exporter saying raftkv_up 0, and then every PromQL
// expression of the dashboard and the alert rules run against that Prometheus.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { RaftkvClient } from "../../services/cli/client.js";
import { TestCluster } from "../cluster/harness.js";
import { startExporterProcess, type ExporterProcess } from "./exporter-process.js";
import { ALERTS_FILE, prometheusAvailable, promtoolPath, startPrometheus, type PrometheusHandle, type VectorSample } from "./prometheus-harness.js";
import { DEFAULT_GRAFANA_VARIABLES, listPromQLExpressions } from "./promql-expressions.js";

const skip = prometheusAvailable() ? false : "prometheus is not installed (Debian package `prometheus`; .ci/run installs it)";

const ELECTION_MS = 500;
/** Keys written through the cluster; each is one proposal applied on every member. */
const WRITES = 40;
const READS = 5;
/** From Prometheus's start to its first scrape is ~5.5 s (its discovery hand-off ticks every 5 s); the nodes start meanwhile. */
const FIRST_LEADER_MS = 30_000;
/** SIGKILL -> a new leader visible in Prometheus: < 2 election timeouts + vote rounds + one scrape; generous for a loaded machine. */
const FAILOVER_MS = 15_000;
const SETTLE_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** n distinct free ports on 127.0.0.1 (all held open at once, so no two are the same). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      await new Promise<void>((res, rej) => {
        s.once("error", rej);
        s.listen(0, "127.0.0.1", () => res());
      });
      servers.push(s);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/** `promtool check metrics` on an exposition: its complaints, one a line (none = clean). */
async function promtoolCheckMetrics(text: string): Promise<{ code: number | null; problems: string[] }> {
  const child = spawn(promtoolPath()!, ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr.on("data", (b: Buffer) => (out += b.toString()));
  child.stdin.end(text);
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
  clearTimeout(timer);
  return { code, problems: out.split("\n").map((l) => l.trim()).filter(Boolean) };
}

type Snapshot = Record<string, VectorSample[]>;

describe("end to end: a real Prometheus scraping the exporters of a real 3-node raftkv cluster", { skip, timeout: 120_000 }, () => {
  let cluster: TestCluster | undefined;
  let prom: PrometheusHandle | undefined;
  const exporters: ExporterProcess[] = [];
  const clients: RaftkvClient[] = [];
  /** Prometheus instance label (exporter host:port) -> node id, as we wired them. */
  const nodeOf = new Map<string, string>();
  const instanceOf = new Map<string, string>();
  const started = Date.now();
  const timings: Record<string, number> = {};

  // Filled in as the story goes.
  let firstLeader = "";
  let firstTerm = 0;
  let newLeader = "";

  const P = () => {
    assert.ok(prom, "Prometheus did not start");
    return prom;
  };
  const C = () => {
    assert.ok(cluster, "the cluster did not start");
    return cluster;
  };

  const who = (s: VectorSample) => nodeOf.get(s.metric.instance ?? "") ?? `?${s.metric.instance}`;
  /** node id -> value of a one-series-per-member query. */
  const perNode = (v: VectorSample[]) => new Map(v.map((s) => [who(s), s.value]));
  const show = (snap: Snapshot) =>
    Object.entries(snap)
      .map(([q, v]) => `  ${q} => ${v.length === 0 ? "(no series)" : v.map((s) => `${who(s)}${labelsBut(s.metric)}=${s.value}`).join(", ")}`)
      .join("\n");
  const labelsBut = (m: Record<string, string>) => {
    const rest = Object.entries(m).filter(([k]) => !["instance", "job", "cluster", "__name__"].includes(k));
    return rest.length ? `{${rest.map(([k, v]) => `${k}="${v}"`).join(",")}}` : "";
  };

  /** Runs every query at one evaluation time, so they describe the same moment. */
  async function snapshot(queries: readonly string[]): Promise<Snapshot> {
    const time = Date.now() / 1000;
    const results = await Promise.all(queries.map((q) => P().queryVector(q, time)));
    return Object.fromEntries(queries.map((q, i) => [q, results[i]!]));
  }

  /**
   * Re-queries until `check` finds nothing wrong (returns undefined); otherwise fails with the
   * last problem and everything Prometheus returned.
   */
  async function waitUntil(what: string, queries: readonly string[], check: (s: Snapshot) => string | undefined, timeoutMs: number): Promise<Snapshot> {
    const t0 = Date.now();
    let snap: Snapshot = {};
    let problem: string | undefined = "no query ran";
    while (true) {
      try {
        snap = await snapshot(queries);
        problem = check(snap);
      } catch (err) {
        problem = `query failed: ${String(err)}`;
      }
      if (problem === undefined) return snap;
      if (Date.now() - t0 > timeoutMs) break;
      await sleep(250);
    }
    const nodes = C()
      .specs.map((s) => `${s.id}: ${C().alive(s.id) ? "running" : "killed"}, exporter ${instanceOf.get(s.id)}`)
      .join("; ");
    throw new Error(`${what}: not within ${timeoutMs} ms: ${problem}\nPrometheus returned:\n${show(snap)}\nnodes: ${nodes}`);
  }

  before(async () => {
    if (skip) return;
    const ports = await freePorts(3);
    cluster = await TestCluster.start({ nodes: 3, electionMs: ELECTION_MS });
    cluster.specs.forEach((s, i) => {
      nodeOf.set(`127.0.0.1:${ports[i]}`, s.id);
      instanceOf.set(s.id, `127.0.0.1:${ports[i]}`);
    });
    // All at once: Prometheus scrapes only ~5.5 s after it starts, time the nodes and the
    // exporters (tsx compiling on a loaded machine) need anyway.
    const [p, ...exps] = await Promise.allSettled([
      startPrometheus({ targets: [...nodeOf.keys()], ruleFiles: [ALERTS_FILE] }),
      ...cluster.specs.map((s, i) =>
        startExporterProcess({ statusUrl: `http://${s.host}:${s.httpPort}/status`, host: "127.0.0.1", port: ports[i]!, timeoutMs: 600, readyTimeoutMs: 30_000 }),
      ),
    ]);
    if (p.status === "fulfilled") prom = p.value;
    for (const e of exps) if (e.status === "fulfilled") exporters.push(e.value);
    const failed = [p, ...exps].filter((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed.length > 0) throw new Error(failed.map((f) => String(f.reason)).join("\n"));
    for (const [i, e] of exporters.entries()) assert.equal(e.target, `127.0.0.1:${ports[i]}`, "the exporter listens where Prometheus scrapes");
    timings.startedMs = Date.now() - started;
  });

  after(async () => {
    for (const cl of clients) cl.close();
    await Promise.all([prom?.stop(), ...exporters.map((e) => e.stop()), cluster?.stop()]);
    for (const e of exporters) assert.equal(e.alive(), false, `exporter ${e.pid} stopped`);
    timings.totalMs = Date.now() - started;
    console.log(`# metrics-cluster timings (ms): ${JSON.stringify(timings)}`);
  });

  it("sees exactly one member with raftkv_server_is_leader == 1, and every member in the same term with a leader", async () => {
    const snap = await waitUntil(
      "one leader, one term",
      ["raftkv_up", "raftkv_server_is_leader", "raftkv_raft_term", "raftkv_server_has_leader"],
      (s) => {
        const up = perNode(s.raftkv_up!);
        if (up.size !== 3 || [...up.values()].some((v) => v !== 1)) return "not every exporter reports raftkv_up 1";
        const leaders = s.raftkv_server_is_leader!.filter((x) => x.value === 1);
        if (s.raftkv_server_is_leader!.length !== 3 || leaders.length !== 1) return `${leaders.length} members report is_leader 1`;
        const terms = new Set(s.raftkv_raft_term!.map((x) => x.value));
        if (s.raftkv_raft_term!.length !== 3 || terms.size !== 1) return `terms differ: ${[...terms].join(", ")}`;
        if (s.raftkv_server_has_leader!.some((x) => x.value !== 1)) return "a member reports has_leader 0";
        return undefined;
      },
      FIRST_LEADER_MS,
    );
    timings.firstLeaderVisibleMs = Date.now() - started;
    firstLeader = who(snap.raftkv_server_is_leader!.find((x) => x.value === 1)!);
    firstTerm = snap.raftkv_raft_term![0]!.value;
    assert.ok(firstTerm >= 1, `term ${firstTerm}`);

    // Each exporter reports its own node: node_info's node_id matches how we wired them.
    const info = await P().queryVector("raftkv_node_info");
    assert.deepEqual(
      info.map((s) => [s.metric.instance, s.metric.node_id, s.metric.cluster]).sort(),
      [...nodeOf.entries()].map(([inst, id]) => [inst, id, "local"]).sort(),
    );
    // Prometheus read every exporter without a scrape error, through its OpenMetrics parser.
    const { activeTargets } = await P().targets();
    assert.deepEqual(
      activeTargets.map((t) => `${t.labels.instance} ${t.health} ${t.lastError}`).sort(),
      [...nodeOf.keys()].map((inst) => `${inst} up `).sort(),
    );
    const openmetrics = await P().queryVector('raftkv_exporter_scrapes_total{format="openmetrics"} > 0');
    assert.equal(openmetrics.length, 3, "every exporter served Prometheus OpenMetrics");
  });

  it("raises no availability alert on the healthy cluster", async () => {
    // Latency alerts (fsync, apply, RTT, request p99) may legitimately go pending on a loaded
    // CI machine; the availability ones must not. Pending alerts from the first scrapes (nodes
    // still starting) clear on the next evaluation.
    const availability = ["RaftkvMembersDown", "RaftkvInsufficientMembers", "RaftkvNoLeader", "RaftkvHighNumberOfLeaderChanges", "RaftkvFollowerLagging", "RaftkvHighNumberOfFailedProposals"];
    const q = `ALERTS{alertname=~"${availability.join("|")}"}`;
    await waitUntil("no availability alert", [q], (s) => (s[q]!.length === 0 ? undefined : "alerts are active"), SETTLE_MS);
  });

  it("shows client writes through the cluster as request, proposal, apply and key metrics on every member", async () => {
    const client = new RaftkvClient({ endpoints: C().endpoints(), timeoutMs: 10_000 });
    clients.push(client);
    const t0 = Date.now();
    // Four concurrent writers (the client gives each its own session lane).
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let i = w; i < WRITES; i += 4) await client.put(`e2e/${String(i).padStart(3, "0")}`, `value-${i}`);
      }),
    );
    for (let i = 0; i < READS; i++) {
      const got = await client.get(`e2e/${String(i).padStart(3, "0")}`);
      assert.equal(Buffer.from(got.kv?.value ?? []).toString(), `value-${i}`);
    }
    timings.writesMs = Date.now() - t0;

    const requestsOk = 'sum by (method) (raftkv_client_requests_total{code="OK"})';
    const putLatencyCount = 'sum(raftkv_client_request_duration_seconds_count{method="Put"})';
    // rate() needs two samples of a series: the request panels have data only after a second scrape.
    const requestRate = 'sum by (method) (rate(raftkv_client_requests_total[1m]))';
    await waitUntil(
      `${WRITES} puts and ${READS} gets visible`,
      [
        requestsOk,
        putLatencyCount,
        requestRate,
        "raftkv_kv_keys",
        "raftkv_raft_commit_index",
        "raftkv_raft_applied_index",
        "raftkv_server_proposals_committed_total",
        "raftkv_server_apply_duration_seconds_count",
        "raftkv_disk_wal_fsync_duration_seconds_count",
        "raftkv_server_proposals_pending",
        "raftkv_server_proposals_failed_total",
        "sum(raftkv_server_read_index_requests_total)",
      ],
      (s) => {
        const byMethod = new Map(s[requestsOk]!.map((x) => [x.metric.method, x.value]));
        if ((byMethod.get("Put") ?? 0) < WRITES) return `Put OK requests ${byMethod.get("Put") ?? 0} < ${WRITES}`;
        if ((byMethod.get("Get") ?? 0) < READS) return `Get OK requests ${byMethod.get("Get") ?? 0} < ${READS}`;
        if ((s[putLatencyCount]![0]?.value ?? 0) < WRITES) return `Put latency histogram count < ${WRITES}`;
        if (!s[requestRate]!.some((x) => x.metric.method === "Put")) return "no request rate yet (one scrape of the request counters so far)";
        const everyMember = (q: string, ok: (v: number) => boolean, want: string) => {
          const m = perNode(s[q]!);
          if (m.size !== 3) return `${q}: ${m.size} members, want 3`;
          const bad = [...m].filter(([, v]) => !ok(v));
          return bad.length ? `${q}: ${bad.map(([n, v]) => `${n}=${v}`).join(", ")} (want ${want})` : undefined;
        };
        const commit = perNode(s.raftkv_raft_commit_index!);
        const applied = perNode(s.raftkv_raft_applied_index!);
        const diverged = [...commit].filter(([n, v]) => applied.get(n) !== v);
        return (
          everyMember("raftkv_kv_keys", (v) => v === WRITES, `${WRITES}`) ??
          everyMember("raftkv_raft_applied_index", (v) => v > WRITES, `> ${WRITES}`) ??
          (diverged.length ? `commit != applied on ${diverged.map(([n]) => n).join(", ")}` : undefined) ??
          (new Set(commit.values()).size !== 1 ? "members differ in commit index" : undefined) ??
          everyMember("raftkv_server_proposals_committed_total", (v) => v >= WRITES, `>= ${WRITES}`) ??
          everyMember("raftkv_server_apply_duration_seconds_count", (v) => v >= WRITES, `>= ${WRITES}`) ??
          everyMember("raftkv_disk_wal_fsync_duration_seconds_count", (v) => v > 0, "> 0") ??
          everyMember("raftkv_server_proposals_pending", (v) => v === 0, "0") ??
          everyMember("raftkv_server_proposals_failed_total", (v) => v === 0, "0") ??
          ((s["sum(raftkv_server_read_index_requests_total)"]![0]?.value ?? 0) < 1 ? "no ReadIndex request counted for the linearizable gets" : undefined)
        );
      },
      SETTLE_MS,
    );
    timings.writesVisibleMs = Date.now() - started;

    // The leader's per-peer view: replication progress and heartbeat round trips to both followers.
    const leaderQ = "raftkv_server_is_leader == 1";
    const rttQ = "raftkv_network_peer_round_trip_time_seconds_count > 0";
    const view = await snapshot([leaderQ, "raftkv_raft_replication_lag_entries", rttQ]);
    const leader = view[leaderQ]!.map(who);
    assert.equal(leader.length, 1, `one leader:\n${show(view)}`);
    const followers = C()
      .specs.filter((sp) => sp.id !== leader[0])
      .map((sp) => [leader[0], sp.id]);
    const pairs = (q: string) => view[q]!.map((x) => [who(x), x.metric.peer]).sort();
    assert.deepEqual(pairs("raftkv_raft_replication_lag_entries"), followers, `only the leader exports replication lag, one series per follower:\n${show(view)}`);
    assert.deepEqual(pairs(rttQ).filter(([n]) => n === leader[0]), followers, `the leader's heartbeat RTT histograms have samples for both followers:\n${show(view)}`);
  });

  it("passes promtool check metrics on each exporter's text output for its live node", { skip: promtoolPath() ? false : "promtool is not installed" }, async () => {
    for (const e of exporters) {
      const res = await fetch(`${e.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      assert.match(text, /^raftkv_up 1$/m, `${e.target} read its node`);
      const r = await promtoolCheckMetrics(text);
      assert.deepEqual(r.problems, [], `${nodeOf.get(e.target)}'s exporter ${e.target}`);
      assert.equal(r.code, 0);
    }
  });

  it("counts every applied proposal on every member, as etcd_server_proposals_applied_total does (not only those the member proposed)", async () => {
    // Each of the WRITES puts was applied to all three state machines (raftkv_kv_keys says so
    // above), so each member's applied-proposals counter must have counted them.
    const q = "raftkv_server_proposals_applied_total";
    await waitUntil(
      `every member counted the ${WRITES} applied proposals`,
      [q, "raftkv_raft_applied_index", "raftkv_kv_keys"],
      (s) => {
        const m = perNode(s[q]!);
        const short = C()
          .specs.map((sp) => sp.id)
          .filter((id) => (m.get(id) ?? 0) < WRITES);
        return short.length
          ? `${short.map((id) => `${id} reports ${m.get(id)}`).join(", ")}, though it applied all ${WRITES} ` +
              "(see raftkv_raft_applied_index and raftkv_kv_keys); the node counts only proposals it made itself and saw answered " +
              "(Driver.propose in services/node/server/driver.ts), not committed entries applied to its state machine"
          : undefined;
      },
      3000,
    );
  });

  it("after SIGKILL of the leader: another member leads in a higher term, the survivors count the change, and the dead node's exporter says raftkv_up 0", async () => {
    assert.ok(firstLeader, "no leader was seen");
    // Who leads right now, as Prometheus sees it (normally still firstLeader).
    const pre = await waitUntil(
      "one leader before the kill",
      ["raftkv_server_is_leader == 1", "raftkv_server_leader_changes_seen_total", "max(raftkv_raft_term)"],
      (s) => {
        const l = s["raftkv_server_is_leader == 1"]!;
        if (l.length !== 1) return `${l.length} leaders`;
        return s.raftkv_server_leader_changes_seen_total!.length === 3 ? undefined : "not every member's leader changes are visible";
      },
      SETTLE_MS,
    );
    const dead = who(pre["raftkv_server_is_leader == 1"]![0]!);
    const deadInstance = instanceOf.get(dead)!;
    const survivors = C()
      .specs.map((s) => s.id)
      .filter((id) => id !== dead);
    const termBefore = pre["max(raftkv_raft_term)"]![0]!.value;
    const changesBeforeKill = perNode(pre.raftkv_server_leader_changes_seen_total!);

    const t0 = Date.now();
    await C().kill(dead);
    const upQ = `raftkv_up{instance="${deadInstance}"}`;
    const snap = await waitUntil(
      `a new leader after SIGKILL of ${dead}`,
      ["raftkv_server_is_leader", "raftkv_raft_term", "raftkv_server_has_leader", upQ],
      (s) => {
        const leaders = s.raftkv_server_is_leader!.filter((x) => x.value === 1).map(who);
        if (leaders.length !== 1 || leaders[0] === dead) return `leaders: [${leaders.join(", ")}]`;
        const terms = perNode(s.raftkv_raft_term!);
        if (terms.has(dead)) return `${dead}'s term is still exported`;
        if (!survivors.every((id) => terms.get(id) === terms.get(leaders[0]!) && terms.get(id)! > termBefore)) {
          return `survivors' terms ${JSON.stringify([...terms])}, want one term above ${termBefore}`;
        }
        if (s.raftkv_server_has_leader!.length !== 2 || s.raftkv_server_has_leader!.some((x) => x.value !== 1)) return "a survivor has no leader";
        if (s[upQ]![0]?.value !== 0) return `${upQ} is ${s[upQ]![0]?.value}`;
        return undefined;
      },
      FAILOVER_MS,
    );
    timings.failoverVisibleMs = Date.now() - t0;
    newLeader = who(snap.raftkv_server_is_leader!.find((x) => x.value === 1)!);
    assert.notEqual(newLeader, dead);

    // Every survivor saw the change (leader_changes_seen_total went up).
    const changes = perNode(await P().queryVector("raftkv_server_leader_changes_seen_total"));
    for (const id of survivors) {
      assert.ok((changes.get(id) ?? 0) > (changesBeforeKill.get(id) ?? Infinity), `${id}: leader changes ${changesBeforeKill.get(id)} -> ${changes.get(id)}`);
    }
    // The exporter itself is alive and answers (up 1), says why (unreachable), and invents
    // nothing: the dead node's other series are gone, not frozen at their last values.
    assert.deepEqual((await P().queryVector(`up{instance="${deadInstance}"}`)).map((s) => s.value), [1], "the dead node's exporter still answers scrapes");
    const unreachable = await P().queryVector(`raftkv_exporter_status_fetches_total{instance="${deadInstance}", result="unreachable"}`);
    assert.ok((unreachable[0]?.value ?? 0) > 0, `fetch failures counted as unreachable: ${JSON.stringify(unreachable)}`);
    const leftovers = await P().queryVector(`{instance="${deadInstance}", __name__=~"raftkv_.*", __name__!~"raftkv_up|raftkv_exporter_.*"}`);
    assert.deepEqual(leftovers.map((s) => s.metric.__name__), [], "no stale node metrics for the dead node");
  });

  it("runs every dashboard query with data (legends included) and every alert expression without error", async () => {
    const exprs = listPromQLExpressions({ variables: { ...DEFAULT_GRAFANA_VARIABLES, cluster: "local" } });
    assert.ok(exprs.some((e) => e.source === "dashboard-panel") && exprs.some((e) => e.source === "alert-rule"));
    const empty: string[] = [];
    const unlabelled: string[] = [];
    const results = new Map<string, Array<{ metric: Record<string, string>; value: [number, string] }>>();
    const time = Date.now() / 1000;
    for (const e of exprs) {
      // Throws with Prometheus's own parse error for a bad expression.
      const data = await P().query(e.query, time);
      const series = Array.isArray(data.result) ? (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>) : [];
      results.set(e.where, series);
      if (e.expectsData && series.length === 0 && data.resultType !== "scalar") empty.push(`${e.where}: ${e.query}`);
      for (const label of e.legendLabels) {
        if (series.some((s) => !(label in s.metric))) unlabelled.push(`${e.where}: {{${label}}} missing in ${JSON.stringify(series[0]?.metric)}`);
      }
    }
    assert.deepEqual(empty, [], "dashboard queries without data (a metric nobody exports?)");
    assert.deepEqual(unlabelled, [], "legend labels the query does not return");

    // The panels the dashboard exists for tell the story of the failover.
    const panel = (title: string, ref = "A") => {
      const r = results.get(`panel ${JSON.stringify(title)} ${ref}`);
      assert.ok(r, `no panel ${JSON.stringify(title)} ${ref}`);
      return r.map((s) => ({ node_id: s.metric.node_id, value: Number(s.value[1]) }));
    };
    if (newLeader) {
      assert.deepEqual(panel("Leader").map((s) => s.node_id), [newLeader], "the Leader panel names the new leader");
      const termNow = (await P().queryVector(`raftkv_raft_term{instance="${instanceOf.get(newLeader)}"}`))[0]?.value;
      assert.deepEqual(panel("Term").map((s) => s.value), [termNow], "the Term panel shows the new term");
      assert.ok(termNow! > firstTerm);
      assert.deepEqual(panel("Has leader").map((s) => s.value), [1]);
      assert.deepEqual(panel("Members up", "A").map((s) => s.value), [2], "2 members up");
      assert.deepEqual(panel("Members up", "B").map((s) => s.value), [3], "of 3");
      assert.ok(panel("Leader changes (24h)")[0]!.value >= 1, "the leader change is counted");
      assert.deepEqual(panel("Term per member").map((s) => s.node_id).sort(), C().specs.filter((s) => C().alive(s.id)).map((s) => s.id));
    }
  });

  it("evaluates every alert rule without error, and RaftkvMembersDown goes pending for the dead member (RaftkvInsufficientMembers does not: 2 of 3 is a quorum)", async () => {
    const alerts = listPromQLExpressions().filter((e) => e.source === "alert-rule");
    const rules = await P().rules();
    assert.equal(rules.length, alerts.length, "every rule in alerts.yml is loaded");
    const sick = rules.filter((r) => r.health !== "ok");
    assert.deepEqual(
      sick.map((r) => `${r.name}: ${r.health} ${r.lastError ?? ""}`),
      [],
      "rules that failed to evaluate",
    );
    if (!newLeader) return; // the failover test failed; nothing to page about
    const q = 'ALERTS{alertname=~"RaftkvMembersDown|RaftkvInsufficientMembers|RaftkvNoLeader"}';
    await waitUntil(
      "RaftkvMembersDown pending, alone",
      [q],
      (s) => {
        const a = s[q]!.map((x) => `${x.metric.alertname}/${x.metric.alertstate}/${x.metric.cluster}`);
        return a.length === 1 && a[0] === "RaftkvMembersDown/pending/local" ? undefined : `alerts: [${a.join(", ")}]`;
      },
      SETTLE_MS,
    );
  });
});
