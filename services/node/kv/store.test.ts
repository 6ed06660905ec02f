import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Command, type DeepPartial, type KeyValue } from "../../common/gen/raftkv/v1/kv.js";
import type { ApplyResult } from "./results.js";
import { ApplyGapError, KvStore, prefixEnd } from "./store.js";
import { InvalidArgumentError, validateCommand } from "./validate.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const enc = (c: DeepPartial<Command>): Uint8Array => Command.encode(Command.fromPartial(c)).finish();
const put = (key: string, value: string, extra: Record<string, unknown> = {}) =>
  enc({ op: { $case: "put", value: { key: b(key), value: b(value), ...extra } } });
const del = (key: string, prevKv = false) => enc({ op: { $case: "delete", value: { key: b(key), prevKv } } });

/** A store and an index counter: each call applies the next entry. */
function harness(opts: ConstructorParameters<typeof KvStore>[0] = {}) {
  const store = new KvStore(opts);
  let index = 0;
  return {
    store,
    apply: (data: Uint8Array): ApplyResult => store.apply(++index, data),
    get next() {
      return index + 1;
    },
  };
}

function ok<T extends ApplyResult["type"]>(r: ApplyResult, type: T): Extract<ApplyResult, { type: T }> {
  assert.equal(r.type, type, `expected ${type}, got ${JSON.stringify(r)}`);
  return r as Extract<ApplyResult, { type: T }>;
}

function kvs(store: KvStore): Array<[string, string, number, number, number]> {
  return store.range({}).kvs.map((kv) => [kv.key.toString("latin1"), kv.value.toString("latin1"), kv.createRevision, kv.modRevision, kv.version]);
}

test("a put's revision is its entry's index: create = mod = index and version 1 on creation", () => {
  const h = harness();
  h.apply(new Uint8Array(0)); // the leader's no-op at index 1
  const r = ok(h.apply(put("a", "1")), "put");
  assert.equal(r.index, 2);
  assert.deepEqual(r.response.kv, { key: b("a"), value: b("1"), createRevision: 2, modRevision: 2, version: 1 });
  assert.equal(r.response.prevKv, undefined);
  assert.equal(h.store.appliedIndex, 2);
});

test("each later put keeps createRevision, moves modRevision to its index and bumps version; prev_kv returns the pair before", () => {
  const h = harness();
  h.apply(put("a", "1"));
  h.apply(put("other", "x"));
  const r = ok(h.apply(put("a", "2", { prevKv: true })), "put");
  assert.deepEqual(r.response.kv, { key: b("a"), value: b("2"), createRevision: 1, modRevision: 3, version: 2 });
  assert.deepEqual(r.response.prevKv, { key: b("a"), value: b("1"), createRevision: 1, modRevision: 1, version: 1 });
  assert.deepEqual(h.store.get(b("a")), r.response.kv);
});

test("delete removes the key; a later put recreates it with version 1 and a new createRevision", () => {
  const h = harness();
  h.apply(put("a", "1"));
  h.apply(put("a", "2"));
  const d = ok(h.apply(del("a", true)), "delete");
  assert.equal(d.response.deleted, 1);
  assert.deepEqual(d.response.prevKv, { key: b("a"), value: b("2"), createRevision: 1, modRevision: 2, version: 2 });
  assert.equal(h.store.get(b("a")), undefined);
  const again = ok(h.apply(del("a", true)), "delete");
  assert.equal(again.response.deleted, 0);
  assert.equal(again.response.prevKv, undefined);
  const p = ok(h.apply(put("a", "3")), "put");
  assert.deepEqual(p.response.kv, { key: b("a"), value: b("3"), createRevision: 5, modRevision: 5, version: 1 });
});

test("compare-and-swap on value replaces only when the current value matches", () => {
  const h = harness();
  h.apply(put("k", "old"));
  const cas = (expected: string, next: string) =>
    h.apply(enc({ op: { $case: "cas", value: { key: b("k"), expectedValue: b(expected), newValue: b(next) } } }));
  const miss = ok(cas("nope", "x"), "cas");
  assert.equal(miss.response.succeeded, false);
  assert.deepEqual(miss.response.kv, { key: b("k"), value: b("old"), createRevision: 1, modRevision: 1, version: 1 });
  const hit = ok(cas("old", "new"), "cas");
  assert.equal(hit.response.succeeded, true);
  assert.deepEqual(hit.response.kv, { key: b("k"), value: b("new"), createRevision: 1, modRevision: 3, version: 2 });
  // On a missing key a value comparison fails (even against an empty expected value).
  const absent = ok(h.apply(enc({ op: { $case: "cas", value: { key: b("none"), expectedValue: b(""), newValue: b("v") } } })), "cas");
  assert.equal(absent.response.succeeded, false);
  assert.equal(absent.response.kv, undefined);
});

