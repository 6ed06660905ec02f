// The raftkv command end to end: `raftkv cluster up` starts a real 3-node cluster (with its
// exporters) on loopback, the CLI binary talks to it (put/get/del/range/cas/status/members),
// a node that dies is reported while the rest keep serving, and SIGINT (Ctrl-C) stops every
// process the launcher started, exiting 0. Only our own processes are signalled, by PID.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname ?? new URL(".", import.meta.url).pathname, "../..");
const BIN = join(ROOT, "bin/raftkv.mjs");
const MAIN = join(ROOT, "services/cli/main.ts");

// A 127.0.x.250 address and a high random port block, so parallel test files do not collide.
const HOST = `127.0.${1 + Math.floor(Math.random() * 250)}.250`;
const BASE = 20_000 + Math.floor(Math.random() * 300) * 100;
const ENDPOINTS = [0, 1, 2].map((i) => `${HOST}:${BASE + i}`).join(",");
const dir = mkdtempSync(join(tmpdir(), "raftkv-cli-"));

let launcher: ChildProcess | undefined;
let output = "";
const pids: number[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

after(() => {
  // Only if the test failed half-way: nothing of ours may outlive it.
  if (launcher?.pid && launcher.exitCode === null) launcher.kill("SIGKILL");
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

function waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray> {
  return new Promise((resolveWait, reject) => {
    const t0 = Date.now();
    const check = () => {
      const m = re.exec(output);
      if (m) return resolveWait(m);
      if (launcher?.exitCode !== null && launcher?.exitCode !== undefined) return reject(new Error(`cluster up exited (${launcher.exitCode}) before ${re}:\n${output}`));
      if (Date.now() - t0 > ms) return reject(new Error(`no ${re} within ${ms} ms:\n${output}`));
      setTimeout(check, 50);
    };
    check();
  });
}

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the installed-style binary (bin/raftkv.mjs) against the cluster. */
function raftkv(...args: string[]): Promise<CliResult> {
  return new Promise((resolveRun) => {
    const p = spawn(process.execPath, [BIN, ...args, "--endpoints", ENDPOINTS, "--timeout", "10000"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
  });
}

test("cluster up runs a 3-node cluster the CLI can use, reports a dead node, and Ctrl-C stops every process", { timeout: 150_000 }, async () => {
  launcher = spawn(
    process.execPath,
    [
      "--import", "tsx", MAIN, "cluster", "up",
      "--nodes", "3",
      "--data-dir", join(dir, "data"),
      "--host", HOST,
      "--base-client-port", String(BASE),
      "--base-peer-port", String(BASE + 10),
      "--base-http-port", String(BASE + 20),
      "--base-exporter-port", String(BASE + 30),
      "--heartbeat-ms", "50",
      "--election-ms", "500",
      "--grace-ms", "8000",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: undefined } },
  );
  launcher.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  launcher.stderr!.on("data", (d: Buffer) => (output += d.toString()));

  // It says where everything listens, with the PIDs of what it started.
  await waitFor(/n3 .*\(node pid \d+, exporter pid \d+\)/, 30_000);
  for (const m of output.matchAll(/(?:node|exporter) pid (\d+)/g)) pids.push(Number(m[1]));
  assert.equal(pids.length, 6);
  assert.match(output, new RegExp(`n1  client ${HOST.replace(/\./g, "\\.")}:${BASE}  peer ${HOST.replace(/\./g, "\\.")}:${BASE + 10}`));
  assert.match(output, new RegExp(`put greeting hello --endpoints ${ENDPOINTS.replace(/\./g, "\\.")}`));
  await waitFor(/leader elected: n\d \(term \d+\)/, 60_000);
  // Children's pino lines arrive prefixed and shortened, role changes among them.
  assert.match(output, /^n\d +\| \d\d:\d\d:\d\d\.\d{3} INFO {2}.*LEADER/m);
  assert.match(output, /^n\d-exp \| .*raftkv-exporter listening/m);

  // Independent commands run side by side (each is a fresh CLI process).
  let r = await raftkv("put", "greeting", "hello");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^OK \(revision \d+, version 1\)\n$/);
  const [get, missing, empty, lock, ...users] = await Promise.all([
    raftkv("get", "greeting"),
    raftkv("get", "missing"),
    raftkv("put", "", "x"),
    raftkv("cas", "lock", "me", "--expect-version", "0"),
    raftkv("put", "user/1", "ada"),
    raftkv("put", "user/2", "bob"),
    raftkv("put", "user/3", "cy"),
  ]);
  assert.deepEqual([get.code, get.stdout], [0, "hello\n"]);
  assert.deepEqual([missing.code, missing.stderr], [1, 'raftkv: key "missing" not found\n']);
  assert.equal(empty.code, 4);
  assert.match(empty.stderr, /^raftkv: INVALID_ARGUMENT: .*key/);
  assert.equal(lock.code, 0, lock.stderr);
  for (const u of users) assert.equal(u.code, 0, u.stderr);

  const [range, casFailed, status, membersOut] = await Promise.all([
    raftkv("range", "--prefix", "user/", "--json"),
    raftkv("cas", "greeting", "bye", "--expect-value", "nope"),
    raftkv("status"),
    raftkv("members", "--json"),
  ]);
  assert.equal(range.code, 0, range.stderr);
  const listed = JSON.parse(range.stdout);
  assert.deepEqual(listed.kvs.map((kv: { key: string; value: string }) => `${kv.key}=${kv.value}`), ["user/1=ada", "user/2=bob", "user/3=cy"]);
  assert.equal(listed.count, 3);
  assert.equal(casFailed.code, 5);
  assert.match(casFailed.stderr, /compare failed, nothing written: key "greeting" is at version 1 with value "hello"/);
  assert.equal(status.code, 0, status.stderr);
  const rows = status.stdout.trimEnd().split("\n");
  assert.match(rows[0]!, /^ENDPOINT\s+ID\s+ROLE\s+TERM\s+LEADER\s+COMMIT\s+APPLIED$/);
  assert.equal(rows.length, 4);
  assert.equal(rows.filter((l) => /\sleader\s/.test(l)).length, 1);
  assert.equal(membersOut.code, 0, membersOut.stderr);
  const members = JSON.parse(membersOut.stdout).members as Array<{ id: string; isLeader: boolean }>;
  assert.deepEqual(members.map((m) => m.id).sort(), ["n1", "n2", "n3"]);
  assert.equal(members.filter((m) => m.isLeader).length, 1);

  const [cas, del] = await Promise.all([raftkv("cas", "greeting", "bye", "--expect-value", "hello"), raftkv("del", "user/", "--prefix")]);
  assert.equal(cas.code, 0, cas.stderr);
  assert.match(cas.stdout, /^OK \(revision \d+, version 2\)\n$/);
  assert.deepEqual([del.code, del.stdout], [0, "deleted 3\n"]);
  r = await raftkv("get", "greeting", "--json");
  assert.equal(JSON.parse(r.stdout).value, "bye");

  // A follower dies: the launcher says so with the command that restarts it; the rest serve on.
  const leaderId = members.find((m) => m.isLeader)!.id;
  const follower = ["n1", "n2", "n3"].find((id) => id !== leaderId)!;
  const followerPid = Number(new RegExp(`  ${follower}  client .*\\(node pid (\\d+)`).exec(output)![1]);
  process.kill(followerPid, "SIGKILL");
  await waitFor(new RegExp(`${follower} was killed by SIGKILL, unexpectedly; the other processes keep running`), 10_000);
  // The next line may arrive in a later chunk of the launcher's output.
  await waitFor(new RegExp(`to restart it: .*--id ${follower} `), 5000);
  r = await raftkv("put", "after", "kill");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(launcher.exitCode, null);

  // Ctrl-C: every child gets SIGTERM, the launcher exits 0, nothing is left running. The signal
  // comes twice, as from a terminal plus `npm start` forwarding its copy: still one clean stop.
  const exited = new Promise<number | null>((resolveExit) => launcher!.once("exit", (code) => resolveExit(code)));
  launcher.kill("SIGINT");
  launcher.kill("SIGINT");
  const code = await exited;
  assert.equal(code, 0, output);
  assert.match(output, /cluster \| stopping \(SIGINT\): SIGTERM to /);
  assert.match(output, /cluster \| all processes stopped/);
  assert.doesNotMatch(output, /SIGKILL to every process|did not stop within/);
  await new Promise((r2) => setTimeout(r2, 200));
  assert.deepEqual(pids.filter(alive), []);
  for (const id of ["n1", "n2", "n3"]) assert.ok(existsSync(join(dir, "data", id)), `data/${id}`);
});
