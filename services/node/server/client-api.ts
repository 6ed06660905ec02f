// The client-facing gRPC services: KV (put/get/delete/range/CAS) and Cluster (status, members,
// leadership, snapshots). Any node accepts any request: writes are proposed here (the core
// forwards them to the leader) and answered once applied here; linearizable reads get a read
// index (from the leader if we are a follower) and are served from the local B+ tree.
// Errors are values a client can act on: INVALID_ARGUMENT with the reason, UNAVAILABLE with
// the known leader, never a hang (every request has a server-side deadline).
// The KV operations are served twice over: as unary methods, and as calls multiplexed on one
// long-lived stream (KV.Calls, what RaftkvClient uses); both run the same handler.

import { type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData, status as Status } from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { type Logger } from "pino";
import {
  type ClusterServer,
  type MemberListResponse,
  type SnapshotResponse,
  type StatusResponse,
  type TransferLeadershipResponse,
} from "../../common/gen/raftkv/v1/cluster.js";
import {
  type Call,
  type CallResult,
  Command,
  type CompareAndSwapRequest,
  type CompareAndSwapResponse,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type KVServer,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  ReadConsistency,
  type RequestId,
  type ResponseHeader,
} from "../../common/gen/raftkv/v1/kv.js";
import { grpcError } from "../../common/grpc-error.js";
import { Histogram } from "../../common/histogram.js";
import { type StatusDocument } from "../../common/status.js";
import { VERSION } from "../../common/version.js";
import { type ApplyResult } from "../kv/results.js";
import { InvalidArgumentError } from "../kv/validate.js";
import { Role } from "../raft/types.js";
import { type Driver, RequestError } from "./driver.js";

interface MethodStats {
  byCode: Record<string, number>;
  latency: Histogram;
}

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Status)
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => [v as number, k]),
);

/** A KV operation: the request and its deadline (ms epoch) in, the answer out. */
type Handler<Req, Res> = (req: Req, deadline: number) => Promise<Res>;

interface KvHandlers {
  put: Handler<PutRequest, PutResponse>;
  get: Handler<GetRequest, GetResponse>;
  delete: Handler<DeleteRequest, DeleteResponse>;
  deleteRange: Handler<DeleteRangeRequest, DeleteRangeResponse>;
  range: Handler<RangeRequest, RangeResponse>;
  compareAndSwap: Handler<CompareAndSwapRequest, CompareAndSwapResponse>;
}

/** The per-method metric names (as the unary methods are called) of the operations a Call carries. */
const CALL_METHODS: Record<NonNullable<Call["op"]>["$case"], string> = {
  put: "Put",
  get: "Get",
  delete: "Delete",
  deleteRange: "DeleteRange",
  compareAndSwap: "CompareAndSwap",
};

/**
 * Calls one KV.Calls stream may have in flight. Past it a call is refused at once with
 * RESOURCE_EXHAUSTED, so one stream cannot pile up an unbounded number of waiting requests
 * (proposals, reads waiting for a read index) while the cluster has no quorum.
 */
export const MAX_CALLS_IN_FLIGHT = 4096;

export interface ClientApiOptions {
  driver: Driver;
  logger: Logger;
  requestTimeoutMs: number;
  peers: Array<{ id: string; address: string }>;
  startedAt: number;
}

export class ClientApi {
  private readonly driver: Driver;
  private readonly log: Logger;
  private readonly opts: ClientApiOptions;
  private readonly stats = new Map<string, MethodStats>();
  /**
   * Writes without a client request id get one of ours, so retries inside the node stay
   * exactly-once. A session allows one request in flight, so each such write is its own
   * one-request session (seq 1); the session table evicts them like any other.
   */
  private readonly serverClientId = `srv-${randomBytes(6).toString("hex")}`;
  private serverRequests = 0;
  private accepting = true;
  /** Open KV.Calls streams, each with what ends it once its calls in flight are answered. */
  private readonly callStreams = new Set<{ drain: () => void }>();

  constructor(opts: ClientApiOptions) {
    this.opts = opts;
    this.driver = opts.driver;
    this.log = opts.logger;
  }

  /**
   * After this, new requests get UNAVAILABLE (graceful shutdown), and each KV.Calls stream ends
   * as soon as its calls in flight are answered.
   */
  stopAccepting(): void {
    this.accepting = false;
    for (const s of [...this.callStreams]) s.drain();
  }

  private header(): ResponseHeader {
    const r = this.driver.node.raft;
    return { memberId: this.driver.id, term: r.term, revision: this.driver.kv.appliedIndex, leaderId: r.lead };
  }

  private deadline(call: ServerUnaryCall<unknown, unknown>): number {
    const d = call.getDeadline();
    const client = d instanceof Date ? d.getTime() : typeof d === "number" && Number.isFinite(d) ? d : Infinity;
    return Math.min(client, Date.now() + this.opts.requestTimeoutMs);
  }

  /** Counts a finished request in the per-method metrics. */
  private record(method: string, code: number, t0: number): void {
    let s = this.stats.get(method);
    if (!s) this.stats.set(method, (s = { byCode: {}, latency: new Histogram() }));
    const name = CODE_NAMES[code] ?? String(code);
    s.byCode[name] = (s.byCode[name] ?? 0) + 1;
    s.latency.observe((performance.now() - t0) / 1000);
  }

