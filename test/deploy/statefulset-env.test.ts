// The StatefulSet path without Kubernetes: three real node processes started with exactly the
// environment the rendered StatefulSet gives pods raftkv-0..2 (the Helm chart with default values,
// and the kustomize base), each with its pod name as hostname, elect a leader and replicate. The
// headless Service's DNS records are an /etc/hosts in a network namespace of the test's own
// (pod-netns.ts), so the test decides when a pod's name starts to resolve, as cluster DNS does
// when a pod appears.
//
// What differs from the rendered env, and why (asserted below, nothing else is touched):
//   RAFTKV_DATA_DIR     /var/lib/raftkv (the volume mount) -> a temp dir per pod: there is no
//                       volume here, and three pods on one machine need three directories.
//   RAFTKV_LISTEN_HOST  unset (0.0.0.0) -> the pod's 127.0.0.x: the three pods share one network
//                       namespace instead of one each, so binding 0.0.0.0:7001 three times would
//                       collide; their own address is what the "DNS" gives their names.
// The ports, the peer names (raftkv-<i>.<headless service>), the id (from the hostname ordinal),
// the cluster name and the Raft timings are the rendered ones.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type StatusDocument } from "../../services/common/status.js";
import { netnsUnavailableReason, PodNetwork } from "./pod-netns.js";
import { chartPodEnv, kustomizePodEnv, statefulSetPeerHosts } from "./render.js";

const REPLICAS = 3;
const podIP = (ordinal: number) => `127.0.0.${11 + ordinal}`;
const skip = netnsUnavailableReason();
if (skip) console.log(`# statefulset-env: skipped: ${skip}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it gives a value; gives up at the deadline, or at once when `run` has a pod that exited. */
async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>, run?: StatefulSetRun): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    const dead = run?.exited();
    if (dead?.length) throw new Error(`${dead.join(", ")} exited while waiting for ${what} (a pod must retry, not crash)\n${run!.explain()}`);
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last: ${last})` : ""}\n${run?.explain() ?? ""}`);
}

/** One rendered StatefulSet brought up as processes in a namespace. */
class StatefulSetRun {
  net!: PodNetwork;
  readonly rendered: Record<string, string>[] = [];
  readonly dataRoot = mkdtempSync(join(tmpdir(), "raftkv-sts-"));
  peerHosts: string[] = [];
  private seq = 0;
  readonly clientId = `sts-env-${process.pid}-${Date.now()}`;

  constructor(readonly podEnv: (ordinal: number) => Record<string, string>) {}

  async setUp(): Promise<void> {
    for (let i = 0; i < REPLICAS; i++) this.rendered.push(this.podEnv(i));
    this.peerHosts = statefulSetPeerHosts(this.rendered[0]!);
    this.net = await PodNetwork.create();
  }

  async tearDown(): Promise<void> {
    await this.net?.destroy();
    rmSync(this.dataRoot, { recursive: true, force: true });
  }

  /** The env pod `i` is started with: the rendered one with exactly the two overrides of the header. */
  envOf(i: number): Record<string, string> {
    return { ...this.rendered[i]!, RAFTKV_DATA_DIR: join(this.dataRoot, `raftkv-${i}`), RAFTKV_LISTEN_HOST: podIP(i) };
  }

  start(i: number): void {
    this.net.spawnPod(i, this.rendered[i]!.HOSTNAME!, this.envOf(i));
  }

  /** The pod's DNS name starts to resolve to its pod IP. */
  publish(i: number): void {
    this.net.addHost(this.peerHosts[i]!, podIP(i));
  }

  status(i: number): Promise<StatusDocument> {
    return this.net.call<StatusDocument>({ op: "status", url: `http://${podIP(i)}:${this.rendered[i]!.RAFTKV_HTTP_PORT}/status` });
  }

  /** A client inside the namespace reaches pod i by its headless-service name, as an in-cluster client would. */
  clientTarget(i: number): string {
    return `${this.peerHosts[i]}:${this.rendered[i]!.RAFTKV_CLIENT_PORT}`;
  }

  /** A put through pod i (a follower forwards it), retried with the same request id while the cluster settles. */
  async put(i: number, key: string, value: string): Promise<void> {
    const seq = ++this.seq;
    await waitFor(`put ${key} through ${this.rendered[i]!.HOSTNAME}`, 30_000, () =>
      this.net.call<boolean>({ op: "put", target: this.clientTarget(i), key, value, clientId: this.clientId, seq }),
      this,
    );
  }

  get(i: number, key: string): Promise<string | null> {
    return this.net.call<string | null>({ op: "get", target: this.clientTarget(i), key });
  }

  /** The leader every one of `pods` names, once each of them answers and the leader says so itself. */
  async agreedLeader(pods: number[]): Promise<{ leader: string; statuses: StatusDocument[] } | undefined> {
    const statuses = await Promise.all(pods.map((i) => this.status(i)));
    const leaders = new Set(statuses.map((s) => s.leaderId));
    if (leaders.size !== 1) return undefined;
    const [leader] = leaders;
    const own = statuses.find((s) => s.nodeId === leader);
    if (!leader || own?.role !== "leader") return undefined;
    return { leader, statuses };
  }

  explain(): string {
    const pods = [...this.net.pods.values()];
    return [
      `hosts file:\n${this.net.hostsText()}`,
      ...pods.map((p) => `${p.name} (${this.net.alive(p.ordinal) ? "alive" : `exited ${p.proc.exitCode ?? p.proc.signalCode}`}):\n${this.net.logTail(p.ordinal)}`),
    ].join("\n");
  }

  /** Names of the pods started so far whose process has exited. */
  exited(): string[] {
    return [...this.net.pods.values()].filter((p) => !this.net.alive(p.ordinal)).map((p) => p.name);
  }

  assertAllAlive(pods: number[]): void {
    for (const i of pods) assert.ok(this.net.alive(i), `pod raftkv-${i} exited (it must retry, not crash)\n${this.explain()}`);
  }
}