test("compare-and-swap on version: 0 means the key must not exist (so CAS creates), n means version n", () => {
  const h = harness();
  const cas = (version: number, next: string) =>
    h.apply(enc({ op: { $case: "cas", value: { key: b("k"), expectedVersion: version, newValue: b(next) } } }));
  const created = ok(cas(0, "v1"), "cas");
  assert.equal(created.response.succeeded, true);
  assert.deepEqual(created.response.kv, { key: b("k"), value: b("v1"), createRevision: 1, modRevision: 1, version: 1 });
  assert.equal(ok(cas(0, "again"), "cas").response.succeeded, false, "version 0 fails once the key exists");
  assert.equal(ok(cas(2, "v2"), "cas").response.succeeded, false, "wrong version");
  const swapped = ok(cas(1, "v2"), "cas");
  assert.equal(swapped.response.succeeded, true);
  assert.deepEqual(swapped.response.kv, { key: b("k"), value: b("v2"), createRevision: 1, modRevision: 4, version: 2 });
});

test("compare-and-swap with both or neither of expected_value and expected_version is refused", () => {
  const both = Command.fromPartial({ op: { $case: "cas", value: { key: b("k"), expectedValue: b("x"), expectedVersion: 1, newValue: b("v") } } });
  const neither = Command.fromPartial({ op: { $case: "cas", value: { key: b("k"), newValue: b("v") } } });
  for (const cmd of [both, neither]) {
    assert.throws(() => validateCommand(cmd), { name: "InvalidArgumentError", message: /exactly one of expected_value and expected_version/ });
    const h = harness();
    const r = ok(h.apply(Command.encode(cmd).finish()), "error");
    assert.equal(r.error.code, "INVALID_ARGUMENT");
  }
});

test("delete-range removes [start, end), or every key under a prefix, and counts what it removed", () => {
  const h = harness();
  for (const k of ["a", "b", "b/1", "b/2", "c", "\xff", "\xff\xff\x01"]) h.apply(put(k, "v"));
  const dr = (v: DeepPartial<Command>["op"]) => ok(h.apply(enc({ op: v })), "deleteRange").response.deleted;
  assert.equal(dr({ $case: "deleteRange", value: { start: b("b/"), end: b("c") } }), 2);
  assert.deepEqual(kvs(h.store).map((x) => x[0]), ["a", "b", "c", "\xff", "\xff\xff\x01"]);
  assert.equal(dr({ $case: "deleteRange", value: { prefix: b("\xff") } }), 2, "a prefix of 0xff bytes runs to the end of the key space");
  assert.equal(dr({ $case: "deleteRange", value: { start: b("a"), end: b("b") } }), 1);
  assert.equal(dr({ $case: "deleteRange", value: { start: b("") } }), 2, "empty end: to the end");
  assert.equal(h.store.size, 0);
});

test("range returns keys in order with limit, more and count; keys_only drops values", () => {
  const h = harness();
  for (const k of ["k3", "k1", "k2", "j", "l", "k10"]) h.apply(put(k, `v-${k}`));
  const all = h.store.range({ prefix: b("k") });
  assert.deepEqual(all.kvs.map((kv) => kv.key.toString()), ["k1", "k10", "k2", "k3"]);
  assert.equal(all.more, false);
  assert.equal(all.count, 4);
  const two = h.store.range({ prefix: b("k"), limit: 2 });
  assert.deepEqual(two.kvs.map((kv) => kv.key.toString()), ["k1", "k10"]);
  assert.equal(two.more, true);
  assert.equal(two.count, 4);
  const bounded = h.store.range({ start: b("k1"), end: b("k3") });
  assert.deepEqual(bounded.kvs.map((kv) => kv.key.toString()), ["k1", "k10", "k2"]);
  const keysOnly = h.store.range({ start: b("j"), end: b("k1"), keysOnly: true });
  assert.deepEqual(keysOnly.kvs, [{ key: b("j"), value: Buffer.alloc(0), createRevision: 4, modRevision: 4, version: 1 }]);
  assert.equal(h.store.range({ start: b("x") }).count, 0);
});

