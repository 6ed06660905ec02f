// RaftkvClient: the one client of the raftkv gRPC API, used by the CLI, the cluster tests and the
// benchmark. Any node accepts any request, so the client only has to find a node that answers:
//  - one gRPC channel per endpoint (or a few, `channelsPerEndpoint`), reused by every call, so
//    many requests can be in flight at once; put/get/delete/deleteRange/CAS go as calls on one
//    KV.Calls stream per channel (call-stream.ts), far cheaper than a unary call each;
//  - writes go to the leader once it is known (a follower would forward them there anyway);
//    reads go round-robin over the endpoints (every node serves them: serializable ones from
//    its own state, linearizable ones after a ReadIndex round with the leader), skipping for a
//    second an endpoint whose last attempt failed;
//  - UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED and connection failures are retried against the
//    next endpoint (or the leader the error names) with jittered exponential backoff until the
//    operation's overall deadline; every attempt has its own deadline, so nothing hangs;
//  - a write is retried with the SAME request id, so the server applies it at most once and
//    answers a retry with the first result (Raft thesis §6.3, exactly-once semantics).
//
// The server keeps ONE session per client id and remembers only its latest seq, so two writes of
// one client id must never be in flight together: a late lower seq would be "superseded". The
// client therefore runs writes on session lanes: a lane is a client id whose writes go strictly
// one after another (seq 1, 2, 3, ...); a write takes a free lane or opens a new one. Sequential
// use needs one lane, whose id is exactly `clientId`. A lane whose write ended in an error is
// retired (its last request's fate may be unknown, so the next seq could not be told apart from a
// retry); the next write opens a fresh lane.

import { randomBytes } from "node:crypto";
import {
  credentials,
  Metadata,
  status as GrpcStatus,
  type CallOptions,
  type ChannelOptions,
  type ServiceError,
} from "@grpc/grpc-js";
import { CallStream, type CallOp } from "./call-stream.js";
import { LEADER_TRAILER } from "../common/grpc-error.js";
import {
  KVClient,
  ReadConsistency,
  type CompareAndSwapRequest,
  type CompareAndSwapResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetResponse,
  type KeyValue,
  type PutRequest,
  type PutResponse,
  type RangeResponse,
  type RequestId,
  type ResponseHeader,
} from "../common/gen/raftkv/v1/kv.js";
import {
  ClusterClient,
  type MemberListResponse,
  type SnapshotResponse,
  type StatusResponse,
  type TransferLeadershipResponse,
} from "../common/gen/raftkv/v1/cluster.js";

export type {
  CompareAndSwapResponse,
  DeleteRangeResponse,
  DeleteResponse,
  GetResponse,
  KeyValue,
  MemberListResponse,
  PutResponse,
  RangeResponse,
  ResponseHeader,
  SnapshotResponse,
  StatusResponse,
  TransferLeadershipResponse,
};

/** A key or value: a string (UTF-8 encoded) or raw bytes. */
export type Bytes = string | Uint8Array;

export interface RaftkvClientOptions {
  /** Nodes to talk to, as host:port of their client port. Any node accepts any request. */
  endpoints: string[];
  /** Overall deadline of one operation, retries included (ms). Default 5000. */
  timeoutMs?: number;
  /**
   * Deadline of one attempt (ms), so a node that does not answer is left for another in time.
   * Default max(1000, timeoutMs / 2), at most timeoutMs.
   */
  attemptTimeoutMs?: number;
  /** Identity of this client's exactly-once session (the first lane). Default random. */
  clientId?: string;
  /** gRPC channels (TCP connections) per endpoint, used round-robin. Default 1. */
  channelsPerEndpoint?: number;
  /** First retry backoff bound (ms); doubles per retry up to maxBackoffMs. Default 20. */
  baseBackoffMs?: number;
  /** Largest retry backoff bound (ms). Default 1000. */
  maxBackoffMs?: number;
  /**
   * Send put, get, delete, deleteRange and compareAndSwap as calls on one KV.Calls stream per
   * channel (default true) rather than as unary calls. Same answers and errors; much less work
   * per request on both ends. Range, whose answers can be large, is always unary.
   */
  streamCalls?: boolean;
}

