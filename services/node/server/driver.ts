// The driver: the only place where the pure consensus core meets time, disk and network.
// It runs the ready loop of DESIGN.md: take a Ready, persist it with one group commit, send its
// messages, apply its committed entries to the state machine, serve the reads it released, then
// advance. Inputs (ticks, peer messages, proposals, reads) step the core synchronously and kick
// the loop; the loop runs one Ready at a time, so everything that arrived meanwhile is batched
// into the next Ready's single fsync.

import { type Logger } from "pino";
import { Command } from "../../common/gen/raftkv/v1/kv.js";
import { DISK_BUCKETS, Histogram } from "../../common/histogram.js";
import { type ApplyResult } from "../kv/results.js";
import { KvStore, type KvStoreOptions } from "../kv/store.js";
import { Prng } from "../raft/prng.js";
import { ProposalDroppedError } from "../raft/raft.js";
import { RawNode, decodeConfState } from "../raft/rawnode.js";
import { type Entry, EntryType, type Message, MessageType, NONE, type NodeId, type Ready, Role, type SnapshotMeta } from "../raft/types.js";
import { type DiskStorage } from "../storage/disk-storage.js";
import { PeerTransport } from "./transport.js";

export interface DriverOptions {
  id: NodeId;
  clusterId: string;
  peers: Array<{ id: NodeId; address: string }>;
  storage: DiskStorage;
  logger: Logger;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  snapshotInterval: number;
  kvOptions?: KvStoreOptions;
  /** Seed of the core's PRNG (election timeouts). Default: random. */
  seed?: number;
}

