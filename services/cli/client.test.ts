// RaftkvClient against real gRPC servers on loopback whose answers are scripted per call:
// retries keep the request id, only retryable codes are retried, failover follows the leader,
// every operation ends by its deadline, concurrent writes never share a session in flight.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { ReadConsistency } from "../common/gen/raftkv/v1/kv.js";
import { leaderHint, RaftkvClient, RaftkvError } from "./client.js";
import { closedPort, grpcError, header, startScriptedServer, type ScriptedServer } from "./scripted-server.js";

const servers: ScriptedServer[] = [];
const clients: RaftkvClient[] = [];
after(async () => {
  for (const c of clients) c.close();
  await Promise.all(servers.map((s) => s.close()));
});

async function server(...args: Parameters<typeof startScriptedServer>): Promise<ScriptedServer> {
  const s = await startScriptedServer(...args);
  servers.push(s);
  return s;
}

function client(opts: ConstructorParameters<typeof RaftkvClient>[0]): RaftkvClient {
  const c = new RaftkvClient(opts);
  clients.push(c);
  return c;
}

function putOk(memberId = "n1") {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (req: any) => ({ ok: { header: header(memberId, memberId, 7), kv: { key: req.key, value: req.value, createRevision: 7, modRevision: 7, version: 1 } } });
}

