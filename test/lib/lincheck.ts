// Linearizability checker for recorded histories of concurrent clients.
//
// Usage (a cluster test):
//   const rec = new HistoryRecorder<KvInput, KvOutput>();
//   const id = rec.invoke(clientId, { op: "put", key: "k1", value: `c${clientId}-${seq}` });
//   try { const r = await client.put(...); rec.complete(id, { version: Number(r.kv.version) }); }
//   catch (e) { definitelyNotApplied(e) ? rec.fail(id) : rec.timeout(id); }
//   ...
//   const res = checkLinearizable(kvModel, rec.history(), { timeoutMs: 10_000 });
//   assert.equal(res.result, "ok", res.result === "illegal" ? res.explanation : res.reason);
// Write a value no other write uses (client id + sequence number): a read then pins down which
// write it saw, which makes the check both stronger and much faster when requests time out.
//
// The search is Wing & Gong's, with Lowe's memoisation (WGL), the algorithm Porcupine
// (anishathalye/porcupine) and Knossos use:
//   - each completed operation becomes a call entry and a return entry in one list sorted by time;
//   - an operation may be linearized next iff its call entry comes before the first return entry
//     still in the list (nothing that must precede it is left); linearizing it lifts both of its
//     entries out of the list (dancing links), backtracking puts them back;
//   - a configuration (set of linearized operations, model state) that was reached before is never
//     explored twice (the cache), which turns the search from factorial into something close to
//     linear for histories with little concurrency.
// Linearizability is local (Herlihy & Wing, P-compositionality): a history is linearizable iff
// each per-object sub-history is, so a model may split the history (kvModel splits by key).
//
// Operations that never returned (the client crashed or timed out) may have taken effect at any
// instant after their call, or not at all. They are kept outside the list: they are tried only
// when the list scan is stuck, and the search succeeds as soon as every COMPLETED operation is
// placed (an unplaced pending operation is one that did not take effect, or took effect after
// everything observed). Their output is unknown, so `step` receives `undefined` and must accept
// any outcome for them.

export interface Operation<I, O> {
  clientId: number | string;
  input: I;
  /** When the client invoked the operation (any monotonic clock; only the order matters). */
  call: number;
  /** What the client got back; undefined when unknown (never returned, or no result to check). */
  output?: O;
  /** When the client got the response; undefined (or +Infinity) when it never did. */
  return?: number;
}

export interface Model<S, I, O> {
  init(): S;
  /** Applies `input` to `state`; ok is false when `output` cannot be what the object answered in
   *  `state`. `output` undefined means unknown: accept whatever the operation could have done. */
  step(state: S, input: I, output: O | undefined): { ok: boolean; state: S };
  /** Equal states must give equal keys, different states different keys (memoisation). */
  key(state: S): string;
  /** Splits a history into independently checkable sub-histories (e.g. one per key). */
  partition?(history: Operation<I, O>[]): Operation<I, O>[][];
  /** A name for a sub-history returned by `partition`, shown in results (e.g. the key). */
  describePartition?(partition: Operation<I, O>[]): string;
  describeOperation?(input: I, output?: O): string;
  describeState?(state: S): string;
}

export interface CheckOptions {
  /** Give up with { result: "unknown" } after this long. Default 30 000 ms; Infinity for none.
   *  The clock is looked at every 1024 search steps. */
  timeoutMs?: number;
  /** Memory the memoisation cache may use; beyond it the search goes on without memoising new
   *  configurations (still correct, possibly slower). Default 128 MiB. */
  maxCacheBytes?: number;
  /** For this module's tests only: keep this many bits of each configuration hash, so that
   *  unequal configurations collide and the exact comparisons behind the hash get exercised. */
  debugHashBits?: number;
}

export type CheckResult<I, O> =
  | { result: "ok" }
  | {
      result: "illegal";
      /** Which sub-history failed (e.g. the key); undefined when the model does not partition. */
      partitionKey?: string;
      /** Human-readable: the longest linearizable prefix found and what could not be placed. */
      explanation: string;
      /** The longest linearization of a prefix found, in linearization order. */
      longestPrefix: Operation<I, O>[];
      /** The operations that could have come next after it; none could be placed. */
      stuck: Operation<I, O>[];
    }
  | {
      result: "unknown";
      reason: "timeout";
      /** The sub-history whose search ran out of time first. */
      partitionKey?: string;
      /** The deepest point that search had reached, described as for "illegal": often where a
       *  violation is, but the search had not ruled out every alternative. */
      explanation?: string;
    };

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_CACHE_BYTES = 128 * 1024 * 1024;

/** Clones made by a model's `partition` (kvModel tightens never-returned writes) point back to
 *  the caller's operation, so explanations can name it by its index in the history. */
const derivedFrom = new WeakMap<object, object>();
const original = (op: object): object => derivedFrom.get(op) ?? op;

export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  history: readonly Operation<I, O>[],
  opts: CheckOptions = {},
): CheckResult<I, O> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new TypeError(`checkLinearizable: timeoutMs must be a number >= 0 (or Infinity), got ${String(timeoutMs)}`);
  }
  const maxCacheBytes = opts.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES;
  if (typeof maxCacheBytes !== "number" || !(maxCacheBytes >= 0)) {
    throw new TypeError(`checkLinearizable: maxCacheBytes must be a number >= 0, got ${String(maxCacheBytes)}`);
  }
  if (!Array.isArray(history)) throw new TypeError("checkLinearizable: history must be an array of operations");
  history.forEach((op, i) => validateOperation(op, `operation #${i}`));
  const deadline = started + timeoutMs;

  const indexOf = new Map<object, number>();
  history.forEach((op, i) => indexOf.set(op, i));
  const partitions = model.partition ? model.partition([...history]) : [[...history]];
  if (!Array.isArray(partitions) || !partitions.every((p) => Array.isArray(p))) {
    throw new TypeError("checkLinearizable: model.partition must return an array of arrays of operations");
  }
  partitions.forEach((p, pi) => p.forEach((op, i) => validateOperation(op, `operation ${i} of partition ${pi}`)));

  // Small sub-histories first: a violation in one of them is found without waiting on a big one.
  const order = partitions.map((p, i) => ({ p, i })).filter((x) => x.p.length > 0);
  order.sort((a, b) => a.p.length - b.p.length || a.i - b.i);

  let timedOut: { partitionKey?: string; explanation?: string } | undefined;
  for (const { p, i } of order) {
    const name = model.partition ? (model.describePartition?.(p) ?? `partition ${i}`) : undefined;
    const outcome = searchPartition(model, p, deadline, maxCacheBytes, opts.debugHashBits);
    if (outcome.kind === "illegal") {
      return {
        result: "illegal",
        ...(name !== undefined ? { partitionKey: name } : {}),
        explanation: explain(model, p, name, outcome, indexOf),
        longestPrefix: outcome.prefix.map((k) => original(outcome.ops[k]!) as Operation<I, O>),
        stuck: outcome.candidates.map((k) => original(outcome.ops[k]!) as Operation<I, O>),
      };
    }
    // Keep going after a timeout: the remaining searches stop within 1024 steps each, and one of
    // them may still prove a violation, which is worth more than "unknown".
    if (outcome.kind === "timeout" && !timedOut) {
      timedOut = {
        ...(name !== undefined ? { partitionKey: name } : {}),
        ...(outcome.deepest
          ? { explanation: explain(model, p, name, outcome.deepest, indexOf, performance.now() - started) }
          : {}),
      };
    }
  }
  if (timedOut) return { result: "unknown", reason: "timeout", ...timedOut };
  return { result: "ok" };
}