/** Per-call options of every operation. */
export interface CallOpts {
  /** Overrides the client's timeoutMs for this call. */
  timeoutMs?: number;
}

export interface WriteOpts extends CallOpts {
  /** Return the previous key-value pair (put, delete). */
  prevKv?: boolean;
}

export interface ReadOpts extends CallOpts {
  /** Serve from the answering node's local state, possibly stale (no ReadIndex round). */
  serializable?: boolean;
}

export interface RangeOpts extends ReadOpts {
  /** First key (inclusive). Empty/absent: from the start of the key space. */
  start?: Bytes;
  /** Key after the last (exclusive). Empty/absent: to the end of the key space. */
  end?: Bytes;
  /** Every key with this prefix (instead of start/end). */
  prefix?: Bytes;
  /** At most this many pairs (0/absent: no limit; the server still caps a response's size). */
  limit?: number;
  /** Return keys and revisions without values. */
  keysOnly?: boolean;
}

export interface DeleteRangeOpts extends CallOpts {
  start?: Bytes;
  end?: Bytes;
  prefix?: Bytes;
}

/** What a compare-and-swap compares: the current value, or the version (0: must not exist). */
export type CasExpectation = { expectedValue: Bytes; expectedVersion?: undefined } | { expectedVersion: number; expectedValue?: undefined };

/** gRPC status code names, by number. */
export const CODE_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(
    Object.entries(GrpcStatus)
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => [v as number, k]),
  ),
);

/** A failed operation: the gRPC code (number and name) and the server's message. */
export class RaftkvError extends Error {
  override name = "RaftkvError";
  /** The gRPC status code (grpc-js `status` enum). */
  readonly code: number;
  /** Its name: "UNAVAILABLE", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", ... */
  readonly codeName: string;
  /** The server's (or the client's) message, without the code. */
  readonly details: string;
  /** The endpoint of the last attempt ("" if none was made). */
  readonly endpoint: string;
  /** Attempts made (0 when the client refused the call itself). */
  readonly attempts: number;
  /** The leader the last error named, "" if none. */
  readonly leaderId: string;

  constructor(code: number, details: string, extra: { endpoint?: string; attempts?: number; leaderId?: string } = {}) {
    const codeName = CODE_NAMES[code] ?? `CODE_${code}`;
    super(`${codeName}: ${details}`);
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.endpoint = extra.endpoint ?? "";
    this.attempts = extra.attempts ?? 0;
    this.leaderId = extra.leaderId ?? "";
  }
}

/** Codes worth another attempt: the request may succeed on another node or a moment later. */
const RETRYABLE = new Set<number>([GrpcStatus.UNAVAILABLE, GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.ABORTED]);

/** Longest client id the server accepts is 256 bytes; lanes append a suffix. */
const MAX_CLIENT_ID_BYTES = 200;

const CHANNEL_OPTIONS: ChannelOptions = {
  // A node that was down is retried quickly once it is back (grpc's default grows to 120 s).
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000,
  // Range answers are capped by the server at a few MiB; leave headroom over grpc's 4 MiB.
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.max_send_message_length": 64 * 1024 * 1024,
};

interface Endpoint {
  readonly address: string;
  readonly kv: KVClient[];
  readonly cluster: ClusterClient[];
  /** One KV.Calls stream per channel (none when streamCalls is off). */
  readonly streams: CallStream[];
  next: number;
}

/**
 * A call carrying more key and value bytes than this goes unary: one big message would hold up
 * every answer behind it on a shared stream, and one over the node's message limit would end
 * the stream with every call on it.
 */
const MAX_STREAM_CALL_BYTES = 256 * 1024;

interface Lane {
  readonly clientId: string;
  seq: number;
}

type Callback<Res> = (err: ServiceError | null, res: Res) => void;
type Invoke<Res> = (ep: Endpoint, md: Metadata, opts: Partial<CallOptions>, cb: Callback<Res>) => void;

interface RetryPlan {
  /** Operation name for error messages. */
  op: string;
  timeoutMs: number;
  /** Only this endpoint (no failover). */
  pinned?: Endpoint;
  /** Prefer the leader's endpoint once known. */
  preferLeader: boolean;
  /** Take the endpoints in turn (reads), skipping ones that failed in the last second. */
  spread?: boolean;
  /**
   * Find the leader's endpoint first (asking every node's Status) when it is not known: for
   * operations only the leader answers fully (members' progress, leadership transfer).
   */
  leaderOnly?: boolean;
}

