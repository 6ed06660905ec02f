// Validation of the node's GET /status document (services/common/status.ts) before a single
// number of it is exported. The exporter's promise is "no invented values": a document that
// is not exactly what the contract describes (a missing field, a string where a number
// belongs, a histogram whose buckets go down) is rejected whole and the scrape says
// raftkv_up 0, rather than exporting the half that looked fine. Fields the contract does not
// know are ignored, so a newer node can add to the document without breaking older exporters.

import type { StatusDocument, StatusHistogram, StatusPeer } from "../common/status.js";

export type StatusValidation = { ok: true; doc: StatusDocument } | { ok: false; error: string };

/** Thrown inside the validator only; carries the JSON path of the first bad field. */
class InvalidField extends Error {}

function fail(path: string, message: string): never {
  throw new InvalidField(`${path}: ${message}`);
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "..." : value)}`;
  if (typeof value === "number") return `the number ${value}`;
  return typeof value;
}

function obj(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    fail(path, `must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function field(o: Record<string, unknown>, key: string, path: string): unknown {
  if (!Object.prototype.hasOwnProperty.call(o, key) || o[key] === undefined) fail(join(path, key), "missing");
  return o[key];
}

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

function str(o: Record<string, unknown>, key: string, path: string, opts: { nonEmpty?: boolean } = {}): string {
  const v = field(o, key, path);
  if (typeof v !== "string") fail(join(path, key), `must be a string, got ${describe(v)}`);
  if (opts.nonEmpty && v.length === 0) fail(join(path, key), "must not be empty");
  return v;
}

function bool(o: Record<string, unknown>, key: string, path: string): boolean {
  const v = field(o, key, path);
  if (typeof v !== "boolean") fail(join(path, key), `must be a boolean, got ${describe(v)}`);
  return v;
}

/** A finite number (JSON cannot carry NaN or Infinity, but a JS caller can). */
function num(o: Record<string, unknown>, key: string, path: string, opts: { min?: number } = {}): number {
  const v = field(o, key, path);
  if (typeof v !== "number" || !Number.isFinite(v)) fail(join(path, key), `must be a finite number, got ${describe(v)}`);
  if (opts.min !== undefined && v < opts.min) fail(join(path, key), `must be >= ${opts.min}, got ${v}`);
  return v;
}

/** Terms, indexes, counts and byte sizes: integers a double can hold exactly. */
function int(o: Record<string, unknown>, key: string, path: string, opts: { min?: number } = { min: 0 }): number {
  const v = num(o, key, path, opts);
  if (!Number.isSafeInteger(v)) fail(join(path, key), `must be an integer, got ${v}`);
  return v;
}

function arr(o: Record<string, unknown>, key: string, path: string): unknown[] {
  const v = field(o, key, path);
  if (!Array.isArray(v)) fail(join(path, key), `must be an array, got ${describe(v)}`);
  return v;
}

/**
 * A histogram must be one Prometheus could have produced: ascending finite bounds, cumulative
 * (non-decreasing) integer counts, and a total no smaller than the last bucket. Anything else
 * would be exported as a histogram whose quantiles are nonsense.
 */
export function validateHistogram(value: unknown, path: string): StatusHistogram {
  const h = obj(value, path);
  const bucketsRaw = arr(h, "buckets", path);
  const countsRaw = arr(h, "counts", path);
  if (bucketsRaw.length !== countsRaw.length) {
    fail(join(path, "counts"), `must have one count per bucket (${bucketsRaw.length} buckets, ${countsRaw.length} counts)`);
  }
  const buckets: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < bucketsRaw.length; i++) {
    const b = bucketsRaw[i];
    if (typeof b !== "number" || !Number.isFinite(b)) fail(`${path}.buckets[${i}]`, `must be a finite number, got ${describe(b)}`);
    if (i > 0 && b <= buckets[i - 1]!) fail(`${path}.buckets[${i}]`, `bounds must be strictly ascending (${buckets[i - 1]} then ${b})`);
    const c = countsRaw[i];
    if (typeof c !== "number" || !Number.isSafeInteger(c) || c < 0) {
      fail(`${path}.counts[${i}]`, `must be a non-negative integer, got ${describe(c)}`);
    }
    if (i > 0 && c < counts[i - 1]!) fail(`${path}.counts[${i}]`, `counts must be cumulative (non-decreasing): ${counts[i - 1]} then ${c}`);
    buckets.push(b);
    counts.push(c);
  }
  const count = int(h, "count", path);
  if (counts.length > 0 && count < counts[counts.length - 1]!) {
    fail(join(path, "count"), `must be >= the last bucket's count (${counts[counts.length - 1]}), got ${count}`);
  }
  const sum = num(h, "sum", path);
  return { buckets, counts, count, sum };
}

function validatePeer(value: unknown, path: string): StatusPeer {
  const p = obj(value, path);
  const lastContactRaw = field(p, "lastContactSeconds", path);
  let lastContactSeconds: number | null = null;
  if (lastContactRaw !== null) lastContactSeconds = num(p, "lastContactSeconds", path, { min: 0 });
  return {
    id: str(p, "id", path, { nonEmpty: true }),
    address: str(p, "address", path),
    matchIndex: int(p, "matchIndex", path),
    nextIndex: int(p, "nextIndex", path),
    state: str(p, "state", path),
    // commitIndex - matchIndex goes negative for a moment when a follower has appended
    // entries the leader has not yet counted as committed: any integer is honest.
    lag: int(p, "lag", path, {}),
    connected: bool(p, "connected", path),
    lastContactSeconds,
    rtt: validateHistogram(field(p, "rtt", path), join(path, "rtt")),
  };
}