test("range stops at maxResponseBytes (setting more) but always returns at least one pair", () => {
  const h = harness({ limits: { maxResponseBytes: 100 } });
  for (let i = 0; i < 10; i++) h.apply(put(`k${i}`, "x".repeat(40)));
  const r = h.store.range({});
  assert.equal(r.kvs.length, 2);
  assert.equal(r.more, true);
  assert.equal(r.count, 10);
  h.apply(put("a-big", "y".repeat(500)));
  const one = h.store.range({ limit: 5 });
  assert.equal(one.kvs.length, 1);
  assert.equal(one.kvs[0].key.toString(), "a-big");
});

test("bad range reads are refused with InvalidArgumentError: start after end, prefix with start, negative limit", () => {
  const { store } = harness();
  assert.throws(() => store.range({ start: b("b"), end: b("a") }), { name: "InvalidArgumentError", message: "range start is after range end" });
  assert.throws(() => store.range({ prefix: b("p"), start: b("a") }), { message: "set either prefix or start/end, not both" });
  assert.throws(() => store.range({ limit: -1 }), { message: /limit must be a non-negative integer/ });
  assert.throws(() => store.get(Buffer.alloc(0)), { name: "InvalidArgumentError", message: "key must not be empty" });
  assert.doesNotThrow(() => store.range({ start: b("a"), end: b("a") }));
});

test("limits: empty key, key over 4 KiB and value over 1 MiB are refused before proposing, with the sizes in the message", () => {
  const cmd = (key: Buffer, value: Buffer) => Command.fromPartial({ op: { $case: "put", value: { key, value } } });
  assert.throws(() => validateCommand(cmd(Buffer.alloc(0), b("v"))), (e: unknown) => e instanceof InvalidArgumentError && e.message === "key must not be empty");
  assert.throws(() => validateCommand(cmd(Buffer.alloc(4097), b("v"))), { message: "key is 4097 bytes, over the limit of 4096 bytes" });
  assert.doesNotThrow(() => validateCommand(cmd(Buffer.alloc(4096), Buffer.alloc(1024 * 1024))));
  assert.throws(() => validateCommand(cmd(b("k"), Buffer.alloc(1024 * 1024 + 1))), { message: "value is 1048577 bytes, over the limit of 1048576 bytes" });
  const store = new KvStore({ limits: { maxKeyBytes: 8, maxValueBytes: 16 } });
  assert.throws(() => store.validate(cmd(b("123456789"), b("v"))), { message: "key is 9 bytes, over the limit of 8 bytes" });
  assert.throws(() => store.validate(cmd(b("k"), Buffer.alloc(17))), { message: "value is 17 bytes, over the limit of 16 bytes" });
  assert.throws(() => new KvStore({ limits: { maxKeyBytes: 0 } }), /limit maxKeyBytes must be a positive integer, got 0/);
});

test("apply does not enforce configured limits, so nodes configured differently still agree", () => {
  const strict = new KvStore({ limits: { maxKeyBytes: 4 } });
  const loose = new KvStore();
  const entry = put("a-long-key", "v");
  assert.equal(strict.apply(1, entry).type, "put");
  assert.equal(loose.apply(1, entry).type, "put");
  assert.deepEqual(kvs(strict), kvs(loose));
  // ...but structural problems are errors at apply too: an empty key never enters the state.
  const r = ok(strict.apply(2, put("", "v")), "error");
  assert.deepEqual(r.error, { code: "INVALID_ARGUMENT", message: "key must not be empty" });
});

test("garbage entry data gives an INVALID_ARGUMENT result, never a throw, identically on two stores", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 64 }), { minLength: 1, maxLength: 30 }), (entries) => {
      const a = new KvStore();
      const c = new KvStore();
      entries.forEach((data, i) => {
        const ra = a.apply(i + 1, data);
        const rc = c.apply(i + 1, data);
        assert.deepEqual(ra, rc);
        if (ra.type === "error") assert.equal(ra.error.code === "INVALID_ARGUMENT" || ra.error.code === "FAILED_PRECONDITION", true);
      });
      assert.equal(a.appliedIndex, entries.length);
      assert.deepEqual(a.range({}), c.range({}));
    }),
    { numRuns: 300 },
  );
  const r = ok(new KvStore().apply(1, new Uint8Array([0x0a, 0xff, 0xff, 0xff])), "error");
  assert.equal(r.error.code, "INVALID_ARGUMENT");
  assert.match(r.error.message, /^entry data is not a valid Command: /);
  const noOp = ok(new KvStore().apply(1, new Uint8Array([0x08, 0x01])), "error");
  assert.equal(noOp.error.message, "command has no operation (put, delete, delete_range or cas)");
});

