// A real gRPC server on loopback that serves the KV and Cluster services with behaviour a test
// scripts per call, and records every request it gets. The client's retry, failover and output
// formatting are tested against it over the network, the way they meet a real node.

import { Server, ServerCredentials, status as GrpcStatus, type ServerDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { type Call, type CallResult, KVService, type ResponseHeader } from "../common/gen/raftkv/v1/kv.js";
import { ClusterService, type StatusResponse } from "../common/gen/raftkv/v1/cluster.js";
import { grpcError, LEADER_TRAILER } from "../common/grpc-error.js";

export type Method =
  | "put"
  | "get"
  | "delete"
  | "deleteRange"
  | "range"
  | "compareAndSwap"
  | "status"
  | "memberList"
  | "transferLeadership"
  | "snapshot";

export interface RecordedCall {
  method: Method;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  request: any;
  /** ms since the epoch when it arrived */
  at: number;
  /** It came as a call on a KV.Calls stream (not as a unary call). */
  streamed: boolean;
}

/** What a handler returns: a response, an error to send, or "hang" (never answer). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Reply = { ok: any } | { error: ServiceError } | "hang";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handler = (request: any, n: number, calls: RecordedCall[]) => Reply | Promise<Reply>;

export interface ScriptedServer {
  address: string;
  port: number;
  memberId: string;
  calls: RecordedCall[];
  handlers: Partial<Record<Method, Handler>>;
  close(): Promise<void>;
}

/** A gRPC error as the node sends it (UNAVAILABLE names the leader in a trailer and the text). */
export { grpcError };

export function header(memberId: string, leaderId: string, revision = 1, term = 1): ResponseHeader {
  return { memberId, term, revision, leaderId };
}

/**
 * Starts a server on 127.0.0.1 (any free port unless `port` is given). Methods without a handler
 * answer UNIMPLEMENTED, except status, which answers as a follower of `leaderId`. KV operations
 * are served both as unary methods and as calls on KV.Calls streams (the same handler), unless
 * `noCallStreams` leaves KV.Calls out, like a node that does not have it.
 */
export async function startScriptedServer(
  opts: { memberId?: string; leaderId?: string; port?: number; handlers?: Partial<Record<Method, Handler>>; noCallStreams?: boolean } = {},
): Promise<ScriptedServer> {
  const memberId = opts.memberId ?? "n1";
  const leaderId = opts.leaderId ?? memberId;
  const calls: RecordedCall[] = [];
  const counts = new Map<Method, number>();
  const handlers: Partial<Record<Method, Handler>> = { ...opts.handlers };
  const hanging = new Set<() => void>();
  const server = new Server();

  const serve =
    (method: Method, streamed = false) =>
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (call: { request: any }, callback: (err: ServiceError | null, res?: any) => void): void => {
      const n = (counts.get(method) ?? 0) + 1;
      counts.set(method, n);
      calls.push({ method, request: call.request, at: Date.now(), streamed });
      let h = handlers[method];
      if (!h && method === "status") {
        h = () => ({ ok: statusOf(memberId, leaderId) });
      }
      if (!h) {
        callback(grpcError(GrpcStatus.UNIMPLEMENTED, `${method} is not scripted`));
        return;
      }
      Promise.resolve()
        .then(() => h(call.request, n, calls))
        .then(
          (reply) => {
            if (reply === "hang") {
              const release = () => callback(grpcError(GrpcStatus.CANCELLED, "server closing"));
              hanging.add(release);
              return;
            }
            if ("error" in reply) callback(reply.error);
            else callback(null, reply.ok);
          },
          (e: unknown) => callback(grpcError(GrpcStatus.INTERNAL, String(e))),
        );
    };

  // KV.Calls: each call goes to the same handler as its unary twin; errors go back as CallError.
  const callStreams = (stream: ServerDuplexStream<Call, CallResult>): void => {
    stream.on("data", (c: Call) => {
      if (!c.op) return;
      const op = c.op;
      serve(op.$case, true)({ request: op.value }, (err, res) => {
        const lead = err?.metadata?.get(LEADER_TRAILER)?.[0];
        const result = err
          ? { $case: "error" as const, value: { code: err.code ?? GrpcStatus.UNKNOWN, message: err.details ?? err.message, leaderId: lead ? String(lead) : "" } }
          : ({ $case: op.$case, value: res } as CallResult["result"]);
        if (!stream.cancelled && !stream.destroyed) stream.write({ callId: c.callId, result });
      });
    });
    stream.on("end", () => stream.end());
    stream.on("error", () => {});
  };
  server.addService(KVService, {
    put: serve("put"),
    get: serve("get"),
    delete: serve("delete"),
    deleteRange: serve("deleteRange"),
    range: serve("range"),
    compareAndSwap: serve("compareAndSwap"),
    ...(opts.noCallStreams ? {} : { calls: callStreams }),
  });
  server.addService(ClusterService, {
    status: serve("status"),
    memberList: serve("memberList"),
    transferLeadership: serve("transferLeadership"),
    snapshot: serve("snapshot"),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    port,
    memberId,
    calls,
    handlers,
    close: () =>
      new Promise<void>((resolve) => {
        for (const release of hanging) release();
        hanging.clear();
        server.tryShutdown(() => resolve());
        // Calls still open (a client that has not given up) must not hold the test.
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 200).unref();
      }),
  };
}

/** A full StatusResponse (every field set, as the encoder needs). */
export function statusOf(memberId: string, leaderId: string, extra: Partial<StatusResponse> = {}): StatusResponse {
  return {
    memberId,
    role: memberId === leaderId ? "leader" : "follower",
    term: 1,
    leaderId,
    commitIndex: 1,
    appliedIndex: 1,
    lastLogIndex: 1,
    lastLogTerm: 1,
    snapshotIndex: 0,
    version: "0.1.0",
    uptimeSeconds: 1,
    ...extra,
  };
}

/** A loopback port that refuses connections (was free a moment ago). */
export async function closedPort(): Promise<number> {
  const s = await startScriptedServer();
  await s.close();
  return s.port;
}