const COUNTER_KEYS = [
  "leaderChanges",
  "elections",
  "proposalsCommitted",
  "proposalsApplied",
  "proposalsPending",
  "proposalsFailed",
  "readIndexRequests",
  "snapshotsTaken",
  "snapshotsInstalled",
  "walFsyncs",
  "walBytesWritten",
] as const satisfies ReadonlyArray<keyof StatusDocument["counters"]>;

const STORAGE_KEYS = ["walBytes", "walSegments", "snapshotBytes", "keys"] as const satisfies ReadonlyArray<
  keyof StatusDocument["storage"]
>;

const PROCESS_KEYS = ["residentMemoryBytes", "heapUsedBytes"] as const satisfies ReadonlyArray<keyof StatusDocument["process"]>;

function validateDocument(value: unknown): StatusDocument {
  const d = obj(value, "(document)");
  const schemaVersion = int(d, "schemaVersion", "", { min: 1 });

  const peersRaw = arr(d, "peers", "");
  const peers = peersRaw.map((p, i) => validatePeer(p, `peers[${i}]`));
  const peerIds = new Set<string>();
  peers.forEach((p, i) => {
    // Two entries for one peer would become two series with the same labels.
    if (peerIds.has(p.id)) fail(`peers[${i}].id`, `duplicate peer id ${JSON.stringify(p.id)}`);
    peerIds.add(p.id);
  });

  const votersRaw = arr(d, "voters", "");
  const voters = votersRaw.map((v, i) => {
    if (typeof v !== "string" || v.length === 0) fail(`voters[${i}]`, `must be a non-empty string, got ${describe(v)}`);
    return v;
  });

  const c = obj(field(d, "counters", ""), "counters");
  const counters = Object.fromEntries(COUNTER_KEYS.map((k) => [k, int(c, k, "counters")])) as StatusDocument["counters"];

  const h = obj(field(d, "histograms", ""), "histograms");
  const histograms = {
    walFsyncSeconds: validateHistogram(field(h, "walFsyncSeconds", "histograms"), "histograms.walFsyncSeconds"),
    applySeconds: validateHistogram(field(h, "applySeconds", "histograms"), "histograms.applySeconds"),
  };

  const requestsRaw = arr(d, "requests", "");
  const methods = new Set<string>();
  const requests = requestsRaw.map((r, i) => {
    const path = `requests[${i}]`;
    const ro = obj(r, path);
    const method = str(ro, "method", path, { nonEmpty: true });
    if (methods.has(method)) fail(join(path, "method"), `duplicate method ${JSON.stringify(method)}`);
    methods.add(method);
    const byCodeRaw = obj(field(ro, "byCode", path), join(path, "byCode"));
    const byCode: Record<string, number> = {};
    for (const code of Object.keys(byCodeRaw)) {
      if (code.length === 0) fail(join(path, "byCode"), "a code name must not be empty");
      byCode[code] = int(byCodeRaw, code, join(path, "byCode"));
    }
    return { method, byCode, latencySeconds: validateHistogram(field(ro, "latencySeconds", path), join(path, "latencySeconds")) };
  });

  const s = obj(field(d, "storage", ""), "storage");
  const storage = Object.fromEntries(STORAGE_KEYS.map((k) => [k, int(s, k, "storage")])) as StatusDocument["storage"];
  const pr = obj(field(d, "process", ""), "process");
  const proc = Object.fromEntries(PROCESS_KEYS.map((k) => [k, int(pr, k, "process")])) as StatusDocument["process"];

  const doc: StatusDocument = {
    schemaVersion,
    nodeId: str(d, "nodeId", "", { nonEmpty: true }),
    cluster: str(d, "cluster", ""),
    version: str(d, "version", ""),
    uptimeSeconds: num(d, "uptimeSeconds", "", { min: 0 }),
    role: str(d, "role", "", { nonEmpty: true }),
    term: int(d, "term", ""),
    leaderId: str(d, "leaderId", ""),
    vote: str(d, "vote", ""),
    commitIndex: int(d, "commitIndex", ""),
    appliedIndex: int(d, "appliedIndex", ""),
    lastLogIndex: int(d, "lastLogIndex", ""),
    lastLogTerm: int(d, "lastLogTerm", ""),
    firstLogIndex: int(d, "firstLogIndex", ""),
    snapshotIndex: int(d, "snapshotIndex", ""),
    voters,
    ready: bool(d, "ready", ""),
    peers,
    counters,
    histograms,
    requests,
    storage,
    process: proc,
  };
  return doc;
}

/**
 * Checks that `value` (parsed JSON) is a StatusDocument and returns a copy holding only the
 * fields the contract knows. On failure the error names the first offending field, e.g.
 * `histograms.applySeconds.counts[3]: counts must be cumulative (non-decreasing): 7 then 5`.
 */
export function validateStatusDocument(value: unknown): StatusValidation {
  try {
    return { ok: true, doc: validateDocument(value) };
  } catch (err) {
    if (err instanceof InvalidField) return { ok: false, error: err.message };
    throw err;
  }
}
