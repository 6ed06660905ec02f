// The Raft consensus algorithm as a pure, deterministic state machine (after etcd-io/raft).
// No I/O, no clock, no timers, no randomness of its own: time is tick(), randomness is the
// seeded `rand` in the config, and all output is collected for the driver (see rawnode.ts).
// Section numbers refer to the Raft paper (Ongaro & Ousterhout 2014) and, where marked
// "thesis", to Ongaro's dissertation (2014).

import { RaftLog } from "./log.js";
import { Progress, ProgressState } from "./progress.js";
import { MajorityConfig, VoteResult } from "./quorum.js";
import { ReadOnly } from "./readonly.js";
import { CompactedError, UnavailableError, cloneConf, type LogStorage } from "./storage.js";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type ReadState,
  Role,
  type Snapshot,
  emptyMessage,
  entrySize,
} from "./types.js";

export interface RaftConfig {
  id: NodeId;
  /** Ticks without hearing from a leader before a follower campaigns (randomized in [T, 2T), §5.2). */
  electionTick: number;
  /** Ticks between leader heartbeats. Must be < electionTick. */
  heartbeatTick: number;
  storage: LogStorage;
  /** A seeded PRNG returning floats in [0, 1): the core's only source of randomness. */
  rand: () => number;
  /** Last applied index on restart (the state machine's snapshot index). Default: storage's snapshot. */
  applied?: number;
  /** Max bytes of entries per append message (at least one entry is always sent). */
  maxSizePerMsg?: number;
  /** Max append messages in flight per follower in Replicate state (the pipeline window). */
  maxInflightMsgs?: number;
  /** Max bytes in flight per follower (0: unlimited). */
  maxInflightBytes?: number;
  /** Max bytes of committed entries handed out in one Ready. */
  maxCommittedSizePerReady?: number;
  /** Bound on the leader's uncommitted log tail (bytes): proposals beyond it are dropped (0: no bound). */
  maxUncommittedEntriesSize?: number;
  /** Thesis §9.6: a leader that has not heard from a quorum for an election timeout steps down. */
  checkQuorum?: boolean;
  /** Thesis §9.6: a node first asks whether it could win before it increments its term. */
  preVote?: boolean;
  logger?: RaftLogger;
}

export interface RaftLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A proposal the core could not accept: no leader known, a transfer in progress, or too much uncommitted. */
export class ProposalDroppedError extends Error {
  constructor(reason: string) {
    super(`proposal dropped: ${reason}`);
    this.name = "ProposalDroppedError";
  }
}

const CAMPAIGN_TRANSFER = new TextEncoder().encode("CampaignTransfer");

enum CampaignType {
  PreElection,
  Election,
  Transfer,
}

function isCampaignTransfer(ctx: Uint8Array): boolean {
  if (ctx.length !== CAMPAIGN_TRANSFER.length) return false;
  for (let i = 0; i < ctx.length; i++) if (ctx[i] !== CAMPAIGN_TRANSFER[i]) return false;
  return true;
}

function voteRespType(t: MessageType): MessageType {
  return t === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
}

