// The peer transport: carries the consensus core's messages between nodes over gRPC.
//
// Each node opens ONE long-lived client-streaming call (Raft.Stream) to each peer and writes a
// MessageBatch on it per turn of its ready loop: pipelined, no reply per message (raft's own
// responses come back on the peer's stream to us). Snapshots go on their own call
// (Raft.InstallSnapshot), in chunks, one at a time per peer.
//
// Failure model (what makes it safe to run on Kubernetes): every call has a deadline; a stream
// that fails is reopened after an exponential, jittered backoff (50 ms -> 2 s); each failure is
// reported once to the core (onUnreachable -> reportUnreachable, which stops optimistic
// pipelining to that peer) and logged once per state change; messages to a peer that is down
// are dropped, since Raft retransmits whatever matters. A peer whose DNS name does not resolve
// yet (a StatefulSet pod that does not exist yet) is just a peer that is down.
//
// Inbound, nothing a peer sends can crash the node: undecodable batches end that stream with
// INVALID_ARGUMENT, a batch of another cluster with FAILED_PRECONDITION, and single messages that
// are not for this node or not peer messages are dropped with a (rate-limited) warning.

import * as grpc from "@grpc/grpc-js";
import CRC32C from "crc-32/crc32c.js";
import type { Logger } from "pino";
import * as pb from "../../common/gen/raftkv/v1/raft.js";
import { EMPTY_BYTES, EntryType, type Message, MessageType, type NodeId, type SnapshotMeta } from "../raft/types.js";
import {
  DecodeError,
  decodeBatch,
  decodeSnapshotChunk,
  encodeBatch,
  encodeSnapshotChunk,
  messageBodySize,
  messageFrameSize,
} from "./codec.js";

export interface TransportHandler {
  /** Messages that arrived from a peer, in order, to be stepped into the core (sync, must not throw). */
  onMessages(msgs: Message[]): void;
  /**
   * A complete, CRC32C-verified snapshot from the leader: msg.type === MessageType.Snap,
   * msg.snapshot = { meta, data } with the whole payload. Resolves once the core has taken it.
   * Rejections mean "not accepted".
   */
  onSnapshot(msg: Message): Promise<void>;
}

export interface PeerTransportOptions {
  selfId: NodeId;
  clusterId: string;
  /** host:port; the host may be a DNS name that does not resolve yet. May include self (skipped). */
  peers: Array<{ id: NodeId; address: string }>;
  handler: TransportHandler;
  /**
   * The bytes of the snapshot a Snap message refers to (the core's message carries only meta;
   * data may be empty). Used only when msg.snapshot.data is empty; yielded pieces are kept until
   * sent, so a source must not reuse a buffer it has yielded.
   */
  snapshotSource(meta: SnapshotMeta): AsyncIterable<Uint8Array>;
  /** A peer could not be reached (once per failed stream, or per send() that had to drop). Never called from inside send(). */
  onUnreachable(peer: NodeId): void;
  /** The outcome of a snapshot sent to `peer`. */
  onSnapshotStatus(peer: NodeId, ok: boolean): void;
  logger: Logger;
  /** Bytes per InstallSnapshot chunk (default 1 MiB). */
  snapshotChunkBytes?: number;
  /** Bytes written to a peer's stream and not yet taken by HTTP/2; beyond it messages to that peer are dropped (default 32 MiB). */
  maxQueuedBytesPerPeer?: number;
  /** Largest snapshot this node accepts (default 1 GiB). */
  maxSnapshotBytes?: number;
  /** Deadline of each long-lived stream (default 5 min); a stream is replaced shortly before it. */
  streamDeadlineMs?: number;
}

export interface PeerStatus {
  id: NodeId;
  address: string;
  /** The stream to the peer is open and the peer has answered it. */
  connected: boolean;
  /** Date.now() of the last message received from that peer, null if none yet. */
  lastContactMs: number | null;
  droppedMessages: number;
  sentBatches: number;
  /** Bytes waiting to be written or written and not yet handed to HTTP/2 (a peer that does not keep up). */
  queuedBytes: number;
}

/** Metadata on every peer call: lets the receiver refuse a foreign cluster before any data. */
export const CLUSTER_ID_METADATA = "raftkv-cluster-id";
export const FROM_METADATA = "raftkv-from";

/** Writes a stream may have waiting for HTTP/2 before further messages are coalesced instead. */
const MAX_WRITES_IN_FLIGHT = 2;
/** Largest MessageBatch a sender writes as one gRPC message when it can split (a lone bigger message is sent as is). */
export const MAX_BATCH_BYTES = 2 * 1024 * 1024;
/** The largest single gRPC message a peer server should accept (a message with one large entry can exceed MAX_BATCH_BYTES). */
export const MAX_PEER_MESSAGE_BYTES = 64 * 1024 * 1024;

/**
 * Options for the grpc.Server that serves the Raft service: accept large messages and ping idle
 * clients so half-open streams from dead peers are noticed.
 */
export const PEER_SERVER_OPTIONS: grpc.ServerOptions = {
  "grpc.max_receive_message_length": MAX_PEER_MESSAGE_BYTES,
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
};

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // A dead peer (no RST: power loss, partition) is noticed within ~15 s even when idle.
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  // grpc-js's own reconnect and DNS re-resolution back off to minutes by default; a peer pod that
  // comes back (or appears in DNS) must be reached within seconds.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
  "grpc.dns_min_time_between_resolutions_ms": 1_000,
  // Raft messages are never retried by gRPC (the protocol retransmits), so nothing is buffered for it.
  "grpc.enable_retries": 0,
  "grpc.enable_http_proxy": 0,
  // Each transport owns its connections (tests run several in one process).
  "grpc.use_local_subchannel_pool": 1,
  "grpc.max_send_message_length": -1,
};