/** A client request could not be completed; `code` is the gRPC status to answer with. */
export class RequestError extends Error {
  constructor(
    readonly code: "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "ABORTED",
    message: string,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

interface ReadRequest {
  w: Waiter<number>;
  dropped(reason: string): void;
  /** False once the caller stopped waiting (timed out or retrying). */
  live: boolean;
}

const CTX_BYTES = 12;

/** Proposals queued in one turn above this many are handed to the core in two halves. */
const SPLIT_BURSTS_ABOVE = 32;

export class Driver {
  readonly id: NodeId;
  readonly node: RawNode;
  kv: KvStore;
  readonly storage: DiskStorage;
  readonly transport: PeerTransport;
  private readonly log: Logger;
  private readonly opts: DriverOptions;
  private ticker: NodeJS.Timeout | undefined;
  private running = false;
  private kicked = false;
  private stopped = false;
  private fatal: Error | undefined;
  /** Proposals waiting for their entry to be applied here, by request id. */
  private proposals = new Map<string, Waiter<ApplyResult>>();
  /** The outcome of each proposal in progress, so a client's retry can wait for it too. */
  private proposalResults = new Map<string, Promise<ApplyResult>>();
  /** Proposals not yet handed to the core (flushed as one batch per turn of the loop, a large burst as two). */
  private proposalQueue: Array<{ data: Uint8Array; dropped: (reason: string) => void }> = [];
  /** Reads waiting for the next ReadIndex round; rounds in flight by context; then reads waiting for applied >= index. */
  private readQueue: ReadRequest[] = [];
  private reads = new Map<string, ReadRequest[]>();
  private readsToServe: Array<{ index: number; batch: ReadRequest[] }> = [];
  private applyWaiters: Array<{ index: number; resolve: () => void }> = [];
  private ctxCounter = 0;
  private readonly ctxPrefix: Buffer;
  private snapshotting: Promise<void> | undefined;
  /** The leader's own WAL write of a Ready whose appends are already out (handleReady). */
  private leaderWrite: Promise<void> | undefined;
  private lastSnapshotIndex: number;
  /** Heartbeat send times per peer, for the RTT histogram. */
  private heartbeatSent = new Map<NodeId, number>();
  readonly rtt = new Map<NodeId, Histogram>();
  readonly metrics = {
    walFsync: new Histogram(DISK_BUCKETS),
    apply: new Histogram(),
    /** Entries seen committed / applied here (every member counts them, as etcd's metrics do). */
    proposalsCommitted: 0,
    proposalsApplied: 0,
    proposalsFailed: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
  };
  private lastLeader: NodeId = NONE;
  private lastCommit = 0;
  private lastRole: Role = Role.Follower;
  /** Fired whenever a new leader becomes known: waiting requests retry at once. */
  private readonly leaderChange = new Wakeup();

  private constructor(opts: DriverOptions, kv: KvStore) {
    this.opts = opts;
    this.id = opts.id;
    this.log = opts.logger;
    this.storage = opts.storage;
    this.kv = kv;
    this.ctxPrefix = Buffer.alloc(4);
    this.ctxPrefix.writeUInt32BE((Math.random() * 0xffffffff) >>> 0);
    const snap = opts.storage.snapshot();
    this.lastSnapshotIndex = snap.meta.index;
    this.lastCommit = opts.storage.initialState().hardState.commit;
    const prng = new Prng(opts.seed ?? (Math.random() * 0xffffffff) >>> 0);
    this.node = new RawNode({
      id: opts.id,
      electionTick: opts.electionTicks,
      heartbeatTick: opts.heartbeatTicks,
      storage: opts.storage,
      rand: () => prng.next(),
      applied: kv.appliedIndex,
      checkQuorum: true,
      preVote: true,
      maxSizePerMsg: 1024 * 1024,
      maxInflightMsgs: 256,
      maxUncommittedEntriesSize: 256 * 1024 * 1024,
      logger: { info: (o, m) => this.log.debug(o, m), warn: (o, m) => this.log.warn(o, m) },
    });
    for (const p of opts.peers) if (p.id !== opts.id) this.rtt.set(p.id, new Histogram());
    this.transport = new PeerTransport({
      selfId: opts.id,
      clusterId: opts.clusterId,
      peers: opts.peers,
      logger: opts.logger.child({ component: "transport" }),
      handler: {
        onMessages: (msgs) => this.onPeerMessages(msgs),
        onSnapshot: (msg) => this.onPeerSnapshot(msg),
      },
      snapshotSource: (meta: SnapshotMeta) => this.storage.snapshotChunks(meta.index, 1024 * 1024),
      onUnreachable: (peer) => this.safeStep(() => this.node.reportUnreachable(peer)),
      onSnapshotStatus: (peer, ok) => this.safeStep(() => this.node.reportSnapshot(peer, ok)),
    });
  }

  /** Restores the state machine from the newest snapshot and builds the node around storage. */
  static async create(opts: DriverOptions): Promise<Driver> {
    const snap = opts.storage.snapshot();
    let kv: KvStore;
    if (snap.meta.index > 0) {
      kv = KvStore.restore(await opts.storage.readSnapshotData(snap.meta.index), opts.kvOptions);
      opts.logger.info({ index: snap.meta.index, keys: kv.size }, "restored state machine from snapshot");
    } else {
      kv = new KvStore(opts.kvOptions);
    }
    return new Driver(opts, kv);
  }

  start(): void {
    this.ticker = setInterval(() => {
      this.safeStep(() => this.node.tick());
    }, this.opts.tickMs);
    this.kick();
  }

  // ---- inputs ---------------------------------------------------------------------------

  private safeStep(f: () => void): void {
    if (this.stopped) return;
    try {
      f();
    } catch (e) {
      if (e instanceof ProposalDroppedError) return;
      this.die(e as Error);
      return;
    }
    this.kick();
  }

  private onPeerMessages(msgs: Message[]): void {
    if (this.stopped) return;
    const now = performance.now();
    for (const m of msgs) {
      if (m.type === MessageType.HeartbeatResp) {
        const sent = this.heartbeatSent.get(m.from);
        if (sent !== undefined) {
          this.rtt.get(m.from)?.observe((now - sent) / 1000);
          this.heartbeatSent.delete(m.from);
        }
      }
      try {
        this.node.step(m);
      } catch (e) {
        if (e instanceof ProposalDroppedError) continue;
        this.die(e as Error);
        return;
      }
    }
    if (this.leaderWrite) this.applyCommittedWithoutOwnWrite();
    this.kick();
  }

  private async onPeerSnapshot(msg: Message): Promise<void> {
    if (this.stopped) throw new Error("node is stopping");
    this.node.step(msg);
    this.kick();
  }

  /**
   * Proposes a command and resolves with its result once this node has applied it. While no
   * answer comes (a forwarded proposal can be lost with a leader change) it is proposed again
   * with the same request id: the session table makes that exactly-once. Proposals that arrive
   * in the same turn of the event loop go to the core as one batch (one append message per
   * follower for all of them).
   */
  async propose(cmd: Command, deadline: number): Promise<ApplyResult> {
    if (!cmd.requestId || !cmd.requestId.clientId) throw new Error("propose: a request id is required");
    const key = `${cmd.requestId.clientId}/${cmd.requestId.seq}`;
    const data = Command.encode(cmd).finish();
    const inProgress = this.proposalResults.get(key);
    if (inProgress) {
      // A client's retry of a request still in progress here: wait for the same outcome.
      const r = await raceTimeout(inProgress, Math.max(0, deadline - Date.now()));
      if (r !== TIMEOUT) return r;
      throw this.unavailable("the write was not committed in time");
    }
    const done = new Promise<ApplyResult>((resolve, reject) => this.proposals.set(key, { resolve, reject }));
    this.proposalResults.set(key, done);
    let lastErr = "";
    try {
      const retryEvery = Math.max(2 * this.opts.electionTicks * this.opts.tickMs, 200);
      while (true) {
        this.checkRunning();
        const dropped = new DropNotice();
        this.proposalQueue.push({ data, dropped: dropped.drop });
        this.kick();
        const left = deadline - Date.now();
        if (left <= 0) break;
        const r = await raceTimeout(done, Math.min(left, retryEvery), [this.leaderChange, dropped]);
        if (r !== TIMEOUT) return r;
        if (dropped.reason) {
          // No leader right now (or a transfer in progress): try again shortly.
          lastErr = dropped.reason;
          await raceTimeout(done, Math.max(0, Math.min(deadline - Date.now(), 50)), [this.leaderChange]);
        }
      }
    } finally {
      this.proposals.delete(key);
      this.proposalResults.delete(key);
    }
    this.metrics.proposalsFailed++;
    throw this.unavailable(lastErr || "the write was not committed in time");
  }

  /**
   * Resolves with a read index once this node's state machine has applied up to it (thesis
   * §6.4). Reads that arrive in the same turn share one ReadIndex round (one heartbeat round),
   * issued after all of them arrived, as linearizability requires.
   */
  async readIndex(deadline: number): Promise<number> {
    let lastErr = "";
    const retryEvery = Math.max(2 * this.opts.electionTicks * this.opts.tickMs, 200);
    while (true) {
      this.checkRunning();
      const left = deadline - Date.now();
      if (left <= 0) break;
      let settle!: Waiter<number>;
      const done = new Promise<number>((resolve, reject) => (settle = { resolve, reject }));
      const dropped = new DropNotice();
      const req: ReadRequest = { w: settle, dropped: dropped.drop, live: true };
      this.readQueue.push(req);
      this.kick();
      const r = await raceTimeout(done, Math.min(left, retryEvery), [this.leaderChange, dropped]);
      req.live = false;
      if (r !== TIMEOUT) return r;
      if (dropped.reason) {
        lastErr = dropped.reason;
        await sleep(Math.max(0, Math.min(deadline - Date.now(), 50)));
      } else {
        lastErr = "";
      }
    }
    throw this.unavailable(lastErr || "could not confirm leadership with a quorum in time");
  }

  /** Hands queued proposals to the core: one batch, or the first half of a large burst. */
  private flushProposals(): void {
    const n = this.proposalQueue.length;
    if (n === 0) return;
    // A large burst goes out in two pipelined halves: the first half commits (and is answered)
    // while the second is written and replicated, so the clients' next requests overlap with
    // this node's work instead of everyone waiting on one batch in lockstep.
    const take = n <= SPLIT_BURSTS_ABOVE ? n : Math.ceil(n / 2);
    const batch = take === n ? this.proposalQueue : this.proposalQueue.slice(0, take);
    this.proposalQueue = take === n ? [] : this.proposalQueue.slice(take);
    try {
      this.node.proposeBatch(batch.map((p) => p.data));
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      for (const p of batch) p.dropped(e.message);
    }
  }

  /** Starts one ReadIndex round for every read queued since the last one. */
  private flushReads(): void {
    const batch = this.readQueue.filter((r) => r.live);
    this.readQueue = [];
    if (batch.length === 0) return;
    // Rounds whose answer was lost (e.g. with a leader change) have no live reader left.
    for (const [k, b] of this.reads) if (!b.some((r) => r.live)) this.reads.delete(k);
    const ctx = this.nextCtx();
    try {
      this.node.readIndex(ctx);
      this.reads.set(ctx.toString("latin1"), batch);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      for (const r of batch) r.dropped(e.message);
    }
  }

  private unavailable(reason: string): RequestError {
    const st = this.node.raft;
    const leader = st.lead !== NONE ? `leader is ${st.lead}` : "no leader known";
    return new RequestError("UNAVAILABLE", `${reason} (${leader}, term ${st.term})`);
  }

  private checkRunning(): void {
    if (this.fatal) throw new RequestError("UNAVAILABLE", `node stopped: ${this.fatal.message}`);
    if (this.stopped) throw new RequestError("UNAVAILABLE", "node is shutting down");
  }

  private nextCtx(): Buffer {
    const b = Buffer.alloc(CTX_BYTES);
    this.ctxPrefix.copy(b, 0);
    b.writeUIntBE(++this.ctxCounter, 4, 6);
    return b;
  }

  /** Waits until the state machine has applied index (or the deadline passes). */
  waitApplied(index: number, deadline: number): Promise<boolean> {
    if (this.kv.appliedIndex >= index) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
      this.applyWaiters.push({
        index,
        resolve: () => {
          clearTimeout(timer);
          resolve(true);
        },
      });
    });
  }