test("entries apply in order: an already applied index is skipped, a gap throws, empty entries and applyNoop advance", () => {
  const s = new KvStore();
  assert.deepEqual(s.apply(1, new Uint8Array(0)), { type: "noop", index: 1 });
  assert.deepEqual(s.applyNoop(2), { type: "noop", index: 2 });
  assert.equal(s.apply(3, put("a", "1")).type, "put");
  assert.deepEqual(s.apply(3, put("a", "2")), { type: "skipped", index: 3 });
  assert.deepEqual(s.applyNoop(1), { type: "skipped", index: 1 });
  assert.throws(() => s.apply(5, put("a", "3")), ApplyGapError);
  assert.equal(s.appliedIndex, 3);
  assert.equal(s.get(b("a"))!.value.toString(), "1");
});

// ---- client sessions (Raft thesis §6.3) ----

const rid = (clientId: string, seq: number) => ({ clientId, seq });
const putAs = (clientId: string, seq: number, key: string, value: string) =>
  enc({ requestId: rid(clientId, seq), op: { $case: "put", value: { key: b(key), value: b(value) } } });

test("a retried request (same client id and seq) is applied once and answered with the first result", () => {
  const h = harness();
  const first = ok(h.apply(putAs("c1", 1, "k", "v")), "put");
  assert.deepEqual(first.requestId, rid("c1", 1));
  assert.equal(first.duplicate, false);
  h.apply(put("k", "someone else"));
  const retry = ok(h.apply(putAs("c1", 1, "k", "v")), "put");
  assert.equal(retry.duplicate, true);
  assert.equal(retry.index, 3);
  assert.deepEqual(retry.response, first.response, "the first result, not a new write");
  assert.equal(h.store.get(b("k"))!.value.toString(), "someone else", "not applied again");
  assert.equal(h.store.get(b("k"))!.version, 2);
  const next = ok(h.apply(putAs("c1", 2, "k", "w")), "put");
  assert.equal(next.duplicate, false);
  assert.equal(next.response.kv!.version, 3);
});

test("the request id may sit in the Command or in its operation; both set and different is refused", () => {
  const h = harness();
  const inner = ok(h.apply(enc({ op: { $case: "put", value: { key: b("k"), value: b("v"), requestId: rid("c", 1) } } })), "put");
  assert.deepEqual(inner.requestId, rid("c", 1));
  assert.equal(ok(h.apply(enc({ op: { $case: "put", value: { key: b("k"), value: b("v"), requestId: rid("c", 1) } } })), "put").duplicate, true);
  const clash = Command.fromPartial({ requestId: rid("c", 2), op: { $case: "put", value: { key: b("k"), value: b("v"), requestId: rid("c", 3) } } });
  assert.throws(() => validateCommand(clash), /request_id is set in both the command and its operation, with different values/);
  assert.equal(ok(h.apply(Command.encode(clash).finish()), "error").error.code, "INVALID_ARGUMENT");
});

test("a seq older than the client's last answered one gets FAILED_PRECONDITION 'request superseded'", () => {
  const h = harness();
  h.apply(putAs("c1", 1, "k", "1"));
  h.apply(putAs("c1", 2, "k", "2"));
  const r = ok(h.apply(putAs("c1", 1, "k", "1")), "error");
  assert.equal(r.error.code, "FAILED_PRECONDITION");
  assert.match(r.error.message, /^request superseded: client "c1" seq 1 is older than its last answered seq 2/);
  assert.equal(h.store.get(b("k"))!.value.toString(), "2");
});

test("seq 0 and an empty client id are refused; an unknown client must begin at seq 1 (else: session expired)", () => {
  assert.throws(() => validateCommand(Command.decode(putAs("c", 0, "k", "v"))), /request_id.seq must be a positive integer/);
  assert.throws(() => validateCommand(Command.decode(putAs("", 1, "k", "v"))), /request_id.client_id must not be empty/);
  const h = harness();
  const r = ok(h.apply(putAs("stranger", 7, "k", "v")), "error");
  assert.equal(r.error.code, "FAILED_PRECONDITION");
  assert.match(r.error.message, /^session expired: client "stranger"/);
  assert.equal(h.store.size, 0);
});

