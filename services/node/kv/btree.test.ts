import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { BTreeIndex, fromBinaryKey, keyPrefix, toBinaryKey } from "./btree.js";

// A model: a plain Map, sorted on demand. Keys are binary strings, so `<` is byte order.
function sortedKeys(m: Map<string, number>): string[] {
  return [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

// Few distinct bytes and short lengths, so keys collide, share prefixes longer than the 4-byte
// numeric prefix, and include 0x00 and 0xff (the edges of the padding and of byte order).
const byteArb = fc.constantFrom(0x00, 0x01, 0x61, 0x62, 0x7f, 0x80, 0xff);
const keyArb = fc
  .tuple(fc.constantFrom("", "abcdef", "\xff\xff\xff\xff\xff"), fc.array(byteArb, { maxLength: 6 }))
  .map(([head, tail]) => head + String.fromCharCode(...tail));

type Op =
  | { op: "set"; key: string; value: number }
  | { op: "delete"; key: string }
  | { op: "get"; key: string }
  | { op: "range"; low: string; high: string | undefined; limit: number }
  | { op: "deleteRange"; low: string; high: string | undefined }
  | { op: "clone" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("set" as const), key: keyArb, value: fc.integer() }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("delete" as const), key: keyArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("get" as const), key: keyArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("range" as const),
      low: keyArb,
      high: fc.option(keyArb, { nil: undefined }),
      limit: fc.integer({ min: 0, max: 20 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("deleteRange" as const), low: keyArb, high: fc.option(keyArb, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("clone" as const) }) },
);

function inRange(k: string, low: string, high: string | undefined): boolean {
  return k >= low && (high === undefined || k < high);
}

test("the B+ tree index agrees with a Map + sort for random sequences of set, delete, get, range, deleteRange and clone", () => {
  fc.assert(
    fc.property(fc.constantFrom(4, 5, 8, 128), fc.array(opArb, { maxLength: 600, size: "max" }), (order, ops) => {
      const tree = new BTreeIndex<number>(order);
      const model = new Map<string, number>();
      // Frozen clones and the model state they must keep showing, whatever happens to `tree`.
      const clones: Array<{ tree: BTreeIndex<number>; expect: Array<[string, number]> }> = [];
      for (const o of ops) {
        switch (o.op) {
          case "set": {
            const added = tree.set(o.key, o.value);
            assert.equal(added, !model.has(o.key));
            model.set(o.key, o.value);
            break;
          }
          case "delete": {
            assert.equal(tree.delete(o.key), model.get(o.key));
            model.delete(o.key);
            break;
          }
          case "get":
            assert.equal(tree.get(o.key), model.get(o.key));
            break;
          case "range": {
            const got: Array<[string, number]> = [];
            tree.forRange(o.low, o.high, (k, v) => {
              if (o.limit > 0 && got.length >= o.limit) return false;
              got.push([k, v]);
            });
            let want = sortedKeys(model).filter((k) => inRange(k, o.low, o.high)).map((k): [string, number] => [k, model.get(k)!]);
            if (o.limit > 0) want = want.slice(0, o.limit);
            assert.deepEqual(got, want);
            break;
          }
          case "deleteRange": {
            const doomed = [...model.keys()].filter((k) => inRange(k, o.low, o.high));
            assert.equal(tree.deleteRange(o.low, o.high), doomed.length);
            for (const k of doomed) model.delete(k);
            tree.checkValid();
            break;
          }
          case "clone":
            clones.push({ tree: tree.clone(), expect: sortedKeys(model).map((k) => [k, model.get(k)!]) });
            break;
        }
        assert.equal(tree.size, model.size);
      }
      tree.checkValid();
      assert.deepEqual([...tree.entries()], sortedKeys(model).map((k) => [k, model.get(k)]));
      for (const c of clones) {
        c.tree.checkValid();
        assert.deepEqual([...c.tree.entries()], c.expect);
      }
    }),
    { numRuns: 300 },
  );
});

test("a clone and its original are isolated both ways: writes to either never show in the other", () => {
  const a = new BTreeIndex<string>(4);
  for (let i = 0; i < 200; i++) a.set(`k${String(i).padStart(3, "0")}`, `a${i}`);
  const b = a.clone();
  for (let i = 0; i < 200; i += 2) a.delete(`k${String(i).padStart(3, "0")}`);
  for (let i = 0; i < 200; i += 3) b.set(`k${String(i).padStart(3, "0")}`, `b${i}`);
  b.set("new", "b");
  a.checkValid();
  b.checkValid();
  assert.equal(a.size, 100);
  assert.equal(b.size, 201);
  assert.equal(a.get("k001"), "a1");
  assert.equal(a.get("k003"), "a3");
  assert.equal(a.get("new"), undefined);
  assert.equal(b.get("k000"), "b0");
  assert.equal(b.get("k001"), "a1");
  assert.equal(b.get("k002"), "a2");
  const c = b.clone();
  c.clear();
  assert.equal(b.size, 201);
  assert.equal(c.size, 0);
});

test("binary-string keys order exactly as their bytes do (memcmp order, a prefix first)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), (a, b) => {
      const ka = toBinaryKey(a);
      const kb = toBinaryKey(b);
      const want = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.equal(ka < kb ? -1 : ka > kb ? 1 : 0, want);
      assert.deepEqual(fromBinaryKey(ka), Buffer.from(a));
      // The numeric prefix never contradicts the order; it may only tie.
      const pa = keyPrefix(ka);
      const pb = keyPrefix(kb);
      if (pa < pb) assert.equal(want, -1);
      if (pa > pb) assert.equal(want, 1);
    }),
    { numRuns: 2000 },
  );
});

