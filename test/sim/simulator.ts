// A deterministic simulator for the consensus core (in the spirit of TigerBeetle's VOPR and
// etcd's interaction tests). One seeded PRNG drives everything: which node ticks, which
// in-flight message is delivered next (reordering), drops, duplicates, symmetric and one-way
// partitions, crashes that lose whatever was not fsynced, restarts, client writes and
// linearizable reads. After every step the Raft invariants are checked; at the end the history
// of client operations is checked for linearizability and, once all faults heal, liveness.
// A failing seed is a one-line reproduction: `npm run sim -- --seed S --steps M --nodes N`.

import { Prng } from "../../services/node/raft/prng.js";
import { RawNode } from "../../services/node/raft/rawnode.js";
import { ProposalDroppedError } from "../../services/node/raft/raft.js";
import { MemoryStorage, cloneConf } from "../../services/node/raft/storage.js";
import { DiskStorage } from "../../services/node/storage/disk-storage.js";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Entry,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type Ready,
  Role,
  type Snapshot,
} from "../../services/node/raft/types.js";
import { type KvInput, type KvOutput, type Operation, checkLinearizable, kvModel } from "../lib/lincheck.js";

/** Ways to break storage on purpose, to show the simulator catches real durability bugs. */
export type StorageFault =
  | "none"
  /** Restarts with the vote of the current term forgotten (hard state vote not persisted). */
  | "forget-vote"
  /** Acknowledges appended entries without making them durable (no fsync of entries). */
  | "ack-unpersisted";

export interface SimOptions {
  seed: number;
  steps: number;
  nodes: number;
  fault?: StorageFault;
  /** Probability that a message is dropped / duplicated when sent. */
  dropRate?: number;
  dupRate?: number;
  /** Per-step probability of a fault event (crash, restart, partition change). */
  faultRate?: number;
  /** Applied entries between snapshots (small, so compaction and InstallSnapshot happen). */
  snapshotEvery?: number;
  /** Ticks allowed after healing for a leader to be elected and pending work to finish. */
  livenessTicks?: number;
  /** Keep this many trace lines for the failure report. */
  traceLines?: number;
  /** Concurrent clients: at most this many operations outstanding at once (as real clients). */
  clients?: number;
  /** Steps after which a client retries a write it has no answer for (same op id: exactly-once). */
  retryAfter?: number;
  /**
   * "memory": MemoryStorage with a modelled durable copy (fast; supports the fault modes).
   * "disk": the node's real DiskStorage in a temp dir: WAL segments, O_DSYNC writes, snapshots,
   * compaction; a crash closes it discarding unsynced writes and a restart recovers from disk.
   */
  storage?: "memory" | "disk";
}

export interface SimResult {
  ok: boolean;
  seed: number;
  steps: number;
  nodes: number;
  /** The invariant broken, e.g. "election safety". */
  violation?: string;
  detail?: string;
  trace?: string[];
  stats: SimStats;
}

export interface SimStats {
  elections: number;
  leadersSeen: number;
  writesAcked: number;
  readsServed: number;
  crashes: number;
  snapshotsSent: number;
  messages: number;
}