  /**
   * Hands leadership to `target` (default: the most caught-up follower) and waits until some
   * other node leads or the deadline passes. Returns the leader afterwards. Gives up as soon as
   * the transferee is unreachable (e.g. it is shutting down too, as every node of a local
   * cluster does on Ctrl-C): it will not take over.
   */
  async transferLeadership(target: NodeId | undefined, deadline: number): Promise<NodeId> {
    const r = this.node.raft;
    let transferee: NodeId | undefined;
    if (r.role !== Role.Leader) {
      if (target && r.lead !== NONE) {
        // Ask the leader (the core forwards it).
        this.safeStep(() => this.node.transferLeadership(target));
      } else if (r.lead === NONE) {
        throw this.unavailable("no leader to transfer from");
      } else {
        return r.lead;
      }
    } else {
      const to = target ?? this.mostCaughtUpFollower();
      if (!to) throw new RequestError("FAILED_PRECONDITION", "no reachable follower to transfer leadership to");
      if (to === this.id) return this.id;
      if (!r.config.voters.has(to)) throw new RequestError("INVALID_ARGUMENT", `${to} is not a voter`);
      this.log.info({ to }, `handing LEADER role to ${to}`);
      transferee = to;
      this.safeStep(() => this.node.transferLeadership(to));
    }
    while (Date.now() < deadline) {
      const lead = this.node.raft.lead;
      if (lead !== NONE && lead !== this.id && (target === undefined || lead === target)) return lead;
      if (transferee !== undefined && this.transport.isUnreachable(transferee)) {
        throw new RequestError("FAILED_PRECONDITION", `${transferee} is unreachable; leadership did not move`);
      }
      await sleep(this.opts.tickMs / 2);
    }
    throw new RequestError("DEADLINE_EXCEEDED", `leadership did not move${target ? ` to ${target}` : ""} in time`);
  }

