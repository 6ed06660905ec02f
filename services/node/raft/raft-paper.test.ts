// One test per rule of the Raft paper's Figure 2 and §5.2–§5.4, the thesis' §3.10, §6.4 and
// §9.6, named after the sentence it checks (after etcd-io/raft's raft_paper_test.go).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Network, drainReady, newTestNode, text } from "./test-network.js";
import { MemoryStorage } from "./storage.js";
import { EntryType, type Entry, type Message, MessageType, NONE, Role, emptyMessage } from "./types.js";
import { ProposalDroppedError } from "./raft.js";
import { ProgressState } from "./progress.js";

const enc = (s: string) => new TextEncoder().encode(s);
const ent = (index: number, term: number, data = ""): Entry => ({ index, term, type: EntryType.Normal, data: enc(data) });

function msg(type: MessageType, from: string, to: string, term: number, extra: Partial<Message> = {}): Message {
  return { ...emptyMessage(type, from, to, term), ...extra };
}

/** A node whose storage already holds `ents` and the given term. */
function nodeWithLog(id: string, voters: string[], ents: Entry[], term: number, opts = {}) {
  const storage = new MemoryStorage(voters);
  storage.append(ents);
  storage.setHardState({ term, vote: NONE, commit: 0 });
  return newTestNode(id, voters, { storage, ...opts });
}

function sent(t: ReturnType<typeof newTestNode>): Message[] {
  return drainReady(t);
}

describe("Figure 2: rules for all servers", () => {
  for (const role of [Role.Follower, Role.Candidate, Role.Leader]) {
    test(`If RPC request or response contains term T > currentTerm: set currentTerm = T, convert to follower (from ${role})`, () => {
      const t = newTestNode("1", ["1", "2", "3"]);
      if (role === Role.Candidate) t.node.campaign();
      if (role === Role.Leader) {
        t.node.campaign();
        t.node.step(msg(MessageType.VoteResp, "2", "1", t.node.raft.term));
      }
      assert.equal(t.node.raft.role, role);
      sent(t);
      t.node.step(msg(MessageType.App, "2", "1", 5));
      assert.equal(t.node.raft.term, 5);
      assert.equal(t.node.raft.role, Role.Follower);
      assert.equal(t.node.raft.lead, "2");
    });
  }

  test("Reply false if term < currentTerm (§5.1): a stale AppendEntries is not applied", () => {
    const t = nodeWithLog("1", ["1", "2", "3"], [], 3);
    t.node.step(msg(MessageType.App, "2", "1", 2, { index: 0, logTerm: 0, entries: [ent(1, 2, "x")], commit: 1 }));
    const out = sent(t);
    assert.equal(t.node.raft.log.lastIndex(), 0, "stale entries must not be appended");
    assert.equal(t.node.raft.term, 3);
    // With CheckQuorum/PreVote off, the stale message is simply ignored.
    assert.equal(out.length, 0);
  });

  test("a stale leader learns the newer term from the answer to its AppendEntries (CheckQuorum on)", () => {
    const t = nodeWithLog("1", ["1", "2", "3"], [], 3, { checkQuorum: true });
    t.node.step(msg(MessageType.App, "2", "1", 2, { index: 0, logTerm: 0 }));
    const out = sent(t);
    assert.equal(out.length, 1);
    assert.equal(out[0].type, MessageType.AppResp);
    assert.equal(out[0].term, 3);
  });
});

