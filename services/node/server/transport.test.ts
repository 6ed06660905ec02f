import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import CRC32C from "crc-32/crc32c.js";
import * as pb from "../../common/gen/raftkv/v1/raft.js";
import { EntryType, type Message, MessageType, type NodeId, type SnapshotMeta, emptyMessage } from "../raft/types.js";
import { encodeBatch, toProto } from "./codec.js";
import { CLUSTER_ID_METADATA, MAX_SNAPSHOTS_RECEIVING, PEER_SERVER_OPTIONS, PeerTransport, type PeerTransportOptions } from "./transport.js";

const CLUSTER = "test-cluster";

interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

/** One node's transport with everything it hands to its driver recorded. */
interface TestNode {
  id: NodeId;
  port: number;
  server: grpc.Server;
  transport: PeerTransport;
  received: Message[];
  snapshots: Message[];
  unreachable: NodeId[];
  snapshotStatus: Array<{ peer: NodeId; ok: boolean }>;
  logs: LogLine[];
}

const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function listen(port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(PEER_SERVER_OPTIONS);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  cleanups.push(() => void server.forceShutdown());
  return { server, port: bound };
}

function memoryLogger(lines: LogLine[]) {
  return pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
}

function makeNode(
  id: NodeId,
  listener: { server: grpc.Server; port: number },
  peers: Array<{ id: NodeId; address: string }>,
  extra: Partial<PeerTransportOptions> & { onSnapshot?: (m: Message) => Promise<void> } = {},
): TestNode {
  const node: TestNode = {
    id,
    port: listener.port,
    server: listener.server,
    transport: undefined as unknown as PeerTransport,
    received: [],
    snapshots: [],
    unreachable: [],
    snapshotStatus: [],
    logs: [],
  };
  const { onSnapshot, ...rest } = extra;
  node.transport = new PeerTransport({
    selfId: id,
    clusterId: CLUSTER,
    peers,
    handler: {
      onMessages: (msgs) => void node.received.push(...msgs),
      onSnapshot: async (m) => {
        if (onSnapshot) await onSnapshot(m);
        node.snapshots.push(m);
      },
    },
    snapshotSource: () => {
      throw new Error("no snapshot source in this test");
    },
    onUnreachable: (p) => void node.unreachable.push(p),
    onSnapshotStatus: (peer, ok) => void node.snapshotStatus.push({ peer, ok }),
    logger: memoryLogger(node.logs),
    ...rest,
  });
  node.transport.addToServer(listener.server);
  cleanups.push(() => node.transport.close());
  return node;
}

/** n nodes on loopback, each knowing all (itself included, as a config would list it). */
async function cluster(n: number, extra: Partial<PeerTransportOptions> = {}): Promise<TestNode[]> {
  const listeners = await Promise.all(Array.from({ length: n }, () => listen()));
  const peers = listeners.map((l, i) => ({ id: `n${i + 1}`, address: `127.0.0.1:${l.port}` }));
  return listeners.map((l, i) => makeNode(`n${i + 1}`, l, peers, extra));
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function app(from: NodeId, to: NodeId, index: number, entries = 0, entryBytes = 100): Message {
  const m = emptyMessage(MessageType.App, from, to, 2);
  m.index = index;
  m.logTerm = 2;
  m.commit = index;
  for (let i = 0; i < entries; i++) {
    const data = Buffer.alloc(entryBytes, (index + i) & 0xff);
    data.writeUInt32BE((index * 1000 + i) >>> 0, 0);
    m.entries.push({ term: 2, index: index + i + 1, type: EntryType.Normal, data });
  }
  return m;
}

function status(n: TestNode, peer: NodeId) {
  return n.transport.peerStatus().find((p) => p.id === peer)!;
}

/** A hand-made client for the raw Raft service, to send what a correct peer never would. */
function rawClient(port: number): grpc.Client {
  const c = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  cleanups.push(() => c.close());
  return c;
}

function rawCall(
  client: grpc.Client,
  path: string,
  frames: Buffer[],
  md = new grpc.Metadata(),
): Promise<{ err: grpc.ServiceError | null; ack: Buffer | undefined }> {
  return new Promise((resolve) => {
    const call = client.makeClientStreamRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      md,
      { deadline: Date.now() + 10_000 },
      (err, ack) => resolve({ err, ack }),
    );
    for (const f of frames) call.write(f);
    call.end();
  });
}

