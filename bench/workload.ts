// The closed-loop workload of bench/cluster.ts, the same for every system: N workers, each
// with one request in flight, issuing put or get on keys drawn from a fixed key space; a warm-up
// that is not counted, then a measured window. Latencies go to an HDR histogram (microseconds).
// Targets wrap one client library each (RaftkvClient, etcd3) behind the same two calls.

import { performance } from "node:perf_hooks";
import * as hdr from "hdr-histogram-js";
import { Etcd3 } from "etcd3";
import { RaftkvClient } from "../services/cli/client.js";

export type SystemName = "raftkv" | "etcd";

/** How requests are spread over the endpoints. */
export type Routing = "spread" | "client";

export interface KvTarget {
  readonly system: SystemName;
  /** One sentence: the client pattern, for the report. */
  readonly description: string;
  put(key: Buffer, value: Buffer): Promise<void>;
  /** Resolves with whether the key was found. */
  get(key: Buffer, serializable: boolean): Promise<boolean>;
  close(): void;
}

const CALL_TIMEOUT_MS = 5000;

/**
 * raftkv through RaftkvClient. `spread`: one single-endpoint client per node (one gRPC channel
 * each) and every request to a node drawn uniformly at random, which is what etcd3 does (a fresh
 * Fisher-Yates shuffle of its hosts per call, first host taken); followers forward writes and get
 * read indexes from the leader, as etcd's do. `client`: one client over all endpoints with
 * RaftkvClient's own policy: writes to the leader once known, reads round-robin over the nodes.
 * `streamCalls` false makes RaftkvClient send each request as its own unary gRPC call (as etcd3
 * does) instead of as a call on its KV.Calls stream.
 */
export function raftkvTarget(endpoints: string[], routing: Routing, rand: () => number, streamCalls = true): KvTarget {
  if (routing === "client") {
    const c = new RaftkvClient({ endpoints, channelsPerEndpoint: 1, timeoutMs: CALL_TIMEOUT_MS, streamCalls });
    return {
      system: "raftkv",
      description: "one RaftkvClient over all endpoints, one channel each, with its own policy: writes to the leader once known, reads round-robin over the nodes",
      async put(key, value) {
        await c.put(key, value);
      },
      async get(key, serializable) {
        return (await c.get(key, { serializable })).found;
      },
      close: () => c.close(),
    };
  }
  const clients = endpoints.map((e) => new RaftkvClient({ endpoints: [e], channelsPerEndpoint: 1, timeoutMs: CALL_TIMEOUT_MS, streamCalls }));
  const pick = () => clients[Math.floor(rand() * clients.length)]!;
  return {
    system: "raftkv",
    description: "one single-endpoint RaftkvClient per node (one gRPC channel each), each request to a node drawn uniformly at random (as etcd3 does)",
    async put(key, value) {
      await pick().put(key, value);
    },
    async get(key, serializable) {
      return (await pick().get(key, { serializable })).found;
    },
    close: () => clients.forEach((c) => c.close()),
  };
}

/** etcd through the etcd3 npm client: one channel per host and service, a random host per call. */
export function etcdTarget(endpoints: string[]): KvTarget {
  const c = new Etcd3({
    hosts: endpoints.map((e) => `http://${e}`),
    // The same per-call deadline RaftkvClient uses (etcd3 sets none by default).
    defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
  });
  return {
    system: "etcd",
    description: "one Etcd3 client over all endpoints (one gRPC channel per endpoint), a random endpoint per request (etcd3's own policy)",
    async put(key, value) {
      await c.put(key).value(value);
    },
    async get(key, serializable) {
      return (await c.get(key).serializable(serializable).buffer()) !== null;
    },
    close: () => c.close(),
  };
}

/** xorshift32: cheap, seeded, good enough to pick keys. Returns a float in [0, 1). */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

/** `count` distinct keys of exactly `bytes` bytes ("k" + zero-padded index). */
export function makeKeys(count: number, bytes: number): Buffer[] {
  const digits = bytes - 1;
  if (String(count - 1).length > digits) throw new Error(`${count} keys do not fit in ${bytes} bytes`);
  return Array.from({ length: count }, (_, i) => Buffer.from(`k${String(i).padStart(digits, "0")}`, "latin1"));
}

