// The driver-facing API beyond the paper rules: batching and the Ready/advance contract.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Network, drainReady } from "./test-network.js";
import { MessageType } from "./types.js";

const enc = (s: string) => new TextEncoder().encode(s);

test("a batch of proposals travels in one append message per follower and commits together", () => {
  const net = Network.of(["1", "2", "3"]);
  net.campaign("1");
  const l = net.get("1");
  l.node.proposeBatch(["a", "b", "c", "d"].map(enc));
  const apps = drainReady(l).filter((m) => m.type === MessageType.App);
  assert.equal(apps.length, 2, "one append per follower");
  for (const m of apps) assert.deepEqual(m.entries.map((e) => new TextDecoder().decode(e.data)), ["a", "b", "c", "d"]);
  for (const m of apps) net.get(m.to).node.step(m);
  net.settle();
  assert.deepEqual(
    l.applied.filter((e) => e.data.length > 0).map((e) => new TextDecoder().decode(e.data)),
    ["a", "b", "c", "d"],
  );
});

test("ready() must be followed by advance() before the next ready()", () => {
  const net = Network.of(["1", "2", "3"]);
  const n = net.get("1").node;
  n.campaign();
  n.ready();
  assert.throws(() => n.ready(), /before advance/);
});