describe("§5.2 Leader election", () => {
  test("Leaders send periodic heartbeats to all followers in order to maintain their authority", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    const leader = net.get("1");
    assert.equal(leader.node.raft.role, Role.Leader);
    leader.node.tick(); // heartbeatTick = 1
    const hb = sent(leader).filter((m) => m.type === MessageType.Heartbeat);
    assert.deepEqual(hb.map((m) => m.to).sort(), ["2", "3"]);
    for (const m of hb) assert.equal(m.term, leader.node.raft.term);
  });

  test("If a follower receives no communication over the election timeout, it begins an election: increments its term, votes for itself, issues RequestVote in parallel", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    for (let i = 0; i < 2 * 10; i++) t.node.tick();
    assert.equal(t.node.raft.role, Role.Candidate);
    assert.equal(t.node.raft.term, 1);
    assert.equal(t.node.raft.vote, "1");
    const votes = sent(t).filter((m) => m.type === MessageType.Vote);
    assert.deepEqual(votes.map((m) => m.to).sort(), ["2", "3"]);
    for (const m of votes) assert.equal(m.term, 1);
  });

  test("Heartbeats reset a follower's election timer: a follower that hears from its leader never campaigns", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    const term = net.get("1").node.raft.term;
    net.tickAll(200);
    assert.equal(net.leader(), "1");
    assert.equal(net.get("2").node.raft.term, term);
  });

  test("A candidate wins an election if it receives votes from a majority of the servers in the full cluster for the same term", () => {
    const cases: Array<{ size: number; votes: Record<string, boolean>; want: Role }> = [
      { size: 1, votes: {}, want: Role.Leader },
      { size: 3, votes: { "2": true, "3": true }, want: Role.Leader },
      { size: 3, votes: { "2": true }, want: Role.Leader },
      { size: 5, votes: { "2": true, "3": true, "4": true, "5": true }, want: Role.Leader },
      { size: 5, votes: { "2": true, "3": true }, want: Role.Leader },
      { size: 5, votes: { "2": true }, want: Role.Candidate },
      { size: 3, votes: { "2": false, "3": false }, want: Role.Follower },
      { size: 5, votes: { "2": false, "3": false, "4": false }, want: Role.Follower },
      { size: 5, votes: { "2": true, "3": false, "4": false }, want: Role.Candidate },
      { size: 5, votes: { "2": true, "3": false, "4": false, "5": false }, want: Role.Follower },
    ];
    for (const c of cases) {
      const ids = Array.from({ length: c.size }, (_, i) => String(i + 1));
      const t = newTestNode("1", ids);
      t.node.campaign();
      for (const [from, granted] of Object.entries(c.votes)) {
        t.node.step(msg(MessageType.VoteResp, from, "1", t.node.raft.term, { reject: !granted }));
      }
      assert.equal(t.node.raft.role, c.want, JSON.stringify(c));
      assert.equal(t.node.raft.term, 1);
    }
  });

  test("Each server will vote for at most one candidate in a given term, on a first-come-first-served basis", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.step(msg(MessageType.Vote, "2", "1", 1, { index: 0, logTerm: 0 }));
    t.node.step(msg(MessageType.Vote, "3", "1", 1, { index: 0, logTerm: 0 }));
    const resps = sent(t).filter((m) => m.type === MessageType.VoteResp);
    assert.deepEqual(
      resps.map((m) => [m.to, m.reject]),
      [
        ["2", false],
        ["3", true],
      ],
    );
    // A retransmitted request from the same candidate is granted again.
    t.node.step(msg(MessageType.Vote, "2", "1", 1, { index: 0, logTerm: 0 }));
    assert.equal(sent(t)[0].reject, false);
  });

  test("The vote is on stable storage before the vote response is sent (Figure 2: persistent state)", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.step(msg(MessageType.Vote, "2", "1", 4, { index: 0, logTerm: 0 }));
    const rd = t.node.ready();
    assert.ok(rd.messages.some((m) => m.type === MessageType.VoteResp && !m.reject));
    assert.deepEqual(rd.hardState && { term: rd.hardState.term, vote: rd.hardState.vote }, { term: 4, vote: "2" });
    assert.equal(rd.mustSync, true, "a new vote must be synced before the response goes out");
    t.node.advance(rd);
  });

  test("While waiting for votes, a candidate that receives AppendEntries from a leader whose term is at least as large returns to follower state", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.campaign();
    assert.equal(t.node.raft.role, Role.Candidate);
    t.node.step(msg(MessageType.App, "2", "1", t.node.raft.term, { index: 0, logTerm: 0 }));
    assert.equal(t.node.raft.role, Role.Follower);
    assert.equal(t.node.raft.lead, "2");
  });

  test("If many followers become candidates at the same time, votes could be split: the candidate times out and starts a new election by incrementing its term", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.campaign();
    assert.equal(t.node.raft.term, 1);
    for (let i = 0; i < 2 * 10; i++) t.node.tick();
    assert.equal(t.node.raft.role, Role.Candidate);
    assert.equal(t.node.raft.term, 2);
  });

  test("Election timeouts are chosen randomly from a fixed interval [T, 2T)", () => {
    const seen = new Set<number>();
    for (let seed = 0; seed < 200; seed++) {
      const t = newTestNode("1", ["1", "2", "3"], { seed });
      let ticks = 0;
      while (t.node.raft.role === Role.Follower) {
        t.node.tick();
        ticks++;
      }
      assert.ok(ticks >= 10 && ticks < 20, `timeout ${ticks} outside [10, 20)`);
      seen.add(ticks);
    }
    assert.ok(seen.size >= 8, `timeouts should be spread out, saw ${[...seen]}`);
  });

  test("A leader is elected in one round of RequestVote RPCs when the others answer", () => {
    for (const size of [3, 5]) {
      const ids = Array.from({ length: size }, (_, i) => String(i + 1));
      const net = Network.of(ids);
      net.campaign("1");
      assert.equal(net.leader(), "1");
      for (const id of ids) assert.equal(net.get(id).node.raft.term, 1);
    }
  });
});

