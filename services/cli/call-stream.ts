// One KV.Calls stream to a node (kv.proto): many calls in flight on one long-lived gRPC stream,
// each matched to its answer by a call id. It spares every request the HTTP/2 stream, headers
// and trailers of a unary call, on both ends; that is most of a small request's cost in grpc-js.
//  - The stream is opened on first use and again after it ends.
//  - Every call has its own deadline: a timer here, and timeout_ms for the node.
//  - A stream that ends or breaks fails its calls in flight with UNAVAILABLE, so the client's
//    retry takes them elsewhere (writes keep their request ids, so they stay exactly-once).
//  - A node without KV.Calls (UNIMPLEMENTED) gets unary calls from then on, the calls in flight
//    included.

import { status as GrpcStatus, type ClientDuplexStream, type ServiceError, type StatusObject } from "@grpc/grpc-js";
import { type Call, type CallResult, type KVClient } from "../common/gen/raftkv/v1/kv.js";
import { grpcError as callError } from "../common/grpc-error.js";

export type CallOp = NonNullable<Call["op"]>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CallCallback = (err: ServiceError | null, res: any) => void;

interface Pending {
  cb: CallCallback;
  timer: NodeJS.Timeout;
  /** Makes the same call as a unary one (for a node without KV.Calls). */
  unary: () => void;
}

/** One stream's life: its calls in flight by id. */
interface Generation {
  stream: ClientDuplexStream<Call, CallResult>;
  pending: Map<number, Pending>;
  nextId: number;
}

export class CallStream {
  private gen: Generation | undefined;
  /** The node answered UNIMPLEMENTED: it has no KV.Calls. */
  private unsupported = false;
  private closing = false;

  constructor(
    private readonly kv: KVClient,
    /** For messages: the node's address. */
    private readonly address: string,
  ) {}

  /** Sends one call; `cb` gets its answer, its error, or DEADLINE_EXCEEDED at `deadline` (ms epoch). */
  call(op: CallOp, deadline: number, cb: CallCallback, unary: () => void): void {
    if (this.unsupported) {
      unary();
      return;
    }
    const gen = this.gen ?? this.open();
    const callId = gen.nextId++;
    const wait = Math.max(1, deadline - Date.now());
    const timer = setTimeout(() => {
      if (!gen.pending.delete(callId)) return;
      cb(callError(GrpcStatus.DEADLINE_EXCEEDED, `deadline exceeded after ${wait} ms on the call stream to ${this.address}`), undefined);
    }, wait);
    gen.pending.set(callId, { cb, timer, unary });
    gen.stream.write({ callId, timeoutMs: Math.min(wait, 0xffffffff), op });
  }

  /** Cancels the stream: its calls in flight fail with CANCELLED. */
  close(): void {
    this.closing = true;
    this.gen?.stream.cancel();
  }

  private open(): Generation {
    const stream = this.kv.calls();
    const gen: Generation = { stream, pending: new Map(), nextId: 1 };
    this.gen = gen;
    stream.on("data", (res: CallResult) => {
      const p = gen.pending.get(res.callId);
      if (!p) return; // out of time already
      gen.pending.delete(res.callId);
      clearTimeout(p.timer);
      const r = res.result;
      if (!r) p.cb(callError(GrpcStatus.INTERNAL, `an empty answer from ${this.address}`), undefined);
      else if (r.$case === "error") p.cb(callError(r.value.code || GrpcStatus.UNKNOWN, r.value.message, r.value.leaderId), undefined);
      else p.cb(null, r.value);
    });
    // Every end of the stream, error or not, arrives as 'status' too; 'error' must have a
    // listener or it would be thrown.
    stream.on("error", () => {});
    stream.on("status", (s: StatusObject) => this.ended(gen, s));
    return gen;
  }

  private ended(gen: Generation, s: StatusObject): void {
    if (this.gen === gen) this.gen = undefined;
    const calls = [...gen.pending.values()];
    gen.pending.clear();
    if (s.code === GrpcStatus.UNIMPLEMENTED) this.unsupported = true;
    for (const p of calls) {
      clearTimeout(p.timer);
      if (this.unsupported) p.unary();
      else if (s.code === GrpcStatus.CANCELLED && this.closing) p.cb(callError(GrpcStatus.CANCELLED, "client is closed"), undefined);
      // Whatever broke the stream, a call in flight on it has an unknown outcome: another
      // attempt (with the same request id, for a write) is the way to learn it.
      else p.cb(callError(GrpcStatus.UNAVAILABLE, `the call stream to ${this.address} ended: ${describe(s)}`), undefined);
    }
  }
}

function describe(s: StatusObject): string {
  const name = GrpcStatus[s.code] ?? String(s.code);
  return s.code === GrpcStatus.OK ? "the node closed it" : `${name}${s.details ? `: ${s.details}` : ""}`;
}
