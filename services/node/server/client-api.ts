// The client-facing gRPC services: KV (put/get/delete/range/CAS) and Cluster (status, members,
// leadership, snapshots). Any node accepts any request: writes are proposed here (the core
// forwards them to the leader) and answered once applied here; linearizable reads get a read
// index (from the leader if we are a follower) and are served from the local B+ tree.
// Errors are values a client can act on: INVALID_ARGUMENT with the reason, UNAVAILABLE with
// the known leader, never a hang (every request has a server-side deadline).

import { type ServerUnaryCall, type sendUnaryData, status as Status, type ServiceError, Metadata } from "@grpc/grpc-js";
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
  Command,
  type CompareAndSwapResponse,
  type DeleteRangeResponse,
  type DeleteResponse,
  type GetResponse,
  type KVServer,
  type PutResponse,
  type RangeResponse,
  ReadConsistency,
  type RequestId,
  type ResponseHeader,
} from "../../common/gen/raftkv/v1/kv.js";
import { Histogram } from "../../common/histogram.js";
import { type StatusDocument } from "../../common/status.js";
import { VERSION } from "../../common/version.js";
import { type ApplyResult } from "../kv/results.js";
import { InvalidArgumentError } from "../kv/validate.js";
import { NONE, Role } from "../raft/types.js";
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

  constructor(opts: ClientApiOptions) {
    this.opts = opts;
    this.driver = opts.driver;
    this.log = opts.logger;
  }

  /** After this, new requests get UNAVAILABLE (graceful shutdown). */
  stopAccepting(): void {
    this.accepting = false;
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

  /** Wraps a handler: deadline, error mapping, per-method metrics; never lets an exception escape. */
  private unary<Req, Res>(method: string, f: (req: Req, deadline: number) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
      const t0 = performance.now();
      const finish = (code: number, err: ServiceError | null, res?: Res) => {
        let s = this.stats.get(method);
        if (!s) this.stats.set(method, (s = { byCode: {}, latency: new Histogram() }));
        const name = CODE_NAMES[code] ?? String(code);
        s.byCode[name] = (s.byCode[name] ?? 0) + 1;
        s.latency.observe((performance.now() - t0) / 1000);
        if (err) callback(err);
        else callback(null, res);
      };
      if (!this.accepting) {
        finish(Status.UNAVAILABLE, serviceError(Status.UNAVAILABLE, "node is shutting down", this.driver.node.raft.lead));
        return;
      }
      let p: Promise<Res>;
      try {
        p = f(call.request, this.deadline(call as ServerUnaryCall<unknown, unknown>));
      } catch (e) {
        p = Promise.reject(e);
      }
      p.then(
        (res) => finish(Status.OK, null, res),
        (e: unknown) => {
          const [code, message] = this.mapError(e, method);
          finish(code, serviceError(code, message, this.driver.node.raft.lead));
        },
      );
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
    return {
      put: this.unary("Put", async (req, deadline): Promise<PutResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "put", value: { ...req, requestId } } }, deadline);
        if (res.type !== "put") throw unexpected(res);
        return { ...res.response, header: this.header() };
      }),
      get: this.unary("Get", async (req, deadline): Promise<GetResponse> => {
        // Validate first: a bad key is INVALID_ARGUMENT even without a leader.
        this.driver.kv.get(req.key);
        await this.linearizable(req.consistency, deadline);
        const kv = this.driver.kv.get(req.key);
        return { header: this.header(), found: kv !== undefined, kv };
      }),
      delete: this.unary("Delete", async (req, deadline): Promise<DeleteResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "delete", value: { ...req, requestId } } }, deadline);
        if (res.type !== "delete") throw unexpected(res);
        return { ...res.response, header: this.header() };
      }),
      deleteRange: this.unary("DeleteRange", async (req, deadline): Promise<DeleteRangeResponse> => {
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "deleteRange", value: { ...req, requestId } } }, deadline);
        if (res.type !== "deleteRange") throw unexpected(res);
        return { ...res.response, header: this.header() };
      }),
      range: this.unary("Range", async (req, deadline): Promise<RangeResponse> => {
        const q = { start: req.start, end: req.end, prefix: req.prefix, limit: req.limit, keysOnly: req.keysOnly };
        this.driver.kv.range({ ...q, limit: 1 }); // validation only
        await this.linearizable(req.consistency, deadline);
        const r = this.driver.kv.range(q);
        return { header: this.header(), kvs: r.kvs, more: r.more, count: r.count };
      }),
      compareAndSwap: this.unary("CompareAndSwap", async (req, deadline): Promise<CompareAndSwapResponse> => {
        if (req.expectedValue === undefined && req.expectedVersion === undefined) {
          throw new InvalidArgumentError("compare-and-swap needs expected_value or expected_version");
        }
        const requestId = this.requestId(req.requestId);
        const res = await this.write({ requestId, op: { $case: "cas", value: { ...req, requestId } } }, deadline);
        if (res.type !== "cas") throw unexpected(res);
        return { ...res.response, header: this.header() };
      }),
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

function serviceError(code: number, message: string, leader: string): ServiceError {
  const md = new Metadata();
  if (leader !== NONE) md.set("raftkv-leader", leader);
  return Object.assign(new Error(message), { code, details: message, metadata: md }) as ServiceError;
}