describe("§5.3 Log replication", () => {
  test("The leader appends the command to its log as a new entry, then issues AppendEntries RPCs in parallel to each of the other servers", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    const l = net.get("1");
    l.node.propose(enc("x"));
    const rd = l.node.ready();
    assert.equal(rd.entries.length, 1);
    assert.equal(text(rd.entries[0]), "x");
    const apps = rd.messages.filter((m) => m.type === MessageType.App);
    assert.deepEqual(apps.map((m) => m.to).sort(), ["2", "3"]);
    for (const m of apps) assert.deepEqual(m.entries.map(text), ["x"]);
    l.node.advance(rd);
  });

  test("When the entry has been safely replicated on a majority, the leader commits it and applies it to its state machine", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.propose("1", "x");
    const l = net.get("1");
    assert.deepEqual(l.applied.filter((e) => e.data.length > 0).map(text), ["x"]);
    assert.equal(l.node.raft.log.committed, 2);
  });

  test("A log entry is committed once the leader has replicated it on a majority (not before)", () => {
    for (const [size, acks, committed] of [
      [3, [], false],
      [3, ["2"], true],
      [5, ["2"], false],
      [5, ["2", "3"], true],
    ] as Array<[number, string[], boolean]>) {
      const ids = Array.from({ length: size }, (_, i) => String(i + 1));
      const t = newTestNode("1", ids);
      t.node.campaign();
      for (const id of ids.slice(1)) t.node.step(msg(MessageType.VoteResp, id, "1", 1));
      sent(t);
      // Everyone acks the no-op (index 1), then the new entry (index 2) only by `acks`.
      for (const id of ids.slice(1)) t.node.step(msg(MessageType.AppResp, id, "1", 1, { index: 1 }));
      t.node.propose(enc("x"));
      sent(t);
      for (const id of acks) t.node.step(msg(MessageType.AppResp, id, "1", 1, { index: 2 }));
      assert.equal(t.node.raft.log.committed === 2, committed, `size ${size} acks ${acks}`);
    }
  });

  test("When the leader commits an entry it also commits all preceding entries in its log", () => {
    const prior = [ent(1, 1, "a"), ent(2, 2, "b")];
    const t = nodeWithLog("1", ["1", "2", "3"], prior, 2);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 3));
    sent(t);
    t.node.step(msg(MessageType.AppResp, "2", "1", 3, { index: 3 }));
    assert.equal(t.node.raft.log.committed, 3);
    const applied = sent(t) && t.applied.map((e) => e.index);
    assert.deepEqual(applied, [1, 2, 3]);
  });

  test("The leader includes the commit index in future AppendEntries RPCs (including heartbeats) so that the other servers eventually find out", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 1));
    sent(t);
    for (const id of ["2", "3"]) t.node.step(msg(MessageType.AppResp, id, "1", 1, { index: 1 }));
    sent(t);
    // Entry 2 is the leader's own client's; entry 3 was forwarded by follower 3.
    t.node.propose(enc("x"));
    t.node.step(msg(MessageType.Prop, "3", "1", 0, { entries: [ent(0, 0, "y")] }));
    sent(t);
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: 3 }));
    assert.equal(t.node.raft.log.committed, 3);
    // Follower 3 answers its client once it applies entry 3: it is told at once. Follower 2
    // waits for nothing: no message just for the commit index.
    const apps = sent(t).filter((m) => m.type === MessageType.App);
    assert.deepEqual(apps.map((m) => [m.to, m.commit, m.entries.length]), [["3", 3, 0]]);
    // The next append carries it to follower 2, and so does the next heartbeat.
    t.node.propose(enc("z"));
    const next = sent(t).filter((m) => m.type === MessageType.App && m.to === "2");
    assert.deepEqual(next.map((m) => m.commit), [3]);
    t.node.tick();
    const hb = sent(t).find((m) => m.type === MessageType.Heartbeat && m.to === "2");
    assert.equal(hb?.commit, 3);
    // Once follower 3 has been told of its entry's commit, it is not told again.
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: 4 }));
    assert.equal(t.node.raft.log.committed, 4);
    assert.deepEqual(sent(t).filter((m) => m.type === MessageType.App && m.entries.length === 0), []);
  });

  test("Once a follower learns that a log entry is committed, it applies the entry to its local state machine", () => {
    const t = newTestNode("2", ["1", "2", "3"]);
    t.node.step(msg(MessageType.App, "1", "2", 1, { index: 0, logTerm: 0, entries: [ent(1, 1, "a"), ent(2, 1, "b")], commit: 1 }));
    sent(t);
    assert.deepEqual(t.applied.map(text), ["a"]);
    t.node.step(msg(MessageType.Heartbeat, "1", "2", 1, { commit: 2 }));
    sent(t);
    assert.deepEqual(t.applied.map(text), ["a", "b"]);
  });

  test("If the follower does not find an entry in its log with the same index and term, then it refuses the new entries", () => {
    const cases: Array<[number, number, boolean]> = [
      [0, 0, false], // matches the empty prefix
      [2, 2, false], // matches the last entry
      [2, 1, true], // term mismatch at index 2
      [3, 2, true], // beyond the end
    ];
    for (const [index, logTerm, reject] of cases) {
      const t = nodeWithLog("2", ["1", "2", "3"], [ent(1, 1), ent(2, 2)], 2);
      t.node.step(msg(MessageType.App, "1", "2", 2, { index, logTerm, entries: [] }));
      const r = sent(t).find((m) => m.type === MessageType.AppResp)!;
      assert.equal(r.reject, reject, `prev ${index}/${logTerm}`);
    }
  });

  test("If an existing entry conflicts with a new one (same index, different terms), delete the existing entry and all that follow it; append any new entries", () => {
    const t = nodeWithLog("2", ["1", "2", "3"], [ent(1, 1, "a"), ent(2, 2, "b"), ent(3, 2, "c")], 3);
    t.node.step(msg(MessageType.App, "1", "2", 3, { index: 1, logTerm: 1, entries: [ent(2, 3, "B")] }));
    sent(t);
    assert.deepEqual(
      t.storage.entries(1, t.storage.lastIndex() + 1, Infinity).map((e) => [e.index, e.term, text(e)]),
      [
        [1, 1, "a"],
        [2, 3, "B"],
      ],
    );
  });

  test("Entries already present are not truncated by a delayed, shorter AppendEntries", () => {
    const t = nodeWithLog("2", ["1", "2", "3"], [ent(1, 1, "a"), ent(2, 1, "b"), ent(3, 1, "c")], 1);
    t.node.step(msg(MessageType.App, "1", "2", 1, { index: 0, logTerm: 0, entries: [ent(1, 1, "a")] }));
    sent(t);
    assert.equal(t.storage.lastIndex(), 3);
  });

  test("The leader brings a follower's log into consistency with its own (Figure 7 followers a–f)", () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6].map((term, i) => ent(i + 1, term));
    const followers: number[][] = [
      [1, 1, 1, 4, 4, 5, 5, 6, 6], // (a) missing entries
      [1, 1, 1, 4], // (b)
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // (c) extra uncommitted entry
      [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // (d) extra entries of a later term
      [1, 1, 1, 4, 4, 4, 4], // (e) conflicting entries of term 4
      [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // (f) terms 2 and 3 never committed
    ];
    for (const f of followers) {
      const lead = nodeWithLog("1", ["1", "2", "3"], leaderLog, 8);
      const foll = nodeWithLog("2", ["1", "2", "3"], f.map((term, i) => ent(i + 1, term)), 8);
      const other = nodeWithLog("3", ["1", "2", "3"], leaderLog, 8);
      const net = new (Network as never as new (n: unknown[]) => Network)([lead, foll, other]);
      net.campaign("1");
      assert.equal(net.leader(), "1", `follower ${f}`);
      net.propose("1", "y");
      const want = lead.storage.entries(1, lead.storage.lastIndex() + 1, Infinity).map((e) => [e.index, e.term]);
      const got = foll.storage.entries(1, foll.storage.lastIndex() + 1, Infinity).map((e) => [e.index, e.term]);
      assert.deepEqual(got, want, `follower ${f}`);
    }
  });

  test("A rejection carries the follower's conflict hint, so the leader skips a whole term per round trip", () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6].map((term, i) => ent(i + 1, term));
    const f = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3];
    const lead = nodeWithLog("1", ["1", "2", "3"], leaderLog, 8);
    const foll = nodeWithLog("2", ["1", "2", "3"], f.map((term, i) => ent(i + 1, term)), 8);
    const other = nodeWithLog("3", ["1", "2", "3"], leaderLog, 8);
    const net = new (Network as never as new (n: unknown[]) => Network)([lead, foll, other]);
    net.campaign("1");
    const rejects = net.delivered.filter((m) => m.type === MessageType.AppResp && m.reject && m.from === "2");
    // Without hints this would take one round trip per divergent entry (8); with them, a few.
    assert.ok(rejects.length >= 1 && rejects.length <= 3, `took ${rejects.length} rejections`);
    assert.ok(rejects.every((m) => m.rejectHint > 0));
  });

  test("Heartbeats carry the commit index, capped at what the follower is known to hold", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.propose("1", "x");
    const l = net.get("1");
    l.node.tick();
    const hbs = sent(l).filter((m) => m.type === MessageType.Heartbeat);
    for (const m of hbs) assert.equal(m.commit, 2);
    // A follower the leader has not heard from gets commit 0.
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 1));
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: 1 }));
    sent(t);
    t.node.tick();
    const hb3 = sent(t).find((m) => m.type === MessageType.Heartbeat && m.to === "3")!;
    assert.equal(hb3.commit, 0);
  });

  test("Appends are pipelined: a follower in replicate state gets several messages in flight, up to the window, each within the byte limit", () => {
    const t = newTestNode("1", ["1", "2", "3"], { maxInflightMsgs: 3, maxSizePerMsg: 1 });
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 1));
    sent(t);
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: 1 }));
    sent(t);
    assert.equal(t.node.raft.progress.get("2")!.state, ProgressState.Replicate);
    for (let i = 0; i < 10; i++) t.node.propose(enc(`v${i}`));
    const apps = sent(t).filter((m) => m.type === MessageType.App && m.to === "2" && m.entries.length > 0);
    assert.equal(apps.length, 3, "window of 3 messages in flight");
    for (const m of apps) assert.equal(m.entries.length, 1, "maxSizePerMsg limits each message");
    // An ack frees the window and more are sent.
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: apps[1].entries[0].index }));
    const more = sent(t).filter((m) => m.type === MessageType.App && m.to === "2" && m.entries.length > 0);
    assert.equal(more.length, 2);
  });

  test("A follower that needs entries the leader has compacted is sent a snapshot", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.isolate("3");
    for (let i = 0; i < 5; i++) net.propose("1", `v${i}`);
    const l = net.get("1");
    const applied = l.node.raft.log.applied;
    l.storage.createSnapshot(applied, { voters: ["1", "2", "3"], learners: [] }, enc("state"));
    l.storage.compact(applied);
    net.heal();
    net.tickAll(3);
    const snaps = net.delivered.filter((m) => m.type === MessageType.Snap && m.to === "3");
    assert.equal(snaps.length, 1);
    const f = net.get("3");
    assert.equal(f.storage.snapshot().meta.index, applied);
    assert.equal(f.node.raft.log.lastIndex(), l.node.raft.log.lastIndex());
    assert.equal(new TextDecoder().decode(f.storage.snapshot().data), "state");
  });
});

