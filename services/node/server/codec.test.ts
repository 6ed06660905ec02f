import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import * as pb from "../../common/gen/raftkv/v1/raft.js";
import { type Entry, EntryType, type Message, MessageType, emptyMessage } from "../raft/types.js";
import {
  DecodeError,
  type SnapshotChunkFrame,
  decodeBatch,
  decodeSnapshotChunk,
  encodeBatch,
  encodeSnapshotChunk,
  fromProto,
  messageBodySize,
  toProto,
} from "./codec.js";

// Terms and indexes span the whole safe range, so every varint length is exercised.
const u64 = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
const bytes = fc.uint8Array({ maxLength: 64 });
const id = fc.oneof(fc.constantFrom("", "n1", "n2", "raftkv-0"), fc.string({ maxLength: 12, unit: "grapheme" }));

const entryArb: fc.Arbitrary<Entry> = fc.record({
  term: u64,
  index: u64,
  type: fc.constantFrom(EntryType.Normal, EntryType.ConfChange),
  data: bytes,
});

const messageArb: fc.Arbitrary<Message> = fc
  .record({
    type: fc.integer({ min: 0, max: 18 }),
    from: id,
    to: id,
    term: u64,
    logTerm: u64,
    index: u64,
    entries: fc.array(entryArb, { maxLength: 5 }),
    commit: u64,
    reject: fc.boolean(),
    rejectHint: u64,
    context: bytes,
    snapshot: fc.option(
      fc.record({
        meta: fc.record({
          index: u64,
          term: u64,
          conf: fc.record({ voters: fc.array(id, { maxLength: 5 }), learners: fc.array(id, { maxLength: 3 }) }),
        }),
        data: fc.constant(new Uint8Array(0)),
      }),
      { nil: undefined },
    ),
  })
  .map((r) => {
    const { snapshot, ...rest } = r;
    const m: Message = { ...rest, type: r.type as MessageType };
    if (snapshot !== undefined) m.snapshot = snapshot;
    return m;
  });

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** Comparable form: byte fields as hex, so a Buffer view equals the Uint8Array it came from. */
function plain(m: Message): unknown {
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e, data: hex(e.data) })),
    context: hex(m.context),
    snapshot:
      m.snapshot === undefined
        ? undefined
        : {
            meta: {
              index: m.snapshot.meta.index,
              term: m.snapshot.meta.term,
              conf: { voters: [...m.snapshot.meta.conf.voters], learners: [...m.snapshot.meta.conf.learners] },
            },
            data: hex(m.snapshot.data),
          },
  };
}

function generatedBatch(clusterId: string, msgs: Message[]): Buffer {
  return Buffer.from(pb.MessageBatch.encode({ clusterId, messages: msgs.map(toProto) }).finish());
}

describe("codec: MessageBatch", () => {
  test("encodes exactly the bytes the generated ts-proto encoder writes", () => {
    fc.assert(
      fc.property(id, fc.array(messageArb, { maxLength: 6 }), (cid, msgs) => {
        assert.equal(encodeBatch(cid, msgs).toString("hex"), generatedBatch(cid, msgs).toString("hex"));
      }),
      { numRuns: 300 },
    );
  });

  test("decodes what the generated encoder writes back to the same messages", () => {
    fc.assert(
      fc.property(id, fc.array(messageArb, { maxLength: 6 }), (cid, msgs) => {
        const got = decodeBatch(generatedBatch(cid, msgs));
        assert.equal(got.clusterId, cid);
        assert.deepEqual(got.messages.map(plain), msgs.map(plain));
      }),
      { numRuns: 300 },
    );
  });

  test("the generated decoder reads what this encoder writes", () => {
    fc.assert(
      fc.property(id, fc.array(messageArb, { maxLength: 6 }), (cid, msgs) => {
        const got = pb.MessageBatch.decode(encodeBatch(cid, msgs));
        assert.equal(got.clusterId, cid);
        assert.deepEqual(got.messages.map(fromProto).map(plain), msgs.map(plain));
      }),
      { numRuns: 200 },
    );
  });

  test("messageBodySize is the size of the encoded message", () => {
    fc.assert(
      fc.property(messageArb, (m) => {
        assert.equal(messageBodySize(m), pb.Message.encode(toProto(m)).finish().length);
      }),
    );
  });

  test("entry data is a view into the received buffer, not a copy", () => {
    const m = emptyMessage(MessageType.App, "n1", "n2", 3);
    m.entries = [{ term: 3, index: 7, type: EntryType.Normal, data: Buffer.from("hello") }];
    const buf = encodeBatch("c", [m]);
    const got = decodeBatch(buf).messages[0]!.entries[0]!.data;
    assert.equal(Buffer.from(got).toString(), "hello");
    assert.equal(got.buffer, buf.buffer, "shares the batch's memory");
  });

  test("fields this version does not know are skipped (forward compatibility)", () => {
    const m = emptyMessage(MessageType.Heartbeat, "n1", "n2", 5);
    m.commit = 9;
    const body = Buffer.from(pb.Message.encode(toProto(m)).finish());
    // field 15 varint 300, field 20 bytes "xyz", field 21 fixed64, field 22 fixed32
    const unknown = Buffer.from([0x78, 0xac, 0x02, 0xa2, 0x01, 3, 0x78, 0x79, 0x7a, 0xa9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xb5, 0x01, 1, 2, 3, 4]);
    const withUnknown = Buffer.concat([unknown, body]);
    const batch = Buffer.concat([Buffer.from([0x12, withUnknown.length]), withUnknown]);
    assert.deepEqual(plain(decodeBatch(batch).messages[0]!), plain(m));
  });

  test("an encoder refuses numbers the wire cannot carry instead of writing garbage", () => {
    const m = emptyMessage(MessageType.App, "n1", "n2", -1);
    assert.throws(() => encodeBatch("c", [m]), RangeError);
    m.term = 1.5;
    assert.throws(() => encodeBatch("c", [m]), RangeError);
  });
});

