import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  checkLinearizable,
  HistoryRecorder,
  kvModel,
  registerModel,
  type CheckResult,
  type KvInput,
  type KvOutput,
  type Operation,
  type RegisterInput,
  type RegisterOutput,
} from "./lincheck.js";

type KvOp = Operation<KvInput, KvOutput>;

// Compact history builders: [call, return] intervals; `return` omitted = never returned.
const put = (c: number, key: string, value: string, call: number, ret?: number, out: KvOutput = {}): KvOp =>
  done({ clientId: c, input: { op: "put", key, value }, call }, ret, out);
const get = (c: number, key: string, value: string | undefined, call: number, ret?: number, version?: number): KvOp =>
  done({ clientId: c, input: { op: "get", key }, call }, ret, version === undefined ? { value } : { value, version });
const del = (c: number, key: string, call: number, ret?: number, deleted?: number): KvOp =>
  done({ clientId: c, input: { op: "delete", key }, call }, ret, deleted === undefined ? {} : { deleted });
const cas = (
  c: number,
  key: string,
  expect: { value?: string; version?: number },
  newValue: string,
  succeeded: boolean | undefined,
  call: number,
  ret?: number,
): KvOp =>
  done(
    { clientId: c, input: { op: "cas", key, expectedValue: expect.value, expectedVersion: expect.version, newValue }, call },
    ret,
    succeeded === undefined ? undefined : { succeeded },
  );
function done(op: KvOp, ret: number | undefined, out: KvOutput | undefined): KvOp {
  if (ret === undefined) return op;
  return out === undefined ? { ...op, return: ret } : { ...op, return: ret, output: out };
}

function assertOk(r: CheckResult<unknown, unknown>): void {
  assert.equal(r.result, "ok", r.result === "illegal" ? r.explanation : JSON.stringify(r));
}
function assertIllegal(r: CheckResult<unknown, unknown>): Extract<CheckResult<unknown, unknown>, { result: "illegal" }> {
  assert.equal(r.result, "illegal", JSON.stringify(r));
  return r as Extract<CheckResult<unknown, unknown>, { result: "illegal" }>;
}

describe("kvModel accepts linearizable histories", () => {
  it("a sequential history of puts, gets, deletes and compare-and-swaps", () => {
    assertOk(
      checkLinearizable(kvModel, [
        get(1, "x", undefined, 0, 1),
        put(1, "x", "a", 2, 3),
        get(2, "x", "a", 4, 5),
        cas(2, "x", { value: "a" }, "b", true, 6, 7),
        get(1, "x", "b", 8, 9),
        del(1, "x", 10, 11, 1),
        get(2, "x", undefined, 12, 13),
      ]),
    );
  });

  it("reads concurrent with a write may see the old or the new value", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "old", 0, 1),
        put(2, "x", "new", 10, 20),
        get(3, "x", "old", 11, 12),
        get(4, "x", "new", 13, 14),
        get(3, "x", "new", 21, 22),
      ]),
    );
  });

  it("concurrent writes may take effect in either order, as long as every reader agrees", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "1", 0, 100),
        put(2, "x", "2", 0, 100),
        get(3, "x", "2", 10, 20),
        get(4, "x", "2", 15, 25),
        get(3, "x", "1", 30, 40),
        get(4, "x", "1", 50, 60),
      ]),
    );
  });

  it("an operation whose response arrived at the same instant another was invoked counts as concurrent", () => {
    assertOk(checkLinearizable(kvModel, [put(1, "x", "a", 0, 5), get(2, "x", undefined, 5, 6)]));
  });

  it("a write that never returned but took effect (a later read sees it)", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        put(2, "x", "b", 2), // timed out
        get(3, "x", "b", 10, 11),
        get(3, "x", "b", 12, 13),
      ]),
    );
  });

  it("a write that never returned and never took effect (no read ever sees it)", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        put(2, "x", "lost", 2),
        get(3, "x", "a", 10, 11, 1),
        put(3, "x", "c", 12, 13, { version: 2 }),
        get(1, "x", "c", 14, 15, 2),
      ]),
    );
  });

  it("a write that never returned may take effect long after later writes completed", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "late", 0), // the node held it and applied it later
        put(2, "x", "b", 5, 6),
        get(3, "x", "b", 7, 8),
        get(3, "x", "late", 9, 10),
      ]),
    );
  });

  it("never-returned cas and delete may each have happened or not", () => {
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        cas(2, "x", { value: "a" }, "b", undefined, 2), // unknown
        get(3, "x", "b", 5, 6),
        del(1, "x", 7), // unknown
        get(3, "x", "b", 8, 9),
        get(3, "x", undefined, 10, 11),
      ]),
    );
  });

  it("kvModel.step accepts every outcome of an operation whose output is unknown", () => {
    for (const s of [{ value: undefined, version: 0 }, { value: "a", version: 3 }]) {
      for (const input of [
        { op: "get", key: "x" },
        { op: "put", key: "x", value: "b" },
        { op: "delete", key: "x" },
        { op: "cas", key: "x", expectedVersion: 3, newValue: "c" },
        { op: "cas", key: "x", expectedValue: "zz", newValue: "c" },
      ] as KvInput[]) {
        assert.equal(kvModel.step(s, input, undefined).ok, true, JSON.stringify({ s, input }));
      }
    }
  });

  it("a search branch that used up more never-returned ops does not rule out one that used fewer", () => {
    // Found by fast-check against a checker whose dominance test ran the wrong way: only
    // put "a", put "c", then the cas, reaches version 3.
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 1),
        put(2, "x", "c", 0),
        del(3, "x", 0),
        { ...cas(4, "x", { value: "c" }, "c", true, 0, 1), output: { succeeded: true, version: 3, value: "c" } },
      ]),
    );
  });

  it("a read whose answer is unknown constrains nothing", () => {
    assertOk(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), { clientId: 2, input: { op: "get", key: "x" }, call: 2 }]));
  });

  it("an empty history is linearizable", () => {
    assertOk(checkLinearizable(kvModel, []));
    assertOk(checkLinearizable(registerModel, []));
  });
});