describe("§5.4 Safety", () => {
  test("§5.4.1 The voter denies its vote if its own log is more up-to-date than that of the candidate", () => {
    const cases: Array<[number, number, boolean]> = [
      // candidate lastIndex, lastTerm, rejected (voter's log: [1@1, 2@2])
      [1, 1, true],
      [2, 1, true],
      [3, 1, true],
      [1, 2, true],
      [2, 2, false],
      [3, 2, false],
      [1, 3, false],
    ];
    for (const [index, logTerm, reject] of cases) {
      const t = nodeWithLog("1", ["1", "2", "3"], [ent(1, 1), ent(2, 2)], 2);
      t.node.step(msg(MessageType.Vote, "2", "1", 3, { index, logTerm }));
      const r = sent(t).find((m) => m.type === MessageType.VoteResp)!;
      assert.equal(r.reject, reject, `candidate ${index}@${logTerm}`);
    }
  });

  test("§5.4.2 Raft never commits log entries from previous terms by counting replicas", () => {
    // The leader of term 3 holds entries of terms 1 and 2 it did not commit.
    const t = nodeWithLog("1", ["1", "2", "3"], [ent(1, 1), ent(2, 2)], 2);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 3));
    sent(t);
    // A majority acks index 2 (an old-term entry) but not the no-op at 3.
    t.node.step(msg(MessageType.AppResp, "2", "1", 3, { index: 2 }));
    assert.equal(t.node.raft.log.committed, 0, "old-term entries must not be committed by counting");
    t.node.step(msg(MessageType.AppResp, "2", "1", 3, { index: 3 }));
    assert.equal(t.node.raft.log.committed, 3, "committing the current-term no-op commits everything before it");
  });

  test("Figure 8 (c, e): an old-term entry on a majority commits only with an entry of the leader's term, after which it can no longer be overwritten", () => {
    const ids = ["1", "2", "3", "4", "5"];
    const mk = (id: string, log: Array<[number, number]>) => nodeWithLog(id, ids, log.map(([i, t]) => ent(i, t)), 4);
    const s1 = mk("1", [[1, 1], [2, 2]]);
    const s2 = mk("2", [[1, 1], [2, 2]]);
    const s3 = mk("3", [[1, 1]]);
    const s4 = mk("4", [[1, 1]]);
    const s5 = mk("5", [[1, 1], [2, 3]]);
    const net = new (Network as never as new (n: unknown[]) => Network)([s1, s2, s3, s4, s5]);
    net.isolate("5");
    // (c) S1 is elected and replicates index 2 (term 2) to a majority, but no acks arrive yet.
    net.dropIf = (m) => m.type === MessageType.AppResp && !m.reject;
    net.campaign("1");
    assert.equal(s1.node.raft.role, Role.Leader);
    assert.equal(s3.node.raft.log.term(2), 2, "x is now on S1, S2, S3: a majority");
    assert.equal(s1.node.raft.log.committed, 0, "but it must not be committed by counting replicas");
    // (e) The leader's own no-op (term 5) reaches a majority: both commit.
    net.heal();
    net.isolate("5");
    net.tickAll(2);
    assert.ok(s1.node.raft.log.committed >= 3);
    assert.equal(s1.node.raft.log.term(2), 2);
    // S5 can no longer win: a majority has a log more up-to-date than its own.
    net.heal();
    net.isolate("1");
    net.campaign("5");
    assert.notEqual(s5.node.raft.role, Role.Leader);
    for (const s of [s2, s3, s4]) assert.equal(s.node.raft.log.term(2), 2);
  });

  test("Figure 8 (d): a leader with a more up-to-date last term overwrites an old-term entry that was on a majority", () => {
    // S1 (term 2) put x at index 2 on S1, S2, S3 without committing it (it had no chance to
    // learn the commit). S5 holds y at index 2 from term 3 and can win with votes of S2..S4
    // only if its log is more up-to-date: lastTerm 3 > 2, so it is.
    const ids = ["1", "2", "3", "4", "5"];
    const mk = (id: string, log: Array<[number, number]>, term: number) => nodeWithLog(id, ids, log.map(([i, t]) => ent(i, t)), term);
    const s1 = mk("1", [[1, 1], [2, 2]], 4);
    const s2 = mk("2", [[1, 1], [2, 2]], 4);
    const s3 = mk("3", [[1, 1], [2, 2]], 4);
    const s4 = mk("4", [[1, 1]], 4);
    const s5 = mk("5", [[1, 1], [2, 3]], 4);
    const net = new (Network as never as new (n: unknown[]) => Network)([s1, s2, s3, s4, s5]);
    net.isolate("1");
    net.campaign("5");
    assert.equal(s5.node.raft.role, Role.Leader);
    for (const s of [s2, s3, s4]) assert.equal(s.node.raft.log.term(2), 3, "the old-term entry x was overwritten");
  });
});

