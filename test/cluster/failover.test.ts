// Crashes and hand-offs with real processes: SIGKILL the leader, keep a node down past a
// snapshot, SIGTERM the leader under load.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { RaftkvClient } from "../../services/cli/client.js";
import { TestCluster } from "./harness.js";

const ELECTION_MS = 500;
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);

describe("failover", () => {
  const clusters: TestCluster[] = [];
  const clients: RaftkvClient[] = [];
  after(async () => {
    for (const cl of clients) cl.close();
    for (const c of clusters) await c.stop();
  });
  const start = async (opts: Parameters<typeof TestCluster.start>[0] = {}) => {
    const c = await TestCluster.start({ electionMs: ELECTION_MS, ...opts });
    clusters.push(c);
    await c.waitForLeader({ timeoutMs: 60_000 }); // process start-up (tsx) can be slow on a loaded machine
    return c;
  };
  const client = (c: TestCluster, ids?: string[], timeoutMs = 8000) => {
    const cl = new RaftkvClient({ endpoints: c.endpoints(ids), timeoutMs });
    clients.push(cl);
    return cl;
  };

  test("SIGKILL the leader: a new leader within 3 election timeouts, no acknowledged write lost, the restarted node catches up", async () => {
    const c = await start();
    const cl = client(c);
    const acked: string[] = [];
    for (let i = 0; i < 50; i++) {
      await cl.put(`kill/${i}`, `v${i}`);
      acked.push(`kill/${i}`);
    }
    const old = await c.waitForLeader();
    const t0 = Date.now();
    await c.kill(old);
    const next = await c.waitForLeader({ not: old, timeoutMs: 10_000 });
    const took = Date.now() - t0;
    assert.notEqual(next, old);
    // Detection takes at most one (randomized, < 2x) election timeout plus a pre-vote and vote
    // round; "within 3 election timeouts" is the bound we promise.
    assert.ok(took < 3 * 2 * ELECTION_MS, `new leader after ${took} ms`);
    for (let i = 50; i < 80; i++) {
      await cl.put(`kill/${i}`, `v${i}`);
      acked.push(`kill/${i}`);
    }
    const survivors = client(c, c.specs.map((s) => s.id).filter((id) => id !== old));
    for (const [i, k] of acked.entries()) assert.equal(text((await survivors.get(k)).kv?.value), `v${i}`, `${k} lost`);
    c.spawn(old);
    const st = await c.status(next);
    await c.waitForApplied(st!.commitIndex, 15_000);
    const restarted = client(c, [old]);
    for (const [i, k] of acked.entries()) assert.equal(text((await restarted.get(k, { serializable: true })).kv?.value), `v${i}`);
    assert.ok(/LEADER/.test(c.logText(next)), "role changes are logged with the word LEADER");
  });

  test("a node kept down past a snapshot catches up by InstallSnapshot", async () => {
    const c = await start({ snapshotInterval: 100, extraArgs: ["--snapshot-keep-entries", "10"] });
    const cl = client(c);
    await cl.put("snap/first", "1");
    const leader = await c.waitForLeader();
    const victim = c.specs.map((s) => s.id).find((id) => id !== leader)!;
    await c.kill(victim);
    for (let i = 0; i < 400; i++) await cl.put(`snap/${i % 50}`, `v${i}`);
    const st = await c.status(leader);
    assert.ok(st!.snapshotIndex > 0 && st!.firstLogIndex > 50, `leader compacted its log (first index ${st!.firstLogIndex})`);
    c.spawn(victim);
    await c.waitForApplied(st!.commitIndex, 20_000, [victim]);
    const vs = await c.status(victim);
    assert.ok(vs!.counters.snapshotsInstalled >= 1, "the follower installed a snapshot from the leader");
    const direct = client(c, [victim]);
    assert.equal(text((await direct.get("snap/first", { serializable: true })).kv?.value), "1");
    assert.equal(text((await direct.get("snap/49", { serializable: true })).kv?.value), "v399");
  });

  test("SIGTERM the leader under a steady stream of sequential writes: leadership moves, zero failed requests, exit code 0", async () => {
    const c = await start();
    const cl = client(c, undefined, 10_000);
    const old = await c.waitForLeader();
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const writer = (async () => {
      for (let i = 0; !stop && i < 5000; i++) {
        try {
          await cl.put(`term/${i % 20}`, `v${i}`);
          ok++;
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 500));
    const before = ok;
    const code = await c.terminate(old);
    assert.equal(code, 0, "the node exits 0 after handing off");
    const next = await c.waitForLeader({ not: old, timeoutMs: 5000, among: c.specs.map((s) => s.id).filter((id) => id !== old) });
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await writer;
    assert.deepEqual(failures, [], "no client request failed");
    assert.ok(ok > before, "writes continued after the hand-off");
    assert.ok(/handed LEADER role to|handing LEADER role to/.test(c.logText(old)), "the old leader handed off");
    // Its client server closed without waiting out its 3 s grace: the client's KV.Calls stream was
    // ended by the node as soon as the calls on it were answered.
    const stopped = /"ms":(\d+),"msg":"stopped cleanly"/.exec(c.logText(old));
    assert.ok(stopped, "the old leader logged its clean stop");
    assert.ok(Number(stopped[1]) < 2500, `stopped in ${stopped[1]} ms`);
    assert.notEqual(next, old);
  });
});