test("sessions are evicted least-recently-used by log position, so a retry after eviction is refused, not re-applied", () => {
  const h = harness({ maxSessions: 2 });
  h.apply(putAs("a", 1, "ka", "1"));
  h.apply(putAs("b", 1, "kb", "1"));
  h.apply(putAs("a", 1, "ka", "1")); // a retry counts as a use: now b is the least recently used
  h.apply(putAs("c", 1, "kc", "1")); // evicts b
  assert.equal(h.store.sessionCount, 2);
  assert.equal(ok(h.apply(putAs("a", 1, "ka", "1")), "put").duplicate, true);
  const b2 = ok(h.apply(putAs("b", 2, "kb", "2")), "error");
  assert.match(b2.error.message, /^session expired/);
  assert.equal(h.store.get(b("kb"))!.version, 1);
});

test("the session table is bounded by bytes too, evicting the oldest sessions first", () => {
  const h = harness({ maxSessionBytes: 2000 });
  for (let i = 1; i <= 20; i++) h.apply(enc({ requestId: rid(`c${i}`, 1), op: { $case: "put", value: { key: b(`k${i}`), value: Buffer.alloc(300), prevKv: false } } }));
  assert.ok(h.store.sessionCount < 20 && h.store.sessionCount > 0, `${h.store.sessionCount} sessions`);
  assert.equal(ok(h.apply(putAs("c20", 1, "k20", "x")), "put").duplicate, true, "the newest session is kept");
  assert.match(ok(h.apply(putAs("c1", 2, "k1", "x")), "error").error.message, /^session expired/);
});

test("an error result is remembered like any other: the retry gets the same error", () => {
  const h = harness();
  const bad = enc({ requestId: rid("c", 1), op: { $case: "put", value: { key: b(""), value: b("v") } } });
  const first = ok(h.apply(bad), "error");
  const again = ok(h.apply(bad), "error");
  assert.deepEqual(again.error, first.error);
  assert.equal(again.duplicate, true);
});

// ---- a model check of the whole store ----

interface ModelRec {
  value: string;
  create: number;
  mod: number;
  version: number;
}

const keyArb = fc.constantFrom("a", "ab", "abc", "b", "b\x00", "b\xff", "\xff", "\xff\xff", "k1", "k2", "k10");
const cmdArb = fc.oneof(
  fc.record({ t: fc.constant("put" as const), key: keyArb, value: fc.string({ maxLength: 3, unit: "grapheme-ascii" }) }),
  fc.record({ t: fc.constant("del" as const), key: keyArb }),
  fc.record({ t: fc.constant("casv" as const), key: keyArb, expected: fc.string({ maxLength: 3, unit: "grapheme-ascii" }), value: fc.string({ maxLength: 3, unit: "grapheme-ascii" }) }),
  fc.record({ t: fc.constant("casn" as const), key: keyArb, version: fc.nat(3), value: fc.string({ maxLength: 3, unit: "grapheme-ascii" }) }),
  fc.record({ t: fc.constant("drange" as const), start: keyArb, end: fc.option(keyArb, { nil: undefined }) }),
  fc.record({ t: fc.constant("dprefix" as const), prefix: fc.constantFrom("", "a", "b", "\xff", "k1") }),
);

function inModelRange(k: string, start: string, end: string | undefined): boolean {
  return k >= start && (end === undefined || k < end);
}