async function rejects(p: Promise<unknown>): Promise<RaftkvError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RaftkvError, `expected a RaftkvError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected the operation to fail");
}

describe("RaftkvClient retries", () => {
  test("a write answered UNAVAILABLE twice is retried with the same request id and then succeeds", async () => {
    const s = await server({
      handlers: {
        put: (req, n) => (n <= 2 ? { error: grpcError(GrpcStatus.UNAVAILABLE, "no leader known (term 3)") } : putOk()(req)),
      },
    });
    const c = client({ endpoints: [s.address], clientId: "cli-test", timeoutMs: 3000 });
    const res = await c.put("k", "v");
    assert.equal(res.kv?.value.toString(), "v");
    const puts = s.calls.filter((x) => x.method === "put");
    assert.equal(puts.length, 3);
    for (const p of puts) assert.deepEqual(p.request.requestId, { clientId: "cli-test", seq: 1 });
  });

  test("INVALID_ARGUMENT is not retried and carries the server's reason", async () => {
    const s = await server({ handlers: { put: () => ({ error: grpcError(GrpcStatus.INVALID_ARGUMENT, "key must not be empty") }) } });
    const c = client({ endpoints: [s.address], timeoutMs: 3000 });
    const err = await rejects(c.put("", "v"));
    assert.equal(err.codeName, "INVALID_ARGUMENT");
    assert.equal(err.code, GrpcStatus.INVALID_ARGUMENT);
    assert.equal(err.details, "key must not be empty");
    assert.equal(err.message, "INVALID_ARGUMENT: key must not be empty");
    assert.equal(err.attempts, 1);
    assert.equal(s.calls.filter((x) => x.method === "put").length, 1);
  });

  test("FAILED_PRECONDITION is not retried", async () => {
    const s = await server({ handlers: { transferLeadership: () => ({ error: grpcError(GrpcStatus.FAILED_PRECONDITION, "no follower to transfer leadership to") }) } });
    const c = client({ endpoints: [s.address], timeoutMs: 3000 });
    const err = await rejects(c.transferLeadership());
    assert.equal(err.codeName, "FAILED_PRECONDITION");
    assert.equal(s.calls.filter((x) => x.method === "transferLeadership").length, 1);
  });

  test("ABORTED (the same request still in progress on the node) is retried", async () => {
    const s = await server({
      handlers: {
        put: (req, n) => (n === 1 ? { error: grpcError(GrpcStatus.ABORTED, "request c/1 is already in progress on this node") } : putOk()(req)),
      },
    });
    const c = client({ endpoints: [s.address], timeoutMs: 3000 });
    await c.put("k", "v");
    const ids = s.calls.filter((x) => x.method === "put").map((x) => x.request.requestId);
    assert.equal(ids.length, 2);
    assert.deepEqual(ids[0], ids[1]);
  });

  test("a write fails over from a node that refuses connections to one that answers, with one request id", async () => {
    const dead = await closedPort();
    const s = await server({ handlers: { put: putOk() } });
    const c = client({ endpoints: [`127.0.0.1:${dead}`, s.address], timeoutMs: 3000 });
    for (let i = 1; i <= 3; i++) await c.put(`k${i}`, "v");
    const seqs = s.calls.filter((x) => x.method === "put").map((x) => x.request.requestId.seq);
    assert.deepEqual(seqs, [1, 2, 3]);
  });

  test("a node that never answers costs one attempt deadline, then the next node answers", async () => {
    const hung = await server({ memberId: "n1", handlers: { get: () => "hang" } });
    const ok = await server({ memberId: "n2", handlers: { get: () => ({ ok: { header: header("n2", "n2"), found: false } }) } });
    const c = client({ endpoints: [hung.address, ok.address], timeoutMs: 3000, attemptTimeoutMs: 300 });
    const t0 = Date.now();
    for (let i = 0; i < 2; i++) {
      const r = await c.get("k");
      assert.equal(r.found, false);
    }
    // At most one attempt hit the hung node (the client sticks to the one that answered).
    assert.ok(hung.calls.length <= 1);
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
  });

  test("when no node has a leader, the operation fails UNAVAILABLE with the server's message by its deadline", async () => {
    const a = await server({ handlers: { put: () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "could not confirm leadership (no leader known, term 4)") }) } });
    const b = await server({ handlers: { put: () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "could not confirm leadership (no leader known, term 4)") }) } });
    const c = client({ endpoints: [a.address, b.address], timeoutMs: 800 });
    const t0 = Date.now();
    const err = await rejects(c.put("k", "v"));
    const took = Date.now() - t0;
    assert.equal(err.codeName, "UNAVAILABLE");
    assert.match(err.details, /no leader known, term 4/);
    assert.ok(err.attempts >= 3, `only ${err.attempts} attempts`);
    assert.ok(took >= 700 && took < 1500, `took ${took} ms`);
    // Both nodes were tried, always with the one request id.
    const all = [...a.calls, ...b.calls].filter((x) => x.method === "put");
    assert.ok(a.calls.length > 0 && b.calls.length > 0);
    assert.equal(new Set(all.map((x) => JSON.stringify(x.request.requestId))).size, 1);
  });

  test("when no node answers at all, the operation fails DEADLINE_EXCEEDED at its deadline, not later", async () => {
    const a = await server({ handlers: { range: () => "hang" } });
    const c = client({ endpoints: [a.address], timeoutMs: 600 });
    const t0 = Date.now();
    const err = await rejects(c.range({ prefix: "a" }));
    const took = Date.now() - t0;
    assert.equal(err.codeName, "DEADLINE_EXCEEDED");
    assert.ok(took >= 550 && took < 1200, `took ${took} ms`);
  });

  test("a follower's UNAVAILABLE naming the leader sends the retry to that leader's endpoint", async () => {
    // n1 and n3 point at n2; the client learns all three ids from Status first.
    const n1 = await server({ memberId: "n1", leaderId: "n2" });
    const n2 = await server({ memberId: "n2", leaderId: "n2", handlers: { put: putOk("n2") } });
    const n3 = await server({ memberId: "n3", leaderId: "n2" });
    const c = client({ endpoints: [n1.address, n2.address, n3.address], timeoutMs: 3000 });
    for (const s of [n1, n2, n3]) await c.status(s.address);
    await c.put("a", "1");
    assert.equal(n2.calls.filter((x) => x.method === "put").length, 1);
    // Leadership moves to n1: n2 refuses, naming n1; the retry must go to n1, not to n3.
    n2.handlers.put = () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "not the leader (leader is n1, term 2)", "n1") });
    n1.handlers.put = putOk("n1");
    n3.handlers.put = () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "should not be asked") });
    await c.put("b", "2");
    assert.equal(n1.calls.filter((x) => x.method === "put").length, 1);
    assert.equal(n3.calls.filter((x) => x.method === "put").length, 0);
    assert.equal(c.knownLeader, "n1");
  });

  test("writes go straight to the leader once an answer has named it", async () => {
    const n1 = await server({ memberId: "n1", leaderId: "n2", handlers: { put: putOk("n1") } });
    const n2 = await server({ memberId: "n2", leaderId: "n2", handlers: { put: putOk("n2") } });
    // n1 answers as a follower of n2 (its header names n2).
    n1.handlers.put = (req) => ({ ok: { header: header("n1", "n2"), kv: { key: req.key, value: req.value, createRevision: 1, modRevision: 1, version: 1 } } });
    const c = client({ endpoints: [n1.address, n2.address], timeoutMs: 3000 });
    await c.put("warm", "up");
    // The background Status discovery maps n2 to its endpoint.
    for (let i = 0; i < 50 && n2.calls.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const before = n1.calls.filter((x) => x.method === "put").length;
    for (let i = 0; i < 5; i++) await c.put(`k${i}`, "v");
    assert.equal(n1.calls.filter((x) => x.method === "put").length, before);
    assert.ok(n2.calls.filter((x) => x.method === "put").length >= 5);
  });

  test("reads take the nodes in turn, and skip for a second a node whose last attempt failed", async () => {
    const getOk = (id: string) => () => ({ ok: { header: header(id, "n1"), kv: undefined } });
    const nodes = await Promise.all(["n1", "n2", "n3"].map((id) => server({ memberId: id, leaderId: "n1", handlers: { get: getOk(id), range: () => ({ ok: { header: header(id, "n1"), kvs: [], more: false, count: 0 } }) } })));
    const c = client({ endpoints: nodes.map((n) => n.address), timeoutMs: 3000, baseBackoffMs: 1 });
    const gets = () => nodes.map((n) => n.calls.filter((x) => x.method === "get").length);
    for (let i = 0; i < 6; i++) await c.get(`k${i}`, { serializable: i % 2 === 0 });
    await c.range({ prefix: "k" });
    assert.deepEqual(gets(), [2, 2, 2], "six gets, two per node, linearizable or not");
    // n2 starts failing: its one failed attempt is retried elsewhere, then n2 is left alone.
    nodes[1].handlers.get = () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "no leader") });
    for (let i = 0; i < 6; i++) await c.get(`k${i}`);
    const [a, b, d] = gets();
    assert.equal(b, 3, "n2 was tried once more, then skipped");
    assert.equal(a + d, 4 + 6);
  });
});

test("members and leadership transfer are asked of the leader, found through every node's Status", async () => {
  const members = { memberId: "n3", members: [] };
  const n1 = await server({ memberId: "n1", leaderId: "n3", handlers: { memberList: () => ({ ok: { memberId: "n1", members: [] } }) } });
  const n2 = await server({ memberId: "n2", leaderId: "n3", handlers: { memberList: () => ({ ok: { memberId: "n2", members: [] } }) } });
  const n3 = await server({
    memberId: "n3",
    leaderId: "n3",
    handlers: { memberList: () => ({ ok: members }), transferLeadership: () => ({ ok: { leaderId: "n1", term: 3 } }) },
  });
  const c = client({ endpoints: [n1.address, n2.address, n3.address] });
  assert.equal((await c.memberList()).memberId, "n3");
  assert.equal((await c.transferLeadership()).leaderId, "n1");
  assert.equal(n3.calls.filter((x) => x.method === "transferLeadership").length, 1);
  assert.equal([...n1.calls, ...n2.calls].filter((x) => x.method !== "status").length, 0);
  assert.equal(c.knownLeader, "n1");
});

describe("RaftkvClient sessions", () => {
  test("sequential writes use the client id with seq 1, 2, 3, ...", async () => {
    const s = await server({
      handlers: {
        put: putOk(),
        delete: () => ({ ok: { header: header("n1", "n1"), deleted: 1 } }),
        compareAndSwap: () => ({ ok: { header: header("n1", "n1"), succeeded: true } }),
        deleteRange: () => ({ ok: { header: header("n1", "n1"), deleted: 2 } }),
      },
    });
    const c = client({ endpoints: [s.address], clientId: "seq-test" });
    await c.put("a", "1");
    await c.delete("a");
    await c.compareAndSwap("a", { expectedVersion: 0 }, "2");
    await c.deleteRange({ prefix: "a" });
    assert.deepEqual(
      s.calls.map((x) => x.request.requestId),
      [1, 2, 3, 4].map((seq) => ({ clientId: "seq-test", seq })),
    );
  });

  test("concurrent writes never have two requests of one client id in flight, and each id counts from seq 1", async () => {
    const inFlight = new Map<string, number>();
    let overlap = false;
    const s = await server({
      handlers: {
        put: async (req) => {
          const id = req.requestId.clientId as string;
          const n = (inFlight.get(id) ?? 0) + 1;
          inFlight.set(id, n);
          if (n > 1) overlap = true;
          await new Promise((r) => setTimeout(r, Math.random() * 5));
          inFlight.set(id, inFlight.get(id)! - 1);
          return putOk()(req);
        },
      },
    });
    const c = client({ endpoints: [s.address], clientId: "conc" });
    await Promise.all(Array.from({ length: 200 }, (_, i) => c.put(`k${i}`, "v")));
    assert.equal(overlap, false);
    const byId = new Map<string, number[]>();
    for (const x of s.calls) {
      const { clientId, seq } = x.request.requestId;
      byId.set(clientId, [...(byId.get(clientId) ?? []), seq]);
    }
    assert.ok(byId.size > 1, "concurrent writes should have used several sessions");
    for (const [id, seqs] of byId) assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `session ${id}`);
  });

  test("a session whose write failed is not reused, and a fresh session starts at seq 1", async () => {
    const s = await server({
      handlers: { put: (req, n) => (n === 2 ? { error: grpcError(GrpcStatus.INVALID_ARGUMENT, "value is too big") } : putOk()(req)) },
    });
    const c = client({ endpoints: [s.address], clientId: "retire" });
    await c.put("a", "1");
    await rejects(c.put("a", "2"));
    await c.put("a", "3");
    assert.deepEqual(
      s.calls.map((x) => x.request.requestId),
      [
        { clientId: "retire", seq: 1 },
        { clientId: "retire", seq: 2 },
        { clientId: "retire/1", seq: 1 },
      ],
    );
  });

  test("a write whose session the server evicted is started again on a new session, once", async () => {
    const s = await server({
      handlers: {
        put: (req) =>
          req.requestId.clientId === "evict" && req.requestId.seq === 2
            ? { error: grpcError(GrpcStatus.FAILED_PRECONDITION, 'session expired: client "evict" has no session') }
            : putOk()(req),
      },
    });
    const c = client({ endpoints: [s.address], clientId: "evict" });
    await c.put("a", "1");
    await c.put("a", "2");
    assert.deepEqual(
      s.calls.map((x) => x.request.requestId),
      [
        { clientId: "evict", seq: 1 },
        { clientId: "evict", seq: 2 },
        { clientId: "evict/1", seq: 1 },
      ],
    );
  });
});

describe("RaftkvClient requests", () => {
  test("keys and values are strings (UTF-8) or bytes; reads are linearizable unless serializable is asked", async () => {
    const s = await server({
      handlers: {
        put: putOk(),
        get: () => ({ ok: { header: header("n1", "n1"), found: false } }),
        range: () => ({ ok: { header: header("n1", "n1"), kvs: [], more: false, count: 0 } }),
      },
    });
    const c = client({ endpoints: [s.address] });
    await c.put("ключ", new Uint8Array([0, 255, 1]));
    await c.get(new Uint8Array([1, 2]), { serializable: true });
    await c.get("x");
    await c.range({ prefix: "p", limit: 3, keysOnly: true });
    await c.range({ start: "a", end: "b", serializable: true });
    const [put, g1, g2, r1, r2] = s.calls.map((x) => x.request);
    assert.equal(Buffer.from(put.key).toString("utf8"), "ключ");
    assert.deepEqual([...put.value], [0, 255, 1]);
    assert.deepEqual([...g1.key], [1, 2]);
    assert.equal(g1.consistency, ReadConsistency.READ_CONSISTENCY_SERIALIZABLE);
    assert.equal(g2.consistency, ReadConsistency.READ_CONSISTENCY_LINEARIZABLE);
    assert.equal(Buffer.from(r1.prefix).toString(), "p");
    assert.equal(r1.limit, 3);
    assert.equal(r1.keysOnly, true);
    assert.equal(Buffer.from(r2.start).toString(), "a");
    assert.equal(Buffer.from(r2.end).toString(), "b");
    assert.equal(r2.prefix, undefined);
  });

  test("bad arguments are refused before any request is sent", async () => {
    const s = await server();
    const c = client({ endpoints: [s.address] });
    const bad: Array<() => Promise<unknown>> = [
      () => c.put(42 as unknown as string, "v"),
      () => c.compareAndSwap("k", {} as never, "v"),
      () => c.compareAndSwap("k", { expectedValue: "a", expectedVersion: 1 } as never, "v"),
      () => c.compareAndSwap("k", { expectedVersion: -1 }, "v"),
      () => c.range({ prefix: "p", start: "a" }),
      () => c.range({ limit: 1.5 }),
      () => c.status("not-an-endpoint"),
    ];
    for (const f of bad) assert.equal((await rejects(f())).codeName, "INVALID_ARGUMENT");
    assert.equal(s.calls.length, 0);
    assert.throws(() => new RaftkvClient({ endpoints: [] }), RaftkvError);
    assert.throws(() => new RaftkvClient({ endpoints: ["localhost"] }), /host:port/);
    assert.throws(() => new RaftkvClient({ endpoints: ["a:1"], timeoutMs: 0 }), /timeoutMs/);
  });

  test("status(endpoint) asks that node only, without failover", async () => {
    const dead = await closedPort();
    const s = await server({ memberId: "n7" });
    const c = client({ endpoints: [s.address, `127.0.0.1:${dead}`], timeoutMs: 500 });
    assert.equal((await c.status(s.address)).memberId, "n7");
    const err = await rejects(c.status(`127.0.0.1:${dead}`));
    assert.equal(err.codeName, "UNAVAILABLE");
    assert.equal(err.endpoint, `127.0.0.1:${dead}`);
    assert.equal(s.calls.length, 1);
  });

  test("a closed client refuses further calls", async () => {
    const s = await server({ handlers: { put: putOk() } });
    const c = client({ endpoints: [s.address] });
    await c.put("a", "b");
    c.close();
    assert.equal((await rejects(c.put("a", "b"))).codeName, "CANCELLED");
  });

  test("several channels per endpoint carry requests in flight together", async () => {
    const s = await server({ handlers: { put: putOk() } });
    const c = client({ endpoints: [s.address], channelsPerEndpoint: 4 });
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.put(`k${i}`, "v")));
    assert.equal(s.calls.length, 64);
  });

  test("the leader hint comes from the raftkv-leader trailer, else from the message", () => {
    assert.equal(leaderHint(grpcError(GrpcStatus.UNAVAILABLE, "whatever", "n3")), "n3");
    assert.equal(leaderHint(grpcError(GrpcStatus.UNAVAILABLE, "could not confirm (leader is raftkv-1, term 9)")), "raftkv-1");
    assert.equal(leaderHint(grpcError(GrpcStatus.UNAVAILABLE, "no leader known (term 9)")), "");
  });
});

describe("RaftkvClient call streams (KV.Calls)", () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const echoGet = (memberId: string) => (req: any) => ({ ok: { header: header(memberId, memberId), found: true, kv: { key: req.key, value: req.key, createRevision: 1, modRevision: 1, version: 1 } } });

  test("KV operations travel as calls on one stream and each gets its own answer, whatever order they finish in", async () => {
    const s = await server({
      handlers: {
        // Answers come back out of order: later calls finish first.
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        get: async (req: any) => {
          await new Promise((r) => setTimeout(r, 40 - (Number(req.key.toString().slice(1)) % 40)));
          return echoGet("n1")(req);
        },
        put: putOk(),
        delete: () => ({ ok: { header: header("n1", "n1"), deleted: 1 } }),
        range: () => ({ ok: { header: header("n1", "n1"), kvs: [], more: false, count: 0 } }),
      },
    });
    const c = client({ endpoints: [s.address], timeoutMs: 3000 });
    const got = await Promise.all(Array.from({ length: 100 }, (_, i) => c.get(`k${i}`)));
    got.forEach((g, i) => assert.equal(g.kv?.value.toString(), `k${i}`));
    await c.put("p", "v");
    await c.delete("p");
    await c.range({ prefix: "p" });
    const streamed = (m: string) => s.calls.filter((x) => x.method === m).map((x) => x.streamed);
    assert.ok(streamed("get").every(Boolean) && streamed("get").length === 100);
    assert.deepEqual(streamed("put"), [true]);
    assert.deepEqual(streamed("delete"), [true]);
    assert.deepEqual(streamed("range"), [false], "range stays unary (its answers can be large)");
  });

  test("with streamCalls off, and for a value over 256 KiB, calls are unary", async () => {
    const s = await server({ handlers: { put: putOk() } });
    const off = client({ endpoints: [s.address], timeoutMs: 3000, streamCalls: false });
    await off.put("a", "v");
    const on = client({ endpoints: [s.address], timeoutMs: 3000 });
    await on.put("b", Buffer.alloc(256 * 1024 + 1));
    await on.put("c", "v");
    assert.deepEqual(
      s.calls.map((x) => [x.request.key.toString(), x.streamed]),
      [
        ["a", false],
        ["b", false],
        ["c", true],
      ],
    );
  });

  test("a node without KV.Calls gets unary calls, the ones already in flight included", async () => {
    const s = await server({ noCallStreams: true, handlers: { get: echoGet("n1") } });
    const c = client({ endpoints: [s.address], timeoutMs: 3000 });
    const got = await Promise.all(Array.from({ length: 5 }, (_, i) => c.get(`k${i}`)));
    got.forEach((g, i) => assert.equal(g.kv?.value.toString(), `k${i}`));
    await c.get("again");
    assert.equal(s.calls.length, 6);
    assert.ok(s.calls.every((x) => !x.streamed));
  });

  test("a stream that breaks under a write in flight: the write is retried on another node with the same request id", async () => {
    let release: () => void = () => {};
    const a = await server({
      memberId: "n1",
      handlers: {
        // Never answered (not even when the server closes): only the broken stream ends it.
        put: () => {
          release();
          return new Promise<never>(() => {});
        },
      },
    });
    const b = await server({ memberId: "n2", handlers: { put: putOk("n2") } });
    const c = client({ endpoints: [a.address, b.address], clientId: "brk", timeoutMs: 5000, attemptTimeoutMs: 4000 });
    // Begin with node a: it hangs on the write, then goes away (connections reset).
    const arrived = new Promise<void>((r) => (release = r));
    (c as unknown as { current: number }).current = 0;
    const t0 = Date.now();
    const p = c.put("k", "v");
    await arrived;
    const closing = a.close();
    const res = await p;
    await closing;
    assert.equal(res.header?.memberId, "n2");
    assert.ok(Date.now() - t0 < 2000, `the broken stream failed the call at once, not at its deadline (${Date.now() - t0} ms)`);
    assert.deepEqual(a.calls[0]!.request.requestId, { clientId: "brk", seq: 1 });
    assert.deepEqual(b.calls[0]!.request.requestId, { clientId: "brk", seq: 1 });
  });

  test("close() fails a call in flight on a stream with CANCELLED", async () => {
    const s = await server({ handlers: { get: () => "hang" } });
    const c = client({ endpoints: [s.address], timeoutMs: 5000 });
    const p = c.get("k");
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    const err = await rejects(p);
    assert.equal(err.codeName, "CANCELLED");
  });
});
