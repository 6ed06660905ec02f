// The consensus core's vocabulary. Names follow the Raft paper and etcd-io/raft.
// Node ids are strings ("n1", "raftkv-0"): they appear in logs, /status and metric labels.

export type NodeId = string;

/** No node: the vote of a node that has not voted in its term, the leader when none is known. */
export const NONE: NodeId = "";

export enum EntryType {
  /** A state machine command. An empty one is the no-op a new leader appends (§8). */
  Normal = 0,
  /** A change of the voter configuration (data: an encoded ConfState). */
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  data: Uint8Array;
}

/** What must be on stable storage before a node answers any RPC (Figure 2, "Persistent state"). */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** The configuration: who votes. Data, not a constant, so membership can change. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

export interface SnapshotMeta {
  /** Last log index the snapshot covers. */
  index: number;
  /** Term of that entry. */
  term: number;
  /** The configuration as of `index`. */
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  /** The state machine's encoded state as of meta.index (opaque to the core). */
  data: Uint8Array;
}

export enum MessageType {
  Hup = 0,
  Beat = 1,
  Prop = 2,
  App = 3,
  AppResp = 4,
  Vote = 5,
  VoteResp = 6,
  Snap = 7,
  Heartbeat = 8,
  HeartbeatResp = 9,
  Unreachable = 10,
  SnapStatus = 11,
  CheckQuorum = 12,
  TransferLeader = 13,
  TimeoutNow = 14,
  ReadIndex = 15,
  ReadIndexResp = 16,
  PreVote = 17,
  PreVoteResp = 18,
}

export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  /** AppendEntries: prevLogTerm. Vote: lastLogTerm. AppResp reject: the conflict term hint. */
  logTerm: number;
  /** AppendEntries: prevLogIndex. Vote: lastLogIndex. AppResp: the acknowledged/rejected index. */
  index: number;
  entries: Entry[];
  commit: number;
  reject: boolean;
  /** On a rejected AppResp: the follower's hint for the next index to probe (§5.3, fast backtracking). */
  rejectHint: number;
  /** ReadIndex request context, TimeoutNow/Vote campaign reason. */
  context: Uint8Array;
  /** Snap: the snapshot to install (the transport streams `data` in chunks). */
  snapshot?: Snapshot;
}

export enum Role {
  Follower = "follower",
  PreCandidate = "pre-candidate",
  Candidate = "candidate",
  Leader = "leader",
}

/** Volatile state that is interesting to the driver but need not be persisted. */
export interface SoftState {
  leader: NodeId;
  role: Role;
}

/** A linearizable read may be served once the state machine has applied `index` (thesis §6.4). */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

/**
 * One batch of work for the driver. The contract (etcd's):
 *  1. persist `snapshot` (if any), then `entries` and `hardState` (one fdatasync when mustSync),
 *  2. only then send `messages`,
 *  3. apply `committedEntries` in order and serve `readStates` once applied >= their index,
 *  4. call advance().
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  /** True when hard state or entries changed in a way that must reach disk before messages go out. */
  mustSync: boolean;
}

export function emptyMessage(type: MessageType, from: NodeId, to: NodeId, term = 0): Message {
  return {
    type,
    from,
    to,
    term,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: EMPTY_BYTES,
  };
}

export const EMPTY_BYTES = new Uint8Array(0);

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Bytes an entry costs toward message and uncommitted-log size limits. */
export function entrySize(e: Entry): number {
  return e.data.length + 24;
}

/** Answers to a node's own requests (meaningless from a node outside the configuration). */
export function isResponseType(t: MessageType): boolean {
  return (
    t === MessageType.AppResp ||
    t === MessageType.VoteResp ||
    t === MessageType.HeartbeatResp ||
    t === MessageType.PreVoteResp ||
    t === MessageType.ReadIndexResp
  );
}