test("the store matches a model (Map + revisions by hand) for random command sequences", () => {
  fc.assert(
    fc.property(fc.array(cmdArb, { maxLength: 120, size: "max" }), (cmds) => {
      const store = new KvStore({ order: 4 });
      const model = new Map<string, ModelRec>();
      const write = (k: string, value: string, index: number) => {
        const prev = model.get(k);
        model.set(k, prev ? { value, create: prev.create, mod: index, version: prev.version + 1 } : { value, create: index, mod: index, version: 1 });
      };
      cmds.forEach((c, i) => {
        const index = i + 1;
        switch (c.t) {
          case "put":
            store.apply(index, put(c.key, c.value));
            write(c.key, c.value, index);
            break;
          case "del":
            store.apply(index, del(c.key));
            model.delete(c.key);
            break;
          case "casv": {
            const r = ok(store.apply(index, enc({ op: { $case: "cas", value: { key: b(c.key), expectedValue: b(c.expected), newValue: b(c.value) } } })), "cas");
            const ok1 = model.get(c.key)?.value === c.expected;
            assert.equal(r.response.succeeded, ok1);
            if (ok1) write(c.key, c.value, index);
            break;
          }
          case "casn": {
            const r = ok(store.apply(index, enc({ op: { $case: "cas", value: { key: b(c.key), expectedVersion: c.version, newValue: b(c.value) } } })), "cas");
            const cur = model.get(c.key);
            const ok1 = c.version === 0 ? cur === undefined : cur?.version === c.version;
            assert.equal(r.response.succeeded, ok1);
            if (ok1) write(c.key, c.value, index);
            break;
          }
          case "drange": {
            const bad = c.end !== undefined && c.end.length > 0 && c.start > c.end;
            const r = store.apply(index, enc({ op: { $case: "deleteRange", value: { start: b(c.start), end: b(c.end ?? "") } } }));
            if (bad) {
              assert.equal(ok(r, "error").error.message, "range start is after range end");
              break;
            }
            let n = 0;
            for (const k of [...model.keys()]) {
              if (inModelRange(k, c.start, c.end || undefined)) {
                model.delete(k);
                n++;
              }
            }
            assert.equal(ok(r, "deleteRange").response.deleted, n);
            break;
          }
          case "dprefix": {
            const r = ok(store.apply(index, enc({ op: { $case: "deleteRange", value: { prefix: b(c.prefix) } } })), "deleteRange");
            let n = 0;
            for (const k of [...model.keys()]) {
              if (k.startsWith(c.prefix)) {
                model.delete(k);
                n++;
              }
            }
            assert.equal(r.response.deleted, n);
            break;
          }
        }
      });
      const want = [...model.entries()]
        .sort(([x], [y]) => (x < y ? -1 : 1))
        .map(([k, r]): [string, string, number, number, number] => [k, r.value, r.create, r.mod, r.version]);
      assert.deepEqual(kvs(store), want);
      for (const p of ["", "a", "b", "k1", "\xff"]) {
        const got = store.range({ prefix: b(p) });
        assert.deepEqual(
          got.kvs.map((kv: KeyValue) => kv.key.toString("latin1")),
          want.map((w) => w[0]).filter((k) => k.startsWith(p)),
        );
      }
    }),
    { numRuns: 200 },
  );
});

test("prefixEnd is the first key past every key with the prefix (0xff bytes carry; all-0xff has none)", () => {
  assert.equal(prefixEnd("ab"), "ac");
  assert.equal(prefixEnd("a\xff"), "b");
  assert.equal(prefixEnd("a\xff\xff"), "b");
  assert.equal(prefixEnd("\xff\xff"), undefined);
  assert.equal(prefixEnd(""), undefined);
});

test("two stores applying the same log with many clients and evictions hold identical session tables", async () => {
  const log: Uint8Array[] = [];
  let x = 7;
  const seqs = new Map<string, number>();
  for (let i = 0; i < 400; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const client = `c${x % 13}`;
    // Mostly new requests, some retries of the last one.
    const seq = (seqs.get(client) ?? 0) + (x % 4 === 0 && seqs.has(client) ? 0 : 1);
    seqs.set(client, seq);
    log.push(putAs(client, seq, `k${x % 31}`, `v${i}`));
  }
  const bytes = async (s: KvStore) => {
    const parts: Uint8Array[] = [];
    for await (const c of s.snapshot().chunks) parts.push(c);
    return Buffer.concat(parts);
  };
  const [s1, s2] = [new KvStore({ maxSessions: 5 }), new KvStore({ maxSessions: 5 })];
  const results1 = log.map((e, i) => s1.apply(i + 1, e));
  const results2 = log.map((e, i) => s2.apply(i + 1, e));
  assert.deepEqual(results1, results2);
  assert.ok(results1.some((r) => r.type === "error" && /session expired/.test(r.error.message)), "evictions happened");
  assert.ok(results1.some((r) => r.type === "put" && r.duplicate), "retries were answered from sessions");
  assert.equal(s1.sessionCount, 5);
  assert.deepEqual(await bytes(s1), await bytes(s2));
});