const DEFAULT_STREAM_DEADLINE_MS = 5 * 60_000;
/** Streams are replaced this long before their deadline (at most), so no message is lost to DEADLINE_EXCEEDED. */
const STREAM_ROTATE_MARGIN_MS = 30_000;
/** A stream the peer has not answered (response headers) within this is given up and retried. */
const CONNECT_TIMEOUT_MS = 5_000;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2_000;
/** A stream that lived at least this long resets the backoff when it fails. */
const STABLE_STREAM_MS = 1_000;
const DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024;
const DEFAULT_SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
const DEFAULT_MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024;
/**
 * Snapshots received at once. Each is held in memory until the core takes it, so this bounds
 * what streams from peers can pin (one leader sends at a time; two covers a leader change).
 */
export const MAX_SNAPSHOTS_RECEIVING = 2;
/** Snapshot deadline: a base plus the time to move the payload at a pessimistic 1 MiB/s. */
const SNAPSHOT_DEADLINE_BASE_MS = 30_000;
const SNAPSHOT_MIN_BYTES_PER_MS = 1024 * 1024 / 1000;
/** How long close() waits for streams to flush before cancelling them. */
const CLOSE_GRACE_MS = 1_000;
const LOG_REPEAT_MS = 10_000;

const STREAM_PATH = pb.RaftService.stream.path;
const SNAPSHOT_PATH = pb.RaftService.installSnapshot.path;

/** Types a peer may send on the stream (local-only types and Snap, which has its own call, are refused). */
const PEER_STREAM_TYPES: boolean[] = (() => {
  const ok: boolean[] = [];
  for (let t = MessageType.Hup; t <= MessageType.PreVoteResp; t++) ok[t] = true;
  for (const t of [MessageType.Hup, MessageType.Beat, MessageType.Unreachable, MessageType.SnapStatus, MessageType.CheckQuorum, MessageType.Snap]) {
    ok[t] = false;
  }
  return ok;
})();

const identity = (b: Buffer): Buffer => b;
const emptyAck = (): pb.StreamAck => ({});
const encodeStreamAck = (): Buffer => Buffer.alloc(0);
const encodeSnapshotAck = (a: pb.SnapshotAck): Buffer => Buffer.from(pb.SnapshotAck.encode(a).finish());
function decodeSnapshotAck(b: Buffer): pb.SnapshotAck {
  try {
    return pb.SnapshotAck.decode(b);
  } catch (e) {
    return { accepted: false, error: `malformed SnapshotAck: ${errMessage(e)}` };
  }
}

/**
 * The Raft service with the hot messages left as raw bytes: codec.ts encodes and decodes them
 * (and a decoding failure becomes a logged status, not a grpc-js internal error). On the wire it
 * is exactly raftkv.v1.Raft.
 */
const RAW_RAFT_SERVICE: grpc.ServiceDefinition = {
  stream: {
    path: STREAM_PATH,
    requestStream: true,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: encodeStreamAck,
    responseDeserialize: emptyAck,
  },
  installSnapshot: {
    path: SNAPSHOT_PATH,
    requestStream: true,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: encodeSnapshotAck,
    responseDeserialize: decodeSnapshotAck,
  },
};

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function firstString(values: grpc.MetadataValue[]): string | undefined {
  const v = values[0];
  return v === undefined ? undefined : typeof v === "string" ? v : v.toString("utf8");
}

type StatusResponse = Partial<grpc.StatusObject>;

function status(code: grpc.status, details: string): StatusResponse {
  return { code, details };
}

function crc32cUpdate(crc: number, bytes: Uint8Array): number {
  return CRC32C.buf(bytes, crc | 0) >>> 0;
}

/** One Raft.Stream call to a peer. */
interface OutStream {
  call: grpc.ClientWritableStream<Buffer>;
  /** The peer has answered (response headers): it exists and accepted us. */
  established: boolean;
  openedAt: number;
  establishedAt: number;
  /** Bytes written and not yet handed to HTTP/2 (write callbacks pending). */
  queuedBytes: number;
  writesInFlight: number;
  /** Due for replacement once its writes are out (see rotate). */
  rotateWhenIdle: boolean;
  /** Messages waiting for a write slot, coalesced into the next batch. */
  pending: Message[];
  pendingSizes: number[];
  pendingBytes: number;
  /** Why we gave the call up ourselves, if we did (connect timeout). */
  giveUpReason: string | undefined;
  connectTimer: NodeJS.Timeout | undefined;
  rotateTimer: NodeJS.Timeout | undefined;
  /** Resolves when the call has its final status. */
  done: Promise<void>;
}

type LinkState = "idle" | "connecting" | "connected" | "backoff";

class PeerLink {
  client: grpc.Client | undefined;
  stream: OutStream | undefined;
  state: LinkState = "idle";
  /** What the log last said about this peer (so it says it once per change). */
  logged: "nothing" | "connected" | "unreachable" = "nothing";
  congested = false;
  backoffMs = BACKOFF_MIN_MS;
  retryTimer: NodeJS.Timeout | undefined;
  dropped = 0;
  sentBatches = 0;
  snapshotCall: grpc.ClientWritableStream<Buffer> | undefined;
  snapshotInFlight = false;
  constructor(
    readonly id: NodeId,
    readonly address: string,
  ) {}
}