describe("Thesis §6.4 ReadIndex", () => {
  test("The leader answers a read with its commit index once a heartbeat round is acknowledged by a majority", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.propose("1", "x");
    const l = net.get("1");
    l.readStates = [];
    net.act("1", (n) => n.readIndex(enc("r1")));
    assert.equal(l.readStates.length, 1);
    assert.equal(l.readStates[0].index, l.node.raft.log.committed);
    assert.equal(new TextDecoder().decode(l.readStates[0].context), "r1");
  });

  test("A read is not answered while the heartbeat round lacks a majority", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.isolate("1");
    const l = net.get("1");
    net.act("1", (n) => n.readIndex(enc("r1")));
    assert.equal(l.readStates.length, 0, "a deposed leader must not serve reads");
    net.heal();
    net.tickAll(1);
    assert.equal(l.readStates.length, 1, "answered after the partition heals");
  });

  test("A new leader postpones reads until it has committed an entry of its own term", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "2", "1", 1));
    sent(t);
    t.node.readIndex(enc("r"));
    sent(t);
    assert.equal(t.readStates.length, 0);
    t.node.step(msg(MessageType.AppResp, "2", "1", 1, { index: 1 })); // no-op commits
    const hbs = sent(t).filter((m) => m.type === MessageType.Heartbeat && m.context.length > 0);
    assert.ok(hbs.length > 0, "the postponed read starts its heartbeat round once the no-op commits");
    t.node.step(msg(MessageType.HeartbeatResp, "2", "1", 1, { context: hbs[0].context }));
    sent(t);
    assert.equal(t.readStates.length, 1);
    assert.equal(t.readStates[0].index, 1);
  });

  test("A follower asks the leader for the read index and serves the read itself", () => {
    const net = Network.of(["1", "2", "3"]);
    net.campaign("1");
    net.propose("1", "x");
    const f = net.get("2");
    net.act("2", (n) => n.readIndex(enc("fr")));
    assert.equal(f.readStates.length, 1);
    assert.equal(f.readStates[0].index, net.get("1").node.raft.log.committed);
  });

  test("A read with no leader known is refused at once, not left hanging", () => {
    const t = newTestNode("1", ["1", "2", "3"]);
    assert.throws(() => t.node.readIndex(enc("r")), ProposalDroppedError);
    assert.throws(() => t.node.propose(enc("w")), ProposalDroppedError);
  });
});