  /** The reachable voter with the longest log: the one that can take over soonest. */
  mostCaughtUpFollower(): NodeId | undefined {
    let best: NodeId | undefined;
    let bestMatch = -1;
    for (const [id, pr] of this.node.raft.progress) {
      if (id === this.id || pr.isLearner || this.transport.isUnreachable(id)) continue;
      if (pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    return best;
  }

  /** Takes a snapshot now (the Cluster API's Snapshot) and resolves with its metadata. */
  async snapshotNow(): Promise<SnapshotMeta> {
    if (this.snapshotting) await this.snapshotting;
    // Entries applied during the leader's own write are not in its log yet; a snapshot at
    // that index waits for the write (a few at most: a new write starts only on new input).
    for (let i = 0; i < 100 && this.leaderWrite && this.kv.appliedIndex > this.storage.lastIndex(); i++) {
      await this.leaderWrite.catch(() => undefined);
    }
    if (this.kv.appliedIndex <= this.storage.snapshot().meta.index) return this.storage.snapshot().meta;
    await this.takeSnapshot();
    return this.storage.snapshot().meta;
  }

  // ---- the ready loop -------------------------------------------------------------------

  private kick(): void {
    if (this.running) {
      this.kicked = true;
      return;
    }
    if (this.stopped || this.fatal) return;
    this.running = true;
    // Let the current burst of input (e.g. a batch of peer messages, many client calls) land
    // first: one Ready for all of it.
    setImmediate(() => {
      this.loop().catch((e: Error) => this.die(e));
    });
  }

  private flushInputs(): void {
    this.flushProposals();
    this.flushReads();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.kicked = false;
        this.flushInputs();
        while (!this.stopped && this.node.hasReady()) {
          const rd = this.node.ready();
          await this.handleReady(rd);
          this.node.advance(rd);
          this.afterAdvance();
          // Everything that arrived during the fsync goes into the next Ready (group commit).
          this.flushInputs();
        }
      } while (this.kicked && !this.stopped);
    } finally {
      this.running = false;
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState) this.noteRole(rd.softState.role, rd.softState.leader);
    // Like etcd's proposals_committed_total: entries this node has seen committed.
    if (rd.hardState && rd.hardState.commit > this.lastCommit) {
      this.metrics.proposalsCommitted += rd.hardState.commit - this.lastCommit;
      this.lastCommit = rd.hardState.commit;
    }
    const leader = this.node.raft.role === Role.Leader;
    // Thesis §10.2.1: the leader may write its log in parallel with sending it; its own
    // acknowledgement only counts toward commits published in a later Ready, after this write.
    // Entries a quorum holds without it are applied during the write (applyCommittedWithoutOwnWrite).
    // Everyone else persists first (votes and acknowledgements must be durable when sent).
    if (leader) this.send(rd.messages);
    if (rd.snapshot) {
      await this.storage.applySnapshot(rd.snapshot);
      this.kv = KvStore.restore(rd.snapshot.data, this.opts.kvOptions);
      this.lastSnapshotIndex = rd.snapshot.meta.index;
      this.metrics.snapshotsInstalled++;
      this.log.info({ index: rd.snapshot.meta.index, keys: this.kv.size }, "installed snapshot from the leader");
    }
    // Committed entries that are already in this node's durable log are applied while this
    // Ready's new entries are written: they are on a majority of disks including ours, so the
    // answer need not wait for an unrelated fsync. (Not the ones this very write makes durable:
    // with a single voter, that write is what commits them.)
    let committed = rd.committedEntries;
    if (committed.length > 0 && rd.entries.length > 0) {
      const durable = this.storage.lastIndex();
      let n = 0;
      while (n < committed.length && committed[n].index <= durable && committed[n].index < rd.entries[0].index) n++;
      if (n > 0) {
        this.applyEntries(committed.slice(0, n));
        committed = committed.slice(n);
      }
    }
    if (rd.entries.length > 0 || rd.hardState) {
      const t0 = performance.now();
      // A leader's appends are still on their way out (http2 flushes them from a later turn of
      // the loop) and its followers' answers must be read meanwhile: it writes on the thread
      // pool. Everyone else writes inline (DiskStorageOptions.writes), with nothing to do
      // before its write is durable.
      const offLoop = leader && rd.messages.length > 0;
      const write = this.storage.save({ hardState: rd.hardState, entries: rd.entries, mustSync: rd.mustSync, offLoop });
      if (offLoop) this.leaderWrite = write;
      try {
        await write;
      } finally {
        this.leaderWrite = undefined;
      }
      if (rd.mustSync) this.metrics.walFsync.observe((performance.now() - t0) / 1000);
    }
    if (!leader) this.send(rd.messages);
    if (committed.length > 0) this.applyEntries(committed);
    for (const rs of rd.readStates) {
      const key = Buffer.from(rs.context).toString("latin1");
      const batch = this.reads.get(key);
      if (!batch) continue;
      this.reads.delete(key);
      this.readsToServe.push({ index: rs.index, batch });
    }
    this.serveReads();
  }