const NOOP_LOGGER: RaftLogger = { info() {}, warn() {} };

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  readonly log: RaftLog;
  role: Role = Role.Follower;
  lead: NodeId = NONE;
  /** Voters and learners, and the leader's progress for each (including itself). */
  config: MajorityConfig = new MajorityConfig([]);
  learners = new Set<NodeId>();
  progress = new Map<NodeId, Progress>();
  votes = new Map<NodeId, boolean>();
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** Leadership transfer target (§3.10 of the thesis), NONE when no transfer is in progress. */
  leadTransferee: NodeId = NONE;
  /** Index of the latest conf change entry; only one may be uncommitted at a time. */
  pendingConfIndex = 0;
  uncommittedSize = 0;
  readOnly = new ReadOnly();
  /** ReadIndex requests that arrived before the leader committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;

  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly maxMsgSize: number;
  readonly maxInflight: number;
  readonly maxInflightBytes: number;
  readonly maxUncommittedSize: number;
  readonly maxCommittedSizePerReady: number;
  private readonly rand: () => number;
  private readonly logger: RaftLogger;

  /** Counters for /status. */
  stats = { elections: 0, leaderChanges: 0, readIndexRequests: 0, proposalsDropped: 0 };

  constructor(c: RaftConfig) {
    if (!c.id) throw new Error("raft: id must not be empty");
    if (c.heartbeatTick <= 0) throw new Error("raft: heartbeatTick must be > 0");
    if (c.electionTick <= c.heartbeatTick) throw new Error("raft: electionTick must be > heartbeatTick");
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.checkQuorum = c.checkQuorum ?? true;
    this.preVote = c.preVote ?? true;
    this.maxMsgSize = c.maxSizePerMsg ?? 1024 * 1024;
    this.maxInflight = c.maxInflightMsgs ?? 256;
    this.maxInflightBytes = c.maxInflightBytes ?? 0;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize ?? 0;
    this.maxCommittedSizePerReady = c.maxCommittedSizePerReady ?? 64 * 1024 * 1024;
    this.rand = c.rand;
    this.logger = c.logger ?? NOOP_LOGGER;
    this.log = new RaftLog(c.storage);

    const { hardState, confState } = c.storage.initialState();
    this.applyConfState(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  // ---- state ----------------------------------------------------------------------------

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private loadState(hs: HardState): void {
    if (hs.commit > this.log.lastIndex()) {
      throw new Error(`hard state commit ${hs.commit} is beyond the last log index ${this.log.lastIndex()}`);
    }
    // A snapshot newer than the last synced commit index implies its index is committed.
    this.log.committed = Math.max(hs.commit, this.log.committed);
    this.term = hs.term;
    this.vote = hs.vote;
  }

  confState(): ConfState {
    return { voters: [...this.config.voters].sort(), learners: [...this.learners].sort() };
  }

  /** Installs a configuration (from storage, a snapshot, or an applied conf change entry). */
  applyConfState(cs: ConfState): void {
    this.config = new MajorityConfig(cs.voters);
    this.learners = new Set(cs.learners);
    const next = this.log.lastIndex() + 1;
    const keep = new Set([...cs.voters, ...cs.learners]);
    for (const id of [...this.progress.keys()]) if (!keep.has(id)) this.progress.delete(id);
    for (const id of keep) {
      let pr = this.progress.get(id);
      if (!pr) {
        pr = new Progress(next, this.maxInflight, this.maxInflightBytes, this.learners.has(id));
        // A new member is presumed active so CheckQuorum does not depose the leader at once.
        pr.recentActive = true;
        this.progress.set(id, pr);
      }
      pr.isLearner = this.learners.has(id);
    }
    if (this.role === Role.Leader && this.leadTransferee !== NONE && !this.config.voters.has(this.leadTransferee)) {
      this.abortLeaderTransfer();
    }
  }

  /** Whether this node may become leader: a voter with no snapshot waiting to be applied. */
  promotable(): boolean {
    return this.config.voters.has(this.id) && !this.log.hasPendingSnapshot();
  }

  private send(m: Message): void {
    if (m.from === NONE) m.from = this.id;
    if (
      m.type === MessageType.Vote ||
      m.type === MessageType.VoteResp ||
      m.type === MessageType.PreVote ||
      m.type === MessageType.PreVoteResp
    ) {
      // Vote messages carry the term of the election (for pre-votes, the future term).
      if (m.term === 0) throw new Error(`term should be set when sending ${MessageType[m.type]}`);
    } else {
      if (m.term !== 0) throw new Error(`term should not be set when sending ${MessageType[m.type]} (was ${m.term})`);
      // Proposals and read index requests forwarded to the leader are local: no term.
      if (m.type !== MessageType.Prop && m.type !== MessageType.ReadIndex) m.term = this.term;
    }
    this.msgs.push(m);
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.rand() * this.electionTimeout);
  }

  private pastElectionTimeout(): boolean {
    return this.electionElapsed >= this.randomizedElectionTimeout;
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.votes = new Map();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.progress) {
      const fresh = new Progress(last + 1, this.maxInflight, this.maxInflightBytes, pr.isLearner);
      if (id === this.id) fresh.match = last;
      this.progress.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
  }

  private setLead(lead: NodeId): void {
    if (lead !== NONE && lead !== this.lead) this.stats.leaderChanges++;
    this.lead = lead;
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.setLead(lead);
    this.role = Role.Follower;
  }

  becomeCandidate(): void {
    if (this.role === Role.Leader) throw new Error("invalid transition [leader -> candidate]");
    // §5.2: "To begin an election, a follower increments its current term ... votes for itself".
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.stats.elections++;
  }

  becomePreCandidate(): void {
    if (this.role === Role.Leader) throw new Error("invalid transition [leader -> pre-candidate]");
    // Thesis §9.6: a pre-candidate changes neither its term nor its vote.
    this.votes = new Map();
    this.lead = NONE;
    this.role = Role.PreCandidate;
  }

  becomeLeader(): void {
    if (this.role === Role.Follower) throw new Error("invalid transition [follower -> leader]");
    this.reset(this.term);
    this.setLead(this.id);
    this.role = Role.Leader;
    const self = this.progress.get(this.id)!;
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively assume an uncommitted conf change may be in the log.
    this.pendingConfIndex = this.log.lastIndex();
    // §8 / thesis §6.4: a new leader commits a no-op entry of its own term, which also commits
    // every earlier entry (§5.4.2) and lets it learn the commit index for ReadIndex.
    if (!this.appendEntries([{ term: 0, index: 0, type: EntryType.Normal, data: new Uint8Array(0) }])) {
      throw new Error("empty entry was dropped");
    }
    this.logger.info({ term: this.term }, `became LEADER at term ${this.term}`);
  }

  // ---- ticks ----------------------------------------------------------------------------

  tick(): void {
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.pastElectionTimeout()) {
      this.electionElapsed = 0;
      this.step(emptyMessage(MessageType.Hup, this.id, this.id));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(emptyMessage(MessageType.CheckQuorum, this.id, this.id));
      // Thesis §3.10: a transfer that has not completed within an election timeout is aborted,
      // so the leader resumes accepting proposals.
      if (this.role === Role.Leader && this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.role !== Role.Leader) return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(emptyMessage(MessageType.Beat, this.id, this.id));
    }
  }

  // ---- elections ------------------------------------------------------------------------

  private hup(t: CampaignType): void {
    if (this.role === Role.Leader) return;
    if (!this.promotable()) {
      this.logger.warn({}, "not promotable: cannot campaign");
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn({}, "cannot campaign: unapplied configuration change");
      return;
    }
    this.campaign(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const ents = this.log.slice(Math.max(this.log.applied + 1, this.log.firstIndex()), this.log.committed + 1);
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  private campaign(t: CampaignType): void {
    let voteMsg: MessageType;
    let term: number;
    if (t === CampaignType.PreElection) {
      this.becomePreCandidate();
      voteMsg = MessageType.PreVote;
      // Pre-votes are requested for the term we would campaign in, without adopting it.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // A single-voter cluster wins at once.
      if (t === CampaignType.PreElection) this.campaign(CampaignType.Election);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of [...this.config.voters].sort()) {
      if (id === this.id) continue;
      const m = emptyMessage(voteMsg, this.id, id, term);
      m.index = lastIndex;
      m.logTerm = lastTerm;
      if (t === CampaignType.Transfer) m.context = CAMPAIGN_TRANSFER;
      this.send(m);
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return this.config.voteResult(this.votes);
  }

  // ---- the message loop -------------------------------------------------------------------

  step(m: Message): void {
    // Figure 2, "Rules for all servers": if RPC request or response contains term T >
    // currentTerm: set currentTerm = T, convert to follower.
    if (m.term === 0) {
      // local message
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const force = isCampaignTransfer(m.context);
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // Thesis §4.2.3 / §9.6: a node that heard from a leader within the minimum election
          // timeout ignores vote requests, so a partitioned node rejoining cannot disrupt it.
          return;
        }
      }
      if (m.type === MessageType.PreVote) {
        // Never change our term in response to a PreVote.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // A granted pre-vote carries our future term; we adopt it only once we win the quorum.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A stale leader (e.g. partitioned, rejoining): answer so it learns the newer term and
        // steps down. With CheckQuorum/PreVote, our term would otherwise never reach it.
        this.send(emptyMessage(MessageType.AppResp, this.id, m.from));
      } else if (m.type === MessageType.PreVote) {
        // Reject with our term so the pre-candidate can catch up.
        const r = emptyMessage(MessageType.PreVoteResp, this.id, m.from, this.term);
        r.reject = true;
        this.send(r);
      }
      // Figure 2: otherwise a message with a stale term is ignored.
      return;
    }

    switch (m.type) {
      case MessageType.Hup:
        this.hup(this.preVote ? CampaignType.PreElection : CampaignType.Election);
        return;
      case MessageType.Vote:
      case MessageType.PreVote: {
        // §5.2: one vote per term, first come first served; we can vote again for whom we voted
        // (a retransmission), or grant any pre-vote for a future term.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === MessageType.PreVote && m.term > this.term);
        // §5.4.1: grant only to a candidate whose log is at least as up-to-date as ours.
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          this.send(emptyMessage(voteRespType(m.type), this.id, m.from, m.term));
          if (m.type === MessageType.Vote) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          const r = emptyMessage(voteRespType(m.type), this.id, m.from, this.term);
          r.reject = true;
          this.send(r);
        }
        return;
      }
    }
    switch (this.role) {
      case Role.Leader:
        this.stepLeader(m);
        return;
      case Role.Candidate:
      case Role.PreCandidate:
        this.stepCandidate(m);
        return;
      case Role.Follower:
        this.stepFollower(m);
        return;
    }
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case MessageType.Beat:
        this.bcastHeartbeat();
        return;
      case MessageType.CheckQuorum: {
        // Thesis §9.6: step down if a quorum has not been heard from in an election timeout.
        const active = this.config.isActive((id) => id === this.id || this.progress.get(id)?.recentActive === true);
        if (!active) {
          this.logger.warn({ term: this.term }, "stepped down: no quorum active (lost LEADER role)");
          this.becomeFollower(this.term, NONE);
        }
        for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false;
        return;
      }
      case MessageType.Prop: {
        if (m.entries.length === 0) throw new Error("stepped empty MsgProp");
        if (!this.progress.has(this.id)) throw new ProposalDroppedError("this node is not a member");
        if (this.leadTransferee !== NONE) {
          throw new ProposalDroppedError(`leadership is being transferred to ${this.leadTransferee}`);
        }
        for (const e of m.entries) {
          if (e.type === EntryType.ConfChange) {
            if (this.pendingConfIndex > this.log.applied) {
              throw new ProposalDroppedError("a configuration change is already in progress");
            }
          }
        }
        if (!this.appendEntries(m.entries)) throw new ProposalDroppedError("too many uncommitted entries");
        for (const e of m.entries) if (e.type === EntryType.ConfChange) this.pendingConfIndex = e.index;
        if (m.from !== this.id && m.from !== NONE) {
          const from = this.progress.get(m.from);
          if (from) from.commitWanted = this.log.lastIndex();
        }
        this.bcastAppend();
        return;
      }
      case MessageType.ReadIndex: {
        this.stats.readIndexRequests++;
        if (this.config.size <= 1 && this.config.voters.has(this.id)) {
          this.respondToReadIndex(m, this.log.committed);
          return;
        }
        // Thesis §6.4: the leader's commit index is current only once it has committed an
        // entry of its own term (the no-op); postpone reads until then.
        if (!this.committedEntryInCurrentTerm()) {
          this.pendingReadIndexMessages.push(m);
          return;
        }
        this.startReadIndex(m);
        return;
      }
      case MessageType.TransferLeader:
        this.handleTransferLeader(m);
        return;
    }

    const pr = this.progress.get(m.from);
    if (!pr) return;
    switch (m.type) {
      case MessageType.AppResp: {
        pr.recentActive = true;
        if (m.reject) {
          // §5.3: "After a rejection, the leader decrements nextIndex and retries". With the
          // follower's conflict hint we skip a whole term per round trip.
          let nextProbe = m.rejectHint;
          if (m.logTerm > 0) [nextProbe] = this.log.findConflictByTerm(m.rejectHint, m.logTerm);
          if (pr.maybeDecrTo(m.index, nextProbe)) {
            if (pr.state === ProgressState.Replicate) pr.becomeProbe();
            this.sendAppend(m.from);
          }
        } else {
          const oldPaused = pr.isPaused();
          if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === ProgressState.Probe)) {
            if (pr.state === ProgressState.Probe) {
              pr.becomeReplicate();
            } else if (pr.state === ProgressState.Snapshot && pr.match + 1 >= this.log.firstIndex()) {
              // The follower caught up past the snapshot (or no longer needs it).
              pr.becomeProbe();
              pr.becomeReplicate();
            } else if (pr.state === ProgressState.Replicate) {
              pr.inflights.freeLE(m.index);
            }
            if (this.maybeCommit()) {
              this.releasePendingReadIndexMessages();
              this.bcastCommit();
            } else if (oldPaused) {
              this.sendAppend(m.from);
            }
            // The window may have opened for several messages at once.
            while (this.maybeSendAppend(m.from, false)) {
              /* keep filling the pipeline */
            }
            // Thesis §3.10: once the transferee's log is current, tell it to campaign now.
            if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
              this.sendTimeoutNow(m.from);
            }
          }
        }
        return;
      }
      case MessageType.HeartbeatResp: {
        pr.recentActive = true;
        pr.msgAppFlowPaused = false;
        // A full window toward a follower that answers heartbeats means appends were lost:
        // free one slot so an append goes out, whose rejection resets the pipeline.
        if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne();
        if (pr.match < this.log.lastIndex() || pr.state === ProgressState.Probe) this.sendAppend(m.from);
        if (m.context.length === 0) return;
        // Thesis §6.4 step 3: a heartbeat round acknowledged by a majority confirms leadership
        // for every read registered before it.
        if (this.config.voteResult(this.readOnly.recvAck(m.from, m.context)) !== VoteResult.Won) return;
        for (const rs of this.readOnly.advance(m.context)) this.respondToReadIndex(rs.req, rs.index);
        return;
      }
      case MessageType.SnapStatus:
        if (pr.state !== ProgressState.Snapshot) return;
        if (m.reject) pr.pendingSnapshot = 0;
        pr.becomeProbe();
        // Wait for the follower's answer (or the next heartbeat) before probing again.
        pr.msgAppFlowPaused = true;
        return;
      case MessageType.Unreachable:
        // Optimistic pipelining to an unreachable peer is pointless: fall back to probing.
        if (pr.state === ProgressState.Replicate) pr.becomeProbe();
        return;
    }
  }

  private stepCandidate(m: Message): void {
    const myVoteResp = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
    switch (m.type) {
      case MessageType.Prop:
        throw new ProposalDroppedError("no leader");
      case MessageType.App:
        // §5.2: "If AppendEntries RPC received from new leader: convert to follower".
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.ReadIndex:
        throw new ProposalDroppedError("no leader");
      case MessageType.TimeoutNow:
        return;
    }
    if (m.type === myVoteResp) {
      const res = this.poll(m.from, !m.reject);
      if (res === VoteResult.Won) {
        if (this.role === Role.PreCandidate) {
          this.campaign(CampaignType.Election);
        } else {
          // §5.2: "If votes received from majority of servers: become leader".
          this.becomeLeader();
          this.bcastAppend();
        }
      } else if (res === VoteResult.Lost) {
        // A pre-candidate that lost returns to its term; a candidate stays in its new term.
        this.becomeFollower(this.term, NONE);
      }
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MessageType.Prop:
        if (this.lead === NONE) throw new ProposalDroppedError("no leader");
        // Clients may talk to any node: proposals are forwarded to the leader.
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.App:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleAppendEntries(m);
        return;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleHeartbeat(m);
        return;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.setLead(m.from);
        this.handleSnapshot(m);
        return;
      case MessageType.TransferLeader:
        if (this.lead === NONE) return;
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.TimeoutNow:
        // Thesis §3.10: the transfer target campaigns at once, without pre-vote (we know we are
        // not partitioned: the leader just talked to us).
        this.hup(CampaignType.Transfer);
        return;
      case MessageType.ReadIndex:
        if (this.lead === NONE) throw new ProposalDroppedError("no leader");
        // Thesis §6.4: a follower asks the leader for a read index and serves the read itself.
        m.to = this.lead;
        this.send(m);
        return;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context });
        return;
    }
  }

  // ---- replication ------------------------------------------------------------------------

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      // Already committed here: tell the leader how far we are.
      const r = emptyMessage(MessageType.AppResp, this.id, m.from);
      r.index = this.log.committed;
      this.send(r);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      const r = emptyMessage(MessageType.AppResp, this.id, m.from);
      r.index = lastNew;
      this.send(r);
      return;
    }
    // §5.3 consistency check failed. Hint the leader where our log could match: the last index
    // at or before its probe whose term is <= its prevLogTerm.
    const hintIndex = Math.min(m.index, this.log.lastIndex());
    const [index, term] = this.log.findConflictByTerm(hintIndex, m.logTerm);
    const r = emptyMessage(MessageType.AppResp, this.id, m.from);
    r.index = m.index;
    r.reject = true;
    r.rejectHint = index;
    r.logTerm = term;
    this.send(r);
  }

  private handleHeartbeat(m: Message): void {
    // The leader sends min(matchIndex, commitIndex), so this never passes our log's end.
    this.log.commitTo(m.commit);
    const r = emptyMessage(MessageType.HeartbeatResp, this.id, m.from);
    r.context = m.context;
    this.send(r);
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s) return;
    const r = emptyMessage(MessageType.AppResp, this.id, m.from);
    if (this.restore(s)) {
      this.logger.info({ index: s.meta.index, term: s.meta.term }, "restored snapshot from leader");
      r.index = this.log.lastIndex();
    } else {
      r.index = this.log.committed;
    }
    this.send(r);
  }

  /** Installs a snapshot sent by the leader. Returns false if it is stale or already covered. */
  restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false;
    if (this.role !== Role.Follower) {
      // Defense in depth: only followers install snapshots.
      this.becomeFollower(this.term + 1, NONE);
      return false;
    }
    const cs = s.meta.conf;
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) {
      this.logger.warn({ index: s.meta.index }, "ignoring snapshot that does not include this node");
      return false;
    }
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // Our log already holds the snapshot's last entry: just fast-forward the commit index.
      this.log.commitTo(s.meta.index);
      return false;
    }
    this.log.restore(s);
    this.progress = new Map();
    this.applyConfState(cloneConf(cs));
    const self = this.progress.get(this.id);
    if (self) self.match = s.meta.index;
    return true;
  }

  private appendEntries(es: Entry[]): boolean {
    let li = this.log.lastIndex();
    const ents = es.map((e, i) => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    if (!this.increaseUncommittedSize(ents)) {
      this.stats.proposalsDropped++;
      return false;
    }
    li = this.log.append(ents);
    // The leader's own log counts toward the commit quorum. It persists before sending (the
    // Ready contract), so no follower can hold an entry its leader could still lose.
    this.progress.get(this.id)?.maybeUpdate(li);
    this.maybeCommit();
    return true;
  }

  private increaseUncommittedSize(ents: Entry[]): boolean {
    let s = 0;
    for (const e of ents) s += e.data.length;
    if (this.uncommittedSize > 0 && s > 0 && this.maxUncommittedSize > 0 && this.uncommittedSize + s > this.maxUncommittedSize) {
      return false;
    }
    this.uncommittedSize += s;
    return true;
  }

  /** Committed entries were handed to the state machine: they no longer count as uncommitted. */
  reduceUncommittedSize(ents: Entry[]): void {
    if (this.role !== Role.Leader) return;
    let s = 0;
    for (const e of ents) s += e.data.length;
    this.uncommittedSize = Math.max(0, this.uncommittedSize - s);
  }

  private maybeCommit(): boolean {
    const mci = this.config.committedIndex((id) => this.progress.get(id)?.match);
    // §5.4.2: only entries of the current term are committed by counting replicas.
    return this.log.maybeCommit(mci, this.term);
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  private bcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  /**
   * After the commit index moved: followers learn it with the next append or heartbeat, as
   * the paper has it (§5.3: "it includes that index in future AppendEntries RPCs (including
   * heartbeats)"). Only followers waiting for entries they forwarded get an append now, even
   * an empty one (they answer their clients once they apply). Telling every follower at once,
   * as etcd does, costs each write one more message and answer per follower, on the leader's
   * CPU, while the client waits for the leader's reply.
   */
  private bcastCommit(): void {
    const committed = this.log.committed;
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      const wanted = pr.commitWanted > 0;
      if (wanted && committed >= pr.commitWanted) pr.commitWanted = 0;
      this.maybeSendAppend(id, wanted);
    }
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends an append (or a snapshot when the entries are compacted) to `to` if its flow control
   * allows. With sendIfEmpty false, nothing is sent when there are no new entries.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number | undefined;
    let ents: Entry[] = [];
    let needSnapshot = false;
    try {
      prevTerm = this.log.term(prevIndex);
      if (pr.state !== ProgressState.Replicate || !pr.inflights.full()) {
        ents = this.log.entriesFrom(pr.next, this.maxMsgSize);
      }
    } catch (e) {
      if (!(e instanceof CompactedError || e instanceof UnavailableError)) throw e;
      needSnapshot = true;
    }
    if (!needSnapshot && ents.length === 0 && !sendIfEmpty) return false;
    if (needSnapshot) {
      // The entries this follower needs are compacted: send the snapshot instead.
      if (!pr.recentActive) return false;
      const snap = this.log.snapshot();
      if (snap.meta.index === 0) throw new Error("need non-empty snapshot");
      pr.becomeSnapshot(snap.meta.index);
      const m = emptyMessage(MessageType.Snap, this.id, to);
      m.snapshot = snap;
      this.send(m);
      return true;
    }
    const m = emptyMessage(MessageType.App, this.id, to);
    m.index = prevIndex;
    m.logTerm = prevTerm!;
    m.entries = ents;
    m.commit = this.log.committed;
    this.send(m);
    let bytes = 0;
    for (const e of ents) bytes += entrySize(e);
    pr.sentEntries(ents.length, bytes);
    return true;
  }

  private bcastHeartbeat(): void {
    const ctx = this.readOnly.lastPendingRequestCtx();
    for (const id of this.progress.keys()) if (id !== this.id) this.sendHeartbeat(id, ctx);
  }

  private sendHeartbeat(to: NodeId, ctx: Uint8Array | undefined): void {
    // The follower may not yet have the leader's committed entries: never tell it to commit
    // past what it is known to hold.
    const pr = this.progress.get(to)!;
    const m = emptyMessage(MessageType.Heartbeat, this.id, to);
    m.commit = Math.min(pr.match, this.log.committed);
    if (ctx) m.context = ctx;
    this.send(m);
  }

  // ---- reads ------------------------------------------------------------------------------

  private startReadIndex(m: Message): void {
    this.readOnly.addRequest(this.log.committed, m);
    this.readOnly.recvAck(this.id, m.context);
    for (const id of this.progress.keys()) if (id !== this.id) this.sendHeartbeat(id, m.context);
  }

  private releasePendingReadIndexMessages(): void {
    if (this.pendingReadIndexMessages.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const msgs = this.pendingReadIndexMessages;
    this.pendingReadIndexMessages = [];
    for (const m of msgs) this.startReadIndex(m);
  }

  private respondToReadIndex(req: Message, index: number): void {
    if (req.from === NONE || req.from === this.id) {
      this.readStates.push({ index, context: req.context });
      return;
    }
    const r = emptyMessage(MessageType.ReadIndexResp, this.id, req.from);
    r.index = index;
    r.context = req.context;
    this.send(r);
  }

  // ---- leadership transfer ----------------------------------------------------------------

  private handleTransferLeader(m: Message): void {
    const target = m.from; // by convention the transferee is the message's `from`
    const pr = this.progress.get(target);
    if (!pr || pr.isLearner) return;
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === target) return;
      this.abortLeaderTransfer();
    }
    if (target === this.id) return;
    this.logger.info({ to: target }, `transferring LEADER role to ${target}`);
    // Thesis §3.10: the transfer must finish within an election timeout; meanwhile, stop
    // accepting proposals so the target can catch up.
    this.electionElapsed = 0;
    this.leadTransferee = target;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target);
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send(emptyMessage(MessageType.TimeoutNow, this.id, to));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }
}