describe("Thesis §9.6 PreVote and CheckQuorum", () => {
  test("A partitioned node rejoining does not disrupt the cluster: with PreVote its term does not grow while it is cut off", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    const term = net.get("1").node.raft.term;
    net.isolate("3");
    net.tickAll(100);
    assert.equal(net.get("3").node.raft.term, term, "pre-votes fail, so the term is unchanged");
    net.heal();
    net.tickAll(30);
    assert.equal(net.leader(), "1");
    assert.equal(net.get("1").node.raft.term, term);
  });

  test("Without PreVote, the same rejoining node would force an election (why PreVote matters)", () => {
    const net = Network.of(["1", "2", "3"], { preVote: false, checkQuorum: false });
    net.campaign("1");
    const term = net.get("1").node.raft.term;
    net.isolate("3");
    net.tickAll(100);
    assert.ok(net.get("3").node.raft.term > term);
    net.heal();
    net.tickAll(30);
    assert.ok(net.get("1").node.raft.term > term, "the leader was disrupted");
  });

  test("A leader that has not heard from a quorum within an election timeout steps down (CheckQuorum)", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    net.isolate("1");
    const l = net.get("1");
    for (let i = 0; i < 10 * 2 + 1; i++) {
      l.node.tick();
      drainReady(l);
    }
    assert.equal(l.node.raft.role, Role.Follower);
  });

  test("A follower that recently heard from its leader ignores vote requests (leader lease)", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    const f = net.get("2");
    f.node.step(msg(MessageType.Vote, "3", "2", 9, { index: 100, logTerm: 100 }));
    assert.equal(f.node.raft.term, 1);
    assert.equal(sent(f).length, 0);
  });
});

