import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Command, type DeepPartial } from "../../common/gen/raftkv/v1/kv.js";
import { SnapshotFormatError } from "./snapshot.js";
import { KvStore } from "./store.js";

const b = (s: string): Buffer => Buffer.from(s, "latin1");
const enc = (c: DeepPartial<Command>): Uint8Array => Command.encode(Command.fromPartial(c)).finish();

/** Entries 1, 8, 15, ... come from 5 clients in turn, each numbering its requests from 1. */
function sessionRid(i: number): { clientId: string; seq: number } {
  const n = (i - 1) / 7;
  return { clientId: `client-${n % 5}`, seq: Math.floor(n / 5) + 1 };
}

/** A deterministic pseudo-random command for entry i (the same log for every store). */
function entry(i: number): Uint8Array {
  const k = b(`key-${(i * 7919) % 97}`);
  switch (i % 7) {
    case 0:
      return enc({ op: { $case: "delete", value: { key: k } } });
    case 1:
      return enc({ requestId: sessionRid(i), op: { $case: "put", value: { key: k, value: b(`v${i}`) } } });
    case 2:
      return new Uint8Array(0);
    case 3:
      return enc({ op: { $case: "cas", value: { key: k, expectedVersion: 0, newValue: b(`c${i}`) } } });
    case 4:
      return i % 28 === 4 ? enc({ op: { $case: "deleteRange", value: { prefix: b(`key-${i % 10}`) } } }) : enc({ op: { $case: "put", value: { key: k, value: Buffer.alloc(i % 300, i) } } });
    default:
      return enc({ op: { $case: "put", value: { key: k, value: b(`p${i}`), prevKv: true } } });
  }
}

function storeAt(n: number, opts = {}): KvStore {
  const s = new KvStore(opts);
  for (let i = 1; i <= n; i++) s.apply(i, entry(i));
  return s;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

async function bytesOf(s: KvStore, chunkBytes?: number): Promise<Buffer> {
  return collect(s.snapshot({ chunkBytes }).chunks);
}

test("a snapshot round trip restores every key with its revisions, the sessions and the applied index", async () => {
  const s = storeAt(600);
  assert.ok(s.size > 20 && s.sessionCount === 5, `${s.size} keys, ${s.sessionCount} sessions`);
  const data = await bytesOf(s);
  const r = KvStore.restore(data);
  assert.equal(r.appliedIndex, 600);
  assert.deepEqual(r.range({}), s.range({}));
  assert.deepEqual(await bytesOf(r), data, "re-encoding the restored store gives the same bytes");
  // The sessions came along: the last request of client-1 is answered, not applied again.
  let i = 600;
  while (i % 7 !== 1 || sessionRid(i).clientId !== "client-1") i--;
  const last = enc({ requestId: sessionRid(i), op: { $case: "put", value: { key: b("x"), value: b("y") } } });
  const retry = r.apply(601, last);
  assert.equal(retry.type === "put" && retry.duplicate, true);
  assert.equal(r.get(b("x")), undefined);
});

test("encoding while the live store keeps applying still gives exactly the state at the snapshot index", async () => {
  const live = storeAt(300);
  const { index, chunks } = live.snapshot({ chunkBytes: 64 });
  assert.equal(index, 300);
  const parts: Uint8Array[] = [];
  let i = 300;
  for await (const c of chunks) {
    parts.push(c);
    // Interleave writes with the stream: overwrites, deletes, new keys, range deletes.
    for (let j = 0; j < 3; j++) live.apply(++i, entry(i));
  }
  assert.ok(parts.length > 50, `streamed in ${parts.length} chunks`);
  assert.ok(i > 450);
  const restored = KvStore.restore(Buffer.concat(parts));
  const reference = storeAt(300);
  assert.deepEqual(restored.range({}), reference.range({}));
  assert.notDeepEqual(live.range({}), reference.range({}), "the live store did move on");
  assert.deepEqual(await bytesOf(restored), await bytesOf(reference));
});

test("restoreFrom accepts the stream cut at any boundaries, and values bigger than a chunk", async () => {
  const s = storeAt(120);
  s.apply(121, enc({ op: { $case: "put", value: { key: b("big"), value: Buffer.alloc(200_000, 7) } } }));
  const data = await bytesOf(s, 4096);
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 40 }), async (cuts) => {
      async function* pieces() {
        let off = 0;
        for (const n of cuts) {
          if (off >= data.length) break;
          yield data.subarray(off, off + n);
          off += n;
        }
        if (off < data.length) yield data.subarray(off);
      }
      const r = await KvStore.restoreFrom(pieces());
      assert.equal(r.appliedIndex, 121);
      assert.deepEqual(r.get(b("big"))!.value, Buffer.alloc(200_000, 7));
      assert.equal(r.size, s.size);
    }),
    { numRuns: 30 },
  );
});

test("an empty store snapshots and restores", async () => {
  const r = KvStore.restore(await bytesOf(new KvStore()));
  assert.equal(r.appliedIndex, 0);
  assert.equal(r.size, 0);
});

test("a restored store continues from the snapshot index", async () => {
  const r = KvStore.restore(await bytesOf(storeAt(50)));
  assert.equal(r.apply(50, entry(50)).type, "skipped");
  assert.equal(r.apply(51, enc({ op: { $case: "put", value: { key: b("n"), value: b("1") } } })).type, "put");
  assert.equal(r.get(b("n"))!.createRevision, 51);
});

test("garbage is refused with a clear SnapshotFormatError: bad magic, unknown version, truncation, trailing bytes", async () => {
  const data = await bytesOf(storeAt(80));
  const err = (bytes: Uint8Array, re: RegExp) => assert.throws(() => KvStore.restore(bytes), (e: unknown) => e instanceof SnapshotFormatError && re.test(e.message));
  err(Buffer.from("hello world, this is not a snapshot at all"), /not a raftkv state machine snapshot \(bad magic\)/);
  err(new Uint8Array(0), /truncated in the header/);
  const v2 = Buffer.from(data);
  v2.writeUInt32LE(2, 8);
  err(v2, /unsupported format version 2 \(this build reads version 1\)/);
  err(data.subarray(0, 200), /truncated after \d+ of \d+ keys/);
  err(data.subarray(0, data.length - 3), /truncated in the trailer/);
  err(Buffer.concat([data, Buffer.from([0])]), /bytes after the trailer/);
});

test("flipping any one byte or cutting the stream anywhere is always detected, never restored as a different state", async () => {
  const data = await bytesOf(storeAt(60));
  fc.assert(
    fc.property(fc.nat(data.length - 1), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const bad = Buffer.from(data);
      bad[pos] ^= x;
      assert.throws(() => KvStore.restore(bad), SnapshotFormatError);
    }),
    { numRuns: 400 },
  );
  for (let n = 0; n < data.length; n += 7) assert.throws(() => KvStore.restore(data.subarray(0, n)), SnapshotFormatError);
});