  private send(msgs: Message[]): void {
    if (msgs.length === 0) return;
    const now = performance.now();
    for (const m of msgs) {
      if (m.type === MessageType.Heartbeat && !this.heartbeatSent.has(m.to)) this.heartbeatSent.set(m.to, now);
    }
    this.transport.send(msgs);
  }

  /**
   * Thesis §10.2.1: while the leader writes its own log, its followers' acknowledgements arrive.
   * Entries that a quorum holds durably without counting the leader's write in flight are
   * committed; they are applied (and their clients answered) now, not after that write. With
   * three voters that takes both followers; with one follower down, the leader's write counts.
   * Configuration changes wait for the regular path (the core applies those with the Ready).
   */
  private applyCommittedWithoutOwnWrite(): void {
    const r = this.node.raft;
    if (r.role !== Role.Leader) return;
    const durable = this.storage.lastIndex();
    const q = Math.min(r.log.committed, r.config.committedIndex((id) => (id === this.id ? durable : r.progress.get(id)?.match)));
    const from = this.kv.appliedIndex + 1;
    // §5.4.2: only an entry of the leader's term is committed by counting replicas.
    if (q < from || r.log.termOrZero(q) !== r.term) return;
    const ents = r.log.slice(from, q + 1);
    let n = 0;
    while (n < ents.length && ents[n].type === EntryType.Normal) n++;
    if (n === 0) return;
    this.applyEntries(n === ents.length ? ents : ents.slice(0, n));
    this.serveReads();
  }