export class RaftkvClient {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  readonly attemptTimeoutMs: number;
  readonly clientId: string;
  private readonly channelsPerEndpoint: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly streamCalls: boolean;
  private readonly eps: Endpoint[];
  /** Endpoints outside `endpoints` asked for by status(endpoint) / snapshot(endpoint). */
  private readonly extraEps = new Map<string, Endpoint>();
  /** Where to send next: the last endpoint that answered. */
  private current = 0;
  /** The endpoint the last spread request went to. */
  private spreadAt = 0;
  /** Per endpoint: until when (ms epoch) spread requests avoid it after a failed attempt. */
  private readonly avoidUntil: number[];
  /** member id -> endpoint index, learned from answers. */
  private readonly memberEndpoint = new Map<string, number>();
  private leaderId = "";
  private discovering = false;
  private lastDiscovery = 0;
  private readonly freeLanes: Lane[] = [];
  private lanesOpened = 0;
  private closed = false;

  constructor(opts: RaftkvClientOptions) {
    if (!opts || !Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, "at least one endpoint (host:port) is needed");
    }
    const endpoints = opts.endpoints.map((e) => String(e).trim());
    for (const e of endpoints) {
      const problem = endpointProblem(e);
      if (problem) throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, problem);
    }
    this.endpoints = Object.freeze([...new Set(endpoints)]);
    this.timeoutMs = positiveInt("timeoutMs", opts.timeoutMs ?? 5000);
    this.attemptTimeoutMs = Math.min(this.timeoutMs, positiveInt("attemptTimeoutMs", opts.attemptTimeoutMs ?? Math.max(1000, Math.floor(this.timeoutMs / 2))));
    this.channelsPerEndpoint = positiveInt("channelsPerEndpoint", opts.channelsPerEndpoint ?? 1);
    this.baseBackoffMs = positiveInt("baseBackoffMs", opts.baseBackoffMs ?? 20);
    this.maxBackoffMs = Math.max(this.baseBackoffMs, positiveInt("maxBackoffMs", opts.maxBackoffMs ?? 1000));
    this.streamCalls = opts.streamCalls ?? true;
    const clientId = opts.clientId ?? `c-${randomBytes(8).toString("hex")}`;
    if (clientId.length === 0 || Buffer.byteLength(clientId, "utf8") > MAX_CLIENT_ID_BYTES) {
      throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, `clientId must be 1..${MAX_CLIENT_ID_BYTES} bytes`);
    }
    this.clientId = clientId;
    this.eps = this.endpoints.map((a) => this.openEndpoint(a));
    this.avoidUntil = this.eps.map(() => 0);
    // Start from a random endpoint so many short-lived clients (CLI runs) spread their first call.
    this.current = Math.floor(Math.random() * this.eps.length);
    this.spreadAt = this.current;
  }

  // ---- KV ----

  async put(key: Bytes, value: Bytes, opts: WriteOpts = {}): Promise<PutResponse> {
    const base: Omit<PutRequest, "requestId"> = { key: bytes("key", key), value: bytes("value", value), prevKv: opts.prevKv ?? false };
    return this.write("put", opts, (requestId) => ({ ...base, requestId }), (ep, req: PutRequest, md, o, cb) =>
      this.callOn(ep, { $case: "put", value: req }, o, cb, (c) => c.put(req, md, o, cb)),
    );
  }

  async get(key: Bytes, opts: ReadOpts = {}): Promise<GetResponse> {
    const req = { key: bytes("key", key), consistency: consistency(opts.serializable) };
    return this.retry<GetResponse>({ op: "get", timeoutMs: this.callTimeout(opts), preferLeader: false, spread: true }, (ep, md, o, cb) =>
      this.callOn(ep, { $case: "get", value: req }, o, cb, (c) => c.get(req, md, o, cb)),
    );
  }

  async delete(key: Bytes, opts: WriteOpts = {}): Promise<DeleteResponse> {
    const base: Omit<DeleteRequest, "requestId"> = { key: bytes("key", key), prevKv: opts.prevKv ?? false };
    return this.write("delete", opts, (requestId) => ({ ...base, requestId }), (ep, req: DeleteRequest, md, o, cb) =>
      this.callOn(ep, { $case: "delete", value: req }, o, cb, (c) => c.delete(req, md, o, cb)),
    );
  }

  async deleteRange(opts: DeleteRangeOpts): Promise<DeleteRangeResponse> {
    const r = rangeBounds(opts ?? {});
    return this.write(
      "deleteRange",
      opts ?? {},
      (requestId): DeleteRangeRequest => ({ ...r, requestId }),
      (ep, req: DeleteRangeRequest, md, o, cb) => this.callOn(ep, { $case: "deleteRange", value: req }, o, cb, (c) => c.deleteRange(req, md, o, cb)),
    );
  }

  async range(opts: RangeOpts = {}): Promise<RangeResponse> {
    const limit = opts.limit ?? 0;
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, `limit must be a non-negative integer, got ${String(limit)}`);
    const req = { ...rangeBounds(opts), limit, consistency: consistency(opts.serializable), keysOnly: opts.keysOnly ?? false };
    return this.retry<RangeResponse>({ op: "range", timeoutMs: this.callTimeout(opts), preferLeader: false, spread: true }, (ep, md, o, cb) =>
      this.kv(ep).range(req, md, o, cb),
    );
  }

  /**
   * Sets key to newValue if its current value is expectedValue, or its version is
   * expectedVersion (0: the key must not exist). `succeeded` says which; `kv` is the key's state
   * afterwards. A failed comparison is an answer, not an error.
   */
  async compareAndSwap(key: Bytes, expect: CasExpectation, newValue: Bytes, opts: CallOpts = {}): Promise<CompareAndSwapResponse> {
    const hasValue = expect?.expectedValue !== undefined;
    const hasVersion = expect?.expectedVersion !== undefined;
    if (hasValue === hasVersion) {
      throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, "compare-and-swap needs exactly one of expectedValue and expectedVersion");
    }
    if (hasVersion && (!Number.isSafeInteger(expect.expectedVersion) || expect.expectedVersion! < 0)) {
      throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, `expectedVersion must be a non-negative integer, got ${String(expect.expectedVersion)}`);
    }
    const base: Omit<CompareAndSwapRequest, "requestId"> = {
      key: bytes("key", key),
      newValue: bytes("newValue", newValue),
      ...(hasValue ? { expectedValue: bytes("expectedValue", expect.expectedValue!) } : { expectedVersion: expect.expectedVersion! }),
    };
    return this.write(
      "compareAndSwap",
      opts,
      (requestId): CompareAndSwapRequest => ({ ...base, requestId }),
      (ep, req: CompareAndSwapRequest, md, o, cb) =>
        this.callOn(ep, { $case: "compareAndSwap", value: req }, o, cb, (c) => c.compareAndSwap(req, md, o, cb)),
    );
  }

  // ---- Cluster ----

  /** The status of one node: `endpoint` (no failover), or whichever node answers. */
  async status(endpoint?: string, opts: CallOpts = {}): Promise<StatusResponse> {
    return this.retry<StatusResponse>(
      { op: "status", timeoutMs: this.callTimeout(opts), pinned: endpoint === undefined ? undefined : this.endpointFor(endpoint), preferLeader: false },
      (ep, md, o, cb) => this.cl(ep).status({}, md, o, cb),
    );
  }

  /** The members as the leader (if known, else any node) sees them. */
  async memberList(opts: CallOpts = {}): Promise<MemberListResponse> {
    return this.retry<MemberListResponse>({ op: "memberList", timeoutMs: this.callTimeout(opts), preferLeader: true, leaderOnly: true }, (ep, md, o, cb) =>
      this.cl(ep).memberList({}, md, o, cb),
    );
  }

  /** Moves leadership to targetId (default: the most caught-up follower); answers the new leader. */
  async transferLeadership(targetId?: string, opts: CallOpts = {}): Promise<TransferLeadershipResponse> {
    const req = { targetId: targetId ?? "" };
    return this.retry<TransferLeadershipResponse>(
      { op: "transferLeadership", timeoutMs: this.callTimeout(opts), preferLeader: true, leaderOnly: true },
      (ep, md, o, cb) => this.cl(ep).transferLeadership(req, md, o, cb),
    );
  }

  /** Makes one node (`endpoint`, or whichever answers) snapshot its state machine now. */
  async snapshot(endpoint?: string, opts: CallOpts = {}): Promise<SnapshotResponse> {
    return this.retry<SnapshotResponse>(
      { op: "snapshot", timeoutMs: this.callTimeout(opts), pinned: endpoint === undefined ? undefined : this.endpointFor(endpoint), preferLeader: false },
      (ep, md, o, cb) => this.cl(ep).snapshot({}, md, o, cb),
    );
  }

  /** The leader id last seen in an answer ("" if none yet). */
  get knownLeader(): string {
    return this.leaderId;
  }

  /** Closes every channel. Calls in flight fail with CANCELLED; later calls are refused. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ep of [...this.eps, ...this.extraEps.values()]) {
      for (const s of ep.streams) s.close();
      for (const c of ep.kv) c.close();
      for (const c of ep.cluster) c.close();
    }
  }

  // ---- internals ----

  private openEndpoint(address: string): Endpoint {
    const kv: KVClient[] = [];
    const cluster: ClusterClient[] = [];
    const streams: CallStream[] = [];
    for (let i = 0; i < this.channelsPerEndpoint; i++) {
      // Several channels to one address only get their own connections with a local pool.
      const options: ChannelOptions = this.channelsPerEndpoint > 1 ? { ...CHANNEL_OPTIONS, "grpc.use_local_subchannel_pool": 1 } : CHANNEL_OPTIONS;
      const k = new KVClient(address, credentials.createInsecure(), options);
      kv.push(k);
      // The Cluster service shares the KV client's channel (one connection per channel).
      cluster.push(new ClusterClient(address, credentials.createInsecure(), { ...options, channelOverride: k.getChannel() }));
      if (this.streamCalls) streams.push(new CallStream(k, address));
    }
    return { address, kv, cluster, streams, next: 0 };
  }

  private endpointFor(address: string): Endpoint {
    const idx = this.endpoints.indexOf(address.trim());
    if (idx >= 0) return this.eps[idx]!;
    const problem = endpointProblem(address.trim());
    if (problem) throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, problem);
    let ep = this.extraEps.get(address.trim());
    if (!ep) {
      ep = this.openEndpoint(address.trim());
      this.extraEps.set(address.trim(), ep);
    }
    return ep;
  }

  /** The endpoint's channels taken in turn: the index of the next one. */
  private nextChannel(ep: Endpoint): number {
    const i = ep.next;
    ep.next = (i + 1) % ep.kv.length;
    return i;
  }

  private kv(ep: Endpoint): KVClient {
    return ep.kv[this.nextChannel(ep)]!;
  }

  /**
   * One KV operation on an endpoint: a call on one of its KV.Calls streams, or `unary` on one of
   * its channels (streams off, a large call, or a node without KV.Calls).
   */
  private callOn<Res>(ep: Endpoint, op: CallOp, o: Partial<CallOptions>, cb: Callback<Res>, unary: (c: KVClient) => void): void {
    const i = this.nextChannel(ep);
    const go = () => unary(ep.kv[i]!);
    const stream = ep.streams[i];
    if (!stream || callBytes(op) > MAX_STREAM_CALL_BYTES) go();
    else stream.call(op, Number(o.deadline), cb, go);
  }

  private cl(ep: Endpoint): ClusterClient {
    return ep.cluster[this.nextChannel(ep)]!;
  }

  private callTimeout(opts: CallOpts | undefined): number {
    return opts?.timeoutMs === undefined ? this.timeoutMs : positiveInt("timeoutMs", opts.timeoutMs);
  }

  private acquireLane(): Lane {
    return this.freeLanes.pop() ?? this.openLane();
  }

  private openLane(): Lane {
    const n = this.lanesOpened++;
    return { clientId: n === 0 ? this.clientId : `${this.clientId}/${n}`, seq: 0 };
  }

  /**
   * Runs a write on a session lane: one request id for all its attempts. The lane returns to the
   * pool only after an answer; after an error it is retired (see the header comment).
   */
  private async write<Req, Res>(
    op: string,
    opts: CallOpts,
    build: (requestId: RequestId) => Req,
    send: (ep: Endpoint, req: Req, md: Metadata, o: Partial<CallOptions>, cb: Callback<Res>) => void,
  ): Promise<Res> {
    const timeoutMs = this.callTimeout(opts);
    const started = Date.now();
    let lane = this.acquireLane();
    let restarted = false;
    for (;;) {
      lane.seq++;
      const req = build({ clientId: lane.clientId, seq: lane.seq });
      try {
        const res = await this.retry<Res>(
          { op, timeoutMs: Math.max(1, timeoutMs - (Date.now() - started)), preferLeader: true },
          (ep, md, o, cb) => send(ep, req, md, o, cb),
        );
        this.freeLanes.push(lane);
        return res;
      } catch (err) {
        // A session the server no longer has (evicted after long idleness) rejects a fresh
        // request without applying it: start a new lane once. Only when this request id had a
        // single attempt, so no earlier copy of it can have been applied.
        if (
          !restarted &&
          err instanceof RaftkvError &&
          err.code === GrpcStatus.FAILED_PRECONDITION &&
          err.attempts === 1 &&
          /session expired/i.test(err.details) &&
          Date.now() - started < timeoutMs
        ) {
          restarted = true;
          lane = this.openLane(); // a new session begins at seq 1
          continue;
        }
        throw err;
      }
    }
  }

  /** One operation: attempts with failover and backoff until an answer or the deadline. */
  private async retry<Res>(plan: RetryPlan, invoke: Invoke<Res>): Promise<Res> {
    if (this.closed) throw new RaftkvError(GrpcStatus.CANCELLED, "client is closed");
    const deadline = Date.now() + plan.timeoutMs;
    let attempts = 0;
    let lastErr: ServiceError | undefined;
    /** The last UNAVAILABLE a node answered (it names the leader and term): the most useful thing to report. */
    let lastAnswer: ServiceError | undefined;
    let lastEp: Endpoint | undefined;
    let hint = "";
    for (;;) {
      if (plan.leaderOnly && !plan.pinned && this.leaderEndpoint() === undefined) {
        await this.probe(this.eps, Math.min(deadline, Date.now() + Math.min(1000, this.attemptTimeoutMs)));
      }
      const ep = plan.pinned ?? this.pick(plan, lastEp, hint);
      const now = Date.now();
      const attemptDeadline = Math.min(deadline, now + this.attemptTimeoutMs);
      attempts++;
      lastEp = ep;
      try {
        const res = await callOnce(invoke, ep, attemptDeadline);
        const at = this.eps.indexOf(ep);
        if (at >= 0) this.avoidUntil[at] = 0;
        this.learn(ep, res as { header?: ResponseHeader; memberId?: string; leaderId?: string });
        return res;
      } catch (e) {
        const err = e as ServiceError;
        lastErr = err;
        if (err.code === GrpcStatus.UNAVAILABLE && err.details) lastAnswer = err;
        hint = leaderHint(err);
        if (hint) this.noteLeader(hint);
        if (this.closed) throw toRaftkvError(err, ep, attempts, hint);
        if (!RETRYABLE.has(err.code)) throw toRaftkvError(err, ep, attempts, hint);
        const idx = this.eps.indexOf(ep);
        if (idx >= 0) this.avoidUntil[idx] = Date.now() + 1000;
        // The leader we were sending to failed: forget it until someone names a leader again.
        if (idx >= 0 && this.leaderId && this.memberEndpoint.get(this.leaderId) === idx) this.leaderId = hint;
        if (!plan.pinned && this.eps.length > 1 && idx === this.current) this.current = (this.current + 1) % this.eps.length;
      }
      const remaining = deadline - Date.now();
      // Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): spreads retries of
      // many clients after a leader change instead of having them arrive in waves.
      const bound = Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** Math.min(attempts - 1, 20));
      const delay = Math.random() * bound;
      if (remaining <= delay + 1) {
        if (remaining > 0) await sleep(remaining);
        // An attempt cut short by our own deadline, or refused as a duplicate still in progress
        // (ABORTED), says less than a node's own UNAVAILABLE answer before it.
        const report = lastErr.code !== GrpcStatus.UNAVAILABLE && lastAnswer ? lastAnswer : lastErr;
        throw this.finalError(plan, report, lastEp, attempts, hint);
      }
      await sleep(delay);
      if (this.closed) throw new RaftkvError(GrpcStatus.CANCELLED, "client is closed", { endpoint: lastEp.address, attempts });
    }
  }

  private finalError(plan: RetryPlan, err: ServiceError, ep: Endpoint, attempts: number, hint: string): RaftkvError {
    const tail = `(${plan.op}: ${attempts} attempt${attempts === 1 ? "" : "s"} in ${plan.timeoutMs} ms, last to ${ep.address})`;
    if (err.code === GrpcStatus.DEADLINE_EXCEEDED) {
      return new RaftkvError(GrpcStatus.DEADLINE_EXCEEDED, `${errDetails(err)} ${tail}`, { endpoint: ep.address, attempts, leaderId: hint });
    }
    return new RaftkvError(err.code, `${errDetails(err)} ${tail}`, { endpoint: ep.address, attempts, leaderId: hint });
  }

  /** Chooses the endpoint of the next attempt. */
  private pick(plan: RetryPlan, failed: Endpoint | undefined, hint: string): Endpoint {
    // The leader a node just named, if we know where it listens.
    if (hint) {
      const i = this.memberEndpoint.get(hint);
      if (i !== undefined && this.eps[i] !== failed) {
        this.current = i;
        return this.eps[i]!;
      }
    }
    if (plan.preferLeader) {
      const leader = this.leaderEndpoint();
      if (leader !== undefined && leader !== failed) return leader;
    }
    if (plan.spread && this.eps.length > 1) {
      const now = Date.now();
      for (let k = 1; k <= this.eps.length; k++) {
        const i = (this.spreadAt + k) % this.eps.length;
        if (this.eps[i] !== failed && this.avoidUntil[i]! <= now) {
          this.spreadAt = i;
          return this.eps[i]!;
        }
      }
    }
    return this.eps[this.current]!;
  }

  private leaderEndpoint(): Endpoint | undefined {
    if (!this.leaderId) return undefined;
    const i = this.memberEndpoint.get(this.leaderId);
    return i === undefined ? undefined : this.eps[i];
  }

  /** Remembers which member answered on which endpoint and which leader it knows. */
  private learn(ep: Endpoint, res: { header?: ResponseHeader; memberId?: string; leaderId?: string } | undefined): void {
    const idx = this.eps.indexOf(ep);
    const memberId = res?.header?.memberId ?? res?.memberId ?? "";
    if (idx >= 0) {
      this.current = idx;
      if (memberId && this.memberEndpoint.get(memberId) !== idx) this.memberEndpoint.set(memberId, idx);
    }
    // An answer's view of the leader replaces ours, also when it knows none (an election).
    const leader = res?.header !== undefined ? res.header.leaderId : res?.leaderId;
    if (leader === undefined) return;
    if (leader) this.noteLeader(leader);
    else this.leaderId = "";
  }

  private noteLeader(leader: string): void {
    this.leaderId = leader;
    if (!this.memberEndpoint.has(leader)) this.discover();
  }

  /**
   * Learns member ids of the endpoints that have not answered yet, in the background (so writes
   * can go straight to the leader). At most once a second; errors are ignored.
   */
  private discover(): void {
    if (this.discovering || this.closed || this.eps.length < 2 || Date.now() - this.lastDiscovery < 1000) return;
    const known = new Set(this.memberEndpoint.values());
    const unknown = this.eps.filter((_, i) => !known.has(i));
    if (unknown.length === 0) return;
    this.discovering = true;
    this.lastDiscovery = Date.now();
    void this.probe(unknown, Date.now() + Math.min(1000, this.attemptTimeoutMs)).finally(() => {
      this.discovering = false;
    });
  }

  /**
   * Asks these endpoints' Status at once: learns their member ids and the leader (a node that
   * says it is leader wins over a node's opinion of who leads). Errors are ignored.
   */
  private async probe(eps: Endpoint[], deadline: number): Promise<void> {
    const answers = await Promise.allSettled(eps.map((ep) => callOnce<StatusResponse>((e, md, o, cb) => this.cl(e).status({}, md, o, cb), ep, deadline)));
    let leader = "";
    answers.forEach((a, i) => {
      if (a.status !== "fulfilled" || this.closed) return;
      const idx = this.eps.indexOf(eps[i]!);
      if (a.value.memberId && idx >= 0) this.memberEndpoint.set(a.value.memberId, idx);
      if (a.value.role === "leader") leader = a.value.memberId;
      else if (!leader && a.value.leaderId) leader = a.value.leaderId;
    });
    if (leader) this.leaderId = leader;
  }
}

