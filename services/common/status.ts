// The JSON document a node serves at GET /status. It is the exporter sidecar's only input,
// so it is a contract: add fields freely, never rename or change the meaning of one.
// Times are seconds (floats) unless the name says otherwise; indexes and terms are integers.

export const STATUS_SCHEMA_VERSION = 1;

/** A histogram as cumulative buckets, exactly as Prometheus wants them (le -> count of samples <= le). */
export interface StatusHistogram {
  /** Upper bounds in seconds, ascending, without +Inf. */
  buckets: number[];
  /** Cumulative counts per bound (same length as buckets). */
  counts: number[];
  /** Total number of samples (the +Inf bucket). */
  count: number;
  /** Sum of all samples, seconds. */
  sum: number;
}

export interface StatusPeer {
  id: string;
  address: string;
  /** Leader's view: highest index known replicated on the peer (0 on followers). */
  matchIndex: number;
  /** Leader's view: next index to send. */
  nextIndex: number;
  /** Leader's view: "probe" | "replicate" | "snapshot" (empty on followers). */
  state: string;
  /** Leader's commit index minus matchIndex (0 on followers). */
  lag: number;
  /** Transport: whether the stream to this peer is up. */
  connected: boolean;
  /** Seconds since the last message received from this peer (null if never). */
  lastContactSeconds: number | null;
  /** Round-trip time of heartbeats to this peer (histogram, seconds). */
  rtt: StatusHistogram;
}

export interface StatusDocument {
  schemaVersion: number;
  /** This node's id (e.g. "raftkv-0"). */
  nodeId: string;
  /** Cluster name (StatefulSet name or "local"). */
  cluster: string;
  /** raftkv version (package.json). */
  version: string;
  /** Seconds since the process started. */
  uptimeSeconds: number;
  /** "leader" | "follower" | "candidate" | "pre-candidate". */
  role: string;
  term: number;
  /** Current leader's id, "" when none is known. */
  leaderId: string;
  /** The vote cast in this term ("" if none). */
  vote: string;
  commitIndex: number;
  appliedIndex: number;
  lastLogIndex: number;
  lastLogTerm: number;
  firstLogIndex: number;
  snapshotIndex: number;
  /** Voter ids of the current configuration. */
  voters: string[];
  /** Ready for clients: a leader is known and applied has caught up with commit (within 1,000 entries: not replaying a backlog). */
  ready: boolean;
  peers: StatusPeer[];
  counters: {
    /** Times this node saw a new leader (etcd: leader_changes_seen_total). */
    leaderChanges: number;
    /** Elections this node started (as candidate, after a successful pre-vote). */
    elections: number;
    proposalsCommitted: number;
    proposalsApplied: number;
    /** Proposals accepted and waiting to be applied (a gauge). */
    proposalsPending: number;
    proposalsFailed: number;
    readIndexRequests: number;
    /** Snapshots this node took of its own state machine. */
    snapshotsTaken: number;
    /** Snapshots received from a leader and installed. */
    snapshotsInstalled: number;
    walFsyncs: number;
    walBytesWritten: number;
  };
  histograms: {
    walFsyncSeconds: StatusHistogram;
    applySeconds: StatusHistogram;
  };
  /**
   * Client requests by gRPC method (Put, Get, ...). A call on a KV.Calls stream counts under
   * its operation's method (a put call as Put), so these are the same however clients send.
   */
  requests: Array<{
    method: string;
    /** Requests finished, by final gRPC status code name ("OK", "UNAVAILABLE", ...). */
    byCode: Record<string, number>;
    latencySeconds: StatusHistogram;
  }>;
  storage: {
    walBytes: number;
    walSegments: number;
    snapshotBytes: number;
    /** Keys in the state machine. */
    keys: number;
  };
  process: {
    residentMemoryBytes: number;
    heapUsedBytes: number;
  };
}