describe("PeerTransport: message streams", () => {
  test("three transports exchange message batches, each peer receiving its own in order", async () => {
    const [n1, n2, n3] = await cluster(3);
    for (let i = 1; i <= 500; i++) {
      // One send() per ready turn, with messages for both peers interleaved.
      n1!.transport.send([app("n1", "n2", i, i % 3), app("n1", "n3", i), app("n1", "n2", i)]);
      if (i % 50 === 0) await sleep(1);
    }
    n2!.transport.send([emptyMessage(MessageType.AppResp, "n2", "n1", 2)]);
    await waitFor("all messages", () => n2!.received.length === 1000 && n3!.received.length === 500 && n1!.received.length === 1);
    assert.deepEqual(
      n3!.received.map((m) => m.index),
      Array.from({ length: 500 }, (_, i) => i + 1),
    );
    assert.deepEqual(
      n2!.received.map((m) => m.index),
      Array.from({ length: 500 }, (_, i) => [i + 1, i + 1]).flat(),
    );
    const sample = n2!.received[2 * (299 - 1)]!; // the first message of send() number 299
    assert.equal(sample.entries.length, 299 % 3);
    assert.equal(Buffer.from(sample.entries[1]!.data).readUInt32BE(0), 299 * 1000 + 1);
    assert.ok(n2!.received.every((m) => m.from === "n1" && m.to === "n2" && m.type === MessageType.App));
    assert.equal(n1!.received[0]!.type, MessageType.AppResp);

    const s12 = status(n1!, "n2");
    assert.equal(s12.connected, true);
    assert.equal(s12.droppedMessages, 0);
    assert.ok(s12.sentBatches >= 1 && s12.sentBatches <= 500, `one batch per send() per peer, got ${s12.sentBatches}`);
    assert.ok(status(n2!, "n1").lastContactMs! > Date.now() - 10_000);
    assert.equal(status(n3!, "n2").lastContactMs, null, "n2 never sent to n3");
    assert.deepEqual(n1!.unreachable, []);
    assert.equal(n1!.logs.filter((l) => l.msg === "peer connected").length, 2, "connected logged once per peer");
  });

  test("a batch of many MiB is split into frames and arrives whole, as does one message bigger than a frame", async () => {
    const [n1, n2] = await cluster(2);
    const msgs: Message[] = [];
    for (let i = 0; i < 120; i++) msgs.push(app("n1", "n2", i * 1000, 1000)); // 120 x 1000 x 100 B = 12 MB
    const huge = app("n1", "n2", 999_999_000, 1, 6 * 1024 * 1024);
    n1!.transport.send([...msgs, huge]);
    await waitFor("the large batch", () => n2!.received.length === 121, 30_000);
    for (let i = 0; i < 120; i++) {
      const m = n2!.received[i]!;
      assert.equal(m.index, i * 1000);
      assert.equal(m.entries.length, 1000);
      const e = m.entries[777]!;
      assert.equal(e.index, i * 1000 + 778);
      assert.equal(Buffer.from(e.data).readUInt32BE(0), (i * 1000 * 1000 + 777) >>> 0);
    }
    assert.equal(n2!.received[120]!.entries[0]!.data.length, 6 * 1024 * 1024);
    assert.ok(status(n1!, "n2").sentBatches > 5, "split into frames of at most MAX_BATCH_BYTES");
    assert.equal(status(n1!, "n2").droppedMessages, 0);
  });

  test("messages to a peer whose server is down are dropped and reported once per failure; delivery resumes after it restarts", async () => {
    const l1 = await listen();
    let l2 = await listen();
    const port2 = l2.port;
    const peers = [
      { id: "n1", address: `127.0.0.1:${l1.port}` },
      { id: "n2", address: `127.0.0.1:${port2}` },
    ];
    const n1 = makeNode("n1", l1, peers);
    let n2 = makeNode("n2", l2, peers);
    n1.transport.send([app("n1", "n2", 1)]);
    await waitFor("first delivery", () => n2.received.length === 1);
    await waitFor("connected", () => status(n1, "n2").connected);

    l2.server.forceShutdown();
    await n2.transport.close();
    await waitFor("the disconnect to be noticed", () => !status(n1, "n2").connected);
    // While it is down: many sends, few reports (one per failed attempt, not per message).
    for (let i = 0; i < 300; i++) {
      n1.transport.send([app("n1", "n2", 100 + i)]);
      await sleep(2);
    }
    assert.ok(n1.unreachable.length >= 1, "reported");
    assert.ok(n1.unreachable.length < 30, `reported per failure, not per message (${n1.unreachable.length})`);
    assert.ok(status(n1, "n2").droppedMessages > 200);
    assert.equal(n1.logs.filter((l) => l.msg === "peer unreachable; retrying with backoff").length, 1, "logged once per state change");

    l2 = await listen(port2);
    n2 = makeNode("n2", l2, peers);
    const before = n2.received.length;
    for (let i = 0; i < 400 && n2.received.length === before; i++) {
      n1.transport.send([app("n1", "n2", 10_000 + i)]);
      await sleep(10);
    }
    await waitFor("delivery after restart", () => n2.received.length > 0);
    await waitFor("connected again", () => status(n1, "n2").connected);
    assert.equal(n1.logs.filter((l) => l.msg === "peer connected").length, 2);
    // Once connected, what is sent arrives, in order.
    const k = n2.received.length;
    n1.transport.send([app("n1", "n2", 50_000), app("n1", "n2", 50_001)]);
    await waitFor("more", () => n2.received.length === k + 2);
    assert.deepEqual(n2.received.slice(k).map((m) => m.index), [50_000, 50_001]);
  });

  test("a peer whose DNS name does not resolve yet is an unreachable peer, retried and reported, never a throw", async () => {
    const l1 = await listen();
    const n1 = makeNode("n1", l1, [
      { id: "n1", address: `127.0.0.1:${l1.port}` },
      { id: "n3", address: "raftkv-2.raftkv-headless.invalid:7001" },
    ]);
    for (let i = 0; i < 100; i++) {
      n1.transport.send([emptyMessage(MessageType.Heartbeat, "n1", "n3", 1)]);
      await sleep(10);
    }
    await waitFor("retries", () => n1.unreachable.length >= 3);
    assert.ok(n1.unreachable.every((p) => p === "n3"));
    const s = status(n1, "n3");
    assert.equal(s.connected, false);
    assert.ok(s.droppedMessages > 50);
    const warned = n1.logs.filter((l) => l.msg === "peer unreachable; retrying with backoff");
    assert.equal(warned.length, 1);
    assert.match(String(warned[0]!.reason), /UNAVAILABLE/);
  });

  test("an address gRPC cannot even parse is an unreachable peer with an error in the log, not a throw", async () => {
    const l1 = await listen();
    const n1 = makeNode("n1", l1, [{ id: "n2", address: "" }]);
    n1.transport.send([emptyMessage(MessageType.Heartbeat, "n1", "n2", 1)]);
    await waitFor("retries", () => n1.unreachable.length >= 2);
    assert.equal(n1.logs.filter((l) => l.msg === "invalid peer address").length, 1, "said once, not per retry");
    assert.equal(status(n1, "n2").connected, false);
  });

  test("a peer that stops reading cannot make the queue grow without bound: messages are dropped and reported", async () => {
    // A real gRPC server that accepts the stream and then never reads from it.
    const l2 = await listen();
    const paused: grpc.ServerReadableStream<Buffer, unknown>[] = [];
    l2.server.addService(
      {
        stream: {
          path: pb.RaftService.stream.path,
          requestStream: true,
          responseStream: false,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: () => Buffer.alloc(0),
          responseDeserialize: () => ({}),
        },
      },
      {
        stream: (call: grpc.ServerReadableStream<Buffer, unknown>) => {
          call.sendMetadata(new grpc.Metadata());
          call.pause();
          paused.push(call);
        },
      },
    );
    const l1 = await listen();
    const n1 = makeNode(
      "n1",
      l1,
      [
        { id: "n1", address: `127.0.0.1:${l1.port}` },
        { id: "n2", address: `127.0.0.1:${l2.port}` },
      ],
      { maxQueuedBytesPerPeer: 1024 * 1024 },
    );
    // ~13 MB in all: more than the socket buffers and HTTP/2 windows absorb (a few MB on loopback).
    for (let i = 0; i < 100; i++) {
      n1.transport.send([app("n1", "n2", i * 1000, 1000)]);
      await sleep(1);
    }
    await waitFor("drops", () => status(n1, "n2").droppedMessages > 0);
    const s = status(n1, "n2");
    assert.ok(s.queuedBytes <= 1024 * 1024, `queue bounded (${s.queuedBytes})`);
    assert.ok(n1.unreachable.includes("n2"));
    assert.equal(n1.logs.filter((l) => l.msg === "peer is not keeping up: dropping messages to it").length, 1);
    for (const c of paused) c.resume();
  });

  test("a stream is replaced before its deadline without losing, reordering or reporting anything", async () => {
    const [n1, n2] = await cluster(2, { streamDeadlineMs: 300 });
    let i = 0;
    const until = Date.now() + 1_500;
    while (Date.now() < until) {
      n1!.transport.send([app("n1", "n2", ++i, 2)]);
      await sleep(i % 10 === 0 ? 5 : 0);
    }
    await waitFor("everything", () => n2!.received.length === i);
    assert.deepEqual(
      n2!.received.map((m) => m.index),
      Array.from({ length: i }, (_, k) => k + 1),
    );
    assert.deepEqual(n1!.unreachable, []);
    assert.equal(status(n1!, "n2").connected, true);
    assert.equal(status(n1!, "n2").droppedMessages, 0);
    assert.equal(n1!.logs.filter((l) => l.msg === "peer unreachable; retrying with backoff").length, 0);
    assert.equal(n1!.logs.filter((l) => l.msg === "peer connected").length, 1, "no flapping");
    const rotations = n1!.logs.filter((l) => l.msg === "replacing the stream before its deadline").length;
    assert.ok(rotations >= 3, `rotated ${rotations} times`);
  });

  test("close() is idempotent, ends streams and nothing reaches the driver afterwards", async () => {
    const [n1, n2] = await cluster(2);
    n1!.transport.send([app("n1", "n2", 1)]);
    await waitFor("delivery", () => n2!.received.length === 1);
    const p1 = n1!.transport.close();
    const p2 = n1!.transport.close();
    await Promise.all([p1, p2]);
    n1!.transport.send([app("n1", "n2", 2)]);
    await sleep(50);
    assert.equal(n2!.received.length, 1);
    assert.deepEqual(n1!.unreachable, []);
    assert.equal(status(n1!, "n2").connected, false);
  });
});