export interface RunSpec {
  op: "put" | "get";
  serializable?: boolean;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

export interface RunResult {
  /** Operations completed inside the measured window. */
  ops: number;
  errors: number;
  /** Gets that found no key (should be 0: every key is preloaded). */
  misses: number;
  seconds: number;
  opsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  firstError?: string;
}

export interface RunHooks {
  /** Called when the measured window opens and closes (e.g. to sample CPU counters). */
  onWindowStart?: () => void | Promise<void>;
  onWindowEnd?: () => void | Promise<void>;
  /** Called about once a second while measuring with the ops/s of the last second. */
  onTick?: (elapsedMs: number, recentOpsPerSec: number) => void;
  /** Polled between requests; true stops the run early (Ctrl-C). */
  aborted?: () => boolean;
}

/**
 * Runs one closed-loop measurement: `concurrency` workers, each issuing its next request when the
 * previous one answers. Operations that complete inside [warm-up end, warm-up end + duration]
 * are counted and their latencies recorded; the warm-up and the drain are not.
 */
export async function runWorkload(target: KvTarget, keys: Buffer[], value: Buffer, spec: RunSpec, rand: () => number, hooks: RunHooks = {}): Promise<RunResult> {
  const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  let measuring = false;
  let stop = false;
  let ops = 0;
  let errors = 0;
  let misses = 0;
  let firstError: string | undefined;
  let windowStart = 0;
  let windowEnd = 0;
  let tickOps = 0;

  const op =
    spec.op === "put"
      ? (k: Buffer) => target.put(k, value).then(() => true)
      : (k: Buffer) => target.get(k, spec.serializable ?? false);

  const worker = async (): Promise<void> => {
    while (!stop) {
      if (hooks.aborted?.()) {
        stop = true;
        return;
      }
      const key = keys[Math.floor(rand() * keys.length)]!;
      const t0 = performance.now();
      let ok = true;
      let found = true;
      try {
        found = await op(key);
      } catch (e) {
        ok = false;
        firstError ??= (e as Error).message;
      }
      if (measuring) {
        if (!ok) errors++;
        else {
          ops++;
          tickOps++;
          if (!found) misses++;
          hist.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        }
      }
      if (!ok) await sleep(10); // no hot loop against a failing cluster
    }
  };

  const workers = Array.from({ length: spec.concurrency }, () => worker());
  let ticker: NodeJS.Timeout | undefined;
  try {
    await sleepUnless(spec.warmupMs, () => stop);
    await hooks.onWindowStart?.();
    windowStart = performance.now();
    measuring = true;
    let lastTick = windowStart;
    ticker = setInterval(() => {
      const now = performance.now();
      hooks.onTick?.(now - windowStart, (tickOps * 1000) / (now - lastTick));
      tickOps = 0;
      lastTick = now;
    }, 1000);
    await sleepUnless(spec.durationMs, () => stop);
    measuring = false;
    windowEnd = performance.now();
    await hooks.onWindowEnd?.();
  } finally {
    if (ticker) clearInterval(ticker);
    measuring = false;
    stop = true;
    await Promise.all(workers);
  }
  const seconds = (windowEnd - windowStart) / 1000;
  const ms = (us: number) => us / 1000;
  const result: RunResult = {
    ops,
    errors,
    misses,
    seconds,
    opsPerSec: seconds > 0 ? ops / seconds : 0,
    latencyMs: {
      p50: ms(hist.getValueAtPercentile(50)),
      p90: ms(hist.getValueAtPercentile(90)),
      p99: ms(hist.getValueAtPercentile(99)),
      p999: ms(hist.getValueAtPercentile(99.9)),
      max: ms(hist.maxValue),
      mean: ms(hist.mean),
    },
    firstError,
  };
  hist.destroy();
  return result;
}

/** Writes every key once with `concurrency` in flight (not measured); throws on the first error. */
export async function preload(target: KvTarget, keys: Buffer[], value: Buffer, concurrency: number, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      if (performance.now() - t0 > timeoutMs) throw new Error(`${target.system}: preloading ${keys.length} keys took over ${timeoutMs} ms`);
      const k = keys[next++]!;
      await target.put(k, value);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  return (keys.length * 1000) / (performance.now() - t0);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function sleepUnless(ms: number, stopped: () => boolean): Promise<void> {
  const end = performance.now() + ms;
  while (!stopped()) {
    const left = end - performance.now();
    if (left <= 0) return;
    await sleep(Math.min(left, 100));
  }
}
