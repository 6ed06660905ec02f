import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { StatusDocument } from "../common/status.js";
import { validateStatusDocument } from "./status-document.js";
import { clusterDocuments, makeStatusDocument } from "./status-fixture.js";

const leader = (): StatusDocument => clusterDocuments()[0]!;

// These tests break documents on purpose, reaching anywhere into them: untyped on purpose.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = Record<string, any>;

/** A mutable deep copy as plain JSON, to break on purpose. */
function json(doc: StatusDocument = leader()): Loose {
  return JSON.parse(JSON.stringify(doc)) as Loose;
}

function rejects(value: unknown, pathAndReason: RegExp): void {
  const v = validateStatusDocument(value);
  assert.equal(v.ok, false, `expected rejection matching ${pathAndReason}`);
  if (!v.ok) assert.match(v.error, pathAndReason);
}

describe("status document validation", () => {
  it("accepts a complete document from a leader and returns it unchanged", () => {
    const doc = leader();
    const v = validateStatusDocument(json(doc));
    assert.equal(v.ok, true);
    if (v.ok) assert.deepEqual(v.doc, doc);
  });

  it("accepts follower, candidate and leaderless documents", () => {
    const voters = ["a", "b", "c"];
    for (const role of ["follower", "candidate", "pre-candidate"] as const) {
      const v = validateStatusDocument(json(makeStatusDocument({ nodeId: "b", voters, role, leaderId: "", term: 9, commitIndex: 5 })));
      assert.equal(v.ok, true, role);
    }
  });

  it("tolerates fields the contract does not know (a newer node) and drops them", () => {
    const d = json();
    d.newTopLevel = { anything: [1, 2] };
    d.peers[0].newPeerField = "x";
    d.counters.somethingNew = 5;
    d.histograms.newHistogram = { whatever: true };
    d.histograms.walFsyncSeconds.exemplars = [];
    const v = validateStatusDocument(d);
    assert.equal(v.ok, true);
    if (v.ok) assert.deepEqual(v.doc, leader());
  });

  it("accepts a later schemaVersion (fields are only ever added) but not 0", () => {
    assert.equal(validateStatusDocument({ ...json(), schemaVersion: 2 }).ok, true);
    rejects({ ...json(), schemaVersion: 0 }, /^schemaVersion: must be >= 1/);
  });

  it("rejects anything that is not an object", () => {
    for (const garbage of [null, undefined, 42, "status", true, [], [json()]]) {
      rejects(garbage, /^\(document\): must be an object/);
    }
  });

  it("rejects the document when any single top-level field is missing, naming it", () => {
    for (const key of Object.keys(leader())) {
      const d = json();
      delete d[key];
      rejects(d, new RegExp(`^${key}: missing$`));
    }
  });

  it("rejects the document when any counter, storage or process field is missing, naming it", () => {
    for (const group of ["counters", "storage", "process"] as const) {
      for (const key of Object.keys(leader()[group])) {
        const d = json();
        delete d[group][key];
        rejects(d, new RegExp(`^${group}\\.${key}: missing$`));
      }
    }
  });

  it("rejects a missing histogram", () => {
    const d = json();
    delete d.histograms.applySeconds;
    rejects(d, /^histograms\.applySeconds: missing$/);
    const e = json();
    delete e.peers[1].rtt;
    rejects(e, /^peers\[1\]\.rtt: missing$/);
    const f = json();
    delete f.requests[0].latencySeconds;
    rejects(f, /^requests\[0\]\.latencySeconds: missing$/);
  });

  it("rejects wrong types: numbers as strings, null objects, booleans as strings", () => {
    const cases: Array<[(d: Loose) => void, RegExp]> = [
      [(d) => (d.term = "3"), /^term: must be a finite number, got the string "3"$/],
      [(d) => (d.commitIndex = null), /^commitIndex: must be a finite number, got null$/],
      [(d) => (d.nodeId = 7), /^nodeId: must be a string, got the number 7$/],
      [(d) => (d.ready = "true"), /^ready: must be a boolean/],
      [(d) => (d.peers = null), /^peers: must be an array, got null$/],
      [(d) => (d.peers = {}), /^peers: must be an array, got object$/],
      [(d) => (d.peers[0] = "n2"), /^peers\[0\]: must be an object/],
      [(d) => (d.voters = [1, 2]), /^voters\[0\]: must be a non-empty string/],
      [(d) => (d.counters = []), /^counters: must be an object, got an array$/],
      [(d) => (d.counters.leaderChanges = "1"), /^counters\.leaderChanges: must be a finite number/],
      [(d) => (d.requests[0].byCode.OK = "7"), /^requests\[0\]\.byCode\.OK: must be a finite number/],
      [(d) => (d.peers[0].connected = 1), /^peers\[0\]\.connected: must be a boolean/],
      [(d) => (d.histograms.walFsyncSeconds = [1, 2]), /^histograms\.walFsyncSeconds: must be an object/],
    ];
    for (const [mutate, expected] of cases) {
      const d = json();
      mutate(d);
      rejects(d, expected);
    }
  });

  it("rejects impossible values: negative or fractional terms and indexes, empty ids, negative sizes", () => {
    const cases: Array<[(d: Loose) => void, RegExp]> = [
      [(d) => (d.term = -1), /^term: must be >= 0, got -1$/],
      [(d) => (d.appliedIndex = 1.5), /^appliedIndex: must be an integer, got 1.5$/],
      [(d) => (d.commitIndex = 2 ** 60), /^commitIndex: must be an integer/],
      [(d) => (d.nodeId = ""), /^nodeId: must not be empty$/],
      [(d) => (d.role = ""), /^role: must not be empty$/],
      [(d) => (d.storage.walBytes = -4096), /^storage\.walBytes: must be >= 0/],
      [(d) => (d.peers[0].id = ""), /^peers\[0\]\.id: must not be empty$/],
      [(d) => (d.peers[0].lastContactSeconds = -2), /^peers\[0\]\.lastContactSeconds: must be >= 0/],
      [(d) => (d.uptimeSeconds = -1), /^uptimeSeconds: must be >= 0/],
    ];
    for (const [mutate, expected] of cases) {
      const d = json();
      mutate(d);
      rejects(d, expected);
    }
  });

  it("accepts a negative replication lag (a follower ahead of the leader's commit index) and a never-contacted peer", () => {
    const d = json();
    d.peers[0].lag = -2;
    d.peers[1].lastContactSeconds = null;
    const v = validateStatusDocument(d);
    assert.equal(v.ok, true);
    if (v.ok) {
      assert.equal(v.doc.peers[0]!.lag, -2);
      assert.equal(v.doc.peers[1]!.lastContactSeconds, null);
    }
  });

  it("rejects JavaScript values JSON cannot carry (NaN, Infinity) where numbers belong", () => {
    const d = json();
    d.histograms.applySeconds.sum = Number.NaN;
    rejects(d, /^histograms\.applySeconds\.sum: must be a finite number, got the number NaN$/);
    const e = json();
    e.histograms.applySeconds.buckets[0] = Number.POSITIVE_INFINITY;
    rejects(e, /^histograms\.applySeconds\.buckets\[0\]: must be a finite number/);
  });

  it("rejects histograms Prometheus could not have produced", () => {
    const cases: Array<[(h: Loose) => void, RegExp]> = [
      [(h) => h.counts.pop(), /counts: must have one count per bucket/],
      [(h) => (h.buckets[3] = h.buckets[2]), /buckets\[3\]: bounds must be strictly ascending/],
      [(h) => h.buckets.reverse(), /buckets\[1\]: bounds must be strictly ascending/],
      [
        (h) => {
          h.counts[4] = h.counts[3] + 5;
          h.counts[5] = h.counts[3];
        },
        /counts\[5\]: counts must be cumulative/,
      ],
      [(h) => (h.counts[0] = -1), /counts\[0\]: must be a non-negative integer/],
      [(h) => (h.counts[0] = 0.5), /counts\[0\]: must be a non-negative integer/],
      [(h) => (h.count = h.counts[h.counts.length - 1] - 1), /count: must be >= the last bucket's count/],
      [(h) => (h.buckets = "0.1,0.2"), /buckets: must be an array/],
    ];
    for (const [mutate, expected] of cases) {
      const d = json();
      mutate(d.histograms.walFsyncSeconds);
      rejects(d, new RegExp(`^histograms\\.walFsyncSeconds\\.${expected.source}`));
    }
  });

  it("accepts a histogram with no finite buckets (only +Inf) and one with no samples", () => {
    const d = json();
    d.histograms.applySeconds = { buckets: [], counts: [], count: 0, sum: 0 };
    d.histograms.walFsyncSeconds = { buckets: [0.1, 1], counts: [0, 0], count: 0, sum: 0 };
    assert.equal(validateStatusDocument(d).ok, true);
  });

  it("rejects duplicate peers and duplicate request methods (they would be duplicate series)", () => {
    const d = json();
    d.peers[1].id = d.peers[0].id;
    rejects(d, /^peers\[1\]\.id: duplicate peer id "n2"$/);
    const e = json();
    e.requests[1].method = e.requests[0].method;
    rejects(e, /^requests\[1\]\.method: duplicate method "Put"$/);
  });

  it("never throws, whatever it is given", () => {
    const weird: unknown[] = [
      Object.create(null),
      { peers: [null] },
      { ...json(), peers: [undefined] },
      { ...json(), histograms: null },
      new Date(),
      () => 1,
      Symbol("x"),
      10n,
    ];
    for (const w of weird) assert.equal(validateStatusDocument(w).ok, false);
  });
});