describe("kvModel rejects non-linearizable histories", () => {
  it("a stale read after a completed write", () => {
    const r = assertIllegal(
      checkLinearizable(kvModel, [put(1, "x", "1", 0, 1), put(1, "x", "2", 2, 3), get(2, "x", "1", 4, 5)]),
    );
    assert.equal(r.partitionKey, 'key "x"');
  });

  it("two readers that see two concurrent writes in opposite orders", () => {
    assertIllegal(
      checkLinearizable(kvModel, [
        put(1, "x", "1", 0, 100),
        put(2, "x", "2", 0, 100),
        get(3, "x", "1", 10, 20),
        get(3, "x", "2", 30, 40),
        get(4, "x", "2", 10, 20),
        get(4, "x", "1", 30, 40),
      ]),
    );
  });

  it("a read that sees the new value, followed by a read that sees the old one, during one write", () => {
    assertIllegal(
      checkLinearizable(kvModel, [
        put(1, "x", "old", 0, 1),
        put(2, "x", "new", 10, 100),
        get(3, "x", "new", 20, 30),
        get(4, "x", "old", 40, 50),
      ]),
    );
  });

  it("a read of a value nobody wrote", () => {
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), get(2, "x", "zzz", 0, 2)]));
    assertIllegal(checkLinearizable(kvModel, [get(1, "x", "phantom", 0, 1)]));
  });

  it("a compare-and-swap that succeeds twice from the same version", () => {
    assertIllegal(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        cas(1, "x", { version: 1 }, "b", true, 2, 3),
        cas(2, "x", { version: 1 }, "c", true, 4, 5),
      ]),
    );
    // Concurrent, too: only one of two racing swaps from version 1 can win.
    assertIllegal(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        cas(1, "x", { version: 1 }, "b", true, 2, 10),
        cas(2, "x", { version: 1 }, "c", true, 2, 10),
      ]),
    );
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        cas(1, "x", { version: 1 }, "b", true, 2, 10),
        cas(2, "x", { version: 1 }, "c", false, 2, 10),
      ]),
    );
  });

  it("an acknowledged write later observed as missing (lost write)", () => {
    assertIllegal(
      checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), get(2, "x", "a", 2, 3), get(2, "x", undefined, 4, 5)]),
    );
    // ... unless a delete could have removed it in between.
    assertOk(
      checkLinearizable(kvModel, [
        put(1, "x", "a", 0, 1),
        del(3, "x", 1.5, 6),
        get(2, "x", "a", 2, 3),
        get(2, "x", undefined, 4, 5),
      ]),
    );
  });

  it("a client that does not read its own write", () => {
    assertIllegal(
      checkLinearizable(kvModel, [
        put(1, "x", "1", 0, 1),
        put(2, "x", "2", 5, 6),
        get(2, "x", "1", 7, 8),
      ]),
    );
  });

  it("a write that definitely failed must not be observed", () => {
    const rec = new HistoryRecorder<KvInput, KvOutput>(counter());
    const w = rec.invoke(1, { op: "put", key: "x", value: "a" });
    rec.complete(w, {});
    const f = rec.invoke(2, { op: "put", key: "x", value: "rejected" });
    rec.fail(f);
    const r = rec.invoke(3, { op: "get", key: "x" });
    rec.complete(r, { value: "a" });
    assertOk(checkLinearizable(kvModel, rec.history()));

    const r2 = rec.invoke(3, { op: "get", key: "x" });
    rec.complete(r2, { value: "rejected" });
    assertIllegal(checkLinearizable(kvModel, rec.history()));
  });
});