/** Logs a repeated condition at most once per LOG_REPEAT_MS per key, with how many were suppressed. */
class LogLimiter {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  allow(key: string): number | false {
    const now = Date.now();
    const s = this.last.get(key);
    if (s !== undefined && now - s.at < LOG_REPEAT_MS) {
      s.suppressed++;
      return false;
    }
    if (this.last.size > 1000) this.last.clear();
    this.last.set(key, { at: now, suppressed: 0 });
    return s?.suppressed ?? 0;
  }
}

export class PeerTransport {
  private readonly selfId: NodeId;
  private readonly clusterId: string;
  private readonly handler: TransportHandler;
  private readonly log: Logger;
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly lastContact = new Map<NodeId, number>();
  private readonly inbound = new Set<(s: StatusResponse) => void>();
  private readonly limiter = new LogLimiter();
  private readonly chunkBytes: number;
  private readonly maxQueued: number;
  private readonly maxSnapshotBytes: number;
  private readonly streamDeadlineMs: number;
  private closed = false;
  private closing: Promise<void> | undefined;
  private snapshotsReceiving = 0;

  constructor(private readonly opts: PeerTransportOptions) {
    if (opts.selfId === "") throw new Error("PeerTransport: selfId must not be empty");
    this.selfId = opts.selfId;
    this.clusterId = opts.clusterId;
    this.handler = opts.handler;
    this.log = opts.logger;
    this.chunkBytes = opts.snapshotChunkBytes ?? DEFAULT_SNAPSHOT_CHUNK_BYTES;
    this.maxQueued = opts.maxQueuedBytesPerPeer ?? DEFAULT_MAX_QUEUED_BYTES;
    this.maxSnapshotBytes = opts.maxSnapshotBytes ?? DEFAULT_MAX_SNAPSHOT_BYTES;
    this.streamDeadlineMs = opts.streamDeadlineMs ?? DEFAULT_STREAM_DEADLINE_MS;
    if (!(this.streamDeadlineMs >= 100)) throw new Error(`PeerTransport: streamDeadlineMs must be at least 100, got ${this.streamDeadlineMs}`);
    if (!(this.chunkBytes > 0)) throw new Error(`PeerTransport: snapshotChunkBytes must be positive, got ${this.chunkBytes}`);
    for (const p of opts.peers) {
      if (p.id === this.selfId) continue;
      if (this.links.has(p.id)) throw new Error(`PeerTransport: peer ${p.id} listed twice`);
      this.links.set(p.id, new PeerLink(p.id, p.address));
    }
  }

  // -------------------------------------------------------------------------------------------
  // Sending

  /**
   * Non-blocking. Groups by m.to; MessageType.Snap goes over InstallSnapshot (one at a time per
   * peer, chunked), everything else over the peer's long-lived Stream as MessageBatch.
   */
  send(msgs: Message[]): void {
    if (this.closed || msgs.length === 0) return;
    // The common case is one peer per call or a handful: a linear scan beats a Map here.
    let firstTo: NodeId | undefined;
    let first: Message[] | undefined;
    let others: Map<NodeId, Message[]> | undefined;
    for (const m of msgs) {
      if (m.type === MessageType.Snap) {
        this.sendSnapshot(m);
        continue;
      }
      if (first === undefined || m.to === firstTo) {
        firstTo = m.to;
        (first ??= []).push(m);
        continue;
      }
      others ??= new Map();
      let g = others.get(m.to);
      if (g === undefined) others.set(m.to, (g = []));
      g.push(m);
    }
    if (first !== undefined) this.sendTo(firstTo!, first);
    if (others !== undefined) for (const [to, g] of others) this.sendTo(to, g);
  }

  private sendTo(to: NodeId, msgs: Message[]): void {
    const link = this.links.get(to);
    if (link === undefined) {
      const n = this.limiter.allow(`unknown-peer:${to}`);
      if (n !== false) this.log.warn({ peer: to, count: msgs.length, suppressed: n }, "dropping messages for a node that is not a configured peer");
      return;
    }
    if (link.state === "idle") this.openStream(link);
    const s = link.stream;
    if (s === undefined) {
      // Backing off after a failure that was already reported: Raft retransmits what matters.
      link.dropped += msgs.length;
      return;
    }
    let sizes: number[];
    try {
      sizes = msgs.map(messageBodySize);
    } catch (e) {
      link.dropped += msgs.length;
      this.log.error({ peer: to, err: errMessage(e) }, "cannot encode raft messages (a bug in their producer); dropped");
      return;
    }
    let dropped = 0;
    for (let i = 0; i < msgs.length; i++) {
      const frame = messageFrameSize(sizes[i]!);
      const held = s.queuedBytes + s.pendingBytes;
      if (held > 0 && held + frame > this.maxQueued) {
        dropped++;
        continue;
      }
      s.pending.push(msgs[i]!);
      s.pendingSizes.push(sizes[i]!);
      s.pendingBytes += frame;
    }
    if (dropped > 0) {
      link.dropped += dropped;
      if (!link.congested) {
        link.congested = true;
        this.log.warn({ peer: to, queuedBytes: s.queuedBytes + s.pendingBytes }, "peer is not keeping up: dropping messages to it");
      }
      this.defer(() => this.opts.onUnreachable(to));
    }
    this.flush(link, s);
  }

