// Three real drivers in one process (real DiskStorage in temp dirs, real gRPC peer transport on
// loopback), for behaviour that needs a hand on one node: its disk (the leader's own WAL write is
// held back, as a slow or stalled disk would, to check what may and may not commit meanwhile) or
// its life (a follower stopped under a leadership hand-off).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import { Command } from "../../common/gen/raftkv/v1/kv.js";
import { Role } from "../raft/types.js";
import { DiskStorage, type SaveBatch } from "../storage/disk-storage.js";
import { Driver } from "./driver.js";
import { PEER_SERVER_OPTIONS } from "./transport.js";

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Member {
  id: string;
  driver: Driver;
  storage: DiskStorage;
  server: grpc.Server;
  /** While set, this node's leader-side writes (SaveBatch.offLoop with entries) wait for it. */
  gate?: Promise<void>;
  /** Opens the gate (cleanup does too: a failed assertion must not leave a write hanging). */
  release?: () => void;
  /** Writes that were held back by the gate. */
  held: number;
}

async function startCluster(): Promise<Member[]> {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-driver-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const ids = ["n1", "n2", "n3"];
  const servers = await Promise.all(
    ids.map(async () => {
      const server = new grpc.Server(PEER_SERVER_OPTIONS);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
      );
      return { server, port };
    }),
  );
  const peers = ids.map((id, i) => ({ id, address: `127.0.0.1:${servers[i].port}` }));
  const logger = pino({ level: "silent" });
  const members: Member[] = [];
  for (const [i, id] of ids.entries()) {
    const storage = await DiskStorage.open(join(dir, id), { logger, initialVoters: ids });
    const m: Member = { id, storage, server: servers[i].server, driver: undefined as unknown as Driver, held: 0 };
    const save = storage.save.bind(storage);
    storage.save = (b: SaveBatch) => {
      const gate = m.gate;
      if (!gate || !b.offLoop || !b.entries || b.entries.length === 0) return save(b);
      m.held++;
      return gate.then(() => save(b));
    };
    m.driver = await Driver.create({
      id,
      clusterId: "driver-test",
      peers,
      storage,
      logger,
      tickMs: 20,
      // Elections only if the leader is really gone: the test needs one leader throughout.
      electionTicks: 50,
      heartbeatTicks: 1,
      snapshotInterval: 1_000_000,
    });
    m.driver.transport.addToServer(m.server);
    members.push(m);
  }
  for (const m of members) m.driver.start();
  cleanups.push(async () => {
    for (const m of members) m.release?.();
    await Promise.all(members.map((m) => m.driver.stop().catch(() => undefined)));
    for (const m of members) m.server.forceShutdown();
  });
  return members;
}

async function waitForLeader(members: Member[]): Promise<Member> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const leaders = members.filter((m) => m.driver.node.raft.role === Role.Leader);
    // A leader that has committed an entry of its term (its no-op) serves writes at once.
    if (leaders.length === 1 && leaders[0].driver.kv.appliedIndex >= leaders[0].driver.node.raft.log.committed) {
      const l = leaders[0];
      if (l.driver.node.raft.log.termOrZero(l.driver.node.raft.log.committed) === l.driver.node.raft.term) return l;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("no leader within 10 s");
}

let seq = 0;
function put(m: Member, key: string, value: string) {
  const cmd: Command = {
    requestId: { clientId: "driver-test", seq: ++seq },
    op: { $case: "put", value: { key: Buffer.from(key), value: Buffer.from(value), prevKv: false, requestId: undefined } },
  };
  return m.driver.propose(cmd, Date.now() + 10_000);
}

/** Resolves with "pending" if p has not settled within ms. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | "pending"> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<"pending">((r) => (timer = setTimeout(() => r("pending"), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function holdWrites(m: Member): () => void {
  let open!: () => void;
  m.gate = new Promise<void>((r) => (open = r));
  m.held = 0;
  m.release = () => {
    m.gate = undefined;
    m.release = undefined;
    open();
  };
  return m.release;
}

test("a leader whose own WAL write stalls commits through its two followers; one follower is not enough", async () => {
  const members = await startCluster();
  const leader = await waitForLeader(members);
  const term = leader.driver.node.raft.term;
  const stillLeader = () => assert.ok(leader.driver.node.raft.role === Role.Leader && leader.driver.node.raft.term === term, "leadership changed");
  assert.equal((await put(leader, "warm", "up")).type, "put");

  // Both followers up: the write is durable on two of three disks without the leader's.
  let release = holdWrites(leader);
  const fast = put(leader, "k1", "v1");
  const r1 = await settledWithin(fast, 5_000);
  assert.notEqual(r1, "pending", "the write waited for the leader's own stalled WAL write");
  stillLeader();
  assert.equal(leader.held, 1, "the leader's write was not held back, so the test proved nothing");
  const index = leader.driver.kv.appliedIndex;
  assert.ok(index > leader.storage.lastIndex(), "applied before it is in the leader's own log");

  // A snapshot requested now must wait for the leader's log to hold what it covers.
  const snap = leader.driver.snapshotNow();
  assert.equal(await settledWithin(snap, 200), "pending", "snapshot taken beyond the leader's durable log");
  release();
  assert.ok((await snap).index >= index);
  assert.ok(leader.storage.lastIndex() >= index);

  // One follower down: the leader's own write is part of every quorum now.
  const follower = members.find((m) => m !== leader)!;
  await follower.driver.stop();
  follower.server.forceShutdown();
  release = holdWrites(leader);
  const slow = put(leader, "k2", "v2");
  const r2 = await settledWithin(slow, 500);
  stillLeader();
  assert.equal(leader.held, 1);
  assert.equal(r2, "pending", "committed on one follower's disk alone");
  release();
  assert.equal((await slow).type, "put");
  assert.equal(leader.driver.kv.get(Buffer.from("k2"))?.value.toString(), "v2");
});

test("a leadership hand-off skips an unreachable follower and gives up at once when told to use it", async () => {
  const members = await startCluster();
  const leader = await waitForLeader(members);
  const [down, up] = members.filter((m) => m !== leader);
  await down.driver.stop();
  down.server.forceShutdown();
  // The leader's heartbeats to it fail within a few ticks; from then on it is not a candidate.
  const until = Date.now() + 5_000;
  while (leader.driver.mostCaughtUpFollower() !== up.id && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal(leader.driver.mostCaughtUpFollower(), up.id, "the stopped follower is still chosen for a hand-off");

  const t0 = Date.now();
  await assert.rejects(leader.driver.transferLeadership(down.id, Date.now() + 5_000), (e: Error & { code?: string }) => {
    assert.equal(e.code, "FAILED_PRECONDITION");
    assert.match(e.message, new RegExp(`${down.id} is unreachable`));
    return true;
  });
  assert.ok(Date.now() - t0 < 2_500, `waited ${Date.now() - t0} ms for a node that cannot take over`);

  assert.equal(await leader.driver.transferLeadership(undefined, Date.now() + 5_000), up.id);
  assert.equal(up.driver.node.raft.role, Role.Leader);
});