describe("explanations name the key and the operations in conflict", () => {
  it("says which key failed, the linearization found, and the read that could not be placed", () => {
    const history = [
      put(1, "other", "fine", 0, 1),
      put(1, "x", "v1", 0, 1),
      put(7, "x", "v2", 2, 3),
      get(9, "x", "v1", 4, 5),
    ];
    const r = assertIllegal(checkLinearizable(kvModel, history));
    assert.equal(r.partitionKey, 'key "x"');
    assert.match(r.explanation, /not linearizable on key "x"/);
    assert.match(r.explanation, /#1 client 1 \[0 \.\. 1\] put\("x", "v1"\) -> ok/);
    assert.match(r.explanation, /#2 client 7 \[2 \.\. 3\] put\("x", "v2"\) -> ok\s+=> "v2" \(version 2\)/);
    assert.match(r.explanation, /#3 client 9 \[4 \.\. 5\] get\("x"\) -> "v1" must take effect before it returned at 5/);
    assert.match(r.explanation, /impossible in this state/);
    assert.deepEqual(r.longestPrefix, [history[1], history[2]]);
    assert.deepEqual(r.stuck, [history[3]]);
  });

  it("points at the caller's own operation objects even for writes the model tightened", () => {
    const history = [put(1, "x", "a", 0), get(2, "x", "a", 5, 6), get(2, "x", "nope", 7, 8)];
    const r = assertIllegal(checkLinearizable(kvModel, history));
    assert.ok(r.longestPrefix.includes(history[0]!), "the tightened write is reported as the caller's object");
    assert.match(r.explanation, /#0 client 1 \[0 \.\. never returned\] put\("x", "a"\) -> \? \(took effect by 6/);
  });
});

describe("partitioning by key (linearizability is local)", () => {
  it("operations on different keys do not constrain each other", () => {
    const history = [put(1, "a", "1", 0, 1), get(2, "b", undefined, 2, 3), get(2, "a", "1", 4, 5)];
    assertOk(checkLinearizable(kvModel, history));
    // Without partitioning the model would see one register, and reject it.
    const unpartitioned = { ...kvModel, partition: undefined };
    const r = assertIllegal(checkLinearizable(unpartitioned, history));
    assert.equal(r.partitionKey, undefined);
  });

  it("reports the key whose sub-history is not linearizable among many good ones", () => {
    const history: KvOp[] = [];
    for (let k = 0; k < 8; k++) {
      history.push(put(k, `k${k}`, `v${k}`, k * 10, k * 10 + 2), get(k + 1, `k${k}`, `v${k}`, k * 10 + 3, k * 10 + 4));
    }
    history.push(get(3, "k5", "v4", 200, 201)); // v4 was written to k4, not k5
    const r = assertIllegal(checkLinearizable(kvModel, history));
    assert.equal(r.partitionKey, 'key "k5"');
  });

  it("reports a violation in one key even when another key's search times out", () => {
    const r = assertIllegal(checkLinearizable(kvModel, [...hardHistory("big", 26), get(1, "small", "ghost", 0, 1)], { timeoutMs: 50 }));
    assert.equal(r.partitionKey, 'key "small"');
  });
});

describe("kvModel versions behave like etcd's", () => {
  it("version counts writes since creation and returns to 0 when the key is deleted", () => {
    assertOk(
      checkLinearizable(kvModel, [
        get(1, "x", undefined, 0, 1, 0),
        put(1, "x", "a", 2, 3, { version: 1 }),
        put(1, "x", "b", 4, 5, { version: 2 }),
        get(1, "x", "b", 6, 7, 2),
        cas(1, "x", { version: 2 }, "c", true, 8, 9),
        get(1, "x", "c", 10, 11, 3),
        del(1, "x", 12, 13, 1),
        get(1, "x", undefined, 14, 15, 0),
        put(1, "x", "d", 16, 17, { version: 1 }),
      ]),
    );
  });

  it("a read or write reporting the wrong version is rejected", () => {
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 3), get(1, "x", "b", 4, 5, 1)]));
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), put(1, "x", "b", 2, 3, { version: 3 })]));
    assertIllegal(
      checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), del(1, "x", 2, 3), put(1, "x", "b", 4, 5, { version: 2 })]),
    );
  });

  it("cas with expectedVersion 0 means the key must not exist", () => {
    assertOk(checkLinearizable(kvModel, [cas(1, "x", { version: 0 }, "a", true, 0, 1), get(1, "x", "a", 2, 3, 1)]));
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), cas(2, "x", { version: 0 }, "b", true, 2, 3)]));
    assertOk(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), cas(2, "x", { version: 0 }, "b", false, 2, 3)]));
    // Deleting the key makes it creatable again.
    assertOk(
      checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), del(1, "x", 2, 3, 1), cas(2, "x", { version: 0 }, "b", true, 4, 5)]),
    );
  });

  it("a cas that reports failure although its comparison held is rejected", () => {
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), cas(2, "x", { value: "a" }, "b", false, 2, 3)]));
    assertIllegal(
      checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), cas(2, "x", { value: "a", version: 2 }, "b", true, 2, 3)]),
    );
  });

  it("a cas reports the key's state after it, whether or not it succeeded", () => {
    const after = (succeeded: boolean, value: string | undefined, version: number, call: number): KvOp => ({
      ...cas(2, "x", { value: "zz" }, "b", succeeded, call, call + 1),
      output: { succeeded, value, version },
    });
    assertOk(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), after(false, "a", 1, 2)]));
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), after(false, "a", 2, 2)]));
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), after(false, "stale", 1, 2)]));
    assertOk(checkLinearizable(kvModel, [after(false, undefined, 0, 0)]));
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), after(false, undefined, 0, 2)]));
    // A failed cas that saw a never-returned write's value proves the write took effect by then.
    assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0), after(false, "a", 1, 2), get(3, "x", undefined, 5, 6)]));
    const r = assertIllegal(checkLinearizable(kvModel, [put(1, "x", "a", 0, 1), after(false, "stale", 1, 2)]));
    assert.match(r.explanation, /cas\("x", if value="zz", set "b"\) -> failed \(now "stale", version 1\)/);
  });

  it("delete reports how many keys it removed", () => {
    assertOk(checkLinearizable(kvModel, [del(1, "x", 0, 1, 0), put(1, "x", "a", 2, 3), del(1, "x", 4, 5, 1)]));
    assertIllegal(checkLinearizable(kvModel, [del(1, "x", 0, 1, 1)]));
  });
});