/** Pod i was started with the rendered env, except exactly the two overrides of the header. */
function checkEnvIsRendered(run: StatefulSetRun, i: number): void {
  const rendered = run.rendered[i]!;
  const given = run.net.pods.get(i)!.env;
  const changed = Object.keys({ ...rendered, ...given }).filter((k) => rendered[k] !== given[k]).sort();
  assert.deepEqual(changed, ["RAFTKV_DATA_DIR", "RAFTKV_LISTEN_HOST"], `pod ${i}: only the data dir and the listen address may differ from the rendered env`);
  assert.equal(given.HOSTNAME, `raftkv-${i}`);
  assert.equal(rendered.RAFTKV_NODE_ID, undefined, "the rendered env names no node id: the node must take it from its hostname");
  assert.equal(rendered.RAFTKV_PEERS, undefined, "the rendered env lists no peers: the node must derive them from the headless service");
}

async function checkIdentities(run: StatefulSetRun): Promise<void> {
  const statuses = await Promise.all([0, 1, 2].map((i) => run.status(i)));
  assert.deepEqual(statuses.map((s) => s.nodeId), ["raftkv-0", "raftkv-1", "raftkv-2"]);
  for (const s of statuses) {
    assert.equal(s.cluster, run.rendered[0]!.RAFTKV_CLUSTER);
    assert.deepEqual([...s.voters].sort(), ["raftkv-0", "raftkv-1", "raftkv-2"]);
    assert.deepEqual(
      s.peers.map((p) => p.address).sort(),
      run.peerHosts.filter((h) => !h.startsWith(`${s.nodeId}.`)).map((h) => `${h}:${run.rendered[0]!.RAFTKV_PEER_PORT}`),
      `${s.nodeId} dials its peers by their headless-service names`,
    );
  }
  for (let i = 0; i < REPLICAS; i++) {
    // The PID we hold is the node itself (every step of the launch execs), with the pod's hostname.
    assert.deepEqual(run.net.processInfo(i), { comm: "node", hostname: `raftkv-${i}` });
  }
}