function callOnce<Res>(invoke: Invoke<Res>, ep: Endpoint, deadline: number): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    try {
      invoke(ep, new Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
    } catch (e) {
      // grpc-js throws synchronously on a closed channel or a message it cannot serialize.
      const err = e as Error;
      reject(Object.assign(new Error(err.message), { code: GrpcStatus.CANCELLED, details: err.message, metadata: new Metadata() }));
    }
  });
}

/** The leader an error names: the `raftkv-leader` trailer, else "leader is X" in the message. */
export function leaderHint(err: Partial<ServiceError>): string {
  const md = err.metadata?.get?.(LEADER_TRAILER);
  if (md && md.length > 0 && String(md[0])) return String(md[0]);
  const m = /leader (?:is|=) ?([A-Za-z0-9][\w.-]*)/i.exec(err.details ?? err.message ?? "");
  return m ? m[1]! : "";
}

function errDetails(err: Partial<ServiceError>): string {
  const d = err.details || err.message || "unknown error";
  // grpc-js messages repeat the code ("14 UNAVAILABLE: ...") and wrap connection failures in
  // resolver prose; keep what a person needs.
  return d
    .replace(/^\d+ [A-Z_]+: /, "")
    .replace(/^No connection established\. Last error: (?:Error: )?/, "no connection: ")
    .replace(/\.? ?Resolution note: *$/, "")
    .replace(/\.$/, "");
}