describe("registerModel (a single register, for the simulator)", () => {
  const w = (c: number, value: string, call: number, ret?: number): Operation<RegisterInput, RegisterOutput> =>
    ret === undefined ? { clientId: c, input: { op: "put", value }, call } : { clientId: c, input: { op: "put", value }, call, return: ret, output: {} };
  const r = (c: number, value: string | undefined, call: number, ret: number): Operation<RegisterInput, RegisterOutput> => ({
    clientId: c,
    input: { op: "get" },
    call,
    return: ret,
    output: { value },
  });

  it("accepts reads of the latest or a concurrent write", () => {
    assertOk(checkLinearizable(registerModel, [r(1, undefined, 0, 1), w(1, "a", 2, 3), w(2, "b", 4, 10), r(3, "a", 5, 6), r(3, "b", 11, 12)]));
    assertOk(checkLinearizable(registerModel, [w(1, "a", 0), r(2, "a", 5, 6)]));
  });

  it("an op that never returned, invoked at the instant another returned, may take effect before it", () => {
    // Equal times count as concurrent, for never-returned ops too.
    assertOk(checkLinearizable(registerModel, [r(1, "a", 0, 5), w(2, "a", 5)]));
    assertIllegal(checkLinearizable(registerModel, [r(1, "a", 0, 5), w(2, "a", 5.001)]));
  });

  it("rejects a stale read", () => {
    const res = assertIllegal(checkLinearizable(registerModel, [w(1, "a", 0, 1), w(1, "b", 2, 3), r(2, "a", 4, 5)]));
    assert.match(res.explanation, /get\(\) -> "a"/);
  });
});

describe("bounded search", () => {
  it("gives up with 'unknown' when the timeout passes", () => {
    const t0 = performance.now();
    const r = checkLinearizable(kvModel, hardHistory("x", 26), { timeoutMs: 50 });
    const elapsed = performance.now() - t0;
    assert.equal(r.result, "unknown");
    assert.ok(r.result === "unknown" && r.reason === "timeout" && r.partitionKey === 'key "x"', JSON.stringify(r));
    assert.ok(elapsed < 1000, `stopped after ${elapsed.toFixed(0)} ms`);
    // It still says how far it got, which here is the read nobody could have answered.
    assert.match(r.explanation ?? "", /the search gave up after \d+ ms on key "x"/);
    assert.match(r.explanation ?? "", /get\("x"\) -> "none-of-them" must take effect before it returned at 201/);
  });

  it("keeps searching correctly when the memo cache is full", () => {
    const history = [put(1, "x", "1", 0, 100), put(2, "x", "2", 0, 100), put(3, "x", "3", 0, 100), get(4, "x", "0", 200, 201)];
    assertIllegal(checkLinearizable(kvModel, history, { maxCacheBytes: 0 }));
    assertOk(checkLinearizable(kvModel, history.slice(0, 3), { maxCacheBytes: 0 }));
  });
});

