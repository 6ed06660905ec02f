// The core's interface to its driver. Inputs: tick, step, propose, readIndex,
// transferLeadership. Output: a Ready batch, then advance(). See types.ts for the contract.

import { ProposalDroppedError, Raft, type RaftConfig } from "./raft.js";
import { ProgressState } from "./progress.js";
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  MessageType,
  NONE,
  type NodeId,
  type Ready,
  Role,
  type SoftState,
  emptyMessage,
  hardStateEqual,
  isResponseType,
} from "./types.js";

export { ProposalDroppedError };

/** Message types that only ever come from the node itself, never from the network. */
const LOCAL_ONLY = new Set([
  MessageType.Hup,
  MessageType.Beat,
  MessageType.Unreachable,
  MessageType.SnapStatus,
  MessageType.CheckQuorum,
]);

export interface PeerProgress {
  id: NodeId;
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  inflight: number;
  isLearner: boolean;
}

export interface CoreStatus {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId;
  lead: NodeId;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  lastTerm: number;
  snapshotIndex: number;
  leadTransferee: NodeId;
  conf: ConfState;
  /** Leader only: per-peer replication progress. */
  progress: PeerProgress[];
  stats: Raft["stats"];
}

export class RawNode {
  readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  /** The Ready handed out and not yet advanced (ready() and advance() alternate strictly). */
  private outstanding: Ready | undefined;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.prevSoft = this.softState();
    this.prevHard = this.raft.hardState();
  }

  get id(): NodeId {
    return this.raft.id;
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (tests and bootstrapping; normally ticks do this). */
  campaign(): void {
    this.raft.step(emptyMessage(MessageType.Hup, this.raft.id, this.raft.id));
  }

  /** Proposes a command. Throws ProposalDroppedError if this node cannot accept it now. */
  propose(data: Uint8Array): void {
    this.proposeEntry({ term: 0, index: 0, type: EntryType.Normal, data });
  }

  /** Proposes several commands at once: one append message per follower carries them all. */
  proposeBatch(datas: Uint8Array[]): void {
    if (datas.length === 0) return;
    const m = emptyMessage(MessageType.Prop, this.raft.id, NONE);
    m.entries = datas.map((data) => ({ term: 0, index: 0, type: EntryType.Normal, data }));
    this.raft.step(m);
  }

  proposeConfChange(conf: ConfState): void {
    this.proposeEntry({ term: 0, index: 0, type: EntryType.ConfChange, data: encodeConfState(conf) });
  }

  private proposeEntry(e: Entry): void {
    const m = emptyMessage(MessageType.Prop, this.raft.id, NONE);
    m.entries = [e];
    this.raft.step(m);
  }

  /**
   * A message from a peer. Messages of a past term or unknown sender are ignored as the
   * protocol says; a forwarded proposal the leader cannot take is dropped (its sender retries).
   */
  step(m: Message): void {
    if (LOCAL_ONLY.has(m.type)) throw new Error(`local message type ${MessageType[m.type]} received from the network`);
    if (m.to !== this.raft.id) throw new Error(`message for ${m.to} delivered to ${this.raft.id}`);
    // Responses from nodes outside the configuration are meaningless (except vote traffic of a
    // node that does not know yet it was removed, which we simply ignore too).
    if (!this.raft.progress.has(m.from) && isResponseType(m.type)) return;
    try {
      this.raft.step(m);
    } catch (e) {
      if (e instanceof ProposalDroppedError) return;
      throw e;
    }
  }

  /**
   * Requests a linearizable read (thesis §6.4). `ctx` must be unique; a ReadState with the same
   * context appears in a later Ready once the read index is confirmed. Throws
   * ProposalDroppedError when there is no leader to ask.
   */
  readIndex(ctx: Uint8Array): void {
    const m = emptyMessage(MessageType.ReadIndex, this.raft.id, NONE);
    m.context = ctx;
    this.raft.step(m);
  }

  /** Asks the leader to hand leadership to `to` (thesis §3.10). */
  transferLeadership(to: NodeId): void {
    const m = emptyMessage(MessageType.TransferLeader, to, this.raft.id);
    this.raft.step(m);
  }

  /** The transport could not deliver to `id`. */
  reportUnreachable(id: NodeId): void {
    this.raft.step(emptyMessage(MessageType.Unreachable, id, this.raft.id));
  }

  /** A snapshot send to `id` finished (ok) or failed. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    const m = emptyMessage(MessageType.SnapStatus, id, this.raft.id);
    m.reject = !ok;
    this.raft.step(m);
  }

  /** Applies a committed configuration change entry's ConfState (the driver calls this when applying it). */
  applyConfChange(conf: ConfState): ConfState {
    this.raft.applyConfState(conf);
    return this.raft.confState();
  }

  private softState(): SoftState {
    return { leader: this.raft.lead, role: this.raft.role };
  }

  hasReady(): boolean {
    const r = this.raft;
    const soft = this.softState();
    if (soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role) return true;
    const hs = r.hardState();
    if (!hardStateEqual(hs, this.prevHard)) return true;
    if (r.log.hasPendingSnapshot()) return true;
    if (r.msgs.length > 0 || r.log.unstableEntries().length > 0 || r.log.hasNextCommittedEntries()) return true;
    return r.readStates.length > 0;
  }

  ready(): Ready {
    if (this.outstanding) throw new Error("ready() called again before advance()");
    const r = this.raft;
    const rd: Ready = {
      entries: r.log.unstableEntries().slice(),
      committedEntries: r.log.nextCommittedEntries(r.maxCommittedSizePerReady),
      messages: r.msgs,
      readStates: r.readStates,
      mustSync: false,
    };
    r.msgs = [];
    r.readStates = [];
    const soft = this.softState();
    if (soft.leader !== this.prevSoft.leader || soft.role !== this.prevSoft.role) rd.softState = soft;
    const hs = r.hardState();
    if (!hardStateEqual(hs, this.prevHard)) rd.hardState = hs;
    if (r.log.unstable.snapshot) rd.snapshot = r.log.unstable.snapshot;
    // Term and vote must be durable before any message is sent (Figure 2: "updated on stable
    // storage before responding to RPCs"); a commit index alone need not be synced.
    rd.mustSync =
      rd.entries.length > 0 ||
      rd.snapshot !== undefined ||
      (rd.hardState !== undefined && (hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote));
    this.outstanding = rd;
    return rd;
  }

  /** The driver has persisted, sent and applied everything in `rd`. */
  advance(rd: Ready): void {
    if (rd !== this.outstanding) throw new Error("advance() with a Ready that is not the outstanding one");
    this.outstanding = undefined;
    const r = this.raft;
    if (rd.softState) this.prevSoft = rd.softState;
    if (rd.hardState) this.prevHard = rd.hardState;
    if (rd.snapshot) {
      r.log.stableSnapTo(rd.snapshot.meta.index);
      if (r.log.applied < rd.snapshot.meta.index) r.log.applied = rd.snapshot.meta.index;
    }
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1];
      r.log.stableTo(last.index, last.term);
    }
    if (rd.committedEntries.length > 0) {
      const last = rd.committedEntries[rd.committedEntries.length - 1];
      r.log.appliedTo(last.index);
      r.reduceUncommittedSize(rd.committedEntries);
    }
  }

  status(): CoreStatus {
    const r = this.raft;
    const progress: PeerProgress[] = [];
    if (r.role === Role.Leader) {
      for (const [id, pr] of r.progress) {
        progress.push({
          id,
          match: pr.match,
          next: pr.next,
          state: pr.state,
          recentActive: pr.recentActive,
          inflight: pr.inflights.count(),
          isLearner: pr.isLearner,
        });
      }
      progress.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    return {
      id: r.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      lead: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      firstIndex: r.log.firstIndex(),
      lastIndex: r.log.lastIndex(),
      lastTerm: r.log.lastTerm(),
      snapshotIndex: r.log.snapshot().meta.index,
      leadTransferee: r.leadTransferee,
      conf: r.confState(),
      progress,
      stats: { ...r.stats },
    };
  }
}

/** ConfState <-> bytes for ConfChange entries (JSON: small, rare, human-inspectable in a WAL dump). */
export function encodeConfState(c: ConfState): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ voters: [...c.voters].sort(), learners: [...c.learners].sort() }));
}

export function decodeConfState(b: Uint8Array): ConfState {
  const v = JSON.parse(new TextDecoder().decode(b)) as ConfState;
  if (!Array.isArray(v.voters) || !Array.isArray(v.learners)) throw new Error("malformed configuration entry");
  return { voters: v.voters.map(String), learners: v.learners.map(String) };
}