test("toBinaryKey reads only the view's bytes, not the whole underlying buffer", () => {
  const backing = new Uint8Array([9, 1, 2, 3, 9]);
  assert.equal(toBinaryKey(backing.subarray(1, 4)), "\x01\x02\x03");
});

test("100,000 random inserts then deleting every key leaves a valid, empty tree at order 128", () => {
  const tree = new BTreeIndex<number>(128);
  const keys: string[] = [];
  let x = 12345;
  for (let i = 0; i < 100_000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    keys.push(x.toString(36) + i.toString(36));
  }
  for (let i = 0; i < keys.length; i++) tree.set(keys[i], i);
  tree.checkValid();
  assert.equal(tree.size, 100_000);
  for (let i = 0; i < keys.length; i++) assert.equal(tree.get(keys[i]), i);
  for (let i = keys.length - 1; i >= 0; i--) assert.equal(tree.delete(keys[i]), i);
  tree.checkValid();
  assert.equal(tree.size, 0);
  assert.equal(tree.minKey(), undefined);
});

test("a node size outside [4, 1024] is refused with a clear error", () => {
  assert.throws(() => new BTreeIndex(3), /maxNodeSize must be an integer in \[4, 1024\], got 3/);
  assert.throws(() => new BTreeIndex(2.5), /maxNodeSize/);
});

test("a tree built from sorted pairs is valid at every size and order, and stays valid under later writes", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(4, 5, 7, 8, 16, 128),
      fc.uniqueArray(keyArb, { maxLength: 700, size: "max" }),
      fc.array(fc.tuple(fc.boolean(), keyArb), { maxLength: 100 }),
      (order, keys, writes) => {
        const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        const builder = BTreeIndex.builder<number>(order);
        sorted.forEach((k, i) => builder.add(k, i));
        const tree = builder.finish();
        tree.checkValid();
        assert.deepEqual([...tree.entries()], sorted.map((k, i) => [k, i]));
        const model = new Map(sorted.map((k, i) => [k, i]));
        const frozen = tree.clone();
        for (const [isSet, k] of writes) {
          if (isSet) {
            tree.set(k, -1);
            model.set(k, -1);
          } else {
            assert.equal(tree.delete(k), model.get(k));
            model.delete(k);
          }
        }
        tree.checkValid();
        assert.deepEqual([...tree.entries()], sortedKeys(model).map((k) => [k, model.get(k)]));
        assert.deepEqual([...frozen.entries()], sorted.map((k, i) => [k, i]));
      },
    ),
    { numRuns: 200 },
  );
});

test("the builder refuses keys out of order and use after finish", () => {
  const b = BTreeIndex.builder<number>(8);
  b.add("b", 1);
  assert.throws(() => b.add("a", 2), /strictly increasing order/);
  assert.throws(() => b.add("b", 2), /strictly increasing order/);
  assert.equal(b.finish().size, 1);
  assert.throws(() => b.add("c", 3), /already finished/);
});

test("a large sorted build packs leaves: 100,000 keys at order 128 need far fewer nodes than inserting in order", () => {
  const built = BTreeIndex.builder<number>(128);
  for (let i = 0; i < 100_000; i++) built.add(String(i).padStart(6, "0"), i);
  const tree = built.finish();
  tree.checkValid();
  assert.equal(tree.size, 100_000);
  assert.equal(tree.get("054321"), 54321);
  const inOrder = new BTreeIndex<number>(128);
  for (let i = 0; i < 100_000; i++) inOrder.set(String(i).padStart(6, "0"), i);
  const packed = tree.stats();
  const halfEmpty = inOrder.stats();
  assert.equal(packed.leaves, Math.ceil(100_000 / 112));
  assert.ok(packed.leaves < halfEmpty.leaves * 0.6, `${packed.leaves} leaves vs ${halfEmpty.leaves}`);
  assert.equal(packed.depth, 3);
});