describe("bad input is a clear error", () => {
  it("rejects malformed operations and options with the operation's index", () => {
    assert.throws(() => checkLinearizable(kvModel, [put(1, "x", "a", 5, 4)]), /operation #0: returned \(4\) before it was called \(5\)/);
    assert.throws(() => checkLinearizable(kvModel, [{ ...put(1, "x", "a", 0, 1), call: NaN }]), /call must be a finite number/);
    assert.throws(
      () => checkLinearizable(kvModel, [{ clientId: 1, input: { op: "get", key: "x" }, call: 0, output: { value: "a" } }]),
      /has an output but never returned/,
    );
    assert.throws(
      () => checkLinearizable(kvModel, [{ clientId: 1, input: { op: "incr", key: "x" } as unknown as KvInput, call: 0, return: 1 }]),
      /operation #0: unknown op "incr"/,
    );
    assert.throws(() => checkLinearizable(kvModel, [cas(1, "x", {}, "b", true, 0, 1)]), /cas needs expectedValue or expectedVersion/);
    assert.throws(
      () => checkLinearizable(kvModel, [{ ...cas(1, "x", { version: 0 }, "b", true, 0, 1), output: {} }]),
      /needs output\.succeeded/,
    );
    assert.throws(() => checkLinearizable(kvModel, [], { timeoutMs: -1 }), /timeoutMs/);
    assert.throws(() => checkLinearizable(kvModel, null as unknown as KvOp[]), /history must be an array/);
  });
});

describe("HistoryRecorder", () => {
  it("records call and return times, drops failed operations and keeps unknown ones open-ended", () => {
    const rec = new HistoryRecorder<KvInput, KvOutput>(counter());
    const a = rec.invoke("c1", { op: "put", key: "x", value: "a" }); // t=0
    const b = rec.invoke("c2", { op: "put", key: "x", value: "b" }); // t=1
    const c = rec.invoke("c3", { op: "get", key: "x" }); // t=2
    const d = rec.invoke("c4", { op: "put", key: "x", value: "d" }); // t=3
    rec.complete(a, {}); // t=4
    rec.fail(b);
    rec.timeout(c);
    assert.equal(rec.inFlight, 1);
    assert.deepEqual(rec.history(), [
      { clientId: "c1", input: { op: "put", key: "x", value: "a" }, call: 0, return: 4, output: {} },
      { clientId: "c3", input: { op: "get", key: "x" }, call: 2 },
      { clientId: "c4", input: { op: "put", key: "x", value: "d" }, call: 3 },
    ]);
    assert.throws(() => rec.complete(a, {}), /already settled/);
    assert.throws(() => rec.timeout(99), /no operation with id 99/);
    rec.complete(d, {});
    assert.equal(rec.inFlight, 0);
    assertOk(checkLinearizable(kvModel, rec.history()));
  });

  it("uses performance.now() by default", () => {
    const rec = new HistoryRecorder<RegisterInput, RegisterOutput>();
    const before = performance.now();
    const id = rec.invoke(1, { op: "get" });
    rec.complete(id, { value: undefined });
    const [op] = rec.history();
    assert.ok(op!.call >= before && op!.return! >= op!.call && op!.return! <= performance.now());
  });
});

// ---------------------------------------------------------------------------------------------
// Property tests against a real in-memory KV store run by simulated concurrent clients.

/** The system under test: an in-memory KV with etcd-like versions, written independently of
 *  kvModel (a Map of records), so the properties check the model as well as the search. */
class MemoryKv {
  private readonly data = new Map<string, { value: string; version: number }>();
  apply(input: KvInput): KvOutput {
    const cur = this.data.get(input.key);
    switch (input.op) {
      case "get":
        return cur ? { value: cur.value, version: cur.version } : { version: 0 };
      case "put": {
        const version = (cur?.version ?? 0) + 1;
        this.data.set(input.key, { value: input.value, version });
        return { version };
      }
      case "delete":
        this.data.delete(input.key);
        return { deleted: cur ? 1 : 0 };
      case "cas": {
        const okVersion = input.expectedVersion === undefined || input.expectedVersion === (cur?.version ?? 0);
        const okValue = input.expectedValue === undefined || (cur !== undefined && cur.value === input.expectedValue);
        // Like CompareAndSwapResponse: the key's state after the operation, either way.
        if (!okVersion || !okValue) return { succeeded: false, value: cur?.value, version: cur?.version ?? 0 };
        const version = (cur?.version ?? 0) + 1;
        this.data.set(input.key, { value: input.newValue, version });
        return { succeeded: true, value: input.newValue, version };
      }
    }
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimOptions {
  seed: number;
  clients: number;
  keys: number;
  ops: number;
  /** Chance that a client gives up waiting (the op may still take effect later, or never). */
  timeoutRate: number;
  /** Values drawn from a tiny set, so writes of equal values are common. */
  reuseValues?: boolean;
}

/**
 * Runs clients against MemoryKv with a random interleaving: every operation takes effect
 * atomically at one instant between its call and its return (or, after a timeout, at any later
 * instant or never). The recorded history is therefore linearizable by construction.
 */
function simulate(o: SimOptions): KvOp[] {
  const rnd = mulberry32(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const kv = new MemoryKv();
  const rec = new HistoryRecorder<KvInput, KvOutput>(counter());
  const keys = Array.from({ length: o.keys }, (_, i) => `k${i}`);
  type Running = { id: number; input: KvInput; output?: KvOutput };
  const running = new Map<number, Running>(); // client -> op in flight
  const ghosts: KvInput[] = []; // timed-out ops that have not taken effect (yet)
  const lastSeen = new Map<string, KvOutput>();
  let issued = 0;
  let seq = 0;
  const newInput = (client: number): KvInput => {
    const key = pick(keys);
    const value = o.reuseValues ? pick(["a", "b", "c"]) : `c${client}-${seq++}`;
    const x = rnd();
    if (x < 0.4) return { op: "get", key };
    if (x < 0.7) return { op: "put", key, value };
    if (x < 0.8) return { op: "delete", key };
    const seen = lastSeen.get(key);
    return rnd() < 0.5
      ? { op: "cas", key, expectedVersion: seen?.version ?? Math.floor(rnd() * 3), newValue: value }
      : { op: "cas", key, expectedValue: seen?.value ?? "a", newValue: value };
  };
  while (issued < o.ops || running.size > 0) {
    const client = Math.floor(rnd() * o.clients);
    const r = running.get(client);
    if (ghosts.length && rnd() < 0.05) kv.apply(ghosts.splice(Math.floor(rnd() * ghosts.length), 1)[0]!);
    if (!r) {
      if (issued >= o.ops) continue;
      const input = newInput(client);
      running.set(client, { id: rec.invoke(client, input), input });
      issued++;
    } else if (r.output === undefined) {
      if (rnd() < o.timeoutRate) {
        rec.timeout(r.id);
        if (rnd() < 0.5) ghosts.push(r.input);
        running.delete(client);
      } else {
        r.output = kv.apply(r.input); // the linearization point
      }
    } else {
      if (rnd() < o.timeoutRate) rec.timeout(r.id);
      else {
        rec.complete(r.id, r.output);
        if (r.input.op === "get") lastSeen.set(r.input.key, r.output);
      }
      running.delete(client);
    }
  }
  return rec.history();
}

/** Makes one completed read return a value that was never written. */
function corruptOneRead(history: KvOp[], pickIndex: number): { history: KvOp[]; key: string } | undefined {
  const reads = history.map((op, i) => ({ op, i })).filter(({ op }) => op.input.op === "get" && op.output !== undefined);
  if (reads.length === 0) return undefined;
  const { op, i } = reads[pickIndex % reads.length]!;
  const copy = [...history];
  copy[i] = { ...op, output: { value: "never-written" } };
  return { history: copy, key: op.input.key };
}

/** Writes of distinct values, all concurrent, then a read of a value none of them wrote: the
 *  checker has to try every order of the writes before it can say no. */
function hardHistory(key: string, writers: number): KvOp[] {
  const h: KvOp[] = [];
  for (let i = 0; i < writers; i++) h.push(put(i, key, `w${i}`, 0, 100));
  h.push(get(writers, key, "none-of-them", 200, 201));
  return h;
}

function counter(): () => number {
  let t = 0;
  return () => t++;
}

describe("properties: histories of a real in-memory KV", () => {
  it("random sequential executions are linearizable", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 60 }), (seed, keys, ops) => {
        const h = simulate({ seed, clients: 1, keys, ops, timeoutRate: 0 });
        assertOk(checkLinearizable(kvModel, h));
      }),
      { numRuns: 200 },
    );
  });

  it("random concurrent executions, with timeouts and reused values, are linearizable", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 80 }),
        fc.constantFrom(0, 0.02, 0.1),
        fc.boolean(),
        (seed, clients, keys, ops, timeoutRate, reuseValues) => {
          const h = simulate({ seed, clients, keys, ops, timeoutRate, reuseValues });
          assertOk(checkLinearizable(kvModel, h, { timeoutMs: 10_000 }));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("the same histories with one read corrupted to a never-written value are rejected", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 80 }),
        fc.constantFrom(0, 0.05),
        fc.nat(),
        (seed, clients, keys, ops, timeoutRate, which) => {
          const bad = corruptOneRead(simulate({ seed, clients, keys, ops, timeoutRate }), which);
          fc.pre(bad !== undefined);
          const r = assertIllegal(checkLinearizable(kvModel, bad!.history, { timeoutMs: 10_000 }));
          assert.equal(r.partitionKey, `key ${JSON.stringify(bad!.key)}`);
          assert.match(r.explanation, /"never-written"/);
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** The definition, by exhaustive search: some order of the operations respects real time (an op
 *  that returned before another was called comes first), the model accepts every step, and every
 *  completed op is in it (never-returned ops may be left out). Exponential; for tiny histories. */
function bruteForceLinearizable(history: KvOp[]): boolean {
  const n = history.length;
  const memo = new Set<string>();
  const completed = (op: KvOp): boolean => op.return !== undefined;
  const go = (placed: number, states: Map<string, { value: string | undefined; version: number }>): boolean => {
    const remaining = history.filter((_, i) => !(placed & (1 << i)));
    if (remaining.every((op) => !completed(op))) return true;
    const memoKey = `${placed}|${[...states].map(([k, s]) => `${k}=${kvModel.key(s)}`).sort().join(",")}`;
    if (memo.has(memoKey)) return false;
    memo.add(memoKey);
    for (let i = 0; i < n; i++) {
      if (placed & (1 << i)) continue;
      const op = history[i]!;
      if (remaining.some((other) => completed(other) && other.return! < op.call)) continue;
      const r = kvModel.step(states.get(op.input.key) ?? kvModel.init(), op.input, op.output);
      if (!r.ok) continue;
      if (go(placed | (1 << i), new Map(states).set(op.input.key, r.state))) return true;
    }
    return false;
  };
  return go(0, new Map());
}

/** The memo cache finds configurations by hash and then compares them exactly; with 2-bit hashes
 *  nearly everything collides, so the exact comparison (not the hash) must keep verdicts right. */
function assertSameVerdictWithCollidingHashes(history: KvOp[], verdict: string): void {
  const r = checkLinearizable(kvModel, history, { debugHashBits: 2 });
  assert.equal(r.result, verdict, "the verdict changed when configuration hashes collide");
}

const smallValue = fc.constantFrom("a", "b", "c");
const smallKvOp: fc.Arbitrary<KvOp> = fc
  .record({
    clientId: fc.nat(3),
    key: fc.constantFrom("x", "x", "y"),
    kind: fc.constantFrom("get", "get", "put", "put", "delete", "casVersion", "casValue"),
    value: smallValue,
    version: fc.nat(3),
    call: fc.nat(20),
    length: fc.nat(8),
    pending: fc.boolean(),
    pendingChance: fc.nat(3),
    outValue: fc.option(smallValue),
    outVersion: fc.option(fc.nat(3)),
    succeeded: fc.boolean(),
    deleted: fc.option(fc.nat(1)),
  })
  .map((r): KvOp => {
    const input: KvInput =
      r.kind === "get"
        ? { op: "get", key: r.key }
        : r.kind === "put"
          ? { op: "put", key: r.key, value: r.value }
          : r.kind === "delete"
            ? { op: "delete", key: r.key }
            : r.kind === "casVersion"
              ? { op: "cas", key: r.key, expectedVersion: r.version, newValue: r.value }
              : { op: "cas", key: r.key, expectedValue: r.outValue ?? "a", newValue: r.value };
    const op: KvOp = { clientId: r.clientId, input, call: r.call };
    if (r.pending && r.pendingChance === 0) return op; // about one op in eight never returns
    const output: KvOutput =
      r.kind === "get"
        ? { value: r.outValue ?? undefined, ...(r.outVersion !== null ? { version: r.outVersion } : {}) }
        : r.kind === "put"
          ? r.outVersion !== null && r.succeeded ? { version: r.outVersion } : {}
          : r.kind === "delete"
            ? r.deleted !== null ? { deleted: r.deleted } : {}
            : r.outVersion === null
              ? { succeeded: r.succeeded }
              : { succeeded: r.succeeded, version: r.outVersion, value: r.outValue ?? undefined };
    return { ...op, return: r.call + r.length, output };
  });

describe("agreement with the definition (brute force) on small random histories", () => {
  it("gives the same verdict as exhaustive search, linearizable or not", () => {
    let legal = 0;
    let illegal = 0;
    fc.assert(
      fc.property(fc.array(smallKvOp, { minLength: 1, maxLength: 8 }), (history) => {
        const expected = bruteForceLinearizable(history);
        const r = checkLinearizable(kvModel, history);
        assert.notEqual(r.result, "unknown");
        assertSameVerdictWithCollidingHashes(history, r.result);
        assert.equal(r.result === "ok", expected, `brute force says ${expected ? "linearizable" : "not linearizable"}; checker: ${r.result === "illegal" ? r.explanation : r.result}`);
        if (expected) legal++;
        else illegal++;
      }),
      { numRuns: 1500 },
    );
    // The generator must exercise both verdicts, or this test proves little (typically ~160 of
    // 1500 are linearizable: random outputs rarely fit).
    assert.ok(legal > 75 && illegal > 75, `legal ${legal}, illegal ${illegal}`);
  });

  it("gives the same verdict when many operations never returned", () => {
    const mostlyPending = fc.array(
      fc.tuple(smallKvOp, fc.boolean()).map(([op, drop]) => (drop ? { clientId: op.clientId, input: op.input, call: op.call } : op)),
      { minLength: 2, maxLength: 9 },
    );
    let legal = 0;
    let illegal = 0;
    fc.assert(
      fc.property(mostlyPending, (history) => {
        const expected = bruteForceLinearizable(history);
        const r = checkLinearizable(kvModel, history);
        assert.equal(r.result === "ok", expected, `brute force: ${expected}; checker: ${r.result === "illegal" ? r.explanation : r.result}`);
        assertSameVerdictWithCollidingHashes(history, r.result);
        if (expected) legal++;
        else illegal++;
      }),
      { numRuns: 1500 },
    );
    assert.ok(legal > 200 && illegal > 200, `legal ${legal}, illegal ${illegal}`);
  });

  it("gives the same verdict on small simulated runs, as recorded or with one result altered", () => {
    let legal = 0;
    let illegal = 0;
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 2, max: 4 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 8 }),
        fc.option(fc.tuple(fc.nat(), smallValue, fc.nat(2))),
        (seed, clients, keys, ops, alter) => {
          let history = simulate({ seed, clients, keys, ops, timeoutRate: 0.15, reuseValues: true });
          if (alter) {
            const [which, value, version] = alter;
            const done = history.map((op, i) => ({ op, i })).filter(({ op }) => op.output !== undefined);
            if (done.length) {
              const { op, i } = done[which % done.length]!;
              const output: KvOutput =
                op.input.op === "get"
                  ? { value, version }
                  : op.input.op === "cas"
                    ? { succeeded: !op.output!.succeeded }
                    : op.input.op === "delete"
                      ? { deleted: 1 - (op.output!.deleted ?? 0) }
                      : { version };
              history = history.map((o, j) => (j === i ? { ...o, output } : o));
            }
          }
          const expected = bruteForceLinearizable(history);
          const r = checkLinearizable(kvModel, history);
          assert.equal(r.result === "ok", expected, `brute force: ${expected}; checker: ${r.result === "illegal" ? r.explanation : r.result}`);
          assertSameVerdictWithCollidingHashes(history, r.result);
          if (expected) legal++;
          else illegal++;
        },
      ),
      { numRuns: 1500 },
    );
    assert.ok(legal > 200 && illegal > 200, `legal ${legal}, illegal ${illegal}`);
  });
});