  /**
   * Runs a handler: refuses it while shutting down, maps its failure to a code and message, and
   * counts it; never lets an exception escape. `done` gets the answer or the error.
   */
  private run<Req, Res>(
    method: string,
    f: Handler<Req, Res>,
    req: Req,
    deadline: number,
    done: (res: Res | undefined, code: number, message: string) => void,
  ): void {
    const t0 = performance.now();
    const finish = (res: Res | undefined, code: number, message: string): void => {
      this.record(method, code, t0);
      done(res, code, message);
    };
    if (!this.accepting) {
      finish(undefined, Status.UNAVAILABLE, "node is shutting down");
      return;
    }
    let p: Promise<Res>;
    try {
      p = f(req, deadline);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (res) => finish(res, Status.OK, ""),
      (e: unknown) => {
        const [code, message] = this.mapError(e, method);
        finish(undefined, code, message);
      },
    );
  }

  /** A handler as a unary method: its deadline is the call's, capped by the node's request timeout. */
  private unary<Req, Res>(method: string, f: Handler<Req, Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      this.run(method, f, call.request, this.deadline(call as ServerUnaryCall<unknown, unknown>), (res, code, message) => {
        if (code === Status.OK) callback(null, res);
        else callback(grpcError(code, message, this.driver.node.raft.lead));
      });
    };
  }

  /**
   * KV.Calls: each Call runs its operation's handler and is answered on the stream, in whatever
   * order they finish. The stream ends after the client has ended its side (or the node stops
   * accepting) and every call in flight has been answered.
   */
  private calls(h: KvHandlers) {
    return (stream: ServerDuplexStream<Call, CallResult>): void => {
      let inFlight = 0;
      let clientDone = false;
      let closed = false;
      const close = (end: boolean): void => {
        if (closed) return;
        closed = true;
        this.callStreams.delete(entry);
        if (end) stream.end();
      };
      const entry = {
        drain: () => {
          if (inFlight === 0) close(true);
        },
      };
      this.callStreams.add(entry);
      // A client that does not read its answers stops getting its calls read: while answers
      // are backed up, the stream is paused (HTTP/2 flow control then holds the client back).
      let paused = false;
      const answer = (callId: number, result: CallResult["result"]): void => {
        if (closed || stream.write({ callId, result }) || paused) return;
        paused = true;
        stream.pause();
        stream.once("drain", () => {
          paused = false;
          stream.resume();
        });
      };
      const fail = (callId: number, code: number, message: string): void =>
        answer(callId, { $case: "error", value: { code, message, leaderId: this.driver.node.raft.lead } });
      stream.on("data", (call: Call) => {
        if (closed) return;
        const op = call.op;
        if (!op || !(op.$case in CALL_METHODS)) {
          fail(call.callId, Status.INVALID_ARGUMENT, `call ${call.callId} carries no operation this node knows`);
          return;
        }
        if (inFlight >= MAX_CALLS_IN_FLIGHT) {
          fail(call.callId, Status.RESOURCE_EXHAUSTED, `more than ${MAX_CALLS_IN_FLIGHT} calls in flight on one stream`);
          return;
        }
        const limit = this.opts.requestTimeoutMs;
        const deadline = Date.now() + (call.timeoutMs > 0 ? Math.min(call.timeoutMs, limit) : limit);
        inFlight++;
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        const f = h[op.$case] as Handler<any, any>;
        this.run(CALL_METHODS[op.$case], f, op.value, deadline, (res, code, message) => {
          inFlight--;
          if (code === Status.OK) answer(call.callId, { $case: op.$case, value: res } as CallResult["result"]);
          else fail(call.callId, code, message);
          if (inFlight === 0 && (clientDone || !this.accepting)) close(true);
        });
      });
      stream.on("end", () => {
        clientDone = true;
        if (inFlight === 0) close(true);
      });
      // Cancelled by the client, or its connection went away: nobody is left to answer. The
      // calls in flight still finish (a write stays exactly-once for the client's retry).
      stream.on("cancelled", () => close(false));
      stream.on("error", () => close(false));
    };
  }

  private mapError(e: unknown, method: string): [number, string] {
    if (e instanceof InvalidArgumentError) return [Status.INVALID_ARGUMENT, e.message];
    if (e instanceof RequestError) return [Status[e.code], e.message];
    const err = e as Error;
    this.log.error({ err: err?.message, stack: err?.stack, method }, "request failed on an internal error");
    return [Status.INTERNAL, `internal error: ${err?.message ?? String(e)}`];
  }

  private requestId(rid: RequestId | undefined): RequestId {
    if (rid && rid.clientId) return rid;
    return { clientId: `${this.serverClientId}-${++this.serverRequests}`, seq: 1 };
  }

  private async write(cmd: Command, deadline: number): Promise<ApplyResult> {
    this.driver.kv.validate(cmd);
    const res = await this.driver.propose(cmd, deadline);
    if (res.type === "error") {
      throw new RequestError(res.error.code, res.error.message);
    }
    return res;
  }

  private async linearizable(consistency: ReadConsistency, deadline: number): Promise<void> {
    if (consistency === ReadConsistency.READ_CONSISTENCY_SERIALIZABLE) return;
    await this.driver.readIndex(deadline);
  }

  kvService(): KVServer {
    const h = this.kvHandlers();
    return {
      put: this.unary("Put", h.put),
      get: this.unary("Get", h.get),
      delete: this.unary("Delete", h.delete),
      deleteRange: this.unary("DeleteRange", h.deleteRange),
      range: this.unary("Range", h.range),
      compareAndSwap: this.unary("CompareAndSwap", h.compareAndSwap),
      calls: this.calls(h),
    };
  }

  private kvHandlers(): KvHandlers {
    return {
      put: async (req, deadline): Promise<PutResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "put", value: { ...req, requestId } } }, deadline);
        if (res.type !== "put") throw unexpected(res);
        return { ...res.response, header: this.header() };
      },
      get: async (req, deadline): Promise<GetResponse> => {
        // Validate first: a bad key is INVALID_ARGUMENT even without a leader.
        this.driver.kv.get(req.key);
        await this.linearizable(req.consistency, deadline);
        const kv = this.driver.kv.get(req.key);
        return { header: this.header(), found: kv !== undefined, kv };
      },
      delete: async (req, deadline): Promise<DeleteResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "delete", value: { ...req, requestId } } }, deadline);
        if (res.type !== "delete") throw unexpected(res);
        return { ...res.response, header: this.header() };
      },
      deleteRange: async (req, deadline): Promise<DeleteRangeResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "deleteRange", value: { ...req, requestId } } }, deadline);
        if (res.type !== "deleteRange") throw unexpected(res);
        return { ...res.response, header: this.header() };
      },
      range: async (req, deadline): Promise<RangeResponse> => {
        const q = { start: req.start, end: req.end, prefix: req.prefix, limit: req.limit, keysOnly: req.keysOnly };
        this.driver.kv.range({ ...q, limit: 1 }); // validation only
        await this.linearizable(req.consistency, deadline);
        const r = this.driver.kv.range(q);
        return { header: this.header(), kvs: r.kvs, more: r.more, count: r.count };
      },
      compareAndSwap: async (req, deadline): Promise<CompareAndSwapResponse> => {
        if (req.expectedValue === undefined && req.expectedVersion === undefined) {
          throw new InvalidArgumentError("compare-and-swap needs expected_value or expected_version");
        }
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "cas", value: { ...req, requestId } } }, deadline);
        if (res.type !== "cas") throw unexpected(res);
        return { ...res.response, header: this.header() };
      },
    };
  }

  clusterService(): ClusterServer {
    return {
      status: this.unary("Status", async (): Promise<StatusResponse> => {
        const st = this.driver.node.status();
        return {
          memberId: st.id,
          role: st.role,
          term: st.term,
          leaderId: st.lead,
          commitIndex: st.commit,
          appliedIndex: this.driver.kv.appliedIndex,
          lastLogIndex: st.lastIndex,
          lastLogTerm: st.lastTerm,
          snapshotIndex: st.snapshotIndex,
          version: VERSION,
          uptimeSeconds: (Date.now() - this.opts.startedAt) / 1000,
        };
      }),
      memberList: this.unary("MemberList", async (): Promise<MemberListResponse> => {
        const st = this.driver.node.status();
        const progress = new Map(st.progress.map((p) => [p.id, p]));
        const peers = new Map(this.driver.transport.peerStatus().map((p) => [p.id, p]));
        return {
          memberId: st.id,
          members: this.opts.peers.map((p) => ({
            id: p.id,
            peerAddress: p.address,
            isVoter: st.conf.voters.includes(p.id),
            isLeader: p.id === st.lead,
            reachable: p.id === st.id ? true : st.role === Role.Leader ? (progress.get(p.id)?.recentActive ?? false) : (peers.get(p.id)?.connected ?? false),
            matchIndex: progress.get(p.id)?.match ?? 0,
          })),
        };
      }),
      transferLeadership: this.unary("TransferLeadership", async (req, deadline): Promise<TransferLeadershipResponse> => {
        const target = req.targetId || undefined;
        if (target && !this.opts.peers.some((p) => p.id === target)) throw new InvalidArgumentError(`unknown member ${JSON.stringify(target)}`);
        const leader = await this.driver.transferLeadership(target, deadline);
        return { leaderId: leader, term: this.driver.node.raft.term };
      }),
      snapshot: this.unary("Snapshot", async (): Promise<SnapshotResponse> => {
        const meta = await this.driver.snapshotNow();
        return { index: meta.index, term: meta.term, sizeBytes: this.driver.storage.stats().snapshotBytes };
      }),
    };
  }

  requestStats(): StatusDocument["requests"] {
    return [...this.stats.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([method, s]) => ({ method, byCode: { ...s.byCode }, latencySeconds: s.latency.toStatus() }));
  }
}

function unexpected(res: ApplyResult): Error {
  return new Error(`unexpected apply result of type ${res.type}`);
}