  private applyEntries(entries: Entry[]): void {
    for (const e of entries) {
      // Already applied while the leader's own write was in flight.
      if (e.index <= this.kv.appliedIndex) continue;
      const t0 = performance.now();
      let res: ApplyResult;
      if (e.type === EntryType.ConfChange) {
        const cs = decodeConfState(e.data);
        this.storage.setConfState(this.node.applyConfChange(cs));
        res = this.kv.applyNoop(e.index);
      } else {
        res = this.kv.apply(e.index, e.data);
      }
      this.metrics.proposalsApplied++;
      this.metrics.apply.observe((performance.now() - t0) / 1000);
      if (res.type !== "noop" && res.type !== "skipped" && res.requestId) {
        const w = this.proposals.get(`${res.requestId.clientId}/${res.requestId.seq}`);
        if (w) w.resolve(res);
      }
    }
    if (this.applyWaiters.length > 0) {
      const applied = this.kv.appliedIndex;
      const still = [];
      for (const w of this.applyWaiters) {
        if (w.index <= applied) w.resolve();
        else still.push(w);
      }
      this.applyWaiters = still;
    }
  }

  private serveReads(): void {
    if (this.readsToServe.length === 0) return;
    const applied = this.kv.appliedIndex;
    const still = [];
    for (const r of this.readsToServe) {
      if (r.index > applied) still.push(r);
      else for (const req of r.batch) req.w.resolve(r.index);
    }
    this.readsToServe = still;
  }

  private afterAdvance(): void {
    if (
      !this.snapshotting &&
      this.kv.appliedIndex - this.lastSnapshotIndex >= this.opts.snapshotInterval &&
      this.kv.appliedIndex <= this.node.raft.log.committed
    ) {
      void this.takeSnapshot();
    }
  }

  private takeSnapshot(): Promise<void> {
    const { index, chunks } = this.kv.snapshot();
    const conf = this.node.raft.confState();
    this.lastSnapshotIndex = index;
    const t0 = performance.now();
    this.snapshotting = this.storage
      .createSnapshot(index, conf, chunks, this.node.raft.log.committed)
      .then(() => {
        this.metrics.snapshotsTaken++;
        this.log.info({ index, keys: this.kv.size, ms: Math.round(performance.now() - t0) }, "snapshot taken; log compacted");
      })
      .catch((e: Error) => {
        this.log.warn({ err: e.message, index }, "snapshot failed");
      })
      .finally(() => {
        this.snapshotting = undefined;
      });
    return this.snapshotting;
  }