describe("exactness of the memo cache", () => {
  it("gives the same verdict when configuration hashes collide, on larger concurrent histories", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.integer({ min: 3, max: 6 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 20, max: 80 }),
        fc.constantFrom(0, 0.05),
        fc.option(fc.nat()),
        (seed, clients, keys, ops, timeoutRate, corrupt) => {
          let history = simulate({ seed, clients, keys, ops, timeoutRate, reuseValues: seed % 2 === 0 });
          if (corrupt !== null) history = corruptOneRead(history, corrupt)?.history ?? history;
          const r = checkLinearizable(kvModel, history, { timeoutMs: 10_000 });
          assert.notEqual(r.result, "unknown");
          assertSameVerdictWithCollidingHashes(history, r.result);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("performance", () => {
  it("checks 5000 operations from 10 clients on 8 keys, with timeouts, well within a second", () => {
    const h = simulate({ seed: 42, clients: 10, keys: 8, ops: 5000, timeoutRate: 0.01 });
    const t0 = performance.now();
    assertOk(checkLinearizable(kvModel, h));
    const okMs = performance.now() - t0;

    const bad = corruptOneRead(h, 2400)!; // a read in the middle of the run
    const t1 = performance.now();
    assertIllegal(checkLinearizable(kvModel, bad.history));
    const illegalMs = performance.now() - t1;
    const pending = h.filter((op) => op.return === undefined).length;
    console.log(
      `lincheck: ${h.length} ops (${pending} never returned): linearizable in ${okMs.toFixed(1)} ms, ` +
        `corrupted read rejected in ${illegalMs.toFixed(1)} ms`,
    );
    // Generous bounds for a shared 2-core machine; typical numbers are far lower (see the log).
    assert.ok(okMs < 2000, `took ${okMs.toFixed(0)} ms`);
    assert.ok(illegalMs < 2000, `took ${illegalMs.toFixed(0)} ms`);
  });
});