describe("codec: malformed input", () => {
  test("arbitrary bytes either decode or throw DecodeError, never anything else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (raw) => {
        for (const decode of [decodeBatch, decodeSnapshotChunk]) {
          try {
            decode(Buffer.from(raw));
          } catch (e) {
            assert.ok(e instanceof DecodeError, `unexpected ${String(e)}`);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("a truncated valid batch is a DecodeError", () => {
    fc.assert(
      fc.property(fc.array(messageArb, { minLength: 1, maxLength: 3 }), fc.nat(), (msgs, cut) => {
        const full = encodeBatch("cluster", msgs);
        const at = cut % full.length;
        try {
          decodeBatch(full.subarray(0, at));
        } catch (e) {
          assert.ok(e instanceof DecodeError);
        }
      }),
    );
    // A length prefix that runs past the end.
    assert.throws(() => decodeBatch(Buffer.from([0x12, 0x05, 0x08])), /runs past the end/);
    // A varint cut short.
    assert.throws(() => decodeBatch(Buffer.from([0x12, 0x02, 0x20, 0xff])), DecodeError);
    // Field number 0 and group wire types do not occur in this protocol.
    assert.throws(() => decodeBatch(Buffer.from([0x00])), /field number 0/);
    assert.throws(() => decodeBatch(Buffer.from([0x0b])), /wire type 3/);
    // An integer past 2^53 cannot be a term or an index here.
    assert.throws(
      () => decodeBatch(Buffer.from([0x12, 0x0b, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])),
      /exceeds 2\^53/,
    );
  });
});

describe("codec: SnapshotChunk", () => {
  const chunkArb: fc.Arbitrary<SnapshotChunkFrame> = fc.record({
    clusterId: id,
    message: fc.option(messageArb, { nil: undefined }),
    offset: u64,
    data: fc.uint8Array({ maxLength: 300 }),
    done: fc.boolean(),
    crc32c: fc.integer({ min: 0, max: 0xffffffff }),
    totalSize: u64,
  });

  const toPb = (c: SnapshotChunkFrame): pb.SnapshotChunk => ({
    ...c,
    message: c.message === undefined ? undefined : toProto(c.message),
    data: Buffer.from(c.data),
  });

  test("encodes exactly what the generated encoder writes and decodes it back", () => {
    fc.assert(
      fc.property(chunkArb, (c) => {
        const mine = encodeSnapshotChunk(c);
        assert.equal(mine.toString("hex"), Buffer.from(pb.SnapshotChunk.encode(toPb(c)).finish()).toString("hex"));
        const back = decodeSnapshotChunk(mine);
        assert.deepEqual(
          { ...back, message: back.message && plain(back.message), data: hex(back.data) },
          { ...c, message: c.message && plain(c.message), data: hex(c.data) },
        );
      }),
      { numRuns: 300 },
    );
  });
});
