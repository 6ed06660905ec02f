// Several concurrent clients do put/get/cas on a few keys while nodes are SIGKILLed and
// restarted; the recorded history must be linearizable (test/lib/lincheck, per-key WGL).

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { RaftkvClient, RaftkvError } from "../../services/cli/client.js";
import { HistoryRecorder, type KvInput, type KvOutput, checkLinearizable, kvModel } from "../lib/lincheck.js";
import { TestCluster } from "./harness.js";

const DURATION_MS = Number(process.env.LIN_DURATION_MS ?? 12_000);
const CLIENTS = 6;
const KEYS = ["a", "b", "c"];

let c: TestCluster | undefined;
const clients: RaftkvClient[] = [];
after(async () => {
  for (const cl of clients) cl.close();
  await c?.stop();
});

test(`${CLIENTS} clients doing put/get/cas on ${KEYS.length} keys while nodes are killed and restarted: the history is linearizable`, async () => {
  c = await TestCluster.start({ nodes: 3, electionMs: 500 });
  await c.waitForLeader({ timeoutMs: 60_000 }); // process start-up (tsx) can be slow on a loaded machine
  const rec = new HistoryRecorder<KvInput, KvOutput>();
  const deadline = Date.now() + DURATION_MS;
  let seq = 0;
  let ok = 0;
  let unknown = 0;
  const unexpected: string[] = [];

  const worker = async (w: number) => {
    const cl = new RaftkvClient({ endpoints: c!.endpoints(), timeoutMs: 2000 });
    clients.push(cl);
    // A simple deterministic-per-worker mix.
    let x = w * 7919 + 1;
    const rnd = (n: number) => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x % n;
    };
    while (Date.now() < deadline && seq < 20_000) {
      const key = KEYS[rnd(KEYS.length)];
      const r = rnd(10);
      let input: KvInput;
      if (r < 4) input = { op: "get", key };
      else if (r < 8) input = { op: "put", key, value: `w${w}-${++seq}` };
      else input = { op: "cas", key, expectedVersion: rnd(4), newValue: `w${w}-${++seq}` };
      const id = rec.invoke(w, input);
      try {
        if (input.op === "get") {
          const res = await cl.get(key);
          rec.complete(id, { value: res.found ? Buffer.from(res.kv!.value).toString() : undefined, version: res.found ? res.kv!.version : 0 });
        } else if (input.op === "put") {
          const res = await cl.put(key, input.value);
          rec.complete(id, { version: res.kv!.version });
        } else if (input.op === "cas") {
          const res = await cl.compareAndSwap(key, { expectedVersion: input.expectedVersion! }, input.newValue);
          rec.complete(id, { succeeded: res.succeeded, version: res.succeeded ? res.kv!.version : undefined });
        }
        ok++;
      } catch (e) {
        // The client gave up (timeout / no quorum): the outcome is unknown.
        rec.timeout(id);
        unknown++;
        if (!(e instanceof RaftkvError) || !["UNAVAILABLE", "DEADLINE_EXCEEDED"].includes(e.codeName)) unexpected.push(String(e));
      }
    }
  };

  const chaos = async () => {
    let k = 0;
    while (Date.now() < deadline - 2500 && k < 20) {
      await new Promise((r) => setTimeout(r, 1200));
      const victim = c!.specs[k++ % c!.specs.length].id;
      await c!.kill(victim);
      await new Promise((r) => setTimeout(r, 800));
      c!.spawn(victim);
      // One node down at a time: wait until it serves again (start-up is slow on a loaded machine).
      for (let t = 0; t < 100 && !(await c!.status(victim)); t++) await new Promise((r) => setTimeout(r, 100));
    }
  };

  await Promise.all([...Array.from({ length: CLIENTS }, (_, w) => worker(w)), chaos()]);
  assert.deepEqual(unexpected, [], "only UNAVAILABLE / DEADLINE_EXCEEDED are acceptable failures");
  const history = rec.history();
  const t0 = performance.now();
  const res = checkLinearizable(kvModel, history, { timeoutMs: 60_000 });
  const ms = performance.now() - t0;
  console.log(`# history: ${history.length} ops (${ok} ok, ${unknown} unknown), checked in ${ms.toFixed(0)} ms: ${res.result}`);
  assert.ok(ok > 100, `the cluster made progress through the chaos (${ok} ops completed)`);
  if (res.result === "illegal") assert.fail(`not linearizable (key ${res.partitionKey}): ${res.explanation}`);
  assert.equal(res.result, "ok");
});