function validateOperation(op: unknown, where: string): void {
  if (typeof op !== "object" || op === null) throw new TypeError(`${where}: not an operation object`);
  const o = op as Operation<unknown, unknown>;
  if (typeof o.clientId !== "number" && typeof o.clientId !== "string") {
    throw new TypeError(`${where}: clientId must be a number or string`);
  }
  if (typeof o.call !== "number" || !Number.isFinite(o.call)) {
    throw new TypeError(`${where}: call must be a finite number, got ${String(o.call)}`);
  }
  if (o.return !== undefined) {
    if (typeof o.return !== "number" || Number.isNaN(o.return)) {
      throw new TypeError(`${where}: return must be a number or undefined, got ${String(o.return)}`);
    }
    if (o.return < o.call) {
      throw new RangeError(`${where}: returned (${o.return}) before it was called (${o.call}); is the clock monotonic?`);
    }
  }
  if ((o.return === undefined || o.return === Infinity) && o.output !== undefined) {
    throw new TypeError(`${where}: has an output but never returned (set return, or drop the output)`);
  }
}

// ---------------------------------------------------------------------------------------------
// The search

type Outcome =
  | { kind: "ok" }
  | { kind: "timeout"; deepest?: Illegal }
  | Illegal;

interface Illegal {
  kind: "illegal";
  ops: Operation<unknown, unknown>[];
  /** Local op ids of the longest prefix, in order. */
  prefix: number[];
  initialState: unknown;
  /** The completed operation with the earliest return among those not placed. */
  blocker: number;
  candidates: number[];
  candidateLegal: boolean[];
  completedCount: number;
  pendingCount: number;
}

