// A real 3-node cluster on loopback: any node takes any request, reads are linearizable, range and
// CAS behave like etcd's, and bad input gets a clear error without hurting anyone.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { Socket } from "node:net";
import { credentials, makeGenericClientConstructor, status as GrpcStatus, type ClientDuplexStream, type StatusObject } from "@grpc/grpc-js";
import { RaftkvClient, RaftkvError } from "../../services/cli/client.js";
import { Call, type CallResult, KVClient } from "../../services/common/gen/raftkv/v1/kv.js";
import { MAX_CALLS_IN_FLIGHT } from "../../services/node/server/client-api.js";
import { TestCluster } from "./harness.js";

const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);

describe("a 3-node cluster", () => {
  let c: TestCluster;
  const clients: RaftkvClient[] = [];
  const client = (ids?: string[], timeoutMs = 5000) => {
    const cl = new RaftkvClient({ endpoints: c.endpoints(ids), timeoutMs });
    clients.push(cl);
    return cl;
  };

  before(async () => {
    c = await TestCluster.start({ nodes: 3 });
    await c.waitForLeader({ timeoutMs: 60_000 }); // process start-up (tsx) can be slow on a loaded machine
  });
  after(async () => {
    for (const cl of clients) cl.close();
    await c.stop();
  });

  test("a write through any node is read back from every node (linearizable reads, no stale read)", async () => {
    for (const writer of c.specs) {
      const w = client([writer.id]);
      const key = `k-${writer.id}`;
      const put = await w.put(key, `written via ${writer.id}`);
      assert.ok(put.header!.revision > 0);
      for (const reader of c.specs) {
        const r = client([reader.id]);
        const got = await r.get(key);
        assert.equal(got.found, true, `${reader.id} must see the write made through ${writer.id}`);
        assert.equal(text(got.kv!.value), `written via ${writer.id}`);
        assert.equal(got.header!.memberId, reader.id, "answered by the node asked");
      }
    }
  });

  test("keys carry etcd-style revisions: createRevision, modRevision, version", async () => {
    const cl = client();
    const a = await cl.put("rev", "1");
    const b = await cl.put("rev", "2");
    const got = await cl.get("rev");
    assert.equal(got.kv!.version, 2);
    assert.equal(got.kv!.createRevision, a.kv!.modRevision);
    assert.equal(got.kv!.modRevision, b.kv!.modRevision);
    assert.ok(b.kv!.modRevision > a.kv!.modRevision);
    const del = await cl.delete("rev");
    assert.equal(del.deleted, 1);
    assert.equal((await cl.get("rev")).found, false);
    const again = await cl.put("rev", "3");
    assert.equal(again.kv!.version, 1, "a deleted key starts over");
  });

  test("range by start/end and by prefix returns keys in order, honours limit, reports more and count", async () => {
    const cl = client();
    for (const k of ["r/b", "r/a", "r/d", "r/c", "s/x"]) await cl.put(k, k.toUpperCase());
    const all = await cl.range({ prefix: "r/" });
    assert.deepEqual(all.kvs.map((kv) => text(kv.key)), ["r/a", "r/b", "r/c", "r/d"]);
    assert.equal(all.count, 4);
    assert.equal(all.more, false);
    const page = await cl.range({ start: "r/b", end: "r/d", limit: 1 });
    assert.deepEqual(page.kvs.map((kv) => text(kv.key)), ["r/b"]);
    assert.equal(page.more, true);
    assert.equal(page.count, 2);
    const keys = await cl.range({ prefix: "r/", keysOnly: true, serializable: true });
    assert.equal(keys.kvs.length, 4);
    assert.equal(keys.kvs[0].value.length, 0);
    const dr = await cl.deleteRange({ prefix: "r/" });
    assert.equal(dr.deleted, 4);
    assert.equal((await cl.range({ prefix: "r/" })).count, 0);
    assert.equal((await cl.range({ prefix: "s/" })).count, 1);
  });

  test("compare-and-swap succeeds only when the value or version matches; version 0 means create", async () => {
    const cl = client();
    const created = await cl.compareAndSwap("cas", { expectedVersion: 0 }, "v1");
    assert.equal(created.succeeded, true);
    const again = await cl.compareAndSwap("cas", { expectedVersion: 0 }, "v1b");
    assert.equal(again.succeeded, false, "the key exists now");
    const wrongValue = await cl.compareAndSwap("cas", { expectedValue: "nope" }, "v2");
    assert.equal(wrongValue.succeeded, false);
    assert.equal(text(wrongValue.kv!.value), "v1", "the current state comes back on failure");
    const byValue = await cl.compareAndSwap("cas", { expectedValue: "v1" }, "v2");
    assert.equal(byValue.succeeded, true);
    const byVersion = await cl.compareAndSwap("cas", { expectedVersion: 2 }, "v3");
    assert.equal(byVersion.succeeded, true);
    assert.equal(text((await cl.get("cas")).kv!.value), "v3");
  });

  test("bad input gets INVALID_ARGUMENT with the reason, and nothing is written", async () => {
    const cl = client();
    const expectInvalid = async (p: Promise<unknown>, re: RegExp) => {
      await assert.rejects(p, (e: unknown) => e instanceof RaftkvError && e.codeName === "INVALID_ARGUMENT" && re.test(e.message));
    };
    await expectInvalid(cl.put("", "x"), /empty/);
    await expectInvalid(cl.put("k".repeat(4097), "x"), /4096/);
    await expectInvalid(cl.put("big", Buffer.alloc(1024 * 1024 + 1)), /limit/);
    await expectInvalid(cl.get(""), /empty/);
    assert.equal((await cl.get("big")).found, false);
    // A value at the limit is fine.
    await cl.put("big", Buffer.alloc(1024 * 1024, 7));
    assert.equal((await cl.get("big")).kv!.value.length, 1024 * 1024);
  });

  test("garbage bytes on the client and peer ports do not hurt the node", async () => {
    for (const s of c.specs) {
      for (const port of [s.clientPort, s.peerPort, s.httpPort]) {
        await new Promise<void>((resolve) => {
          const sock = new Socket();
          sock.on("error", () => resolve());
          sock.connect(port, s.host, () => {
            sock.write(Buffer.from("\x00\x01\x02 GARBAGE \xff\xfe PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\x08\x00\x00\x00\x00\x00".repeat(20), "latin1"));
            setTimeout(() => {
              sock.destroy();
              resolve();
            }, 100);
          });
        });
      }
    }
    for (const s of c.specs) assert.ok(c.alive(s.id), `${s.id} still runs`);
    const cl = client();
    await cl.put("after-garbage", "ok");
    assert.equal(text((await cl.get("after-garbage")).kv!.value), "ok");
  });

  test("the unary KV methods (for grpcurl and other clients) answer as the calls on KV.Calls do", async () => {
    const unary = new RaftkvClient({ endpoints: c.endpoints(), timeoutMs: 5000, streamCalls: false });
    clients.push(unary);
    const streamed = client();
    const a = await unary.put("unary/k", "1");
    const b = await streamed.put("unary/k", "2");
    assert.equal(b.kv!.createRevision, a.kv!.modRevision);
    assert.equal(text((await unary.get("unary/k")).kv!.value), "2");
    assert.equal((await unary.compareAndSwap("unary/k", { expectedVersion: 2 }, "3")).succeeded, true);
    assert.equal((await unary.compareAndSwap("unary/k", { expectedValue: "2" }, "4")).succeeded, false);
    assert.equal(text((await streamed.get("unary/k")).kv!.value), "3");
    assert.equal((await unary.delete("unary/k")).deleted, 1);
    assert.equal((await unary.deleteRange({ prefix: "unary/" })).deleted, 0);
    await assert.rejects(unary.put("", "x"), (e: unknown) => e instanceof RaftkvError && e.codeName === "INVALID_ARGUMENT" && /empty/.test(e.message));
    // Both kinds count under the method's name, on the node that answered (the leader, for writes).
    const puts = [...(await c.statuses()).values()].flatMap((st) => st.requests.filter((r) => r.method === "Put"));
    assert.ok(puts.reduce((n, r) => n + (r.byCode.OK ?? 0), 0) >= 2, JSON.stringify(puts));
  });

  test("KV.Calls: many calls in flight on one stream, each answered once by its call id; a bad call gets its own error", async () => {
    const spec = c.specs[1];
    const kv = new KVClient(`${spec.host}:${spec.clientPort}`, credentials.createInsecure());
    try {
      const stream = kv.calls();
      const answers = new Map<number, CallResult[]>();
      stream.on("data", (r: CallResult) => answers.set(r.callId, [...(answers.get(r.callId) ?? []), r]));
      const status = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
      stream.on("error", () => {});
      const N = 200;
      for (let i = 1; i <= N; i++) {
        const key = Buffer.from(`calls/${i % 10}`);
        stream.write({ callId: i, timeoutMs: 5000, op: i % 2 ? { $case: "put", value: { key, value: Buffer.from(`v${i}`), requestId: undefined, prevKv: false } } : { $case: "get", value: { key, consistency: 0 } } });
      }
      stream.write({ callId: 1001, timeoutMs: 5000, op: { $case: "put", value: { key: Buffer.alloc(0), value: Buffer.from("x"), requestId: undefined, prevKv: false } } });
      stream.write({ callId: 1002, timeoutMs: 5000, op: undefined });
      stream.write({ callId: 1003, timeoutMs: 5000, op: { $case: "compareAndSwap", value: { key: Buffer.from("calls/cas"), expectedVersion: 0, newValue: Buffer.from("c"), requestId: undefined } } });
      stream.end();
      const st = await status;
      assert.equal(st.code, 0, `the node ended the stream cleanly after answering (${st.details})`);
      assert.equal(answers.size, N + 3, "every call answered");
      for (const [id, rs] of answers) assert.equal(rs.length, 1, `call ${id} answered once`);
      for (let i = 1; i <= N; i++) {
        const r = answers.get(i)![0].result!;
        assert.equal(r.$case, i % 2 ? "put" : "get", `call ${i}`);
        if (r.$case === "put") assert.equal(r.value.header!.memberId, spec.id);
      }
      const bad = answers.get(1001)![0].result!;
      assert.ok(bad.$case === "error" && bad.value.code === GrpcStatus.INVALID_ARGUMENT && /empty/.test(bad.value.message), JSON.stringify(bad));
      const none = answers.get(1002)![0].result!;
      assert.ok(none.$case === "error" && none.value.code === GrpcStatus.INVALID_ARGUMENT, JSON.stringify(none));
      const cas = answers.get(1003)![0].result!;
      assert.ok(cas.$case === "compareAndSwap" && cas.value.succeeded);
      assert.equal(text((await client().get("calls/1")).kv!.value), "v191", "the last put of calls/1 won");
    } finally {
      kv.close();
    }
  });

  test("a KV.Calls stream that sends bytes that are no Call is ended with an error; the node keeps serving", async () => {
    const spec = c.specs[0];
    const raw = makeGenericClientConstructor(
      {
        Calls: {
          path: "/raftkv.v1.KV/Calls",
          requestStream: true,
          responseStream: true,
          requestSerialize: (b: Buffer) => b,
          requestDeserialize: (b: Buffer) => b,
          responseSerialize: (b: Buffer) => b,
          responseDeserialize: (b: Buffer) => b,
        },
      },
      "KV",
    );
    const cl = new raw(`${spec.host}:${spec.clientPort}`, credentials.createInsecure()) as unknown as { Calls(): ClientDuplexStream<Buffer, Buffer>; close(): void };
    try {
      const stream = cl.Calls();
      stream.on("error", () => {});
      const status = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
      stream.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x01, 0x02]));
      const st = await status;
      assert.notEqual(st.code, GrpcStatus.OK, "the stream is ended with an error");
    } finally {
      cl.close();
    }
    assert.ok(c.alive(spec.id));
    const cl2 = client([spec.id]);
    await cl2.put("after-bad-call", "ok");
    assert.equal(text((await cl2.get("after-bad-call")).kv!.value), "ok");
  });

  test("a KV.Calls client that does not read its answers is held back by flow control; the node does not buffer them without bound", async () => {
    const spec = c.specs[2];
    const getCount = async () => {
      const st = (await c.statuses()).get(spec.id)!;
      const g = st.requests.find((r) => r.method === "Get");
      return g ? Object.values(g.byCode).reduce((a, b) => a + b, 0) : 0;
    };
    const before = await getCount();
    // Plain HTTP/2 with gRPC framing: a paused stream stops returning flow-control window.
    const session = http2.connect(`http://${spec.host}:${spec.clientPort}`);
    session.on("error", () => {});
    const req = session.request({ ":method": "POST", ":path": "/raftkv.v1.KV/Calls", "content-type": "application/grpc", te: "trailers" });
    req.on("error", () => {});
    req.pause();
    const N = 50_000;
    const key = Buffer.from("calls/1");
    for (let i = 1; i <= N; i++) {
      const msg = Call.encode({ callId: i, timeoutMs: 5000, op: { $case: "get", value: { key, consistency: 1 } } }).finish();
      const frame = Buffer.alloc(5 + msg.length);
      frame.writeUInt32BE(msg.length, 1);
      frame.set(msg, 5);
      req.write(frame);
    }
    await new Promise((r) => setTimeout(r, 3000));
    const answered = (await getCount()) - before;
    req.close();
    session.destroy();
    assert.ok(answered < N / 4, `the node answered ${answered} of ${N} calls nobody read`);
    assert.ok(answered > 0);
    const cl = client([spec.id]);
    await cl.put("after-unread", "ok");
    assert.equal(text((await cl.get("after-unread")).kv!.value), "ok");
  });

  test("/status, /livez and /readyz answer on every node", async () => {
    const sts = await c.statuses();
    assert.equal(sts.size, 3);
    const leaders = [...sts.values()].filter((s) => s.role === "leader");
    assert.equal(leaders.length, 1);
    for (const s of sts.values()) {
      assert.equal(s.leaderId, leaders[0].nodeId);
      assert.equal(s.ready, true);
      assert.deepEqual(s.voters, ["n1", "n2", "n3"]);
      assert.ok(s.counters.walFsyncs > 0);
      assert.ok(s.histograms.walFsyncSeconds.count > 0);
    }
    assert.ok(leaders[0].peers.every((p) => p.matchIndex > 0 && p.state === "replicate"));
    const spec = c.specs[0];
    assert.equal((await fetch(`http://${spec.host}:${spec.httpPort}/livez`)).status, 200);
    assert.equal((await fetch(`http://${spec.host}:${spec.httpPort}/readyz`)).status, 200);
  });

  test("with no quorum a request fails UNAVAILABLE by its deadline, never hangs; nothing is lost when the quorum returns", async () => {
    const cl = client(undefined, 5000);
    await cl.put("before-outage", "kept");
    const leader = await c.waitForLeader();
    const others = c.specs.map((s) => s.id).filter((id) => id !== leader);
    await c.kill(others[0]);
    await c.kill(others[1]);
    const lonely = client([leader], 1500);
    const t0 = Date.now();
    await assert.rejects(lonely.put("during-outage", "x"), (e: unknown) => e instanceof RaftkvError && ["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(e.codeName));
    assert.ok(Date.now() - t0 < 5000, "answered within the deadline");
    await assert.rejects(lonely.get("before-outage"), (e: unknown) => e instanceof RaftkvError && ["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(e.codeName));

    // A KV.Calls stream holds at most MAX_CALLS_IN_FLIGHT calls: one more is refused at once, and
    // the waiting ones end by their own timeout_ms (shorter than the node's 5 s).
    const spec = c.specs.find((s) => s.id === leader)!;
    const kv = new KVClient(`${spec.host}:${spec.clientPort}`, credentials.createInsecure());
    try {
      const stream = kv.calls();
      stream.on("error", () => {});
      const answers = new Map<number, { at: number; r: CallResult }>();
      const all = new Promise<void>((resolve) =>
        stream.on("data", (r: CallResult) => {
          answers.set(r.callId, { at: Date.now(), r });
          if (answers.size === MAX_CALLS_IN_FLIGHT + 1) resolve();
        }),
      );
      const sent = Date.now();
      for (let i = 1; i <= MAX_CALLS_IN_FLIGHT + 1; i++) {
        stream.write({ callId: i, timeoutMs: 1000, op: { $case: "get", value: { key: Buffer.from("before-outage"), consistency: 0 } } });
      }
      await all;
      stream.end();
      const refused = answers.get(MAX_CALLS_IN_FLIGHT + 1)!;
      assert.ok(refused.r.result?.$case === "error" && refused.r.result.value.code === GrpcStatus.RESOURCE_EXHAUSTED, JSON.stringify(refused.r));
      assert.ok(refused.at - sent < 900, "refused at once, not after the others' timeout");
      const codes = new Set([...answers.values()].filter((a) => a.r.callId <= MAX_CALLS_IN_FLIGHT).map((a) => (a.r.result?.$case === "error" ? a.r.result.value.code : 0)));
      assert.ok([...codes].every((code) => code === GrpcStatus.UNAVAILABLE || code === GrpcStatus.DEADLINE_EXCEEDED), `codes ${[...codes].join(",")}`);
      const last = Math.max(...[...answers.values()].map((a) => a.at));
      assert.ok(last - sent < 3500, `the waiting calls ended by their 1 s timeout (${last - sent} ms)`);
    } finally {
      kv.close();
    }
    c.spawn(others[0]);
    c.spawn(others[1]);
    await c.waitForLeader({ timeoutMs: 20_000 });
    assert.equal(text((await cl.get("before-outage")).kv!.value), "kept");
  });
});
