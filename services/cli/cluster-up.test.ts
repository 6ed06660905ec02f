// cluster up's plan: ids, ports, data directories and the command line of every process, and
// the loader children get (tsx from source, plain node from dist/).

import { test } from "node:test";
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { CLUSTER_UP_DEFAULTS, detectRuntime, planCluster, portClash } from "./cluster-up.js";

const runtime = { nodeArgs: ["--import", "file:///x/tsx/loader.mjs"], nodeMain: "/r/services/node/main.ts", exporterMain: "/r/services/exporter/main.ts" };

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

test("three nodes n1..n3 get consecutive client, peer and HTTP ports, one data directory each, and one exporter each", () => {
  const plan = planCluster({ ...CLUSTER_UP_DEFAULTS, dataDir: "./data" }, runtime);
  assert.deepEqual(plan.endpoints, ["127.0.0.1:9091", "127.0.0.1:9092", "127.0.0.1:9093"]);
  assert.deepEqual(plan.processes.map((p) => p.name), ["n1", "n1-exp", "n2", "n2-exp", "n3", "n3-exp"]);
  const n2 = plan.processes.find((p) => p.name === "n2")!;
  assert.deepEqual(n2.args.slice(0, 3), ["--import", "file:///x/tsx/loader.mjs", "/r/services/node/main.ts"]);
  assert.equal(flag(n2.args, "--id"), "n2");
  assert.equal(flag(n2.args, "--peers"), "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003");
  assert.equal(flag(n2.args, "--client-port"), "9092");
  assert.equal(flag(n2.args, "--peer-port"), "7002");
  assert.equal(flag(n2.args, "--http-port"), "8082");
  assert.equal(flag(n2.args, "--listen-host"), "127.0.0.1");
  assert.equal(flag(n2.args, "--data-dir"), resolve("data", "n2"));
  assert.equal(flag(n2.args, "--heartbeat-ms"), undefined);
  const e3 = plan.processes.find((p) => p.name === "n3-exp")!;
  assert.equal(e3.args[2], "/r/services/exporter/main.ts");
  assert.equal(flag(e3.args, "--status-url"), "http://127.0.0.1:8083/status");
  assert.equal(flag(e3.args, "--port"), "9103");
  assert.equal(plan.nodes[2]!.exporter, "http://127.0.0.1:9103");
  assert.equal(portClash(plan), "");
});

test("five nodes without exporters, on other base ports and timings", () => {
  const plan = planCluster(
    { ...CLUSTER_UP_DEFAULTS, nodes: 5, exporters: false, baseClientPort: 20000, basePeerPort: 21000, baseHttpPort: 22000, heartbeatMs: 50, electionMs: 500, dataDir: "/tmp/d" },
    runtime,
  );
  assert.equal(plan.processes.length, 5);
  assert.ok(plan.processes.every((p) => p.kind === "node"));
  const n5 = plan.processes[4]!;
  assert.equal(flag(n5.args, "--id"), "n5");
  assert.equal(flag(n5.args, "--client-port"), "20004");
  assert.equal(flag(n5.args, "--heartbeat-ms"), "50");
  assert.equal(flag(n5.args, "--election-ms"), "500");
  assert.equal(flag(n5.args, "--data-dir"), "/tmp/d/n5");
  assert.equal(flag(n5.args, "--peers")!.split(",").length, 5);
});

test("overlapping port ranges are refused before anything starts", () => {
  const plan = planCluster({ ...CLUSTER_UP_DEFAULTS, baseExporterPort: 9092 }, runtime);
  assert.match(portClash(plan), /port 9092 would be used by both n1-exp and n2/);
});

test("children run the .ts entry points through tsx from source, and plain .js from dist/", () => {
  const fromSource = detectRuntime(pathToFileURL("/repo/services/cli/main.ts").href, () => "file:///repo/node_modules/tsx/dist/loader.mjs");
  assert.equal(fromSource.kind, "ts");
  assert.deepEqual(fromSource.nodeArgs, ["--import", "file:///repo/node_modules/tsx/dist/loader.mjs"]);
  assert.equal(fromSource.nodeMain, "/repo/services/node/main.ts");
  assert.equal(fromSource.exporterMain, "/repo/services/exporter/main.ts");
  const built = detectRuntime(pathToFileURL("/app/dist/services/cli/main.js").href, () => assert.fail("no loader from dist"));
  assert.equal(built.kind, "js");
  assert.ok(!built.nodeArgs.includes("--import"));
  assert.equal(built.nodeMain, "/app/dist/services/node/main.js");
  assert.equal(built.exporterMain, "/app/dist/services/exporter/main.js");
});