  private noteRole(role: Role, leader: NodeId): void {
    const term = this.node.raft.term;
    if (leader !== this.lastLeader && leader !== NONE) {
      // A forwarded proposal or read may have been lost with the old leader: retry now.
      this.leaderChange.fire();
    }
    if (role !== this.lastRole || leader !== this.lastLeader) {
      if (role === Role.Leader) this.log.info({ term, role }, `${this.id} became LEADER at term ${term}`);
      else if (this.lastRole === Role.Leader) this.log.info({ term, role, leader }, `${this.id} lost LEADER role at term ${term}; now ${role}${leader ? `, LEADER is ${leader}` : ""}`);
      else if (leader !== NONE && leader !== this.lastLeader) this.log.info({ term, role, leader }, `${this.id} follows LEADER ${leader} at term ${term}`);
      else if (leader === NONE && this.lastLeader !== NONE) this.log.info({ term, role }, `${this.id} lost its LEADER ${this.lastLeader} at term ${term}; now ${role}`);
    }
    this.lastRole = role;
    this.lastLeader = leader;
  }

  get pendingProposals(): number {
    return this.proposals.size;
  }

  // ---- shutdown -------------------------------------------------------------------------

  private die(e: Error): void {
    if (this.fatal) return;
    this.fatal = e;
    this.log.fatal({ err: e.message, stack: e.stack }, "consensus core stopped on an internal error; the node must restart");
    this.stopTicking();
    for (const w of this.proposals.values()) w.reject(new RequestError("UNAVAILABLE", `node stopped: ${e.message}`));
    this.rejectReads(new RequestError("UNAVAILABLE", `node stopped: ${e.message}`));
    process.exitCode = 1;
  }

  private rejectReads(e: Error): void {
    for (const r of this.readQueue) r.w.reject(e);
    for (const batch of this.reads.values()) for (const r of batch) r.w.reject(e);
    for (const { batch } of this.readsToServe) for (const r of batch) r.w.reject(e);
    this.readQueue = [];
    this.reads.clear();
    this.readsToServe = [];
  }

  get failed(): Error | undefined {
    return this.fatal;
  }

  private stopTicking(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** Stops the loop and the transport and flushes storage. Pending requests fail UNAVAILABLE. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopTicking();
    while (this.running) await sleep(5);
    for (const w of this.proposals.values()) w.reject(new RequestError("UNAVAILABLE", "node is shutting down"));
    this.rejectReads(new RequestError("UNAVAILABLE", "node is shutting down"));
    await this.transport.close();
    if (this.snapshotting) await this.snapshotting;
    await this.storage.close();
  }
}

const TIMEOUT = Symbol("timeout");

/** A set of one-shot callbacks fired together; a waiter unsubscribes when it settles (no leak). */
class Wakeup {
  private subs = new Set<() => void>();

  subscribe(f: () => void): () => void {
    this.subs.add(f);
    return () => this.subs.delete(f);
  }

  fire(): void {
    const subs = this.subs;
    this.subs = new Set();
    for (const f of subs) f();
  }
}

/** The core dropped a queued proposal or read: wakes its waiter, with the core's reason. */
class DropNotice extends Wakeup {
  reason = "";
  readonly drop = (reason: string): void => {
    this.reason = reason;
    this.fire();
  };
}

/**
 * Resolves with p's value, or TIMEOUT after ms or as soon as one of `wake` fires. Timer
 * durations are rounded to 10 ms so Node keeps a few timer lists, not one per distinct delay.
 */
function raceTimeout<T>(p: Promise<T>, ms: number, wake: Wakeup[] = []): Promise<T | typeof TIMEOUT> {
  return new Promise((resolve, reject) => {
    const unsubs: Array<() => void> = [];
    const settle = (f: () => void) => {
      clearTimeout(t);
      for (const u of unsubs) u();
      f();
    };
    const t = setTimeout(() => settle(() => resolve(TIMEOUT)), Math.max(1, Math.round(ms / 10) * 10));
    for (const w of wake) unsubs.push(w.subscribe(() => settle(() => resolve(TIMEOUT))));
    p.then(
      (v) => settle(() => resolve(v)),
      (e) => settle(() => reject(e)),
    );
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
