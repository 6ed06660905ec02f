import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecordEncoder, RecordType, crc32c, crc32cUpdate, findNextValidRecord, readRecord } from "./record.js";

function decodeAll(buf: Buffer) {
  const out = [];
  let off = 0;
  for (;;) {
    const r = readRecord(buf, off);
    if (r.kind !== "record") return { records: out, end: r };
    out.push(r.record);
    off = r.next;
  }
}

describe("WAL record framing", () => {
  it("computes CRC32C (Castagnoli), also incrementally", () => {
    assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
    assert.equal(crc32cUpdate(crc32c(Buffer.from("1234")), Buffer.from("56789")), 0xe3069283);
  });

  it("round-trips every record type, including indexes up to 2^53 - 1", () => {
    const enc = new RecordEncoder(16); // tiny: forces the buffer to grow
    const big = Number.MAX_SAFE_INTEGER;
    enc.segmentHeader(7, big);
    enc.entry({ term: big, index: big - 1, type: 1, data: new Uint8Array([1, 2, 3]) });
    enc.entry({ term: 0, index: 1, type: 0, data: new Uint8Array(0) });
    enc.hardState({ term: 5, vote: "raftkv-2 ünïcode", commit: 2 ** 40 });
    enc.snapshot(2 ** 33, 9);
    const { records, end } = decodeAll(enc.buf.subarray(0, enc.length));
    assert.equal(end.kind, "end");
    assert.deepEqual(records, [
      { type: RecordType.SegmentHeader, seq: 7, firstIndex: big },
      { type: RecordType.Entry, entry: { term: big, index: big - 1, type: 1, data: new Uint8Array([1, 2, 3]) } },
      { type: RecordType.Entry, entry: { term: 0, index: 1, type: 0, data: new Uint8Array(0) } },
      { type: RecordType.HardState, hardState: { term: 5, vote: "raftkv-2 ünïcode", commit: 2 ** 40 } },
      { type: RecordType.Snapshot, index: 2 ** 33, term: 9 },
    ]);
  });

  it("rejects numbers that are not safe non-negative integers, leaving nothing half-encoded", () => {
    const enc = new RecordEncoder();
    assert.throws(() => enc.entry({ term: -1, index: 1, type: 0, data: new Uint8Array() }), RangeError);
    assert.throws(() => enc.hardState({ term: 1.5, vote: "", commit: 0 }), RangeError);
    assert.equal(enc.length, 0);
  });

  it("treats a zero-filled tail as the end of the records, and zeros followed by data as damage", () => {
    const enc = new RecordEncoder();
    enc.snapshot(1, 1);
    const n = enc.length;
    const padded = Buffer.concat([enc.buf.subarray(0, n), Buffer.alloc(100_000)]);
    assert.equal(readRecord(padded, n).kind, "end");
    padded[n + 50_000] = 1;
    const r = readRecord(padded, n);
    assert.equal(r.kind, "bad");
  });

  it("detects any single flipped bit in a record", () => {
    const enc = new RecordEncoder();
    enc.entry({ term: 3, index: 42, type: 0, data: Buffer.from("hello world") });
    const clean = Buffer.from(enc.buf.subarray(0, enc.length));
    for (let byte = 0; byte < clean.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const b = Buffer.from(clean);
        b[byte] ^= 1 << bit;
        const r = readRecord(b, 0);
        assert.equal(r.kind, "bad", `flip of bit ${bit} in byte ${byte} went unnoticed`);
      }
    }
  });

  it("finds the next valid record past damage, and none in a torn tail", () => {
    const enc = new RecordEncoder();
    enc.entry({ term: 1, index: 1, type: 0, data: Buffer.alloc(30, 1) });
    const second = enc.length;
    enc.entry({ term: 1, index: 2, type: 0, data: Buffer.alloc(30, 2) });
    const buf = Buffer.from(enc.buf.subarray(0, enc.length));
    buf[10] ^= 0xff;
    assert.equal(findNextValidRecord(buf, 0), second);
    const torn = Buffer.concat([buf.subarray(0, second + 20), Buffer.alloc(9000)]);
    assert.equal(findNextValidRecord(torn, second), -1);
  });
});