function toRaftkvError(err: ServiceError, ep: Endpoint, attempts: number, hint: string): RaftkvError {
  const code = typeof err.code === "number" ? err.code : GrpcStatus.UNKNOWN;
  return new RaftkvError(code, errDetails(err), { endpoint: ep.address, attempts, leaderId: hint });
}

/** Key and value bytes a call carries. */
function callBytes(op: CallOp): number {
  const v = op.value as { key?: Uint8Array; value?: Uint8Array; newValue?: Uint8Array; expectedValue?: Uint8Array; start?: Uint8Array; end?: Uint8Array; prefix?: Uint8Array };
  return (
    (v.key?.length ?? 0) +
    (v.value?.length ?? 0) +
    (v.newValue?.length ?? 0) +
    (v.expectedValue?.length ?? 0) +
    (v.start?.length ?? 0) +
    (v.end?.length ?? 0) +
    (v.prefix?.length ?? 0)
  );
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function consistency(serializable: boolean | undefined): ReadConsistency {
  return serializable ? ReadConsistency.READ_CONSISTENCY_SERIALIZABLE : ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;
}

const EMPTY = Buffer.alloc(0);

/** A key/value as the Buffer the generated code wants: strings as UTF-8, bytes without a copy. */
export function bytes(what: string, v: Bytes): Buffer {
  if (typeof v === "string") return Buffer.from(v, "utf8");
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, `${what} must be a string or a Uint8Array, got ${v === null ? "null" : typeof v}`);
}

function rangeBounds(o: { start?: Bytes; end?: Bytes; prefix?: Bytes }): { start: Buffer; end: Buffer; prefix?: Buffer } {
  const start = o.start === undefined ? EMPTY : bytes("start", o.start);
  const end = o.end === undefined ? EMPTY : bytes("end", o.end);
  if (o.prefix === undefined) return { start, end };
  if (start.length > 0 || end.length > 0) throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, "set either prefix or start/end, not both");
  return { start, end, prefix: bytes("prefix", o.prefix) };
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RaftkvError(GrpcStatus.INVALID_ARGUMENT, `${name} must be a positive integer, got ${String(v)}`);
  return v;
}

/** Why an endpoint string is not host:port, or "" when it is. */
export function endpointProblem(e: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(e);
  if (!m) return `endpoint must be host:port, got ${JSON.stringify(e)}`;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return `endpoint port must be in 1..65535, got ${JSON.stringify(e)}`;
  return "";
}