export class InvariantViolation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant}: ${detail}`);
  }
}

const ELECTION_TICK = 10;
const HEARTBEAT_TICK = 2;

interface Durable {
  hardState: HardState;
  snapshot: Snapshot | undefined;
  entries: Entry[];
}

/** The replicated state machine of the simulation: a KV map with exactly-once op ids. */
interface Machine {
  kv: Map<string, string>;
  seen: Set<number>;
  applied: number;
}

interface SimNode {
  id: NodeId;
  up: boolean;
  node: RawNode;
  /** Memory mode: the log; disk mode: unused (the node reads `disk`). */
  storage: MemoryStorage;
  disk: DiskStorage | undefined;
  durable: Durable;
  machine: Machine;
  /** Reads whose read index arrived, waiting for applied >= index. */
  readsToServe: Array<{ index: number; opId: number }>;
  /** Read requests in flight, by context. */
  readCtx: Map<string, { opId: number; key: string }>;
  /** Writes proposed through this node and not yet applied here, with the step of the last try. */
  writesPending: Map<number, number>;
  /** Last index/term this node had when it was leader in its current term (append-only check). */
  leaderTerm: number;
  leaderLastIndex: number;
  sinceSnapshot: number;
  /** Highest index whose committed term was checked against the global record. */
  checkedCommit: number;
}

interface Op {
  id: number;
  input: KvInput;
  call: number;
  output?: KvOutput;
  ret?: number;
  /** Definitely did not take effect (refused before proposing). */
  failed?: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function encodeWrite(opId: number, key: string, value: string): Uint8Array {
  return enc.encode(`${opId}|${key}|${value}`);
}

function decodeWrite(data: Uint8Array): { opId: number; key: string; value: string } | undefined {
  if (data.length === 0) return undefined;
  const [id, key, value] = dec.decode(data).split("|");
  return { opId: Number(id), key, value };
}

function ctxKey(ctx: Uint8Array): string {
  return dec.decode(ctx);
}

export class Simulator {
  readonly opts: Required<SimOptions>;
  readonly rng: Prng;
  readonly ids: NodeId[];
  readonly nodes = new Map<NodeId, SimNode>();
  private net: Message[] = [];
  private blocked = new Set<string>();
  private step = 0;
  /** Logical time of client events: every call and return gets its own instant. */
  private clock = 0;
  private ops: Op[] = [];
  private nextOpId = 1;
  private nextCtx = 1;
  private trace: string[] = [];
  // invariant state
  private leaderOfTerm = new Map<number, NodeId>();
  /** index -> "term|data" of every entry known committed anywhere. */
  private committed = new Map<number, { term: number }>();
  /** index -> what was applied at that index (the first node to apply it sets it). */
  private appliedAt = new Map<number, string>();
  /** (index,term) -> data and the term of the previous entry: Log Matching, checked by induction. */
  private entryIdentity = new Map<string, { data: string; prevTerm: number }>();
  private ackedWrites = new Map<number, { key: string; value: string; index: number }>();
  /** The index at which each op id was applied (to tie acknowledgements to log entries). */
  private opIndex = new Map<number, number>();
  /** When each op id was first applied by any node: a point inside its linearization interval. */
  private firstApplied = new Map<number, number>();
  private diskRoot: string | undefined;
  readonly stats: SimStats = { elections: 0, leadersSeen: 0, writesAcked: 0, readsServed: 0, crashes: 0, snapshotsSent: 0, messages: 0 };

  constructor(opts: SimOptions) {
    this.opts = {
      fault: "none",
      dropRate: 0.03,
      dupRate: 0.02,
      faultRate: 0.01,
      snapshotEvery: 25,
      livenessTicks: 40 * ELECTION_TICK,
      traceLines: 40,
      clients: 5,
      retryAfter: 300,
      storage: "memory",
      ...opts,
    };
    this.rng = new Prng(opts.seed);
    this.ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    if (this.opts.storage === "disk") {
      if (this.opts.fault !== "none") throw new Error("storage faults are modelled with memory storage only");
      this.diskRoot = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "raftkv-sim-"));
    }
  }

  private async init(): Promise<void> {
    for (const id of this.ids) {
      const durable: Durable = { hardState: { term: 0, vote: NONE, commit: 0 }, snapshot: undefined, entries: [] };
      this.nodes.set(id, await this.boot(id, durable));
    }
  }

  private async cleanup(): Promise<void> {
    if (!this.diskRoot) return;
    for (const n of this.nodes.values()) if (n.disk && n.up) await n.disk.close().catch(() => undefined);
    rmSync(this.diskRoot, { recursive: true, force: true });
  }

  private log(line: string): void {
    this.trace.push(`[${this.step}] ${line}`);
    if (this.trace.length > this.opts.traceLines) this.trace.shift();
  }

  private async boot(id: NodeId, durable: Durable): Promise<SimNode> {
    const storage = new MemoryStorage(this.ids);
    const machine: Machine = { kv: new Map(), seen: new Set(), applied: 0 };
    let disk: DiskStorage | undefined;
    let applied = durable.snapshot?.meta.index ?? 0;
    if (this.diskRoot) {
      disk = await DiskStorage.open(join(this.diskRoot, id), {
        initialVoters: this.ids,
        segmentBytes: 16 * 1024,
        preallocate: false,
        keepEntries: 5,
        logger: { info() {}, warn() {}, error() {} },
      });
      const meta = disk.snapshot().meta;
      if (meta.index > 0) restoreMachine(machine, { meta, data: await disk.readSnapshotData(meta.index) });
      applied = meta.index;
    } else {
      if (durable.snapshot) {
        storage.applySnapshot(durable.snapshot);
        restoreMachine(machine, durable.snapshot);
      }
      storage.append(durable.entries);
      storage.setHardState(durable.hardState);
    }
    const prng = new Prng(this.rng.nextU32());
    const node = new RawNode({
      id,
      electionTick: ELECTION_TICK,
      heartbeatTick: HEARTBEAT_TICK,
      storage: disk ?? storage,
      rand: () => prng.next(),
      applied,
      preVote: true,
      checkQuorum: true,
      maxSizePerMsg: 4 * 1024,
      maxInflightMsgs: 8,
    });
    return {
      id,
      up: true,
      node,
      storage,
      disk,
      durable,
      machine,
      readsToServe: [],
      readCtx: new Map(),
      writesPending: new Map(),
      leaderTerm: 0,
      leaderLastIndex: 0,
      sinceSnapshot: 0,
      checkedCommit: 0,
    };
  }

  // ---- the driver: persist, then send, then apply, then advance ----------------------------

  private async handleReady(n: SimNode): Promise<void> {
    let rounds = 0;
    while (n.up && n.node.hasReady()) {
      if (++rounds > 1000) throw new Error(`node ${n.id} produced Ready forever`);
      const rd = n.node.ready();
      this.checkReady(n, rd);
      await this.persist(n, rd);
      for (const m of rd.messages) this.send(m);
      if (rd.snapshot) {
        restoreMachine(n.machine, rd.snapshot);
        this.log(`${n.id} installed snapshot @${rd.snapshot.meta.index}`);
      }
      for (const e of rd.committedEntries) this.apply(n, e);
      for (const rs of rd.readStates) {
        const r = n.readCtx.get(ctxKey(rs.context));
        if (!r) continue;
        n.readCtx.delete(ctxKey(rs.context));
        n.readsToServe.push({ index: rs.index, opId: r.opId });
      }
      this.serveReads(n);
      n.node.advance(rd);
      await this.afterAdvance(n);
    }
  }

  private async persist(n: SimNode, rd: Ready): Promise<void> {
    if (rd.entries.length > 0) this.checkLogMatchingOnAppend(n, rd.entries);
    if (n.disk) {
      if (rd.snapshot) await n.disk.applySnapshot(rd.snapshot);
      if (rd.entries.length > 0 || rd.hardState) await n.disk.save({ hardState: rd.hardState, entries: rd.entries, mustSync: rd.mustSync });
      // The leader's snapshot bytes stay on disk; attach them to outgoing snapshot messages.
      for (const m of rd.messages) {
        if (m.type === MessageType.Snap && m.snapshot && m.snapshot.data.length === 0) {
          m.snapshot = { meta: m.snapshot.meta, data: await n.disk.readSnapshotData(m.snapshot.meta.index) };
        }
      }
      return;
    }
    const s = n.storage;
    if (rd.snapshot) {
      s.applySnapshot(rd.snapshot);
      n.durable.snapshot = rd.snapshot;
      n.durable.entries = [];
    }
    if (rd.entries.length > 0) s.append(rd.entries);
    if (rd.hardState) s.setHardState(rd.hardState);
    // fsync: what is durable is what survives a crash. A Ready that need not be synced (only
    // the commit index moved) stays volatile until a later sync.
    if (rd.mustSync) this.sync(n);
  }

  private sync(n: SimNode): void {
    const s = n.storage;
    const hs = { ...s.hardState };
    if (this.opts.fault === "ack-unpersisted") {
      // BUG on purpose: hard state reaches disk, entries do not.
      n.durable.hardState = { ...hs, commit: Math.min(hs.commit, lastDurableIndex(n.durable)) };
      return;
    }
    n.durable.hardState = hs;
    n.durable.snapshot = s.snapshot().meta.index > 0 ? s.snapshot() : n.durable.snapshot;
    n.durable.entries = s.lastIndex() >= s.firstIndex() ? s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity) : [];
  }

  private apply(n: SimNode, e: Entry): void {
    const w = decodeWrite(e.data);
    const fingerprint = `${e.term}|${dec.decode(e.data)}`;
    // State machine safety: every node applies the same entry at each index.
    const prev = this.appliedAt.get(e.index);
    if (prev === undefined) this.appliedAt.set(e.index, fingerprint);
    else if (prev !== fingerprint) {
      throw new InvariantViolation("state machine safety", `${n.id} applied ${fingerprint} at ${e.index}, another node applied ${prev}`);
    }
    if (e.index !== n.machine.applied + 1) {
      throw new InvariantViolation("apply order", `${n.id} applied ${e.index} after ${n.machine.applied}`);
    }
    n.machine.applied = e.index;
    n.sinceSnapshot++;
    if (!w) return;
    if (!n.machine.seen.has(w.opId)) {
      // Exactly-once: a duplicated proposal (e.g. a retransmitted forward) is applied once.
      n.machine.seen.add(w.opId);
      n.machine.kv.set(w.key, w.value);
      if (!this.opIndex.has(w.opId)) {
        this.opIndex.set(w.opId, e.index);
        this.firstApplied.set(w.opId, this.clock++);
      }
    }
    if (n.writesPending.delete(w.opId)) {
      const op = this.ops[w.opId - 1];
      op.output = {};
      op.ret = this.clock++;
      this.stats.writesAcked++;
      this.ackedWrites.set(w.opId, { key: w.key, value: w.value, index: this.opIndex.get(w.opId)! });
      this.log(`${n.id} acked write #${w.opId} ${w.key}=${w.value} @${this.opIndex.get(w.opId)}`);
    }
  }

  private serveReads(n: SimNode): void {
    if (n.readsToServe.length === 0) return;
    const still: typeof n.readsToServe = [];
    for (const r of n.readsToServe) {
      if (n.machine.applied < r.index) {
        still.push(r);
        continue;
      }
      const op = this.ops[r.opId - 1];
      const key = (op.input as { key: string }).key;
      op.output = { value: n.machine.kv.get(key) };
      op.ret = this.clock++;
      this.stats.readsServed++;
      this.log(`${n.id} read #${r.opId} ${key} -> ${op.output.value ?? "(none)"} (read index ${r.index}, applied ${n.machine.applied})`);
    }
    n.readsToServe = still;
  }

  private async afterAdvance(n: SimNode): Promise<void> {
    this.checkCommitted(n);
    // Snapshot and compact now and then, so slow followers need InstallSnapshot.
    if (n.sinceSnapshot >= this.opts.snapshotEvery && n.machine.applied > (n.disk ?? n.storage).snapshot().meta.index) {
      const idx = n.machine.applied;
      if (n.disk) {
        // Written to a temp file, fsynced, renamed; then the WAL before it is released.
        await n.disk.createSnapshot(idx, cloneConf(n.node.raft.confState()), encodeMachine(n.machine));
        n.sinceSnapshot = 0;
        return;
      }
      const snap = n.storage.createSnapshot(idx, cloneConf(n.node.raft.confState()), encodeMachine(n.machine));
      // The snapshot file is written and fsynced before the log is compacted.
      n.durable.snapshot = snap;
      const keep = 5;
      if (idx - keep > n.storage.firstIndex()) {
        n.storage.compact(idx - keep);
        n.durable.entries = n.durable.entries.filter((e) => e.index > idx - keep);
      }
      n.sinceSnapshot = 0;
    }
  }

  // ---- the network ----------------------------------------------------------------------

  private send(m: Message): void {
    this.stats.messages++;
    if (m.type === MessageType.Snap) {
      // Snapshots travel on their own stream whose outcome the transport reports back.
      this.stats.snapshotsSent++;
      this.net.push(m);
      return;
    }
    if (this.rng.chance(this.opts.dropRate)) return;
    this.net.push(m);
    if (this.rng.chance(this.opts.dupRate)) this.net.push(m);
  }

  private async deliverOne(): Promise<void> {
    if (this.net.length === 0) return;
    // Pick any in-flight message: reordering and delay for free.
    const i = this.rng.int(Math.min(this.net.length, 8));
    const m = this.net[i];
    this.net.splice(i, 1);
    const to = this.nodes.get(m.to);
    const ok = !!to && to.up && !this.blocked.has(`${m.from}>${m.to}`) && !(m.type === MessageType.Snap && this.rng.chance(this.opts.dropRate));
    if (ok) {
      to.node.step(m);
      await this.handleReady(to);
    } else if (m.type === MessageType.App && this.rng.chance(0.5)) {
      // The transport notices a broken stream some of the time and says so.
      const from = this.nodes.get(m.from);
      if (from?.up) {
        from.node.reportUnreachable(m.to);
        await this.handleReady(from);
      }
    }
    if (m.type === MessageType.Snap) {
      const from = this.nodes.get(m.from);
      if (from?.up && from.node.raft.term === m.term) {
        from.node.reportSnapshot(m.to, ok);
        await this.handleReady(from);
      }
    }
  }

  // ---- faults ---------------------------------------------------------------------------

  private async crash(n: SimNode): Promise<void> {
    n.up = false;
    this.stats.crashes++;
    // Clients of this node lose their answers: outcome unknown for writes, no effect for reads.
    for (const opId of n.writesPending.keys()) this.log(`write #${opId} outcome unknown (${n.id} crashed)`);
    n.writesPending.clear();
    n.readCtx.clear();
    n.readsToServe = [];
    if (n.disk) {
      // Like SIGKILL: whatever was not made durable is gone.
      await n.disk.close({ discardUnsynced: true });
      this.log(`CRASH ${n.id}`);
      return;
    }
    this.log(`CRASH ${n.id} (durable term ${n.durable.hardState.term}, vote ${n.durable.hardState.vote || "-"}, last ${lastDurableIndex(n.durable)})`);
  }

  private async restart(n: SimNode): Promise<void> {
    const durable = n.durable;
    if (this.opts.fault === "forget-vote") durable.hardState = { ...durable.hardState, vote: NONE };
    const fresh = await this.boot(n.id, { hardState: { ...durable.hardState }, snapshot: durable.snapshot, entries: durable.entries.slice() });
    this.nodes.set(n.id, fresh);
    const hs = fresh.node.raft.hardState();
    this.log(`RESTART ${n.id} term ${hs.term} commit ${hs.commit}`);
    await this.handleReady(fresh);
  }

  private async faultEvent(): Promise<void> {
    const up = [...this.nodes.values()].filter((n) => n.up);
    const down = [...this.nodes.values()].filter((n) => !n.up);
    const r = this.rng.next();
    if (r < 0.15 && up.length > 0) {
      // A process bounce: crash and come straight back (what a supervisor does).
      const n = this.rng.pick(up);
      await this.crash(n);
      await this.restart(n);
    } else if (r < 0.3) {
      // Crash a node, but keep a quorum of processes most of the time so progress is possible.
      if (up.length > Math.floor(this.ids.length / 2) + (this.rng.chance(0.2) ? 0 : 1)) await this.crash(this.rng.pick(up));
      else if (down.length) await this.restart(this.rng.pick(down));
    } else if (r < 0.55) {
      if (down.length) await this.restart(this.rng.pick(down));
    } else if (r < 0.7) {
      // Symmetric partition: split the nodes in two groups.
      this.blocked.clear();
      const side = new Set(this.ids.filter(() => this.rng.chance(0.5)));
      for (const a of this.ids) for (const b of this.ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`);
      this.log(`PARTITION {${[...side]}} | {${this.ids.filter((x) => !side.has(x))}}`);
    } else if (r < 0.8) {
      // One-way partition: a cannot reach b but b reaches a.
      const a = this.rng.pick(this.ids);
      const b = this.rng.pick(this.ids.filter((x) => x !== a));
      this.blocked.add(`${a}>${b}`);
      this.log(`ONE-WAY ${a} -x-> ${b}`);
    } else {
      this.blocked.clear();
      this.log("HEAL network");
    }
  }

  // ---- clients --------------------------------------------------------------------------

  private outstanding(): number {
    let k = 0;
    for (const n of this.nodes.values()) if (n.up) k += n.writesPending.size + n.readCtx.size + n.readsToServe.length;
    return k;
  }

  /** A client retries a write it has had no answer for, with the same op id (exactly-once). */
  private async retryStale(n: SimNode): Promise<boolean> {
    for (const [opId, at] of n.writesPending) {
      if (this.step - at < this.opts.retryAfter) continue;
      const input = this.ops[opId - 1].input as { key: string; value: string };
      n.writesPending.set(opId, this.step);
      try {
        n.node.propose(encodeWrite(opId, input.key, input.value));
        this.log(`${n.id} retry write #${opId}`);
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
      }
      await this.handleReady(n);
      return true;
    }
    return false;
  }

  private async clientWrite(n: SimNode): Promise<void> {
    if ((await this.retryStale(n)) || this.outstanding() >= this.opts.clients) return await this.deliverOne();
    const key = `k${this.rng.int(3)}`;
    const id = this.nextOpId++;
    const value = `v${id}`;
    const op: Op = { id, input: { op: "put", key, value }, call: this.clock++ };
    this.ops.push(op);
    try {
      n.node.propose(encodeWrite(id, key, value));
      n.writesPending.set(id, this.step);
      this.log(`${n.id} propose write #${id} ${key}=${value}`);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      op.failed = true;
    }
    await this.handleReady(n);
  }

  private async clientRead(n: SimNode): Promise<void> {
    if (this.outstanding() >= this.opts.clients) return await this.deliverOne();
    const key = `k${this.rng.int(3)}`;
    const id = this.nextOpId++;
    const op: Op = { id, input: { op: "get", key }, call: this.clock++ };
    this.ops.push(op);
    const ctx = enc.encode(`${n.id}/${this.nextCtx++}`);
    try {
      n.node.readIndex(ctx);
      n.readCtx.set(ctxKey(ctx), { opId: id, key });
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      op.failed = true;
    }
    await this.handleReady(n);
  }

  // ---- invariants -----------------------------------------------------------------------

  private checkReady(n: SimNode, rd: Ready): void {
    const r = n.node.raft;
    if (r.role !== Role.Leader) return;
    if (n.leaderTerm !== r.term) {
      // Election safety: at most one leader can be elected in a given term (§5.2).
      const other = this.leaderOfTerm.get(r.term);
      if (other !== undefined && other !== n.id) {
        throw new InvariantViolation("election safety", `${n.id} and ${other} are both leaders of term ${r.term}`);
      }
      this.leaderOfTerm.set(r.term, n.id);
      this.stats.leadersSeen++;
      this.log(`${n.id} became LEADER of term ${r.term} (last index ${r.log.lastIndex()})`);
      this.checkLeaderCompleteness(n);
      n.leaderTerm = r.term;
      n.leaderLastIndex = rd.entries.length > 0 ? rd.entries[0].index - 1 : r.log.lastIndex();
    }
    // Leader append-only: a leader never overwrites or deletes entries in its log (§5.3).
    if (rd.entries.length > 0 && rd.entries[0].index !== n.leaderLastIndex + 1) {
      throw new InvariantViolation(
        "leader append-only",
        `leader ${n.id} of term ${r.term} writes from index ${rd.entries[0].index} but its log ended at ${n.leaderLastIndex}`,
      );
    }
    n.leaderLastIndex = r.log.lastIndex();
  }

  /** Leader completeness: a leader's log holds every entry committed in earlier terms (§5.4). */
  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.node.raft.log;
    const first = log.firstIndex();
    for (const [index, c] of this.committed) {
      if (index < first - 1) continue; // inside the leader's snapshot, which only holds committed state
      let t: number;
      try {
        t = log.term(index);
      } catch {
        throw new InvariantViolation("leader completeness", `leader ${n.id} (term ${n.node.raft.term}) lacks committed index ${index}`);
      }
      if (t !== c.term) {
        throw new InvariantViolation(
          "leader completeness",
          `leader ${n.id} (term ${n.node.raft.term}) has term ${t} at committed index ${index}, committed term ${c.term}`,
        );
      }
    }
  }

  /** Log Matching (§5.3): same index and term => same entry and same preceding entry, by induction. */
  private checkLogMatchingOnAppend(n: SimNode, ents: Entry[]): void {
    for (let k = 0; k < ents.length; k++) {
      const e = ents[k];
      // The term of the entry before (-1: compacted here, that link was checked when appended).
      const prevTerm = k > 0 ? ents[k - 1].term : e.index === 1 ? 0 : n.node.raft.log.termOrZero(e.index - 1) || -1;
      const id = `${e.index}@${e.term}`;
      const data = dec.decode(e.data);
      const have = this.entryIdentity.get(id);
      if (have === undefined) {
        this.entryIdentity.set(id, { data, prevTerm });
        continue;
      }
      if (have.data !== data || (have.prevTerm !== -1 && prevTerm !== -1 && have.prevTerm !== prevTerm)) {
        throw new InvariantViolation(
          "log matching",
          `${n.id} holds ${id} as "${data}" after term ${prevTerm}, another log holds "${have.data}" after term ${have.prevTerm}`,
        );
      }
      if (have.prevTerm === -1) have.prevTerm = prevTerm;
    }
  }

  /** Committed entries never change, on any node (state machine safety, §5.4.3). */
  private checkCommitted(n: SimNode): void {
    const log = n.node.raft.log;
    const c = log.committed;
    for (let i = Math.max(n.checkedCommit + 1, log.firstIndex()); i <= c; i++) {
      const t = log.term(i);
      const rec = this.committed.get(i);
      if (rec === undefined) this.committed.set(i, { term: t });
      else if (rec.term !== t) {
        throw new InvariantViolation("state machine safety", `${n.id} committed term ${t} at index ${i}, another node committed term ${rec.term}`);
      }
    }
    n.checkedCommit = Math.max(n.checkedCommit, c);
  }

  // ---- the run --------------------------------------------------------------------------

  private randomUp(): SimNode | undefined {
    const up = [...this.nodes.values()].filter((n) => n.up);
    return up.length ? this.rng.pick(up) : undefined;
  }

  private async tickOne(n: SimNode): Promise<void> {
    const role = n.node.raft.role;
    n.node.tick();
    if (n.node.raft.role !== role && n.node.raft.role === Role.Candidate) this.stats.elections++;
    await this.handleReady(n);
  }

  async run(): Promise<SimResult> {
    try {
      await this.init();
      for (this.step = 0; this.step < this.opts.steps; this.step++) {
        const r = this.rng.next();
        if (r < 0.5) await this.deliverOne();
        else if (r < 0.75) {
          const n = this.randomUp();
          if (n) await this.tickOne(n);
        } else if (r < 0.85) {
          const n = this.randomUp();
          if (n) await this.clientWrite(n);
        } else if (r < 0.93) {
          const n = this.randomUp();
          if (n) await this.clientRead(n);
        } else if (r < 0.93 + this.opts.faultRate) await this.faultEvent();
        else await this.deliverOne();
      }
      await this.checkLiveness();
      this.checkHistory();
      return { ok: true, seed: this.opts.seed, steps: this.opts.steps, nodes: this.opts.nodes, stats: this.stats };
    } catch (e) {
      if (e instanceof InvariantViolation) {
        return {
          ok: false,
          seed: this.opts.seed,
          steps: this.opts.steps,
          nodes: this.opts.nodes,
          violation: e.invariant,
          detail: e.message,
          trace: this.trace.slice(),
          stats: this.stats,
        };
      }
      const err = e as Error;
      return {
        ok: false,
        seed: this.opts.seed,
        steps: this.opts.steps,
        nodes: this.opts.nodes,
        violation: "crash of the core",
        detail: err.stack ?? String(err),
        trace: this.trace.slice(),
        stats: this.stats,
      };
    } finally {
      await this.cleanup();
    }
  }

  /**
   * Once faults heal (all nodes up, network whole, no drops), a leader is elected within a
   * bounded number of ticks; every write still pending is retried by its client (same op id,
   * so exactly-once) and commits; a new write commits on every node; and every acknowledged
   * write is in every node's state.
   */
  private async checkLiveness(): Promise<void> {
    this.log("HEAL all: restart every node, reconnect, stop drops");
    this.blocked.clear();
    this.opts.dropRate = 0;
    this.opts.dupRate = 0;
    for (const n of [...this.nodes.values()]) if (!n.up) await this.restart(n);
    const all = () => [...this.nodes.values()];
    const deadline = this.opts.livenessTicks;
    let probe: number | undefined;
    for (let t = 0; t < deadline; t++) {
      for (const n of all()) await this.tickOne(n);
      while (this.net.length > 0) await this.deliverOne();
      const leaders = all().filter((n) => n.node.raft.role === Role.Leader);
      if (leaders.length !== 1) continue;
      if (probe === undefined) {
        const id = this.nextOpId++;
        this.ops.push({ id, input: { op: "put", key: "k0", value: `v${id}` }, call: this.clock++ });
        leaders[0].writesPending.set(id, this.step);
        probe = id;
      }
      // Clients retry what is still pending every couple of election timeouts.
      if (t % (2 * ELECTION_TICK) === 0) {
        for (const n of all()) {
          for (const opId of n.writesPending.keys()) {
            const input = this.ops[opId - 1].input as { key: string; value: string };
            try {
              n.node.propose(encodeWrite(opId, input.key, input.value));
            } catch (e) {
              if (!(e instanceof ProposalDroppedError)) throw e;
            }
          }
          await this.handleReady(n);
        }
      }
      const pending = all().reduce((k, n) => k + n.writesPending.size, 0);
      if (pending > 0) continue;
      let target = this.opIndex.get(probe)!;
      for (const w of this.ackedWrites.values()) target = Math.max(target, w.index);
      if (!all().every((n) => n.machine.applied >= target)) continue;
      for (const [opId, w] of this.ackedWrites) {
        for (const n of all()) {
          if (!n.machine.seen.has(opId)) {
            throw new InvariantViolation("no lost acknowledged write", `${n.id} never applied acknowledged write #${opId} (${w.key}=${w.value} @${w.index})`);
          }
        }
      }
      return;
    }
    const roles = all().map((n) => {
      const st = n.node.status();
      const prs = st.progress.map((p) => `${p.id}:${p.state} m${p.match} n${p.next}${p.recentActive ? "" : " inactive"}`).join(" ");
      return `${n.id}:${st.role}@${st.term} first ${st.firstIndex} last ${st.lastIndex} commit ${st.commit} applied ${n.machine.applied} pending ${n.writesPending.size}${prs ? ` [${prs}]` : ""}`;
    });
    throw new InvariantViolation(
      "liveness",
      `${probe === undefined ? "no leader elected" : "pending writes did not all commit on every node"} within ${deadline} ticks after healing (${roles.join(", ")})`,
    );
  }

  /**
   * Checks the client history for linearizability. The simulator is omniscient about writes
   * whose client never heard back: one never applied anywhere (after healing, every committed
   * entry is applied everywhere) did not take effect and is left out; one that was applied took
   * effect no later than its first application, which bounds its interval. Both are exact for
   * a correct implementation and keep the search from exploring "maybe" branches.
   */
  private checkHistory(): void {
    const history: Operation<KvInput, KvOutput>[] = [];
    for (const op of this.ops) {
      if (op.failed) continue;
      let ret = op.ret;
      let output = op.output;
      if (ret === undefined) {
        if (op.input.op === "get") continue; // an unanswered read has no effect
        const applied = this.firstApplied.get(op.id);
        if (applied === undefined) continue;
        ret = applied;
        output = {};
      }
      history.push({ clientId: op.id, input: op.input, call: op.call, output, return: ret });
    }
    const res = checkLinearizable(kvModel, history, { timeoutMs: 20_000 });
    if (res.result === "illegal") {
      throw new InvariantViolation("linearizability", `${res.partitionKey ?? ""}: ${res.explanation}`);
    }
    if (res.result === "unknown") {
      throw new InvariantViolation("linearizability", `the checker timed out on ${history.length} operations`);
    }
  }
}

