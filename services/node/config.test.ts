// The node's configuration: env and flags (flags win), StatefulSet mode, and a clear error naming
// the setting for every bad value.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError, loadConfig, parsePeers } from "./config.js";

const PEERS = "n1=127.0.0.1:7001,n2=127.0.0.2:7001,n3=127.0.0.3:7001";

describe("node configuration", () => {
  test("static mode from env, with defaults for everything else", () => {
    const c = loadConfig([], { RAFTKV_NODE_ID: "n2", RAFTKV_PEERS: PEERS }, "somehost");
    assert.equal(c.mode, "static");
    assert.equal(c.id, "n2");
    assert.deepEqual(
      c.peers.map((p) => `${p.id}@${p.address}`),
      ["n1@127.0.0.1:7001", "n2@127.0.0.2:7001", "n3@127.0.0.3:7001"],
    );
    assert.equal(c.clientPort, 9091);
    assert.equal(c.httpPort, 8080);
    assert.equal(c.heartbeatMs, 100);
    assert.equal(c.electionMs, 1000);
    assert.equal(c.walWrites, "inline");
    assert.equal(c.repairWal, false);
    assert.match(c.dataDir, /data\/n2$/);
  });

  test("flags win over env", () => {
    const c = loadConfig(["--id", "n3", "--heartbeat-ms", "50", "--wal-writes", "threadpool", "--repair-wal"], {
      RAFTKV_NODE_ID: "n1",
      RAFTKV_PEERS: PEERS,
      RAFTKV_HEARTBEAT_MS: "200",
      RAFTKV_WAL_WRITES: "inline",
    });
    assert.equal(c.id, "n3");
    assert.equal(c.heartbeatMs, 50);
    assert.equal(c.walWrites, "threadpool");
    assert.equal(c.repairWal, true);
  });

  test("StatefulSet mode: id from the hostname ordinal, peers from the headless service", () => {
    const c = loadConfig([], { RAFTKV_REPLICAS: "3", RAFTKV_HEADLESS_SERVICE: "raftkv-headless.db.svc.cluster.local" }, "raftkv-2");
    assert.equal(c.mode, "statefulset");
    assert.equal(c.id, "raftkv-2");
    assert.deepEqual(
      c.peers.map((p) => p.address),
      [0, 1, 2].map((i) => `raftkv-${i}.raftkv-headless.db.svc.cluster.local:7001`),
    );
    assert.throws(() => loadConfig([], { RAFTKV_REPLICAS: "3", RAFTKV_HEADLESS_SERVICE: "h" }, "raftkv-3"), /ordinal 3 of raftkv-3 is not below RAFTKV_REPLICAS=3/);
    assert.throws(() => loadConfig([], { RAFTKV_REPLICAS: "3", RAFTKV_HEADLESS_SERVICE: "h" }, "laptop"), /does not end in -<ordinal>/);
    assert.throws(() => loadConfig([], { RAFTKV_REPLICAS: "3" }, "raftkv-0"), /RAFTKV_HEADLESS_SERVICE is required/);
  });

  test("every bad value is refused with a message naming the setting", () => {
    const base = { RAFTKV_NODE_ID: "n1", RAFTKV_PEERS: PEERS };
    const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
      [{ RAFTKV_HEARTBEAT_MS: "0" }, /RAFTKV_HEARTBEAT_MS must be an integer/],
      [{ RAFTKV_HEARTBEAT_MS: "1e3" }, /RAFTKV_HEARTBEAT_MS must be an integer/],
      [{ RAFTKV_ELECTION_MS: "250" }, /RAFTKV_ELECTION_MS \(250\) must be at least 3x RAFTKV_HEARTBEAT_MS/],
      [{ RAFTKV_CLIENT_PORT: "70000" }, /RAFTKV_CLIENT_PORT must be an integer in \[0, 65535\]/],
      [{ RAFTKV_LOG_LEVEL: "loud" }, /RAFTKV_LOG_LEVEL must be one of/],
      [{ RAFTKV_WAL_WRITES: "async" }, /RAFTKV_WAL_WRITES must be inline or threadpool/],
      [{ RAFTKV_MAX_VALUE_BYTES: "-1" }, /RAFTKV_MAX_VALUE_BYTES must be an integer/],
      [{ RAFTKV_NODE_ID: "n9" }, /node id n9 is not in the peer list/],
      [{ RAFTKV_NODE_ID: "" }, /RAFTKV_NODE_ID is required/],
      [{ RAFTKV_PEERS: "" }, /set RAFTKV_PEERS/],
    ];
    for (const [env, want] of cases) {
      assert.throws(() => loadConfig([], { ...base, ...env }), (e: unknown) => e instanceof ConfigError && want.test(e.message), JSON.stringify(env));
    }
    assert.throws(() => loadConfig(["--no-such-flag"], base), /unknown option/);
  });

  test("peer lists: id=host:port, no duplicates, valid ports", () => {
    assert.deepEqual(parsePeers(" a=h1:1 , b=[::1]:2 "), [
      { id: "a", address: "h1:1" },
      { id: "b", address: "[::1]:2" },
    ]);
    assert.throws(() => parsePeers("a=h1"), /"a=h1" is not id=host:port/);
    assert.throws(() => parsePeers("a=h:1,a=h:2"), /id a appears twice/);
    assert.throws(() => parsePeers("a=h:0"), /port of a must be an integer in \[1, 65535\]/);
    assert.throws(() => parsePeers(" , "), /RAFTKV_PEERS is empty/);
  });
});