  /**
   * Writes pending messages as MessageBatches while fewer than MAX_WRITES_IN_FLIGHT writes wait
   * for HTTP/2. An idle stream therefore sends at once (no added latency); a busy one coalesces
   * whatever arrives meanwhile into the next batch, which is what keeps per-gRPC-message costs
   * (on both ends) from capping throughput.
   */
  private flush(link: PeerLink, s: OutStream): void {
    if (s.rotateWhenIdle) {
      if (s.writesInFlight === 0) this.rotate(link, s);
      return;
    }
    while (s.pending.length > 0 && s.writesInFlight < MAX_WRITES_IN_FLIGHT) {
      let msgs = s.pending;
      let sizes = s.pendingSizes;
      if (s.pendingBytes > MAX_BATCH_BYTES) {
        let n = 0;
        let bytes = 0;
        while (n < msgs.length && (n === 0 || bytes + messageFrameSize(sizes[n]!) <= MAX_BATCH_BYTES)) {
          bytes += messageFrameSize(sizes[n]!);
          n++;
        }
        msgs = s.pending.splice(0, n);
        sizes = s.pendingSizes.splice(0, n);
        s.pendingBytes -= bytes;
      } else {
        s.pending = [];
        s.pendingSizes = [];
        s.pendingBytes = 0;
      }
      const buf = encodeBatch(this.clusterId, msgs, sizes);
      s.queuedBytes += buf.length;
      s.writesInFlight++;
      link.sentBatches++;
      s.call.write(buf, () => {
        s.queuedBytes -= buf.length;
        s.writesInFlight--;
        if (link.stream !== s || this.closed) return;
        if (link.congested && s.queuedBytes + s.pendingBytes <= this.maxQueued / 2) {
          link.congested = false;
          this.log.info({ peer: link.id }, "peer caught up: sending to it again");
        }
        this.flush(link, s);
      });
    }
  }

