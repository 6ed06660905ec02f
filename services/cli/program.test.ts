// The raftkv command line, run in-process against scripted gRPC servers on loopback: parsing and
// validation, exit codes, human and JSON output, one-line errors.

import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { EXIT, run } from "./program.js";
import { closedPort, grpcError, header, startScriptedServer, statusOf, type ScriptedServer } from "./scripted-server.js";

const servers: ScriptedServer[] = [];
after(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function server(...args: Parameters<typeof startScriptedServer>): Promise<ScriptedServer> {
  const s = await startScriptedServer(...args);
  servers.push(s);
  return s;
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  raw: Buffer;
}

async function cli(argv: string[], env: Record<string, string | undefined> = {}): Promise<Result> {
  const out: Buffer[] = [];
  let stderr = "";
  const code = await run(argv, {
    stdout: (s) => void out.push(Buffer.from(s)),
    stderr: (s) => void (stderr += s),
    env,
  });
  const raw = Buffer.concat(out);
  return { code, stdout: raw.toString("utf8"), stderr, raw };
}

function kv(key: string | Buffer, value: string | Buffer, version = 1, rev = 5) {
  return { key: Buffer.from(key), value: Buffer.from(value), createRevision: rev, modRevision: rev, version };
}

describe("raftkv command line: parsing", () => {
  test("--help of the program and of every command exits 0 and shows usage", async () => {
    const top = await cli(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: raftkv/);
    assert.match(top.stdout, /Exit codes:/);
    assert.match(top.stdout, /RAFTKV_ENDPOINTS/);
    const commands = [["put"], ["get"], ["del"], ["range"], ["cas"], ["status"], ["members"], ["leader"], ["leader", "transfer"], ["snapshot"], ["cluster"], ["cluster", "up"]];
    for (const c of commands) {
      const r = await cli([...c, "--help"]);
      assert.equal(r.code, 0, `${c.join(" ")} --help`);
      assert.match(r.stdout, new RegExp(`Usage: raftkv ${c.join(" ")}`), c.join(" "));
    }
    assert.match((await cli(["cluster", "up", "--help"])).stdout, /--base-client-port/);
  });

  test("usage errors exit 2 with the reason on stderr and nothing on stdout", async () => {
    const cases: Array<[string[], RegExp, Record<string, string>?]> = [
      [["get"], /missing required argument 'key'/],
      [["put", "k"], /missing required argument 'value'/],
      [["frobnicate"], /unknown command 'frobnicate'/],
      [["get", "k", "--bogus"], /unknown option '--bogus'/],
      [["get", "k", "extra"], /too many arguments/],
      [["range", "--limit", "-1"], /--limit must be an integer/],
      [["range", "--limit", "x"], /--limit must be an integer/],
      [["get", "k", "--timeout", "0"], /--timeout must be an integer/],
      [["get", "k", "--endpoints", "nohost"], /host:port/],
      [["get", "k", "--endpoints", ","], /at least one host:port/],
      [["get", "k"], /RAFTKV_ENDPOINTS: endpoint must be host:port/, { RAFTKV_ENDPOINTS: "a:b:c" }],
      [["cas", "k", "v"], /--expect-value <value> or --expect-version <n>/],
      [["cas", "k", "v", "--expect-value", "a", "--expect-version", "1"], /cannot be used with/],
      [["cas", "k", "v", "--expect-version", "-2"], /--expect-version must be an integer/],
      [["range", "a", "--prefix", "p"], /either \[start\] \[end\] or --prefix/],
      [["del", "a", "b", "--prefix"], /either \[end\] or --prefix/],
      [["leader"], /Usage: raftkv leader/],
      [["cluster", "up", "--nodes", "0"], /--nodes must be an integer in 1..9/],
      [["cluster", "up", "--base-client-port", "70000"], /--base-client-port must be an integer/],
      [["cluster", "up", "--log-level", "loud"], /Allowed choices/],
      [["cluster", "up", "--endpoints", "127.0.0.1:1"], /--endpoints does not apply/],
    ];
    for (const [argv, why, env] of cases) {
      const r = await cli(argv, env);
      assert.equal(r.code, EXIT.USAGE, `${argv.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, why, argv.join(" "));
      assert.equal(r.stdout, "", argv.join(" "));
    }
  });

  test("global options work before and after the command", async () => {
    const s = await server({ handlers: { get: () => ({ ok: { header: header("n1", "n1", 9), found: true, kv: kv("k", "v") } }) } });
    const after = await cli(["get", "k", "--endpoints", s.address, "--json"]);
    const before = await cli(["--endpoints", s.address, "--json", "get", "k"]);
    assert.equal(after.code, 0);
    assert.deepEqual(JSON.parse(after.stdout), JSON.parse(before.stdout));
  });

  test("RAFTKV_ENDPOINTS is the default of --endpoints, and --endpoints wins over it", async () => {
    const s = await server({ handlers: { get: () => ({ ok: { header: header("n1", "n1"), found: true, kv: kv("k", "from-env") } }) } });
    const dead = await closedPort();
    assert.equal((await cli(["get", "k"], { RAFTKV_ENDPOINTS: s.address })).stdout, "from-env\n");
    const r = await cli(["get", "k", "--endpoints", `127.0.0.1:${dead}`, "--timeout", "300"], { RAFTKV_ENDPOINTS: s.address });
    assert.equal(r.code, EXIT.UNAVAILABLE);
  });
});

describe("raftkv command line: commands and exit codes", () => {
  test("put prints OK with the revision; --json gives the written pair", async () => {
    const s = await server({ handlers: { put: (req) => ({ ok: { header: header("n1", "n1", 12), kv: { ...kv(req.key, req.value, 3, 12) }, prevKv: req.prevKv ? kv(req.key, "old", 2, 11) : undefined } }) } });
    const r = await cli(["put", "greeting", "hello", "--endpoints", s.address]);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, "OK (revision 12, version 3)\n", ""]);
    const j = await cli(["put", "greeting", "hello", "--endpoints", s.address, "--json", "--prev-kv"]);
    assert.deepEqual(JSON.parse(j.stdout), {
      revision: 12,
      kv: { key: "greeting", value: "hello", createRevision: 12, modRevision: 12, version: 3 },
      prevKv: { key: "greeting", value: "old", createRevision: 11, modRevision: 11, version: 2 },
    });
    assert.equal(s.calls[1]!.request.prevKv, true);
  });

  test("get prints the value exactly; a missing key exits 1 with a line on stderr", async () => {
    const s = await server({
      handlers: {
        get: (req) =>
          Buffer.from(req.key).toString() === "bin"
            ? { ok: { header: header("n1", "n1"), found: true, kv: kv("bin", Buffer.from([0, 255, 10])) } }
            : Buffer.from(req.key).toString() === "k"
              ? { ok: { header: header("n1", "n1", 8), found: true, kv: kv("k", "multi\nline") } }
              : { ok: { header: header("n1", "n1", 8), found: false } },
      },
    });
    const ok = await cli(["get", "k", "--endpoints", s.address]);
    assert.deepEqual([ok.code, ok.stdout], [0, "multi\nline\n"]);
    const bin = await cli(["get", "bin", "--endpoints", s.address]);
    assert.deepEqual([...bin.raw], [0, 255, 10, 10]);
    const binJson = JSON.parse((await cli(["get", "bin", "--endpoints", s.address, "--json"])).stdout);
    assert.equal(binJson.valueBase64, Buffer.from([0, 255, 10]).toString("base64"));
    const missing = await cli(["get", "nope", "--endpoints", s.address]);
    assert.deepEqual([missing.code, missing.stdout, missing.stderr], [EXIT.NOT_FOUND, "", 'raftkv: key "nope" not found\n']);
    const missingJson = await cli(["get", "nope", "--endpoints", s.address, "--json"]);
    assert.equal(missingJson.code, EXIT.NOT_FOUND);
    assert.deepEqual(JSON.parse(missingJson.stdout), { found: false, key: "nope", revision: 8 });
    // --serializable reaches the server.
    await cli(["get", "k", "--serializable", "--endpoints", s.address]);
    assert.equal(s.calls.at(-1)!.request.consistency, 1);
  });

  test("del deletes one key, a range [key, end), or a prefix, and prints the count", async () => {
    const s = await server({
      handlers: {
        delete: () => ({ ok: { header: header("n1", "n1", 4), deleted: 1 } }),
        deleteRange: () => ({ ok: { header: header("n1", "n1", 5), deleted: 3 } }),
      },
    });
    assert.equal((await cli(["del", "a", "--endpoints", s.address])).stdout, "deleted 1\n");
    assert.equal((await cli(["del", "a", "c", "--endpoints", s.address])).stdout, "deleted 3\n");
    assert.deepEqual(JSON.parse((await cli(["delete", "user/", "--prefix", "--endpoints", s.address, "--json"])).stdout), { deleted: 3, revision: 5 });
    const [one, range, prefix] = s.calls.map((c) => c.request);
    assert.equal(Buffer.from(one.key).toString(), "a");
    assert.deepEqual([Buffer.from(range.start).toString(), Buffer.from(range.end).toString(), range.prefix], ["a", "c", undefined]);
    assert.equal(Buffer.from(prefix.prefix).toString(), "user/");
  });

  test("range prints key<TAB>value lines, says on stderr when more keys matched, and shows bytes safely", async () => {
    const s = await server({
      handlers: {
        range: (req) => ({
          ok: {
            header: header("n1", "n1", 30),
            kvs: [kv("a", "1"), kv("b", "two words"), kv(Buffer.from([0xff, 0x01]), "x")].map((x) => (req.keysOnly ? { ...x, value: Buffer.alloc(0) } : x)),
            more: true,
            count: 10,
          },
        }),
      },
    });
    const r = await cli(["range", "a", "z", "--limit", "3", "--endpoints", s.address]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, "a\t1\nb\ttwo words\n0xff01\tx\n");
    assert.equal(r.stderr, "(3 of 10 matching keys shown)\n");
    const keys = await cli(["range", "--prefix", "a", "--keys-only", "--endpoints", s.address]);
    assert.equal(keys.stdout, "a\nb\n0xff01\n");
    const j = JSON.parse((await cli(["range", "--endpoints", s.address, "--json", "--keys-only"])).stdout);
    assert.deepEqual(j.kvs[0], { key: "a", createRevision: 5, modRevision: 5, version: 1 });
    assert.equal(j.kvs[2].keyBase64, Buffer.from([0xff, 0x01]).toString("base64"));
    assert.deepEqual([j.count, j.more, j.revision], [10, true, 30]);
    const [first, second, third] = s.calls.map((c) => c.request);
    assert.deepEqual([Buffer.from(first.start).toString(), Buffer.from(first.end).toString(), first.limit], ["a", "z", 3]);
    assert.equal(Buffer.from(second.prefix).toString(), "a");
    assert.deepEqual([third.start.length, third.end.length, third.prefix], [0, 0, undefined]);
  });

  test("cas exits 0 when it swapped and 5 with the key's state when the comparison failed", async () => {
    const s = await server({
      handlers: {
        compareAndSwap: (req) =>
          req.expectedVersion === 0
            ? { ok: { header: header("n1", "n1", 20), succeeded: true, kv: kv(req.key, req.newValue, 1, 20) } }
            : { ok: { header: header("n1", "n1", 20), succeeded: false, kv: kv(req.key, "current", 4, 19) } },
      },
    });
    const ok = await cli(["cas", "lock", "me", "--expect-version", "0", "--endpoints", s.address]);
    assert.deepEqual([ok.code, ok.stdout], [0, "OK (revision 20, version 1)\n"]);
    const no = await cli(["cas", "lock", "me", "--expect-value", "free", "--endpoints", s.address]);
    assert.equal(no.code, EXIT.CAS_FAILED);
    assert.equal(no.stdout, "");
    assert.equal(no.stderr, 'raftkv: compare failed, nothing written: key "lock" is at version 4 with value "current"\n');
    const noJson = await cli(["cas", "lock", "me", "--expect-value", "free", "--endpoints", s.address, "--json"]);
    assert.equal(noJson.code, EXIT.CAS_FAILED);
    assert.equal(JSON.parse(noJson.stdout).succeeded, false);
    assert.equal(Buffer.from(s.calls[1]!.request.expectedValue).toString(), "free");
    assert.equal(s.calls[1]!.request.expectedVersion, undefined);
  });

  test("server errors map to exit codes: INVALID_ARGUMENT 4, UNAVAILABLE 3, others 6, each one line on stderr", async () => {
    const s = await server({
      handlers: {
        put: () => ({ error: grpcError(GrpcStatus.INVALID_ARGUMENT, "value is 2000000 bytes, over the limit of 1048576 bytes") }),
        delete: () => ({ error: grpcError(GrpcStatus.FAILED_PRECONDITION, "request superseded") }),
        get: () => ({ error: grpcError(GrpcStatus.UNAVAILABLE, "could not confirm leadership (no leader known, term 7)") }),
      },
    });
    const inv = await cli(["put", "k", "v", "--endpoints", s.address]);
    assert.deepEqual([inv.code, inv.stderr], [EXIT.INVALID_ARGUMENT, "raftkv: INVALID_ARGUMENT: value is 2000000 bytes, over the limit of 1048576 bytes\n"]);
    const pre = await cli(["del", "k", "--endpoints", s.address]);
    assert.deepEqual([pre.code, pre.stderr], [EXIT.ERROR, "raftkv: FAILED_PRECONDITION: request superseded\n"]);
    const un = await cli(["get", "k", "--endpoints", s.address, "--timeout", "300"]);
    assert.equal(un.code, EXIT.UNAVAILABLE);
    assert.match(un.stderr, /^raftkv: UNAVAILABLE: could not confirm leadership \(no leader known, term 7\) \(get: \d+ attempts in 300 ms/);
    assert.equal(un.stderr.split("\n").length, 2);
    const unJson = await cli(["get", "k", "--endpoints", s.address, "--timeout", "200", "--json"]);
    assert.equal(JSON.parse(unJson.stdout).error.code, "UNAVAILABLE");
  });

  test("status shows every endpoint as a row and exits 3 when one does not answer", async () => {
    const a = await server({ memberId: "n1", leaderId: "n2", handlers: { status: () => ({ ok: statusOf("n1", "n2", { term: 4, commitIndex: 17, appliedIndex: 16 }) }) } });
    const b = await server({ memberId: "n2", leaderId: "n2", handlers: { status: () => ({ ok: statusOf("n2", "n2", { term: 4, commitIndex: 17, appliedIndex: 17 }) }) } });
    const dead = `127.0.0.1:${await closedPort()}`;
    const all = await cli(["status", "--endpoints", `${a.address},${b.address}`]);
    assert.equal(all.code, 0);
    const lines = all.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^ENDPOINT\s+ID\s+ROLE\s+TERM\s+LEADER\s+COMMIT\s+APPLIED$/);
    assert.match(lines[1]!, new RegExp(`^${a.address}\\s+n1\\s+follower\\s+4\\s+n2\\s+17\\s+16$`));
    assert.match(lines[2]!, new RegExp(`^${b.address}\\s+n2\\s+leader\\s+4\\s+n2\\s+17\\s+17$`));
    const some = await cli(["status", "--endpoints", `${a.address},${dead}`, "--timeout", "300"]);
    assert.equal(some.code, EXIT.UNAVAILABLE);
    assert.match(some.stdout, new RegExp(`${dead}\\s+-\\s+unreachable`));
    assert.match(some.stderr, new RegExp(`^raftkv: ${dead}: UNAVAILABLE: `));
    const j = JSON.parse((await cli(["status", "--endpoints", `${a.address},${dead}`, "--timeout", "300", "--json"])).stdout);
    assert.equal(j[0].memberId, "n1");
    assert.equal(j[1].endpoint, dead);
    assert.equal(j[1].error.code, "UNAVAILABLE");
  });

  test("members, leader transfer and snapshot print what the cluster answers", async () => {
    const s = await server({
      memberId: "n1",
      handlers: {
        memberList: () => ({
          ok: {
            memberId: "n1",
            members: [
              { id: "n1", peerAddress: "127.0.0.1:7001", isVoter: true, isLeader: true, reachable: true, matchIndex: 40 },
              { id: "n2", peerAddress: "127.0.0.1:7002", isVoter: true, isLeader: false, reachable: false, matchIndex: 12 },
            ],
          },
        }),
        transferLeadership: (req) => ({ ok: { leaderId: req.targetId || "n2", term: 6 } }),
        snapshot: () => ({ ok: { index: 40, term: 5, sizeBytes: 2048 } }),
      },
    });
    const m = await cli(["members", "--endpoints", s.address]);
    assert.equal(m.code, 0);
    assert.match(m.stdout, /^ID\s+PEER ADDRESS\s+VOTER\s+LEADER\s+REACHABLE\s+MATCH INDEX\n/);
    assert.match(m.stdout, /n2\s+127\.0\.0\.1:7002\s+yes\s+no\s+no\s+12\n/);
    assert.match(m.stdout, /\(as seen by n1\)\n$/);
    assert.equal((await cli(["leader", "transfer", "n3", "--endpoints", s.address])).stdout, "leader is now n3 (term 6)\n");
    assert.equal(s.calls.at(-1)!.request.targetId, "n3");
    assert.deepEqual(JSON.parse((await cli(["leader", "transfer", "--endpoints", s.address, "--json"])).stdout), { leaderId: "n2", term: 6 });
    const snap = await cli(["snapshot", "--endpoints", s.address]);
    assert.equal(snap.code, 0);
    assert.match(snap.stdout, new RegExp(`${s.address}\\s+40\\s+5\\s+2\\.0 KiB`));
  });
});

describe("raftkv cluster up", () => {
  test("refuses to start, exit 1, when one of its ports is in use, naming the port and the process", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", () => r()));
    const port = (busy.address() as { port: number }).port;
    try {
      const r = await cli(["cluster", "up", "--nodes", "1", "--no-exporters", "--base-client-port", String(port), "--base-peer-port", String(port + 1), "--base-http-port", String(port + 2), "--data-dir", "/nonexistent/never-created"]);
      assert.equal(r.code, 1);
      assert.match(r.stdout, new RegExp(`cannot start: port ${port} \\(n1\\) already in use on 127\\.0\\.0\\.1`));
    } finally {
      busy.close();
    }
  });

  test("refuses overlapping port ranges before checking anything else", async () => {
    const r = await cli(["cluster", "up", "--base-client-port", "9091", "--base-http-port", "9092"]);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /port 9092 would be used by both n1 and n2/);
  });
});