function searchPartition<S, I, O>(
  model: Model<S, I, O>,
  partition: Operation<I, O>[],
  deadline: number,
  maxCacheBytes: number,
  debugHashBits: number | undefined,
): Outcome {
  const hashMask = debugHashBits === undefined ? -1 : (1 << debugHashBits) - 1;
  // Local ids: completed operations 0..m-1, never-returned ones m..m+q-1 (sorted by call).
  const completedOps = partition.filter((op) => op.return !== undefined && op.return !== Infinity);
  const pendingOps = partition.filter((op) => op.return === undefined || op.return === Infinity);
  pendingOps.sort((a, b) => a.call - b.call);
  const ops = [...completedOps, ...pendingOps];
  const m = completedOps.length;
  const q = pendingOps.length;
  const n = m + q;
  const pendingCall = new Float64Array(q);
  for (let j = 0; j < q; j++) pendingCall[j] = pendingOps[j]!.call;
  // Never-returned ops with equal inputs are interchangeable: whichever of them took effect, the
  // state is the same. So only the earliest-called unplaced op of each class is ever tried (any
  // linearization can swap its members into call order, since a later-called member's slot is
  // also open to an earlier-called one). k pending writes then cost k+1 choices, not 2^k.
  const pendingClass = new Int32Array(q);
  const classMembers: number[][] = [];
  {
    const classOfInput = new Map<string, number>();
    for (let j = 0; j < q; j++) {
      let id: string;
      try {
        id = JSON.stringify(pendingOps[j]!.input);
      } catch {
        id = `\u0000unique ${j}`;
      }
      let c = classOfInput.get(id);
      if (c === undefined) {
        classOfInput.set(id, (c = classMembers.length));
        classMembers.push([]);
      }
      pendingClass[j] = c;
      classMembers[c]!.push(j);
    }
  }
  const classPlaced = new Int32Array(classMembers.length);
  const classCount = classMembers.length;

  // The entry list: node 0 is the head; nodes 1..2m are the entries in time order. On equal times
  // calls come first, so operations whose times touch count as concurrent (the lenient reading).
  const entries: { time: number; isCall: boolean; op: number }[] = [];
  for (let k = 0; k < m; k++) {
    entries.push({ time: completedOps[k]!.call, isCall: true, op: k });
    entries.push({ time: completedOps[k]!.return!, isCall: false, op: k });
  }
  entries.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.op - b.op : a.isCall ? -1 : 1));
  const nodes = entries.length + 1;
  const next = new Int32Array(nodes);
  const prev = new Int32Array(nodes);
  const isCall = new Uint8Array(nodes);
  const opOfNode = new Int32Array(nodes);
  const timeOfNode = new Float64Array(nodes);
  const matchOf = new Int32Array(nodes); // call node -> its return node
  const returnNodeOf = new Int32Array(m);
  for (let k = 0; k < entries.length; k++) {
    const node = k + 1;
    const e = entries[k]!;
    isCall[node] = e.isCall ? 1 : 0;
    opOfNode[node] = e.op;
    timeOfNode[node] = e.time;
    if (!e.isCall) returnNodeOf[e.op] = node;
  }
  for (let node = 1; node < nodes; node++) if (isCall[node]) matchOf[node] = returnNodeOf[opOfNode[node]!]!;
  for (let node = 0; node < nodes; node++) {
    next[node] = node + 1 < nodes ? node + 1 : -1;
    prev[node] = node - 1;
  }

  const lift = (call: number): void => {
    next[prev[call]!] = next[call]!;
    if (next[call] !== -1) prev[next[call]!] = prev[call]!;
    const ret = matchOf[call]!;
    next[prev[ret]!] = next[ret]!;
    if (next[ret] !== -1) prev[next[ret]!] = prev[ret]!;
  };
  const unlift = (call: number): void => {
    // Exactly the reverse of lift (dancing links).
    const ret = matchOf[call]!;
    next[prev[ret]!] = ret;
    if (next[ret] !== -1) prev[next[ret]!] = ret;
    next[prev[call]!] = call;
    if (next[call] !== -1) prev[next[call]!] = call;
  };

  const step = (state: S, k: number): { ok: boolean; state: S } => {
    const op = ops[k]!;
    try {
      return model.step(state, op.input, op.output);
    } catch (err) {
      throw new Error(`model.step threw on ${describeOp(model, op)}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
  };

  // The configuration, stored compactly. Completed ops are ranked by return (list order). All
  // ranks below `frontier` are placed (the frontier op is the first return entry left), and the
  // only other placed completed ops are `extras`: ranks above the frontier, which must have been
  // invoked before the frontier op returned, so there are about as many as there are clients.
  // Never-returned ops are a bitset. So a configuration costs O(concurrency), not O(history).
  // Zobrist hashes of the completed and pending parts are kept up to date.
  const rankOf = new Int32Array(m);
  for (let nd = 1, rank = 0; nd < nodes; nd++) if (!isCall[nd]) rankOf[opOfNode[nd]!] = rank++;
  const rankPlaced = new Uint8Array(m);
  let frontier = 0;
  const extras: number[] = []; // sorted
  const pendingBits = new Uint32Array(Math.ceil(q / 32));
  const zobrist = new Uint32Array(n);
  for (let k = 0; k < n; k++) zobrist[k] = mix32(Math.imul(k + 1, 0x9e3779b9));
  let hashCompleted = 0;
  let hashPending = 0;
  /** Marks completed op k placed; returns the old frontier if it moved, else -1 (for unplace). */
  const placeCompleted = (k: number): number => {
    const r = rankOf[k]!;
    rankPlaced[r] = 1;
    if (r !== frontier) {
      let i = extras.length;
      while (i > 0 && extras[i - 1]! > r) i--;
      extras.splice(i, 0, r);
      return -1;
    }
    const old = frontier++;
    while (frontier < m && rankPlaced[frontier]) {
      extras.shift(); // it was extras[0]: the smallest placed rank above the old frontier
      frontier++;
    }
    return old;
  };
  const unplaceCompleted = (k: number, oldFrontier: number): void => {
    const r = rankOf[k]!;
    rankPlaced[r] = 0;
    if (oldFrontier < 0) {
      extras.splice(extras.indexOf(r), 1);
      return;
    }
    for (let x = frontier - 1; x > r; x--) extras.unshift(x); // absorbed ranks are extras again
    frontier = r;
  };

  /** Test mode only: (frontier, extras) must describe exactly the placed completed ops. */
  const verifyRepresentation = (): void => {
    const expected: number[] = [];
    for (let r = 0; r < m; r++) if (rankPlaced[r] && r > frontier) expected.push(r);
    const frontierOk = frontier === m || (!rankPlaced[frontier] && rankPlaced.subarray(0, frontier).every((x) => x === 1));
    if (!frontierOk || expected.join() !== extras.join()) {
      throw new Error(`lincheck internal error: frontier ${frontier} extras [${extras.join()}], placed ranks above: [${expected.join()}]`);
    }
  };
  const debug = debugHashBits !== undefined;

  const cache = new ConfigCache(pendingBits.length, q > 0, maxCacheBytes);
  let entered = -1; // cache entry of the configuration `enter` just moved to
  let enteredDomHash = 0;
  let enteredUndo = -1;
  /** Places op k, reaching a state with key `stateKey`; false (and nothing changed) if that
   *  configuration was seen before or is known to fail. */
  const enter = (k: number, stateKey: string): boolean => {
    const z = zobrist[k]!;
    const hc = k < m ? (hashCompleted ^ z) >>> 0 : hashCompleted;
    const hp = k < m ? hashPending : (hashPending ^ z) >>> 0;
    const sh = strHash(stateKey);
    let undo = -1;
    if (k < m) undo = placeCompleted(k);
    else pendingBits[(k - m) >>> 5]! |= 1 << ((k - m) & 31);
    if (debug) verifyRepresentation();
    const domHash = (hc ^ sh ^ 0x5bd1e995) & hashMask;
    const e = cache.enter(frontier, extras, pendingBits, (hc ^ hp ^ sh) & hashMask, domHash, stateKey);
    if (e === SEEN) {
      if (k < m) unplaceCompleted(k, undo);
      else pendingBits[(k - m) >>> 5]! &= ~(1 << ((k - m) & 31));
      if (debug) verifyRepresentation();
      return false;
    }
    hashCompleted = hc;
    hashPending = hp;
    entered = e;
    enteredDomHash = domHash;
    enteredUndo = undo;
    return true;
  };
  const leave = (k: number, undo: number): void => {
    if (k < m) {
      unplaceCompleted(k, undo);
      hashCompleted = (hashCompleted ^ zobrist[k]!) >>> 0;
    } else {
      pendingBits[(k - m) >>> 5]! &= ~(1 << ((k - m) & 31));
      hashPending = (hashPending ^ zobrist[k]!) >>> 0;
    }
    if (debug) verifyRepresentation();
  };

  // The stack of choices: which op, where to resume scanning, and the state before it.
  const stackOp = new Int32Array(n);
  const stackNode = new Int32Array(n); // list call node, or -1 for a never-returned op
  const stackPending = new Int32Array(n); // the pending class the scan resumes at
  const stackRTime = new Float64Array(n);
  const stackState: S[] = new Array<S>(n);
  const stackKey: string[] = new Array<string>(n);
  const stackEntry = new Int32Array(n); // cache entry of the configuration this choice led to
  const stackDomHash = new Int32Array(n);
  const stackUndo = new Int32Array(n); // the frontier before a completed op was placed, or -1
  let depth = 0;
  let completedPlaced = 0;

  const initialState = model.init();
  let state = initialState;
  let stateKey = model.key(state);
  let node = next[0]!;
  let scanningPending = false;
  let pj = 0; // next pending class to try
  let rTime = 0;
  let steps = 0;
  if (m === 0) return { kind: "ok" }; // nothing completed: every op may simply not have happened yet

  // The deepest dead end (most completed ops placed), for the explanation. Kept incrementally:
  // `agree` is how much of the current stack still equals the recorded prefix, so recording a new
  // best copies only what changed since (amortised O(1) per search step, not O(depth)).
  const bestPrefix = new Int32Array(n);
  let bestLen = 0;
  let bestCompleted = -1;
  let agree = 0;
  const recordDeadEnd = (): void => {
    if (completedPlaced <= bestCompleted) return;
    bestPrefix.set(stackOp.subarray(agree, depth), agree);
    bestLen = agree = depth;
    bestCompleted = completedPlaced;
  };
  /** Rebuilds the best dead end (the list is back to its initial shape) and describes it. */
  const illegal = (): Illegal => {
    const callNodeOf = new Int32Array(m);
    for (let nd = 1; nd < nodes; nd++) if (isCall[nd]) callNodeOf[opOfNode[nd]!] = nd;
    let st = initialState;
    for (let d = 0; d < bestLen; d++) {
      const k = bestPrefix[d]!;
      st = step(st, k).state;
      if (k < m) lift(callNodeOf[k]!);
      else classPlaced[pendingClass[k - m]!]++;
    }
    // What could have come next: every call before the first return still in the list, and every
    // never-returned op invoked by then. The first return's op had to be placed by then.
    let nd = next[0]!;
    const candidates: number[] = [];
    while (nd !== -1 && isCall[nd]) {
      candidates.push(opOfNode[nd]!);
      nd = next[nd]!;
    }
    const blocker = nd === -1 ? -1 : opOfNode[nd]!;
    const limit = nd === -1 ? Infinity : timeOfNode[nd]!;
    for (let j = 0; j < q && pendingCall[j]! <= limit; j++) {
      if (classMembers[pendingClass[j]!]![classPlaced[pendingClass[j]!]!] === j) candidates.push(m + j);
    }
    return {
      kind: "illegal",
      ops: ops as Operation<unknown, unknown>[],
      prefix: Array.from(bestPrefix.subarray(0, bestLen)),
      initialState,
      blocker,
      candidates,
      candidateLegal: candidates.map((k) => step(st, k).ok),
      completedCount: bestCompleted,
      pendingCount: q,
    };
  };

  while (true) {
    if ((++steps & 1023) === 0 && performance.now() > deadline) {
      // Put the list back in its first shape (illegal() rebuilds the deepest point from there).
      while (depth > 0) {
        const k = stackOp[--depth]!;
        if (k < m) unlift(stackNode[depth]!);
        else classPlaced[pendingClass[k - m]!]--;
      }
      return bestCompleted < 0 ? { kind: "timeout" } : { kind: "timeout", deepest: illegal() };
    }
    if (!scanningPending) {
      if (isCall[node]) {
        const k = opOfNode[node]!;
        const r = step(state, k);
        const nextKey = r.ok ? model.key(r.state) : "";
        if (r.ok && enter(k, nextKey)) {
          stackOp[depth] = k;
          stackNode[depth] = node;
          stackState[depth] = state;
          stackKey[depth] = stateKey;
          stackEntry[depth] = entered;
          stackDomHash[depth] = enteredDomHash;
          stackUndo[depth] = enteredUndo;
          depth++;
          completedPlaced++;
          state = r.state;
          stateKey = nextKey;
          lift(node);
          if (next[0] === -1) return { kind: "ok" }; // every completed operation is placed
          node = next[0]!;
        } else {
          node = next[node]!;
        }
        continue;
      }
      // `node` is the first return entry left: its op must be placed before anything invoked
      // after it. Before giving up on this configuration, try the never-returned ops.
      rTime = timeOfNode[node]!;
      scanningPending = true;
      pj = 0;
    }
    let placed = false;
    while (pj < classCount) {
      const c = pj++;
      const j = classMembers[c]![classPlaced[c]!]; // the class's earliest-called unplaced member
      if (j === undefined || pendingCall[j]! > rTime) continue;
      const k = m + j;
      const r = step(state, k);
      if (!r.ok) continue;
      const nextKey = model.key(r.state);
      // Placing it would change nothing: whatever follows could follow without it.
      if (nextKey === stateKey) continue;
      if (enter(k, nextKey)) {
        stackOp[depth] = k;
        stackNode[depth] = -1;
        stackPending[depth] = pj;
        stackRTime[depth] = rTime;
        stackState[depth] = state;
        stackKey[depth] = stateKey;
        stackEntry[depth] = entered;
        stackDomHash[depth] = enteredDomHash;
        stackUndo[depth] = enteredUndo;
        depth++;
        classPlaced[c]++;
        state = r.state;
        stateKey = nextKey;
        scanningPending = false;
        node = next[0]!;
        placed = true;
        break;
      }
    }
    if (placed) continue;

    // Dead end: no op can be placed next from this configuration. Backtrack.
    recordDeadEnd();
    if (depth === 0) return illegal();
    depth--;
    if (agree > depth) agree = depth;
    const k = stackOp[depth]!;
    cache.finished(stackEntry[depth]!, stackDomHash[depth]!);
    state = stackState[depth]!;
    stateKey = stackKey[depth]!;
    stackState[depth] = undefined as S; // let the state be collected
    leave(k, stackUndo[depth]!);
    if (k < m) {
      completedPlaced--;
      const callNode = stackNode[depth]!;
      unlift(callNode);
      node = next[callNode]!;
      scanningPending = false;
    } else {
      classPlaced[pendingClass[k - m]!]--;
      pj = stackPending[depth]!;
      rTime = stackRTime[depth]!;
      scanningPending = true;
    }
  }
}

const SEEN = -1;
const NOT_STORED = -2;
const CHUNK_WORDS = 1 << 18; // 1 MiB of records per chunk

/**
 * The configurations met so far, as records [frontier, extras.length, ...extras, ...pendingBits]
 * in fixed-size chunks (growing never copies them), found by open addressing on a hash. With
 * never-returned ops it also indexes the FINISHED (hence failed) configurations by (completed
 * part, state): a configuration that places the same completed ops, reaches the same state and
 * has used up a superset of the never-returned ops can only do less, so it fails too.
 */
class ConfigCache {
  private table: Int32Array = new Int32Array(1 << 12); // entry index + 1; 0 = empty
  private hashes: Int32Array = new Int32Array(1 << 11);
  private recChunk: Int32Array = new Int32Array(1 << 11);
  private recOffset: Int32Array = new Int32Array(1 << 11);
  private keys: string[] = [];
  private chunks: Uint32Array[] = [];
  private chunkUsed = CHUNK_WORDS;
  private count = 0;
  private bytes = 0;
  // Finished configurations: chains of entries with equal domHash, heads in domTable.
  private domTable: Int32Array = new Int32Array(1 << 12);
  private domChains = 0;
  private domHashes: Int32Array = new Int32Array(1 << 11);
  private domNext: Int32Array = new Int32Array(1 << 11);

  constructor(
    private readonly pendingWords: number,
    private readonly dominance: boolean,
    private readonly maxBytes: number,
  ) {}

  /** Records the configuration: its entry index, NOT_STORED when over budget, or SEEN when it
   *  was met before or is dominated by a finished one. */
  enter(frontier: number, extras: readonly number[], pending: Uint32Array, hash: number, domHash: number, key: string): number {
    const mask = this.table.length - 1;
    let slot = hash & mask;
    for (let e = this.table[slot]!; e !== 0; slot = (slot + 1) & mask, e = this.table[slot]!) {
      const idx = e - 1;
      if (this.hashes[idx] !== hash || this.keys[idx] !== key) continue;
      const rec = this.chunks[this.recChunk[idx]!]!;
      const at = this.recOffset[idx]!;
      if (this.sameCompleted(rec, at, frontier, extras) && this.pendingCompare(rec, at + 2 + extras.length, pending, false)) {
        return SEEN;
      }
    }
    if (this.dominance && this.dominated(frontier, extras, pending, domHash, key)) return SEEN;
    const size = 2 + extras.length + this.pendingWords;
    const cost = size * 4 + 48 + key.length * 2;
    if (this.bytes + cost > this.maxBytes) return NOT_STORED; // full: explore without remembering
    this.bytes += cost;
    const idx = this.count++;
    if (idx >= this.hashes.length) this.growEntries();
    if (this.chunkUsed + size > CHUNK_WORDS) {
      this.chunks.push(new Uint32Array(Math.max(CHUNK_WORDS, size)));
      this.chunkUsed = 0;
    }
    const rec = this.chunks[this.chunks.length - 1]!;
    const at = this.chunkUsed;
    rec[at] = frontier;
    rec[at + 1] = extras.length;
    for (let i = 0; i < extras.length; i++) rec[at + 2 + i] = extras[i]!;
    rec.set(pending, at + 2 + extras.length);
    this.chunkUsed += size;
    this.recChunk[idx] = this.chunks.length - 1;
    this.recOffset[idx] = at;
    this.hashes[idx] = hash;
    this.keys[idx] = key;
    this.domNext[idx] = -1;
    this.table[slot] = idx + 1;
    if (this.count * 2 > this.table.length) this.rehash();
    return idx;
  }

  /** The configuration stored as `idx` has been explored completely without success. */
  finished(idx: number, domHash: number): void {
    if (!this.dominance || idx < 0) return;
    this.domHashes[idx] = domHash;
    const mask = this.domTable.length - 1;
    let slot = domHash & mask;
    for (let e = this.domTable[slot]!; e !== 0; slot = (slot + 1) & mask, e = this.domTable[slot]!) {
      if (this.domHashes[e - 1] === domHash) {
        this.domNext[idx] = e - 1;
        this.domTable[slot] = idx + 1;
        return;
      }
    }
    this.domNext[idx] = -1;
    this.domTable[slot] = idx + 1;
    if (++this.domChains * 2 > this.domTable.length) {
      const table = new Int32Array(this.domTable.length * 2);
      const m = table.length - 1;
      for (const e of this.domTable) {
        if (e === 0) continue;
        let s = this.domHashes[e - 1]! & m;
        while (table[s] !== 0) s = (s + 1) & m;
        table[s] = e;
      }
      this.domTable = table;
      this.bytes += table.length * 4;
    }
  }

  private dominated(frontier: number, extras: readonly number[], pending: Uint32Array, domHash: number, key: string): boolean {
    const mask = this.domTable.length - 1;
    let slot = domHash & mask;
    for (let e = this.domTable[slot]!; e !== 0; slot = (slot + 1) & mask, e = this.domTable[slot]!) {
      if (this.domHashes[e - 1] !== domHash) continue;
      for (let idx = e - 1; idx !== -1; idx = this.domNext[idx]!) {
        if (this.keys[idx] !== key) continue;
        const rec = this.chunks[this.recChunk[idx]!]!;
        const at = this.recOffset[idx]!;
        if (this.sameCompleted(rec, at, frontier, extras) && this.pendingCompare(rec, at + 2 + extras.length, pending, true)) {
          return true;
        }
      }
      return false;
    }
    return false;
  }

  private sameCompleted(rec: Uint32Array, at: number, frontier: number, extras: readonly number[]): boolean {
    if (rec[at] !== frontier || rec[at + 1] !== extras.length) return false;
    for (let i = 0; i < extras.length; i++) if (rec[at + 2 + i] !== extras[i]) return false;
    return true;
  }

  /** Equal pending sets, or (subset) the stored one is contained in `pending`. */
  private pendingCompare(rec: Uint32Array, at: number, pending: Uint32Array, subset: boolean): boolean {
    for (let i = 0; i < this.pendingWords; i++) {
      const stored = rec[at + i]!;
      if (subset ? (stored & ~pending[i]!) !== 0 : stored !== pending[i]) return false;
    }
    return true;
  }

  private growEntries(): void {
    const grow = (a: Int32Array): Int32Array => {
      const b = new Int32Array(a.length * 2);
      b.set(a);
      return b;
    };
    this.hashes = grow(this.hashes);
    this.recChunk = grow(this.recChunk);
    this.recOffset = grow(this.recOffset);
    this.domHashes = grow(this.domHashes);
    this.domNext = grow(this.domNext);
    this.bytes += this.hashes.length * 10; // the new halves of five int arrays
  }

  private rehash(): void {
    const table = new Int32Array(this.table.length * 2);
    const mask = table.length - 1;
    for (let idx = 0; idx < this.count; idx++) {
      let slot = this.hashes[idx]! & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = idx + 1;
    }
    this.table = table;
    this.bytes += table.length * 2; // the table's growth counts against the budget too
  }
}

function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d);
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

function strHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Explanations

function fmtTime(t: number | undefined): string {
  if (t === undefined || t === Infinity) return "never returned";
  return Number.isInteger(t) ? String(t) : t.toFixed(3);
}

function describeOp<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  const body = model.describeOperation
    ? model.describeOperation(op.input, op.output)
    : `${JSON.stringify(op.input)} -> ${op.output === undefined ? "?" : JSON.stringify(op.output)}`;
  return `client ${String(op.clientId)} [${fmtTime(op.call)} .. ${fmtTime(op.return)}] ${body}`;
}

function describeState<S, I, O>(model: Model<S, I, O>, state: S): string {
  return model.describeState ? model.describeState(state) : model.key(state);
}

function explain<S, I, O>(
  model: Model<S, I, O>,
  partition: Operation<I, O>[],
  name: string | undefined,
  o: Illegal,
  indexOf: Map<object, number>,
  /** Set when the search timed out after this many ms: `o` is only the deepest point reached. */
  gaveUpAfterMs?: number,
): string {
  const ops = o.ops as Operation<I, O>[];
  const label = (k: number): string => {
    const op = ops[k]!;
    const orig = derivedFrom.get(op) as Operation<I, O> | undefined;
    const idx = indexOf.get(orig ?? op);
    const prefix = idx === undefined ? "" : `#${idx} `;
    if (orig && orig.return !== op.return) {
      // A never-returned op whose return the model bounded from a later observation.
      return `${prefix}${describeOp(model, orig)} (took effect by ${fmtTime(op.return)}: a later operation observed it)`;
    }
    return prefix + describeOp(model, orig ?? op);
  };
  // Show states as the caller's own operations produce them (a model's partition may have
  // rewritten inputs into equivalent ones, e.g. kvModel's placeholder for unread values).
  const states: S[] = [];
  let replayed = o.initialState as S;
  for (const k of o.prefix) {
    const op = (derivedFrom.get(ops[k]!) as Operation<I, O> | undefined) ?? ops[k]!;
    replayed = model.step(replayed, op.input, op.output).state;
    states.push(replayed);
  }
  const completed = partition.length - o.pendingCount;
  const lines: string[] = [];
  const where = `${name !== undefined ? ` on ${name}` : ""}: ${partition.length} operation(s), ${o.pendingCount} of them never returned`;
  if (gaveUpAfterMs === undefined) {
    lines.push(`history is not linearizable${where}`);
  } else {
    lines.push(
      `the search gave up after ${gaveUpAfterMs.toFixed(0)} ms${where}. It had not ruled out every alternative, ` +
        `so what follows is only the deepest point it reached: often where a violation is.`,
    );
  }
  lines.push(
    `the longest linearization found places ${o.completedCount} of ${completed} completed operation(s)` +
      (o.prefix.length > o.completedCount ? ` (and ${o.prefix.length - o.completedCount} that never returned)` : "") +
      (o.prefix.length ? ":" : "."),
  );
  const SHOW = 10;
  if (o.prefix.length === 0) {
    lines.push(`  (nothing could be placed from the initial state: ${describeState(model, o.initialState as S)})`);
  } else {
    if (o.prefix.length > SHOW) lines.push(`  ... ${o.prefix.length - SHOW} earlier operation(s)`);
    for (let d = Math.max(0, o.prefix.length - SHOW); d < o.prefix.length; d++) {
      lines.push(`  ${label(o.prefix[d]!)}   => ${describeState(model, states[d]!)}`);
    }
  }
  const state = o.prefix.length ? states[o.prefix.length - 1]! : (o.initialState as S);
  if (o.blocker >= 0) {
    lines.push(
      `then, from state ${describeState(model, state)}, nothing can be placed next, yet ` +
        `${label(o.blocker)} must take effect before it returned at ${fmtTime(ops[o.blocker]!.return)}. ` +
        `Operations that could have come next:`,
    );
  } else {
    lines.push(`then, from state ${describeState(model, state)}, nothing can be placed next:`);
  }
  const MAX_CANDIDATES = 12;
  o.candidates.slice(0, MAX_CANDIDATES).forEach((k, i) => {
    const verdict = o.candidateLegal[i]
      ? "possible here, but no linearization of the rest follows from it"
      : "impossible in this state";
    lines.push(`  ${label(k)}   -> ${verdict}`);
  });
  if (o.candidates.length > MAX_CANDIDATES) lines.push(`  ... and ${o.candidates.length - MAX_CANDIDATES} more`);
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// A key-value store: put / get / delete / compare-and-swap, with etcd-like versions.

export type KvInput =
  | { op: "put"; key: string; value: string }
  | { op: "get"; key: string }
  | { op: "delete"; key: string }
  | { op: "cas"; key: string; expectedValue?: string; expectedVersion?: number; newValue: string };

/** What a client saw. Optional fields are checked when present; mapping from the gRPC API:
 *  get `{ value: found ? kv.value : undefined, version: found ? kv.version : 0 }`,
 *  put `{ version: kv.version }` (or `{}`), delete `{ deleted }`,
 *  cas `{ succeeded, version: kv ? kv.version : 0, value: kv?.value }` (kv = state after the cas). */
export interface KvOutput {
  /** get: the value read; undefined = not found. cas: the value after the operation, checked only
   *  when the property is present (present but undefined = the key does not exist). */
  value?: string;
  /** get: the key's version (0 = not found); put: the version it created; cas: the key's version
   *  after the operation, whether or not it succeeded (0 = does not exist). */
  version?: number;
  /** cas: whether the swap happened (required for a completed cas with an output). */
  succeeded?: boolean;
  /** delete: how many keys it removed (0 or 1); checked when present. */
  deleted?: number;
}

/** One key: version counts writes since the key was (re)created; 0 when absent, like etcd. */
export interface KvState {
  value: string | undefined;
  version: number;
}

const ABSENT: KvState = Object.freeze({ value: undefined, version: 0 });

/** Stands in for every written value that no operation on the key reads or compares against. */
const UNOBSERVED = "\u0000lincheck: a value no operation observed";

function quote(s: string | undefined): string {
  return s === undefined ? "not found" : JSON.stringify(s);
}

function validateKvInput(input: unknown, where: string): asserts input is KvInput {
  if (typeof input !== "object" || input === null) throw new TypeError(`${where}: input must be an object`);
  const i = input as Record<string, unknown>;
  if (typeof i.key !== "string") throw new TypeError(`${where}: input.key must be a string`);
  switch (i.op) {
    case "get":
    case "delete":
      return;
    case "put":
      if (typeof i.value !== "string") throw new TypeError(`${where}: put needs a string value`);
      return;
    case "cas":
      if (typeof i.newValue !== "string") throw new TypeError(`${where}: cas needs a string newValue`);
      if (i.expectedValue !== undefined && typeof i.expectedValue !== "string") {
        throw new TypeError(`${where}: cas expectedValue must be a string when present`);
      }
      if (i.expectedVersion !== undefined && !(Number.isInteger(i.expectedVersion) && (i.expectedVersion as number) >= 0)) {
        throw new TypeError(`${where}: cas expectedVersion must be an integer >= 0 when present`);
      }
      if (i.expectedValue === undefined && i.expectedVersion === undefined) {
        throw new TypeError(`${where}: cas needs expectedValue or expectedVersion (use put for an unconditional write)`);
      }
      return;
    default:
      throw new TypeError(`${where}: unknown op ${JSON.stringify(i.op)} (expected put, get, delete or cas)`);
  }
}

/** How a register-like model's operations touch values, for `simplifyRegisterHistory`. */
interface ValueAccess<I, O> {
  /** The value the operation writes (if it succeeds), or undefined. */
  written(input: I): string | undefined;
  /** The same operation writing `value` instead. */
  withWritten(input: I, value: string): I;
  /** The operation only reads: with an unknown output it constrains nothing and changes nothing. */
  isRead(input: I): boolean;
  /** Values a completed operation proves were current at some instant between call and return. */
  witnessed(op: Operation<I, O>): (string | undefined)[];
  /** Every value the operation's outcome depends on or reports (a superset of `witnessed`). */
  mentioned(op: Operation<I, O>): (string | undefined)[];
}

/**
 * Simplifies the history of one register-like object without changing its verdict:
 *  - reads whose answer is unknown are dropped: they constrain nothing;
 *  - a never-returned write of a value no other operation writes gets a return time: the earliest
 *    return of an operation that witnessed the value. It must have taken effect by then, and
 *    bounding it keeps the search from trying it everywhere after its call;
 *  - values no operation reads or compares against cannot be told apart, so writes of them all
 *    write one placeholder: states that differ only there merge in the cache, and the
 *    never-returned writes among them become interchangeable (see the pending classes).
 */
function simplifyRegisterHistory<I, O>(ops: Operation<I, O>[], a: ValueAccess<I, O>): Operation<I, O>[] {
  const isPending = (op: Operation<I, O>): boolean => op.return === undefined || op.return === Infinity;
  const writers = new Map<string, number>();
  const mentioned = new Set<string | undefined>();
  const witnessedBy = new Map<string, number>(); // value -> earliest return of a witness
  for (const op of ops) {
    const v = a.written(op.input);
    if (v !== undefined) writers.set(v, (writers.get(v) ?? 0) + 1);
    for (const m of a.mentioned(op)) mentioned.add(m);
    if (!isPending(op)) {
      for (const w of a.witnessed(op)) {
        if (w !== undefined && !(op.return! >= (witnessedBy.get(w) ?? Infinity))) witnessedBy.set(w, op.return!);
      }
    }
  }
  // The placeholder must not be a real value (it cannot be, short of a deliberate collision).
  const canonicalize = !writers.has(UNOBSERVED) && !mentioned.has(UNOBSERVED);
  const out: Operation<I, O>[] = [];
  for (const op of ops) {
    if (a.isRead(op.input) && op.output === undefined) continue;
    const v = a.written(op.input);
    if (v === undefined) {
      out.push(op);
    } else if (!mentioned.has(v)) {
      if (!canonicalize) {
        out.push(op);
        continue;
      }
      const rewritten = { ...op, input: a.withWritten(op.input, UNOBSERVED) };
      derivedFrom.set(rewritten, op);
      out.push(rewritten);
    } else if (isPending(op) && writers.get(v) === 1 && (witnessedBy.get(v) ?? -Infinity) >= op.call) {
      const tightened = { ...op, return: witnessedBy.get(v)!, output: undefined };
      derivedFrom.set(tightened, op);
      out.push(tightened);
    } else {
      out.push(op);
    }
  }
  return out;
}

const kvValues: ValueAccess<KvInput, KvOutput> = {
  written: (i) => (i.op === "put" ? i.value : i.op === "cas" ? i.newValue : undefined),
  withWritten: (i, value) => (i.op === "put" ? { ...i, value } : i.op === "cas" ? { ...i, newValue: value } : i),
  isRead: (i) => i.op === "get",
  witnessed(op) {
    const out = op.output;
    if (out === undefined) return [];
    if (op.input.op === "get") return [out.value];
    if (op.input.op !== "cas") return [];
    const seen: (string | undefined)[] = [];
    if (out.succeeded === true && op.input.expectedValue !== undefined) seen.push(op.input.expectedValue);
    if ("value" in out) seen.push(out.value);
    return seen;
  },
  mentioned(op) {
    const seen = kvValues.witnessed(op);
    if (op.input.op === "cas" && op.input.expectedValue !== undefined) seen.push(op.input.expectedValue);
    return seen;
  },
};

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => ABSENT,

  step(s, input, out) {
    switch (input.op) {
      case "get": {
        if (out === undefined) return { ok: true, state: s };
        const ok = out.value === s.value && (out.version === undefined || out.version === s.version);
        return { ok, state: s };
      }
      case "put": {
        const ns = { value: input.value, version: s.version + 1 };
        return { ok: out?.version === undefined || out.version === ns.version, state: ns };
      }
      case "delete": {
        const ok = out?.deleted === undefined || out.deleted === (s.value === undefined ? 0 : 1);
        return { ok, state: ABSENT };
      }
      case "cas": {
        const match =
          (input.expectedVersion === undefined || input.expectedVersion === s.version) &&
          (input.expectedValue === undefined || input.expectedValue === s.value);
        const ns = match ? { value: input.newValue, version: s.version + 1 } : s;
        if (out === undefined) return { ok: true, state: ns };
        if (out.succeeded !== match) return { ok: false, state: s };
        const ok = (out.version === undefined || out.version === ns.version) && (!("value" in out) || out.value === ns.value);
        return { ok, state: ns };
      }
      default:
        throw new TypeError(`kvModel: unknown op ${JSON.stringify((input as { op: unknown }).op)}`);
    }
  },

  key: (s) => (s.value === undefined ? "-" : `${s.version}:${s.value}`),

  // One sub-history per key (linearizability is local), each simplified as simplifyRegisterHistory
  // describes.
  partition(history) {
    const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
    history.forEach((op, i) => {
      validateKvInput(op.input, `operation #${i}`);
      if (op.input.op === "cas" && op.output !== undefined && op.return !== undefined && op.return !== Infinity) {
        if (typeof op.output !== "object" || typeof op.output.succeeded !== "boolean") {
          throw new TypeError(`operation #${i}: a completed cas with an output needs output.succeeded (true/false)`);
        }
      }
      let ops = byKey.get(op.input.key);
      if (!ops) byKey.set(op.input.key, (ops = []));
      ops.push(op);
    });
    return [...byKey.values()].map((ops) => simplifyRegisterHistory(ops, kvValues)).filter((ops) => ops.length > 0);
  },

  describePartition: (ops) => `key ${JSON.stringify(ops[0]!.input.key)}`,

  describeOperation(input, out) {
    const head =
      input.op === "put"
        ? `put(${JSON.stringify(input.key)}, ${JSON.stringify(input.value)})`
        : input.op === "get"
          ? `get(${JSON.stringify(input.key)})`
          : input.op === "delete"
            ? `delete(${JSON.stringify(input.key)})`
            : `cas(${JSON.stringify(input.key)}, if ${[
                input.expectedVersion !== undefined ? `version=${input.expectedVersion}` : "",
                input.expectedValue !== undefined ? `value=${JSON.stringify(input.expectedValue)}` : "",
              ]
                .filter(Boolean)
                .join(" and ")}, set ${JSON.stringify(input.newValue)})`;
    if (out === undefined) return `${head} -> ?`;
    const version = out.version !== undefined ? ` (version ${out.version})` : "";
    switch (input.op) {
      case "get":
        return `${head} -> ${quote(out.value)}${version}`;
      case "put":
        return `${head} -> ok${version}`;
      case "delete":
        return `${head} -> ${out.deleted !== undefined ? `deleted ${out.deleted}` : "ok"}`;
      case "cas": {
        const after = [
          "value" in out ? quote(out.value) : "",
          out.version !== undefined ? `version ${out.version}` : "",
        ].filter(Boolean);
        return `${head} -> ${out.succeeded ? "succeeded" : "failed"}${after.length ? ` (now ${after.join(", ")})` : ""}`;
      }
    }
  },

  describeState: (s) =>
    s.value === undefined
      ? "absent (version 0)"
      : `${s.value === UNOBSERVED ? "a value no operation read" : JSON.stringify(s.value)} (version ${s.version})`,
};

// ---------------------------------------------------------------------------------------------
// A single read/write register (for the simulator): starts empty (undefined).

export type RegisterInput = { op: "put"; value: string } | { op: "get" };
export interface RegisterOutput {
  /** get: the value read; undefined = never written. */
  value?: string;
}

const registerValues: ValueAccess<RegisterInput, RegisterOutput> = {
  written: (i) => (i.op === "put" ? i.value : undefined),
  withWritten: (i, value) => (i.op === "put" ? { ...i, value } : i),
  isRead: (i) => i.op === "get",
  witnessed: (op) => (op.input.op === "get" && op.output !== undefined ? [op.output.value] : []),
  mentioned: (op) => registerValues.witnessed(op),
};

export const registerModel: Model<string | undefined, RegisterInput, RegisterOutput> = {
  init: () => undefined,
  step(s, input, out) {
    if (input.op === "put") return { ok: true, state: input.value };
    if (input.op === "get") return { ok: out === undefined || out.value === s, state: s };
    throw new TypeError(`registerModel: unknown op ${JSON.stringify((input as { op: unknown }).op)} (expected put or get)`);
  },
  key: (s) => (s === undefined ? "-" : `=${s}`),
  // One partition (it is one object), simplified as simplifyRegisterHistory describes.
  partition(history) {
    history.forEach((op, i) => {
      const input = op.input as { op?: unknown; value?: unknown } | null;
      if (typeof input !== "object" || input === null || !(input.op === "get" || (input.op === "put" && typeof input.value === "string"))) {
        throw new TypeError(`operation #${i}: a register input is { op: "get" } or { op: "put", value: string }`);
      }
    });
    return [simplifyRegisterHistory(history, registerValues)];
  },
  describeOperation(input, out) {
    if (input.op === "put") return `put(${JSON.stringify(input.value)})${out === undefined ? " -> ?" : ""}`;
    return `get() -> ${out === undefined ? "?" : quote(out.value)}`;
  },
  describeState: (s) => (s === undefined ? "empty" : s === UNOBSERVED ? "a value no operation read" : JSON.stringify(s)),
};

// ---------------------------------------------------------------------------------------------
// Recording histories

/**
 * Records operations as clients run them. Call `invoke` right BEFORE sending the request and
 * `complete` right AFTER the response arrives, so the [call, return] interval contains the
 * instant the operation took effect. All clients must share the recorder's clock (one process).
 */
export class HistoryRecorder<I, O> {
  private readonly ops = new Map<number, { op: Operation<I, O>; status: "running" | "ok" | "failed" | "unknown" }>();
  private nextId = 0;

  constructor(private readonly clock: () => number = () => performance.now()) {}

  /** The client is about to send the request; returns an id for complete/fail/timeout. */
  invoke(clientId: number | string, input: I): number {
    const id = this.nextId++;
    this.ops.set(id, { op: { clientId, input, call: this.clock() }, status: "running" });
    return id;
  }

  /** The response arrived with this result. */
  complete(id: number, output: O): void {
    const rec = this.settle(id, "ok");
    const now = this.clock();
    if (now < rec.op.call) throw new RangeError(`HistoryRecorder: clock went backwards (${now} < ${rec.op.call})`);
    rec.op.return = now;
    rec.op.output = output;
  }

  /** The operation definitely did not take effect (e.g. rejected before being proposed): it is
   *  left out of the history. Only use this when that is certain; otherwise use timeout. */
  fail(id: number): void {
    this.settle(id, "failed");
  }

  /** The outcome is unknown (timeout, connection lost, node killed): it may or may not have taken
   *  effect, at any time after its call. */
  timeout(id: number): void {
    this.settle(id, "unknown");
  }

  /** Operations not yet settled. */
  get inFlight(): number {
    let n = 0;
    for (const rec of this.ops.values()) if (rec.status === "running") n++;
    return n;
  }

  /** The history so far, in invocation order. Operations still running count as unknown. */
  history(): Operation<I, O>[] {
    const out: Operation<I, O>[] = [];
    for (const rec of this.ops.values()) {
      if (rec.status === "failed") continue;
      const op: Operation<I, O> = { clientId: rec.op.clientId, input: rec.op.input, call: rec.op.call };
      if (rec.status === "ok") {
        op.output = rec.op.output;
        op.return = rec.op.return;
      }
      out.push(op);
    }
    return out;
  }

  private settle(id: number, status: "ok" | "failed" | "unknown") {
    const rec = this.ops.get(id);
    if (!rec) throw new RangeError(`HistoryRecorder: no operation with id ${id}`);
    if (rec.status !== "running") throw new Error(`HistoryRecorder: operation ${id} was already settled (${rec.status})`);
    rec.status = status;
    return rec;
  }
}