  private openStream(link: PeerLink, rotating = false): void {
    let client = link.client;
    if (client === undefined) {
      try {
        client = link.client = new grpc.Client(link.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      } catch (e) {
        // An address grpc cannot even parse: retried like any other failure, and said loudly.
        const n = this.limiter.allow(`bad-address:${link.id}`);
        if (n !== false) this.log.error({ peer: link.id, address: link.address, err: errMessage(e), suppressed: n }, "invalid peer address");
        this.streamFailed(link, undefined, `invalid address: ${errMessage(e)}`);
        return;
      }
    }
    const md = new grpc.Metadata();
    md.set(CLUSTER_ID_METADATA, this.clusterId);
    md.set(FROM_METADATA, this.selfId);
    let resolveDone!: () => void;
    const s: OutStream = {
      call: undefined as unknown as grpc.ClientWritableStream<Buffer>,
      established: false,
      openedAt: Date.now(),
      establishedAt: 0,
      queuedBytes: 0,
      writesInFlight: 0,
      rotateWhenIdle: false,
      pending: [],
      pendingSizes: [],
      pendingBytes: 0,
      giveUpReason: undefined,
      connectTimer: undefined,
      rotateTimer: undefined,
      done: new Promise<void>((r) => (resolveDone = r)),
    };
    try {
      s.call = client.makeClientStreamRequest<Buffer, pb.StreamAck>(
        STREAM_PATH,
        identity,
        emptyAck,
        md,
        { deadline: Date.now() + this.streamDeadlineMs },
        (err) => {
          resolveDone();
          this.onStreamStatus(link, s, err);
        },
      );
    } catch (e) {
      this.streamFailed(link, undefined, `cannot start a call: ${errMessage(e)}`);
      return;
    }
    s.call.on("metadata", () => this.onStreamEstablished(link, s));
    // Client-streaming calls report failures through the callback; this only guards against a
    // stray stream error becoming an uncaught exception.
    s.call.on("error", (e: Error) => this.log.debug({ peer: link.id, err: e.message }, "stream error"));
    s.connectTimer = setTimeout(() => {
      if (s.established) return;
      s.giveUpReason = `no answer within ${CONNECT_TIMEOUT_MS} ms`;
      s.call.cancel();
    }, CONNECT_TIMEOUT_MS);
    s.connectTimer.unref();
    const margin = Math.min(STREAM_ROTATE_MARGIN_MS, this.streamDeadlineMs / 10);
    s.rotateTimer = setTimeout(() => this.rotate(link, s), this.streamDeadlineMs - margin);
    s.rotateTimer.unref();
    link.stream = s;
    if (!rotating) link.state = "connecting";
  }

  private onStreamEstablished(link: PeerLink, s: OutStream): void {
    if (this.closed || link.stream !== s || s.established) return;
    s.established = true;
    s.establishedAt = Date.now();
    clearTimeout(s.connectTimer);
    link.state = "connected";
    if (link.logged !== "connected") {
      link.logged = "connected";
      this.log.info({ peer: link.id, address: link.address }, "peer connected");
    }
  }

  /**
   * Replaces a stream before its deadline; the old one is half-closed so what it holds still
   * arrives. It waits until HTTP/2 has taken every write of the old stream (messages meanwhile
   * wait in `pending`), so nothing written on the new stream can overtake them.
   */
  private rotate(link: PeerLink, old: OutStream): void {
    if (this.closed || link.stream !== old) return;
    if (old.writesInFlight > 0) {
      old.rotateWhenIdle = true;
      return;
    }
    this.log.debug({ peer: link.id }, "replacing the stream before its deadline");
    this.openStream(link, old.established);
    const next = link.stream;
    if (next !== undefined && next !== old) {
      // What was still waiting for a write slot goes out on the new stream.
      next.pending = old.pending;
      next.pendingSizes = old.pendingSizes;
      next.pendingBytes = old.pendingBytes;
      old.pending = [];
      old.pendingSizes = [];
      old.pendingBytes = 0;
      this.flush(link, next);
    } else {
      link.dropped += old.pending.length;
    }
    this.endStream(old);
  }

  private endStream(s: OutStream): void {
    clearTimeout(s.connectTimer);
    clearTimeout(s.rotateTimer);
    s.call.end();
  }

  private onStreamStatus(link: PeerLink, s: OutStream, err: grpc.ServiceError | null): void {
    clearTimeout(s.connectTimer);
    clearTimeout(s.rotateTimer);
    if (link.stream !== s) {
      // A rotated-out stream finishing (normally with OK).
      if (err && !this.closed) this.log.debug({ peer: link.id, code: err.code, err: err.details }, "old stream ended");
      return;
    }
    link.stream = undefined;
    link.dropped += s.pending.length;
    if (this.closed) return;
    // The peer only ends a stream when we end it, so any status here means it is gone.
    const reason = s.giveUpReason ?? (err ? `${grpc.status[err.code] ?? err.code}: ${err.details}` : "stream ended by the peer");
    if (s.established && Date.now() - s.establishedAt >= STABLE_STREAM_MS) link.backoffMs = BACKOFF_MIN_MS;
    this.streamFailed(link, err?.code, reason);
  }

  private streamFailed(link: PeerLink, code: grpc.status | undefined, reason: string): void {
    link.stream = undefined;
    link.state = "backoff";
    clearTimeout(link.retryTimer);
    link.congested = false;
    this.defer(() => this.opts.onUnreachable(link.id));
    const fields = { peer: link.id, address: link.address, reason, retryInMs: link.backoffMs };
    if (code === grpc.status.FAILED_PRECONDITION) {
      // A configuration error (another cluster answering at this address): worth repeating.
      const n = this.limiter.allow(`refused:${link.id}`);
      if (n !== false) this.log.error({ ...fields, suppressed: n }, "peer refused our stream");
    }
    if (link.logged !== "unreachable") {
      link.logged = "unreachable";
      this.log.warn(fields, "peer unreachable; retrying with backoff");
    } else {
      this.log.debug(fields, "peer still unreachable");
    }
    // Equal jitter: half fixed, half random, so peers that failed together do not retry together.
    const delay = link.backoffMs / 2 + Math.random() * (link.backoffMs / 2);
    link.backoffMs = Math.min(link.backoffMs * 2, BACKOFF_MAX_MS);
    link.retryTimer = setTimeout(() => {
      link.retryTimer = undefined;
      if (!this.closed) this.openStream(link);
    }, delay);
    link.retryTimer.unref();
  }

  // -------------------------------------------------------------------------------------------
  // Snapshots, sending side

  private sendSnapshot(m: Message): void {
    const link = this.links.get(m.to);
    if (link === undefined) {
      this.log.warn({ peer: m.to }, "dropping a snapshot for a node that is not a configured peer");
      this.defer(() => this.opts.onSnapshotStatus(m.to, false));
      return;
    }
    if (link.snapshotInFlight) {
      // The core does not send another until it hears about this one; if it does, the first wins.
      this.log.info({ peer: m.to, index: m.snapshot?.meta.index }, "a snapshot to this peer is already in flight; dropping another");
      return;
    }
    link.snapshotInFlight = true;
    const started = Date.now();
    this.streamSnapshot(link, m).then(
      (r) => {
        link.snapshotInFlight = false;
        link.snapshotCall = undefined;
        if (this.closed) return;
        const fields = { peer: link.id, index: m.snapshot?.meta.index, bytes: r.bytes, chunks: r.chunks, ms: Date.now() - started };
        if (r.ok) this.log.info(fields, "snapshot sent");
        else this.log.warn({ ...fields, reason: r.reason }, "snapshot not installed");
        if (r.unreachable) this.defer(() => this.opts.onUnreachable(link.id));
        this.defer(() => this.opts.onSnapshotStatus(link.id, r.ok));
      },
      (e: unknown) => {
        // streamSnapshot catches everything; this is a last line of defence.
        link.snapshotInFlight = false;
        link.snapshotCall = undefined;
        if (this.closed) return;
        this.log.error({ peer: link.id, err: errMessage(e) }, "snapshot send failed");
        this.defer(() => this.opts.onSnapshotStatus(link.id, false));
      },
    );
  }

  private async streamSnapshot(
    link: PeerLink,
    m: Message,
  ): Promise<{ ok: boolean; unreachable: boolean; reason: string; bytes: number; chunks: number }> {
    const fail = (reason: string, unreachable = false, bytes = 0, chunks = 0) => ({ ok: false, unreachable, reason, bytes, chunks });
    const meta = m.snapshot?.meta;
    if (meta === undefined) return fail("Snap message without snapshot metadata");
    // The payload is gathered first so the deadline can be proportional to its size (the core
    // holds snapshots in memory anyway: Snapshot.data is one Uint8Array).
    const pieces: Uint8Array[] = [];
    let size = 0;
    let crc = 0;
    try {
      const inline = m.snapshot!.data;
      const source: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = inline.length > 0 ? [inline] : this.opts.snapshotSource(meta);
      for await (const p of source) {
        if (this.closed) return fail("transport closed");
        if (p.length === 0) continue;
        pieces.push(p);
        size += p.length;
        crc = crc32cUpdate(crc, p);
      }
    } catch (e) {
      return fail(`reading the snapshot failed: ${errMessage(e)}`);
    }
    if (this.closed) return fail("transport closed");
    let client = link.client;
    if (client === undefined) {
      try {
        client = link.client = new grpc.Client(link.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
      } catch (e) {
        return fail(`invalid address: ${errMessage(e)}`, true);
      }
    }
    const md = new grpc.Metadata();
    md.set(CLUSTER_ID_METADATA, this.clusterId);
    md.set(FROM_METADATA, this.selfId);
    const deadline = Date.now() + SNAPSHOT_DEADLINE_BASE_MS + Math.ceil(size / SNAPSHOT_MIN_BYTES_PER_MS);
    let finished = false;
    const result = new Promise<{ err: grpc.ServiceError | null; ack: pb.SnapshotAck | undefined }>((resolve) => {
      link.snapshotCall = client.makeClientStreamRequest<Buffer, pb.SnapshotAck>(
        SNAPSHOT_PATH,
        identity,
        decodeSnapshotAck,
        md,
        { deadline },
        (err, ack) => {
          finished = true;
          resolve({ err, ack });
        },
      );
    });
    const call = link.snapshotCall!;
    call.on("error", (e: Error) => this.log.debug({ peer: link.id, err: e.message }, "snapshot stream error"));
    const header: Message = { ...m, snapshot: { meta, data: EMPTY_BYTES } };
    let chunks = 0;
    let offset = 0;
    const write = async (data: Uint8Array, done: boolean): Promise<void> => {
      const buf = encodeSnapshotChunk({
        clusterId: this.clusterId,
        message: chunks === 0 ? header : undefined,
        offset,
        data,
        done,
        crc32c: done ? crc : 0,
        totalSize: size,
      });
      chunks++;
      offset += data.length;
      if (!call.write(buf)) {
        await new Promise<void>((resolve) => {
          const onDrain = () => resolve();
          call.once("drain", onDrain);
          void result.then(() => {
            call.off("drain", onDrain);
            resolve();
          });
        });
      }
    };
    if (size === 0) {
      await write(EMPTY_BYTES, true);
    } else {
      outer: for (let i = 0; i < pieces.length; i++) {
        const p = pieces[i]!;
        for (let at = 0; at < p.length; at += this.chunkBytes) {
          if (finished || this.closed) break outer;
          const end = Math.min(at + this.chunkBytes, p.length);
          await write(p.subarray(at, end), i === pieces.length - 1 && end === p.length);
        }
      }
    }
    if (!finished) call.end();
    const { err, ack } = await result;
    if (err) {
      const unreachable =
        err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED || err.code === grpc.status.CANCELLED;
      return fail(`${grpc.status[err.code] ?? err.code}: ${err.details}`, unreachable, size, chunks);
    }
    if (!ack?.accepted) return fail(`peer did not accept it: ${ack?.error || "no reason given"}`, false, size, chunks);
    return { ok: true, unreachable: false, reason: "", bytes: size, chunks };
  }

  // -------------------------------------------------------------------------------------------
  // Receiving

  /** Adds the Raft gRPC service (Stream + InstallSnapshot) to a server the node owns (see PEER_SERVER_OPTIONS). */
  addToServer(server: grpc.Server): void {
    server.addService(RAW_RAFT_SERVICE, {
      stream: (call: grpc.ServerReadableStream<Buffer, pb.StreamAck>, cb: grpc.sendUnaryData<pb.StreamAck>) =>
        this.serveStream(call, cb),
      installSnapshot: (call: grpc.ServerReadableStream<Buffer, pb.SnapshotAck>, cb: grpc.sendUnaryData<pb.SnapshotAck>) =>
        this.serveInstallSnapshot(call, cb),
    });
  }

  /** Checks the call's metadata; returns a refusal, or undefined to go on. */
  private admit(call: grpc.ServerReadableStream<Buffer, unknown>, what: string): StatusResponse | undefined {
    if (this.closed) return status(grpc.status.UNAVAILABLE, `node ${this.selfId} is shutting down`);
    const cluster = firstString(call.metadata.get(CLUSTER_ID_METADATA));
    if (cluster !== undefined && cluster !== this.clusterId) {
      this.refusedCluster(call.getPeer(), firstString(call.metadata.get(FROM_METADATA)), cluster, what);
      return status(grpc.status.FAILED_PRECONDITION, `cluster id "${cluster}" does not match this node's "${this.clusterId}"`);
    }
    return undefined;
  }

  private refusedCluster(remote: string, from: string | undefined, cluster: string, what: string): void {
    const n = this.limiter.allow(`cluster:${remote}:${cluster}`);
    if (n !== false) {
      this.log.warn(
        { remote, from, theirClusterId: cluster, clusterId: this.clusterId, suppressed: n },
        `refused ${what} from another cluster`,
      );
    }
  }

  private serveStream(call: grpc.ServerReadableStream<Buffer, pb.StreamAck>, callback: grpc.sendUnaryData<pb.StreamAck>): void {
    const refusal = this.admit(call, "a stream");
    if (refusal) {
      callback(refusal);
      return;
    }
    const remote = call.getPeer();
    let finished = false;
    const finish = (s: StatusResponse | null): void => {
      if (finished) return;
      finished = true;
      this.inbound.delete(finish);
      if (s === null) callback(null, {});
      else callback(s);
    };
    this.inbound.add(finish);
    // Answer at once: the sender counts the peer as connected when these headers arrive.
    call.sendMetadata(new grpc.Metadata());
    call.on("data", (buf: Buffer) => {
      if (finished) return;
      const problem = this.receiveBatch(buf, remote);
      if (problem) finish(problem);
    });
    call.on("end", () => finish(null));
    call.on("cancelled", () => {
      finished = true;
      this.inbound.delete(finish);
    });
    call.on("error", (e: Error) => {
      finished = true;
      this.inbound.delete(finish);
      this.log.debug({ remote, err: e.message }, "inbound stream error");
    });
  }

  /** Decodes, checks and delivers one batch; returns a status that ends the stream, if any. */
  private receiveBatch(buf: Buffer, remote: string): StatusResponse | undefined {
    let batch;
    try {
      batch = decodeBatch(buf);
    } catch (e) {
      const why = e instanceof DecodeError ? e.message : `decoder failure: ${errMessage(e)}`;
      const n = this.limiter.allow(`malformed:${remote}`);
      if (n !== false) this.log.warn({ remote, bytes: buf.length, err: why, suppressed: n }, "malformed MessageBatch on the peer port; closing that stream");
      return status(grpc.status.INVALID_ARGUMENT, `malformed MessageBatch: ${why}`);
    }
    if (batch.clusterId !== this.clusterId) {
      this.refusedCluster(remote, batch.messages[0]?.from, batch.clusterId, "a batch");
      return status(grpc.status.FAILED_PRECONDITION, `cluster id "${batch.clusterId}" does not match this node's "${this.clusterId}"`);
    }
    let msgs = batch.messages;
    for (let i = 0; i < msgs.length; i++) {
      if (this.inboundProblem(msgs[i]!) !== undefined) {
        msgs = this.dropBadMessages(msgs, remote);
        break;
      }
    }
    if (msgs.length === 0) return undefined;
    const now = Date.now();
    let lastFrom = "";
    for (let i = 0; i < msgs.length; i++) {
      const from = msgs[i]!.from;
      if (from !== lastFrom) {
        this.lastContact.set(from, now);
        lastFrom = from;
      }
    }
    try {
      this.handler.onMessages(msgs);
    } catch (e) {
      this.log.error({ remote, err: errMessage(e) }, "handler.onMessages threw; messages dropped");
    }
    return undefined;
  }

  private dropBadMessages(msgs: Message[], remote: string): Message[] {
    const kept: Message[] = [];
    for (const m of msgs) {
      const problem = this.inboundProblem(m);
      if (problem === undefined) {
        kept.push(m);
        continue;
      }
      const n = this.limiter.allow(`bad-message:${remote}:${problem.kind}`);
      if (n !== false) {
        this.log.warn({ remote, from: m.from, to: m.to, type: m.type, reason: problem.reason, suppressed: n }, "dropped a message from a peer");
      }
    }
    return kept;
  }

  private inboundProblem(m: Message): { kind: string; reason: string } | undefined {
    if (m.to !== this.selfId) return { kind: "to", reason: `addressed to "${m.to}", this node is "${this.selfId}"` };
    if (m.from === "" || m.from === this.selfId) return { kind: "from", reason: `bad sender "${m.from}"` };
    if (PEER_STREAM_TYPES[m.type] !== true) {
      const name = MessageType[m.type];
      return {
        kind: `type ${m.type}`,
        reason:
          m.type === MessageType.Snap
            ? "a snapshot must come on InstallSnapshot"
            : name === undefined
              ? `unknown message type ${m.type}`
              : `${name} is not a peer message`,
      };
    }
    const ents = m.entries;
    for (let i = 0; i < ents.length; i++) {
      const t = ents[i]!.type;
      if (t !== EntryType.Normal && t !== EntryType.ConfChange) {
        return { kind: "entry", reason: `entry ${ents[i]!.index} has unknown type ${t}` };
      }
    }
    return undefined;
  }

  private serveInstallSnapshot(
    call: grpc.ServerReadableStream<Buffer, pb.SnapshotAck>,
    callback: grpc.sendUnaryData<pb.SnapshotAck>,
  ): void {
    const refusal = this.admit(call, "a snapshot");
    if (refusal) {
      callback(refusal);
      return;
    }
    const remote = call.getPeer();
    const claimedFrom = firstString(call.metadata.get(FROM_METADATA));
    if (this.snapshotsReceiving >= MAX_SNAPSHOTS_RECEIVING) {
      const details = `already receiving ${this.snapshotsReceiving} snapshots; try again later`;
      const n = this.limiter.allow(`snapshots-busy:${remote}`);
      if (n !== false) this.log.warn({ remote, from: claimedFrom, suppressed: n }, `refused a snapshot stream: ${details}`);
      callback(status(grpc.status.RESOURCE_EXHAUSTED, details));
      return;
    }
    this.snapshotsReceiving++;
    let holding = true;
    const release = (): void => {
      if (!holding) return;
      holding = false;
      this.snapshotsReceiving--;
    };
    let finished = false;
    let header: Message | undefined;
    let pieces: Uint8Array[] = [];
    let received = 0;
    let crc = 0;
    let complete = false;
    const finish = (s: StatusResponse | null, ack?: pb.SnapshotAck): void => {
      if (finished) return;
      finished = true;
      pieces = [];
      release();
      this.inbound.delete(finish);
      if (s === null) callback(null, ack);
      else callback(s);
    };
    const refuse = (code: grpc.status, details: string): void => {
      if (finished) return;
      this.log.warn({ remote, from: header?.from ?? claimedFrom, code: grpc.status[code], reason: details }, "refused a snapshot stream");
      finish(status(code, details));
    };
    this.inbound.add(finish);
    call.on("data", (buf: Buffer) => {
      if (finished) return;
      let c;
      try {
        c = decodeSnapshotChunk(buf);
      } catch (e) {
        refuse(grpc.status.INVALID_ARGUMENT, `malformed SnapshotChunk: ${errMessage(e)}`);
        return;
      }
      if (c.clusterId !== this.clusterId) {
        this.refusedCluster(remote, c.message?.from ?? claimedFrom, c.clusterId, "a snapshot chunk");
        finish(status(grpc.status.FAILED_PRECONDITION, `cluster id "${c.clusterId}" does not match this node's "${this.clusterId}"`));
        return;
      }
      if (complete) return refuse(grpc.status.INVALID_ARGUMENT, "a chunk after the last one (done)");
      if (header === undefined) {
        const m = c.message;
        if (m === undefined) return refuse(grpc.status.INVALID_ARGUMENT, "the first chunk carries no message");
        if (m.type !== MessageType.Snap || m.snapshot === undefined) {
          return refuse(grpc.status.INVALID_ARGUMENT, `the first chunk's message is type ${MessageType[m.type] ?? m.type} without snapshot metadata, not Snap`);
        }
        if (m.to !== this.selfId) return refuse(grpc.status.INVALID_ARGUMENT, `snapshot addressed to "${m.to}", this node is "${this.selfId}"`);
        if (m.from === "" || m.from === this.selfId) return refuse(grpc.status.INVALID_ARGUMENT, `bad sender "${m.from}"`);
        header = m;
      }
      if (c.offset !== received) {
        return refuse(grpc.status.INVALID_ARGUMENT, `chunk at offset ${c.offset}, expected ${received} (a gap or an overlap)`);
      }
      received += c.data.length;
      if (received > this.maxSnapshotBytes || c.totalSize > this.maxSnapshotBytes) {
        return refuse(grpc.status.RESOURCE_EXHAUSTED, `snapshot larger than this node's limit of ${this.maxSnapshotBytes} bytes`);
      }
      if (c.totalSize !== 0 && received > c.totalSize) {
        return refuse(grpc.status.INVALID_ARGUMENT, `${received} bytes received, more than total_size ${c.totalSize}`);
      }
      if (c.data.length > 0) {
        crc = crc32cUpdate(crc, c.data);
        pieces.push(c.data);
      }
      if (c.done) {
        if (received !== c.totalSize) {
          return refuse(grpc.status.INVALID_ARGUMENT, `${received} bytes received, the last chunk says total_size ${c.totalSize}`);
        }
        if (crc !== c.crc32c) {
          return refuse(grpc.status.DATA_LOSS, `CRC32C mismatch: payload has ${hex32(crc)}, the sender says ${hex32(c.crc32c)}`);
        }
        complete = true;
      }
    });
    call.on("end", () => {
      if (finished) return;
      if (!complete || header === undefined) {
        return refuse(
          grpc.status.INVALID_ARGUMENT,
          header === undefined ? "the stream ended before any chunk" : `the stream ended after ${received} bytes without the last chunk`,
        );
      }
      const data = pieces.length === 0 ? EMPTY_BYTES : pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, received);
      pieces = [];
      const msg: Message = { ...header, snapshot: { meta: header.snapshot!.meta, data } };
      this.lastContact.set(msg.from, Date.now());
      const meta = msg.snapshot!.meta;
      const fields = { remote, from: msg.from, index: meta.index, term: meta.term, bytes: received };
      this.log.info(fields, "snapshot received; handing it to the core");
      let taken: Promise<void>;
      try {
        taken = Promise.resolve(this.handler.onSnapshot(msg));
      } catch (e) {
        taken = Promise.reject(e);
      }
      taken.then(
        () => finish(null, { accepted: true, error: "" }),
        (e: unknown) => {
          this.log.warn({ ...fields, err: errMessage(e) }, "snapshot not accepted by the core");
          finish(null, { accepted: false, error: errMessage(e) });
        },
      );
    });
    call.on("cancelled", () => {
      if (finished) return;
      finished = true;
      pieces = [];
      release();
      this.inbound.delete(finish);
      this.log.info({ remote, from: header?.from ?? claimedFrom, bytes: received }, "snapshot stream cancelled by the sender");
    });
    call.on("error", (e: Error) => {
      finished = true;
      pieces = [];
      release();
      this.inbound.delete(finish);
      this.log.debug({ remote, err: e.message }, "inbound snapshot stream error");
    });
  }

  // -------------------------------------------------------------------------------------------

  /**
   * The last attempt to reach this peer failed and the next is not under way yet (a congested
   * peer, still connected, is reachable). Unknown peers are unreachable.
   */
  isUnreachable(id: NodeId): boolean {
    const link = this.links.get(id);
    return link === undefined || link.state === "backoff";
  }

  peerStatus(): PeerStatus[] {
    const out: PeerStatus[] = [];
    for (const l of this.links.values()) {
      out.push({
        id: l.id,
        address: l.address,
        connected: l.state === "connected",
        lastContactMs: this.lastContact.get(l.id) ?? null,
        droppedMessages: l.dropped,
        sentBatches: l.sentBatches,
        queuedBytes: l.stream === undefined ? 0 : l.stream.queuedBytes + l.stream.pendingBytes,
      });
    }
    return out;
  }

  /** Closes client streams and channels and ends inbound streams; idempotent. */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    this.closed = true;
    for (const finish of [...this.inbound]) finish(status(grpc.status.UNAVAILABLE, `node ${this.selfId} is shutting down`));
    const flushing: Array<Promise<void>> = [];
    const streams: OutStream[] = [];
    for (const l of this.links.values()) {
      clearTimeout(l.retryTimer);
      l.retryTimer = undefined;
      l.snapshotCall?.cancel();
      const s = l.stream;
      if (s !== undefined) {
        streams.push(s);
        flushing.push(s.done);
        this.endStream(s);
      }
      l.state = "idle";
    }
    this.closing = (async () => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(flushing), new Promise<void>((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))]);
      clearTimeout(timer);
      for (const s of streams) s.call.cancel();
      for (const l of this.links.values()) {
        l.client?.close();
        l.client = undefined;
        l.stream = undefined;
      }
    })();
    return this.closing;
  }

  /** Driver callbacks never run inside send() or a gRPC event handler's stack, and never after close(). */
  private defer(fn: () => void): void {
    queueMicrotask(() => {
      if (this.closed) return;
      try {
        fn();
      } catch (e) {
        this.log.error({ err: errMessage(e) }, "a transport callback threw");
      }
    });
  }
}

function hex32(n: number): string {
  return "0x" + n.toString(16).padStart(8, "0");
}