function lastDurableIndex(d: Durable): number {
  if (d.entries.length) return d.entries[d.entries.length - 1].index;
  return d.snapshot?.meta.index ?? 0;
}

function encodeMachine(m: Machine): Uint8Array {
  return enc.encode(JSON.stringify({ kv: [...m.kv], seen: [...m.seen], applied: m.applied }));
}

function restoreMachine(m: Machine, s: Snapshot): void {
  const v = JSON.parse(dec.decode(s.data)) as { kv: Array<[string, string]>; seen: number[]; applied: number };
  m.kv = new Map(v.kv);
  m.seen = new Set(v.seen);
  m.applied = s.meta.index;
}

export function runSeed(opts: SimOptions): Promise<SimResult> {
  return new Simulator(opts).run();
}

export function replayCommand(r: Pick<SimResult, "seed" | "steps" | "nodes">, fault: StorageFault = "none"): string {
  return `npm run sim -- --seed ${r.seed} --steps ${r.steps} --nodes ${r.nodes}${fault !== "none" ? ` --fault ${fault}` : ""}`;
}

export function formatFailure(r: SimResult, fault: StorageFault = "none"): string {
  return [
    `seed ${r.seed} (${r.nodes} nodes, ${r.steps} steps): ${r.violation} violated`,
    `  ${r.detail}`,
    "  recent trace:",
    ...(r.trace ?? []).map((l) => `    ${l}`),
    `  replay: ${replayCommand(r, fault)}`,
  ].join("\n");
}