describe("StatefulSet env (Helm chart, default values): pods started by ordinal with the rendered env", { skip, timeout: 240_000 }, () => {
  const run = new StatefulSetRun((i) => chartPodEnv(i));
  before(() => run.setUp());
  after(() => run.tearDown());

  it("raftkv-0 and raftkv-1, started in parallel, elect a leader while raftkv-2's name does not resolve", async () => {
    run.publish(0);
    run.publish(1);
    run.start(0);
    run.start(1);
    checkEnvIsRendered(run, 0);
    checkEnvIsRendered(run, 1);
    const { leader } = await waitFor("raftkv-0 and raftkv-1 to agree on a leader", 60_000, () => run.agreedLeader([0, 1]), run);
    assert.match(leader, /^raftkv-[01]$/);
    await assert.rejects(run.net.call({ op: "lookup", host: run.peerHosts[2]! }), /ENOTFOUND|EAI_AGAIN/, "raftkv-2's name must not resolve yet");
    await run.put(0, "sts/before", "written while raftkv-2 did not exist");
    assert.equal(await run.get(1, "sts/before"), "written while raftkv-2 did not exist");
    run.assertAllAlive([0, 1]);
  });

  it("raftkv-2 starts before its DNS name exists, keeps running, and joins once the name resolves", async () => {
    run.start(2);
    // Up and answering, but unreachable for the others: they cannot resolve its name.
    await waitFor("raftkv-2 to serve /status", 60_000, () => run.status(2), run);
    await sleep(3000);
    const before = await run.agreedLeader([0, 1]);
    assert.ok(before, `raftkv-0/1 lost their leader while raftkv-2 was unresolvable\n${run.explain()}`);
    const leaderOrdinal = Number(before.leader.slice(-1));
    const view = (await run.status(leaderOrdinal)).peers.find((p) => p.id === "raftkv-2");
    assert.equal(view?.connected, false, "the leader cannot have a stream to a name that does not resolve");
    run.assertAllAlive([0, 1, 2]);

    run.publish(2);
    const { statuses } = await waitFor(
      "all three pods to agree on a leader and raftkv-2 to catch up",
      60_000,
      async () => {
        const l = await run.agreedLeader([0, 1, 2]);
        if (!l) return undefined;
        const commit = l.statuses.find((s) => s.nodeId === l.leader)!.commitIndex;
        return l.statuses.every((s) => s.appliedIndex >= commit) ? l : undefined;
      },
      run,
    );
    assert.equal(statuses.filter((s) => s.role === "leader").length, 1);
    assert.equal(await run.get(2, "sts/before"), "written while raftkv-2 did not exist");
  });

  it("a put through one pod is read from the other two, and the node ids are raftkv-0..2", async () => {
    await run.put(2, "sts/after", "through raftkv-2");
    assert.equal(await run.get(0, "sts/after"), "through raftkv-2");
    assert.equal(await run.get(1, "sts/after"), "through raftkv-2");
    await run.put(0, "sts/after", "through raftkv-0");
    assert.equal(await run.get(2, "sts/after"), "through raftkv-0");
    for (let i = 0; i < REPLICAS; i++) checkEnvIsRendered(run, i);
    await checkIdentities(run);
    run.assertAllAlive([0, 1, 2]);
  });
});

describe("StatefulSet env (kustomize base, namespace kv): all pods start in parallel before any DNS record exists", { skip, timeout: 240_000 }, () => {
  const run = new StatefulSetRun((i) => kustomizePodEnv(i, { namespace: "kv" }));
  before(() => run.setUp());
  after(() => run.tearDown());

  it("the pods keep retrying while no peer name resolves, then elect a leader once the names appear", async () => {
    assert.equal(run.peerHosts[0], "raftkv-0.raftkv-headless.kv.svc.cluster.local");
    for (let i = 0; i < REPLICAS; i++) run.start(i);
    await waitFor("all three pods to serve /status", 60_000, async () => (await Promise.all([0, 1, 2].map((i) => run.status(i)))).length, run);
    await sleep(3000);
    const lonely = await Promise.all([0, 1, 2].map((i) => run.status(i)));
    assert.deepEqual(lonely.map((s) => s.role === "leader"), [false, false, false], "no pod can win an election without reaching a peer");
    run.assertAllAlive([0, 1, 2]);

    for (let i = 0; i < REPLICAS; i++) run.publish(i);
    await waitFor("a leader all three pods agree on", 60_000, () => run.agreedLeader([0, 1, 2]), run);
  });

  it("a put through one pod is read from the other two, and the node ids are raftkv-0..2", async () => {
    await run.put(1, "kustomize/k", "through raftkv-1");
    assert.equal(await run.get(0, "kustomize/k"), "through raftkv-1");
    assert.equal(await run.get(2, "kustomize/k"), "through raftkv-1");
    for (let i = 0; i < REPLICAS; i++) checkEnvIsRendered(run, i);
    await checkIdentities(run);
    run.assertAllAlive([0, 1, 2]);
  });
});