describe("PeerTransport: snapshots", () => {
  const meta: SnapshotMeta = { index: 4242, term: 7, conf: { voters: ["n1", "n2", "n3"], learners: [] } };

  function snapMessage(to: NodeId): Message {
    const m = emptyMessage(MessageType.Snap, "n1", to, 7);
    m.snapshot = { meta, data: new Uint8Array(0) };
    return m;
  }

  test(`at most ${MAX_SNAPSHOTS_RECEIVING} snapshots are received at once; more get RESOURCE_EXHAUSTED until one ends`, async () => {
    const [, n2] = await cluster(2);
    const client = rawClient(n2!.port);
    const payload = randomBytes(64 * 1024);
    const crc = CRC32C.buf(payload, 0) >>> 0;
    const chunk = (c: Partial<pb.SnapshotChunk>) =>
      Buffer.from(pb.SnapshotChunk.encode(pb.SnapshotChunk.fromPartial({ clusterId: CLUSTER, message: toProto(snapMessage("n2")), totalSize: payload.length, ...c })).finish());
    // Streams that send their first chunk and then hold on, as a stalled or hostile sender would.
    const held = Array.from({ length: MAX_SNAPSHOTS_RECEIVING }, () => {
      const call = client.makeClientStreamRequest<Buffer, Buffer>(pb.RaftService.installSnapshot.path, (b) => b, (b) => b, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, () => {});
      call.write(chunk({ offset: 0, data: payload.subarray(0, 1024) }));
      return call;
    });
    const whole = [chunk({ offset: 0, data: payload, done: true, crc32c: crc })];
    let refused: grpc.ServiceError | null = null;
    for (let i = 0; i < 50 && !refused; i++) {
      const r = await rawCall(client, pb.RaftService.installSnapshot.path, whole);
      if (r.err?.code === grpc.status.RESOURCE_EXHAUSTED) refused = r.err;
      else await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(refused, `a snapshot beyond ${MAX_SNAPSHOTS_RECEIVING} in progress was taken`);
    assert.match(refused.details, /already receiving 2 snapshots/);
    const accepted = n2!.snapshots.length;

    held[0]!.cancel();
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const r = await rawCall(client, pb.RaftService.installSnapshot.path, whole);
      ok = r.err === null;
      if (!ok) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(ok, "a slot freed by a cancelled stream was not reused");
    assert.equal(n2!.snapshots.length, accepted + 1);
    held[1]!.cancel();
  });

  test("a snapshot of a few MiB arrives intact in chunks and the sender hears ok", async () => {
    const payload = randomBytes(5 * 1024 * 1024 + 12345);
    const listeners = [await listen(), await listen()];
    const peers = listeners.map((l, i) => ({ id: `n${i + 1}`, address: `127.0.0.1:${l.port}` }));
    let asked: SnapshotMeta | undefined;
    const n1 = makeNode("n1", listeners[0]!, peers, {
      snapshotSource: async function* (m) {
        asked = m;
        // Pieces of an awkward size, so chunk boundaries do not line up with them.
        for (let at = 0; at < payload.length; at += 300_001) yield payload.subarray(at, at + 300_001);
      },
    });
    const n2 = makeNode("n2", listeners[1]!, peers);
    n1.transport.send([snapMessage("n2")]);
    await waitFor("snapshot status", () => n1.snapshotStatus.length === 1, 30_000);
    assert.deepEqual(n1.snapshotStatus, [{ peer: "n2", ok: true }]);
    assert.deepEqual(asked, meta);
    assert.equal(n2.snapshots.length, 1);
    const got = n2.snapshots[0]!;
    assert.equal(got.type, MessageType.Snap);
    assert.equal(got.from, "n1");
    assert.equal(got.term, 7);
    assert.deepEqual(got.snapshot!.meta, meta);
    const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
    assert.equal(got.snapshot!.data.length, payload.length);
    assert.equal(sha(got.snapshot!.data), sha(payload));
    const sent = n1.logs.find((l) => l.msg === "snapshot sent")!;
    assert.ok((sent.chunks as number) >= 6, `sent in chunks (${String(sent.chunks)})`);
    assert.deepEqual(n2.received, [], "a snapshot does not travel on the message stream");
  });

  test("a snapshot carried inline in the message, and an empty one, are sent too", async () => {
    const [n1, n2] = await cluster(2, {
      snapshotSource: async function* () {
        // An empty state machine: no bytes at all.
      },
    });
    const m = snapMessage("n2");
    m.snapshot = { meta, data: Buffer.from("inline state") };
    n1!.transport.send([m]);
    await waitFor("first", () => n1!.snapshotStatus.length === 1);
    assert.equal(Buffer.from(n2!.snapshots[0]!.snapshot!.data).toString(), "inline state");
    n1!.transport.send([snapMessage("n2")]);
    await waitFor("second", () => n1!.snapshotStatus.length === 2);
    assert.deepEqual(n1!.snapshotStatus, [
      { peer: "n2", ok: true },
      { peer: "n2", ok: true },
    ]);
    assert.equal(n2!.snapshots[1]!.snapshot!.data.length, 0);
  });

  test("a snapshot the core refuses is reported as not ok to the sender", async () => {
    const listeners = [await listen(), await listen()];
    const peers = listeners.map((l, i) => ({ id: `n${i + 1}`, address: `127.0.0.1:${l.port}` }));
    const n1 = makeNode("n1", listeners[0]!, peers, {
      snapshotSource: async function* () {
        yield Buffer.from("state");
      },
    });
    makeNode("n2", listeners[1]!, peers, {
      onSnapshot: () => Promise.reject(new Error("stale snapshot: already at a later index")),
    });
    n1.transport.send([snapMessage("n2")]);
    await waitFor("status", () => n1.snapshotStatus.length === 1);
    assert.deepEqual(n1.snapshotStatus, [{ peer: "n2", ok: false }]);
    const warn = n1.logs.find((l) => l.msg === "snapshot not installed")!;
    assert.match(String(warn.reason), /stale snapshot/);
  });

  test("a snapshot to a peer that is down fails with ok = false and an unreachable report, no hang", async () => {
    const l1 = await listen();
    const dead = await listen();
    const deadPort = dead.port;
    dead.server.forceShutdown();
    const n1 = makeNode(
      "n1",
      l1,
      [
        { id: "n1", address: `127.0.0.1:${l1.port}` },
        { id: "n2", address: `127.0.0.1:${deadPort}` },
      ],
      {
        snapshotSource: async function* () {
          yield Buffer.alloc(10);
        },
      },
    );
    n1.transport.send([snapMessage("n2")]);
    await waitFor("status", () => n1.snapshotStatus.length === 1);
    assert.deepEqual(n1.snapshotStatus, [{ peer: "n2", ok: false }]);
    assert.ok(n1.unreachable.includes("n2"));
  });

  describe("a corrupted snapshot stream is refused and the core never sees it", () => {
    const payload = randomBytes(300_000);
    const crc = CRC32C.buf(payload, 0) >>> 0;

    function chunk(c: Partial<pb.SnapshotChunk>): Buffer {
      return Buffer.from(pb.SnapshotChunk.encode(pb.SnapshotChunk.fromPartial({ clusterId: CLUSTER, ...c })).finish());
    }
    const first = (data: Buffer, extra: Partial<pb.SnapshotChunk> = {}) =>
      chunk({ message: toProto(snapMessage("n2")), offset: 0, data, totalSize: payload.length, ...extra });

    const cases: Array<{ name: string; frames: () => Buffer[]; code: grpc.status; details: RegExp }> = [
      {
        name: "wrong CRC32C",
        frames: () => [
          first(payload.subarray(0, 100_000)),
          chunk({ offset: 100_000, data: payload.subarray(100_000), done: true, crc32c: (crc ^ 1) >>> 0, totalSize: payload.length }),
        ],
        code: grpc.status.DATA_LOSS,
        details: /CRC32C mismatch/,
      },
      {
        name: "a gap in the offsets",
        frames: () => [
          first(payload.subarray(0, 100_000)),
          chunk({ offset: 150_000, data: payload.subarray(150_000), done: true, crc32c: crc, totalSize: payload.length }),
        ],
        code: grpc.status.INVALID_ARGUMENT,
        details: /offset 150000, expected 100000/,
      },
      {
        name: "a total size that disagrees with the bytes",
        frames: () => [first(payload, { done: true, crc32c: crc, totalSize: payload.length + 1 })],
        code: grpc.status.INVALID_ARGUMENT,
        details: /total_size/,
      },
      {
        name: "a stream that ends without the last chunk",
        frames: () => [first(payload.subarray(0, 100_000))],
        code: grpc.status.INVALID_ARGUMENT,
        details: /without the last chunk/,
      },
      {
        name: "a first chunk without the Snap message",
        frames: () => [chunk({ offset: 0, data: payload, done: true, crc32c: crc, totalSize: payload.length })],
        code: grpc.status.INVALID_ARGUMENT,
        details: /no message/,
      },
      {
        name: "a snapshot addressed to another node",
        frames: () => [
          chunk({ message: toProto(snapMessage("n9")), offset: 0, data: payload, done: true, crc32c: crc, totalSize: payload.length }),
        ],
        code: grpc.status.INVALID_ARGUMENT,
        details: /addressed to "n9"/,
      },
      {
        name: "bytes that are not a SnapshotChunk",
        frames: () => [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01])],
        code: grpc.status.INVALID_ARGUMENT,
        details: /malformed SnapshotChunk/,
      },
      {
        name: "another cluster's snapshot",
        frames: () => [first(payload, { clusterId: "someone-else", done: true, crc32c: crc })],
        code: grpc.status.FAILED_PRECONDITION,
        details: /cluster id "someone-else"/,
      },
    ];

    for (const c of cases) {
      test(c.name, async () => {
        const [, n2] = await cluster(2);
        const client = rawClient(n2!.port);
        const { err } = await rawCall(client, pb.RaftService.installSnapshot.path, c.frames());
        assert.ok(err, "the call fails");
        assert.equal(err.code, c.code, `${grpc.status[err.code]}: ${err.details}`);
        assert.match(err.details, c.details);
        assert.equal(n2!.snapshots.length, 0, "the handler never saw it");
        // The node is still fine: a good snapshot from the same client is taken.
        const good = await rawCall(client, pb.RaftService.installSnapshot.path, [first(payload, { done: true, crc32c: crc })]);
        assert.equal(good.err, null);
        assert.deepEqual(pb.SnapshotAck.decode(good.ack!), { accepted: true, error: "" });
        assert.equal(n2!.snapshots.length, 1);
        assert.equal(Buffer.compare(Buffer.from(n2!.snapshots[0]!.snapshot!.data), payload), 0);
      });
    }
  });
});