describe("Thesis §3.10 Leadership transfer", () => {
  test("The leader brings the target up to date, then sends TimeoutNow and the target is elected", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    net.propose("1", "x");
    net.act("1", (n) => n.transferLeadership("2"));
    assert.equal(net.leader(), "2");
    assert.ok(net.delivered.some((m) => m.type === MessageType.TimeoutNow && m.to === "2"));
  });

  test("A lagging target is caught up first", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    net.isolate("3");
    net.propose("1", "x");
    net.heal();
    net.act("1", (n) => n.transferLeadership("3"));
    assert.equal(net.leader(), "3");
    assert.equal(net.get("3").node.raft.log.committed >= 2, true);
  });

  test("While a transfer is in progress the leader refuses proposals; it aborts after an election timeout", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    net.isolate("3");
    const l = net.get("1");
    net.act("1", (n) => n.transferLeadership("3"));
    assert.equal(l.node.raft.leadTransferee, "3");
    assert.throws(() => l.node.propose(enc("y")), ProposalDroppedError);
    for (let i = 0; i < 10; i++) {
      l.node.tick();
      net.settle();
    }
    assert.equal(l.node.raft.leadTransferee, NONE);
    assert.equal(net.leader(), "1");
    l.node.propose(enc("y"));
  });

  test("A follower forwards a transfer request to the leader", () => {
    const net = Network.of(["1", "2", "3"], { preVote: true, checkQuorum: true });
    net.campaign("1");
    net.act("3", (n) => n.transferLeadership("3"));
    assert.equal(net.leader(), "3");
  });
});

describe("Configuration is data", () => {
  test("The voter set comes from storage: a 5-voter configuration needs 3 votes", () => {
    const ids = ["a", "b", "c", "d", "e"];
    const t = newTestNode("a", ids);
    t.node.campaign();
    t.node.step(msg(MessageType.VoteResp, "b", "a", 1));
    assert.equal(t.node.raft.role, Role.Candidate);
    t.node.step(msg(MessageType.VoteResp, "c", "a", 1));
    assert.equal(t.node.raft.role, Role.Leader);
  });

  test("A node outside the voter set does not campaign", () => {
    const storage = new MemoryStorage(["a", "b", "c"]);
    const t = newTestNode("z", ["a", "b", "c"], { storage });
    for (let i = 0; i < 100; i++) t.node.tick();
    assert.equal(t.node.raft.role, Role.Follower);
    assert.equal(t.node.raft.term, 0);
  });
});