describe("PeerTransport: bad input on the peer port", () => {

  test("garbage bytes over TCP do not crash the server, which keeps serving", async () => {
    const [n1, n2] = await cluster(2);
    for (const garbage of [randomBytes(4096), Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\xff".repeat(64))]) {
      await new Promise<void>((resolve) => {
        const sock = net.connect(n2!.port, "127.0.0.1", () => sock.end(garbage));
        sock.on("error", () => resolve());
        sock.on("close", () => resolve());
        sock.resume();
      });
    }
    n1!.transport.send([app("n1", "n2", 1)]);
    await waitFor("delivery after garbage", () => n2!.received.length === 1);
  });

  test("a batch that is not protobuf ends that stream with INVALID_ARGUMENT", async () => {
    const [, n2] = await cluster(2);
    const { err } = await rawCall(rawClient(n2!.port), pb.RaftService.stream.path, [Buffer.from([0x12, 0x7f, 0x01])]);
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /malformed MessageBatch/);
    assert.ok(n2!.logs.some((l) => l.msg.startsWith("malformed MessageBatch")));
    assert.deepEqual(n2!.received, []);
  });

  test("messages of an unknown type, local-only types, Snap, and messages addressed to another node are dropped; the rest delivered", async () => {
    const [, n2] = await cluster(2);
    const ok1 = app("n1", "n2", 1);
    const unknownType = { ...app("n1", "n2", 2), type: 99 as MessageType };
    const local = emptyMessage(MessageType.Hup, "n1", "n2");
    const snap = emptyMessage(MessageType.Snap, "n1", "n2");
    const misaddressed = app("n1", "n3", 3);
    const badEntry = app("n1", "n2", 4, 1);
    badEntry.entries[0]!.type = 7 as EntryType;
    const ok2 = emptyMessage(MessageType.Heartbeat, "n1", "n2", 2);
    const batch = encodeBatch(CLUSTER, [ok1, unknownType, local, snap, misaddressed, badEntry, ok2]);
    const { err } = await rawCall(rawClient(n2!.port), pb.RaftService.stream.path, [batch]);
    assert.equal(err, null, "the stream itself is fine");
    assert.deepEqual(
      n2!.received.map((m) => [m.type, m.index]),
      [
        [MessageType.App, 1],
        [MessageType.Heartbeat, 0],
      ],
    );
    const reasons = n2!.logs.filter((l) => l.msg === "dropped a message from a peer").map((l) => String(l.reason));
    assert.ok(reasons.some((r) => /unknown message type 99/.test(r)));
    assert.ok(reasons.some((r) => /Hup is not a peer message/.test(r)));
    assert.ok(reasons.some((r) => /InstallSnapshot/.test(r)));
    assert.ok(reasons.some((r) => /addressed to "n3", this node is "n2"/.test(r)));
    assert.ok(reasons.some((r) => /unknown type 7/.test(r)));
  });

  test("a transport of another cluster is refused with FAILED_PRECONDITION and its messages never arrive", async () => {
    const l1 = await listen();
    const l2 = await listen();
    const peers = [
      { id: "n1", address: `127.0.0.1:${l1.port}` },
      { id: "n2", address: `127.0.0.1:${l2.port}` },
    ];
    const n2 = makeNode("n2", l2, peers);
    const alien = makeNode("n1", l1, peers, { clusterId: "another-cluster" });
    for (let i = 0; i < 30; i++) {
      alien.transport.send([app("n1", "n2", i)]);
      await sleep(10);
    }
    await waitFor("reported", () => alien.unreachable.length >= 1);
    assert.deepEqual(n2.received, []);
    assert.equal(status(alien, "n2").connected, false);
    assert.ok(n2.logs.some((l) => l.msg === "refused a stream from another cluster" && l.theirClusterId === "another-cluster"));
    assert.ok(alien.logs.some((l) => l.msg === "peer refused our stream" && /FAILED_PRECONDITION/.test(String(l.reason))));

    // A batch that claims another cluster id without the call metadata is refused as well.
    const md = new grpc.Metadata();
    const { err } = await rawCall(rawClient(l2.port), pb.RaftService.stream.path, [encodeBatch("x", [app("n1", "n2", 1)])], md);
    assert.equal(err?.code, grpc.status.FAILED_PRECONDITION);
    const md2 = new grpc.Metadata();
    md2.set(CLUSTER_ID_METADATA, "y");
    const r2 = await rawCall(rawClient(l2.port), pb.RaftService.stream.path, [], md2);
    assert.equal(r2.err?.code, grpc.status.FAILED_PRECONDITION);
    assert.deepEqual(n2.received, []);
  });
});
