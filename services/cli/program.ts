// The `raftkv` command line: commander commands over RaftkvClient, plus `cluster up`.
// run(argv, io) parses, runs one command and returns the exit code; nothing here calls
// process.exit, so tests drive it in-process and main.ts stays a few lines.

import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { endpointProblem, RaftkvClient, RaftkvError, type KeyValue } from "./client.js";
import { CLUSTER_UP_DEFAULTS, clusterUp, detectRuntime, type ClusterUpOptions } from "./cluster-up.js";
import { asText, bytesField, json, kvJson, showBytes, table } from "./format.js";
import { VERSION } from "../common/version.js";

/** Exit codes: stable, documented in `raftkv --help`. */
export const EXIT = {
  OK: 0,
  NOT_FOUND: 1,
  USAGE: 2,
  UNAVAILABLE: 3,
  INVALID_ARGUMENT: 4,
  CAS_FAILED: 5,
  ERROR: 6,
} as const;

export const DEFAULT_ENDPOINTS = "127.0.0.1:9091,127.0.0.1:9092,127.0.0.1:9093";
export const DEFAULT_TIMEOUT_MS = 5000;
/** `status` rows wait less by default: one node down should not stall the table. */
const STATUS_TIMEOUT_MS = 2000;

const EXIT_HELP = `
Exit codes:
  0  success
  1  get: the key does not exist
  2  usage error: bad arguments or options, or a bad RAFTKV_ENDPOINTS
  3  unavailable: no node answered, no leader or quorum, or the deadline passed
     (status/snapshot: some endpoint did not answer)
  4  invalid argument: the server refused the request (e.g. an empty or oversized key)
  5  cas: the comparison failed, nothing was written
  6  any other error (e.g. FAILED_PRECONDITION, INTERNAL)

Environment:
  RAFTKV_ENDPOINTS  default of --endpoints (comma-separated host:port)

Output: people-readable by default; --json prints one JSON document on stdout. Keys and values
that are not valid UTF-8 appear in JSON as keyBase64/valueBase64, in tables as 0x-hex.
Errors are one line on stderr: "raftkv: CODE: message".

Examples:
  raftkv cluster up                      # 3 nodes on 127.0.0.1 (Ctrl-C stops them)
  raftkv put greeting hello
  raftkv get greeting
  raftkv range --prefix user/ --limit 10
  raftkv cas counter 2 --expect-value 1
  raftkv status --endpoints 10.0.0.1:9091,10.0.0.2:9091`;

export interface Io {
  stdout(s: string | Uint8Array): void;
  stderr(s: string): void;
  env: Record<string, string | undefined>;
  /** Colour in `cluster up` output. */
  color?: boolean;
  /** The module URL of the entry point, to start cluster children with the same loader. */
  moduleUrl?: string;
}

/** A problem with the command line found after commander's parsing: exit 2. */
class UsageError extends Error {}

interface Globals {
  endpoints?: string;
  timeout?: number;
  json?: boolean;
}

interface Ctx {
  json: boolean;
  endpoints: string[];
  timeoutMs: number;
  /** Whether --timeout was given (status then waits that long per endpoint). */
  explicitTimeout: boolean;
  client(): RaftkvClient;
  out(s: string | Uint8Array): void;
  err(s: string): void;
}

function intOption(name: string, min: number, max: number) {
  return (raw: string): number => {
    if (!/^\d+$/.test(raw.trim())) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`);
    const n = Number(raw.trim());
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`);
    return n;
  };
}

function endpointsOption(raw: string): string {
  parseEndpoints(raw, "--endpoints");
  return raw;
}

/** A comma list of host:port, trimmed, without empties and duplicates. Throws UsageError. */
export function parseEndpoints(raw: string, source: string): string[] {
  const list = [...new Set(raw.split(",").map((s) => s.trim()).filter((s) => s.length > 0))];
  if (list.length === 0) throw new InvalidArgumentError(`${source} needs at least one host:port`);
  for (const e of list) {
    const p = endpointProblem(e);
    if (p) throw new InvalidArgumentError(`${source}: ${p}`);
  }
  return list;
}

function exitCodeOf(err: RaftkvError): number {
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.DEADLINE_EXCEEDED:
    case GrpcStatus.CANCELLED:
      return EXIT.UNAVAILABLE;
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
      return EXIT.INVALID_ARGUMENT;
    default:
      return EXIT.ERROR;
  }
}

function quoted(b: Uint8Array): string {
  const s = showBytes(b);
  return s.startsWith("0x") && asText(b) === undefined ? s : JSON.stringify(s);
}

function short(b: Uint8Array, max = 60): string {
  const s = quoted(b);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Builds the commander program. `setExit` receives each command's exit code. */
export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const moduleUrl = io.moduleUrl ?? import.meta.url;
  const program = new Command("raftkv");
  program
    .description("Command line of raftkv, a replicated key-value store (Raft). Any node accepts any request.")
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .addOption(new Option("--endpoints <list>", `nodes to talk to, comma-separated host:port [env RAFTKV_ENDPOINTS, default ${DEFAULT_ENDPOINTS}]`).argParser(endpointsOption))
    .addOption(new Option("--timeout <ms>", `overall deadline of a request, retries included (default ${DEFAULT_TIMEOUT_MS})`).argParser(intOption("--timeout", 1, 3_600_000)))
    .option("--json", "print machine-readable JSON")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s),
      writeErr: (s) => io.stderr(s),
      outputError: (s, write) => write(`raftkv: ${s.replace(/^error: /, "")}`),
    })
    .showHelpAfterError("(add --help for usage)")
    .allowExcessArguments(false)
    .addHelpText("after", EXIT_HELP);

  let client: RaftkvClient | undefined;
  const ctxOf = (cmd: Command): Ctx => {
    const g = cmd.optsWithGlobals<Globals>();
    let endpoints: string[];
    if (g.endpoints !== undefined) endpoints = parseEndpoints(g.endpoints, "--endpoints");
    else {
      const env = io.env.RAFTKV_ENDPOINTS;
      try {
        endpoints = parseEndpoints(env !== undefined && env.trim() !== "" ? env : DEFAULT_ENDPOINTS, "RAFTKV_ENDPOINTS");
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    }
    const timeoutMs = g.timeout ?? DEFAULT_TIMEOUT_MS;
    return {
      json: g.json === true,
      endpoints,
      timeoutMs,
      explicitTimeout: g.timeout !== undefined,
      client: () => (client ??= new RaftkvClient({ endpoints, timeoutMs })),
      out: (s) => io.stdout(s),
      err: (s) => io.stderr(s),
    };
  };

  // Every command action: build the context, run, record the exit code, close the client.
  const act =
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (f: (ctx: Ctx, ...args: any[]) => Promise<number>) =>
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      async (...args: any[]): Promise<void> => {
        const cmd = args[args.length - 1] as Command;
        try {
          setExit(await f(ctxOf(cmd), ...args.slice(0, -1)));
        } finally {
          client?.close();
          client = undefined;
        }
      };

  program
    .command("put")
    .description("set a key to a value")
    .argument("<key>", "the key (UTF-8)")
    .argument("<value>", "the value (UTF-8)")
    .option("--prev-kv", "also show the previous value")
    .action(
      act(async (ctx, key: string, value: string, opts: { prevKv?: boolean }) => {
        const r = await ctx.client().put(key, value, { prevKv: opts.prevKv === true });
        const revision = r.kv?.modRevision ?? r.header?.revision ?? 0;
        if (ctx.json) {
          ctx.out(json({ revision, ...(r.kv ? { kv: kvJson(r.kv) } : {}), ...(opts.prevKv ? { prevKv: r.prevKv ? kvJson(r.prevKv) : null } : {}) }));
        } else {
          ctx.out(`OK (revision ${revision}${r.kv ? `, version ${r.kv.version}` : ""})\n`);
          if (opts.prevKv) ctx.out(r.prevKv ? `previous value: ${showBytes(r.prevKv.value)}\n` : "previous value: (none)\n");
        }
        return EXIT.OK;
      }),
    );

  program
    .command("get")
    .description("print a key's value (linearizable unless --serializable)")
    .argument("<key>", "the key (UTF-8)")
    .option("--serializable", "read the answering node's local state, possibly stale, without a round to the leader")
    .addHelpText("after", "\nExit code 1 when the key does not exist. Without --json the value is printed exactly as stored, then a newline.")
    .action(
      act(async (ctx, key: string, opts: { serializable?: boolean }) => {
        const r = await ctx.client().get(key, { serializable: opts.serializable === true });
        if (!r.found || !r.kv) {
          if (ctx.json) ctx.out(json({ found: false, ...bytesField("key", Buffer.from(key)), revision: r.header?.revision ?? 0 }));
          else ctx.err(`raftkv: key ${JSON.stringify(key)} not found\n`);
          return EXIT.NOT_FOUND;
        }
        if (ctx.json) ctx.out(json({ found: true, ...kvJson(r.kv), revision: r.header?.revision ?? 0 }));
        else {
          ctx.out(r.kv.value);
          ctx.out("\n");
        }
        return EXIT.OK;
      }),
    );

  program
    .command("del")
    .alias("delete")
    .description("delete a key; with [end], every key in [key, end); with --prefix, every key starting with <key>")
    .argument("<key>", "the key, or the first key of the range, or the prefix")
    .argument("[end]", "delete the range [key, end)")
    .option("--prefix", "delete every key that starts with <key>")
    .action(
      act(async (ctx, key: string, end: string | undefined, opts: { prefix?: boolean }) => {
        if (opts.prefix && end !== undefined) throw new UsageError("del: give either [end] or --prefix, not both");
        let deleted: number;
        let revision: number;
        if (opts.prefix || end !== undefined) {
          const r = await ctx.client().deleteRange(opts.prefix ? { prefix: key } : { start: key, end: end! });
          deleted = r.deleted;
          revision = r.header?.revision ?? 0;
        } else {
          const r = await ctx.client().delete(key);
          deleted = r.deleted;
          revision = r.header?.revision ?? 0;
        }
        if (ctx.json) ctx.out(json({ deleted, revision }));
        else ctx.out(`deleted ${deleted}\n`);
        return EXIT.OK;
      }),
    );

  program
    .command("range")
    .description("list keys in [start, end) (all keys without arguments), or with --prefix; one `key<TAB>value` line each")
    .argument("[start]", "first key (inclusive)")
    .argument("[end]", "end key (exclusive); none: to the last key")
    .option("--prefix <prefix>", "every key that starts with <prefix> (instead of start/end)")
    .addOption(new Option("--limit <n>", "at most n keys (0: no limit)").argParser(intOption("--limit", 0, Number.MAX_SAFE_INTEGER)))
    .option("--keys-only", "print keys without values")
    .option("--serializable", "read the answering node's local state, possibly stale")
    .action(
      act(async (ctx, start: string | undefined, end: string | undefined, opts: { prefix?: string; limit?: number; keysOnly?: boolean; serializable?: boolean }) => {
        if (opts.prefix !== undefined && (start !== undefined || end !== undefined)) throw new UsageError("range: give either [start] [end] or --prefix, not both");
        const r = await ctx.client().range({
          ...(opts.prefix !== undefined ? { prefix: opts.prefix } : { start: start ?? "", end: end ?? "" }),
          limit: opts.limit ?? 0,
          keysOnly: opts.keysOnly === true,
          serializable: opts.serializable === true,
        });
        if (ctx.json) {
          ctx.out(json({ kvs: r.kvs.map((kv: KeyValue) => kvJson(kv, !opts.keysOnly)), count: r.count, more: r.more, revision: r.header?.revision ?? 0 }));
        } else {
          const lines = r.kvs.map((kv: KeyValue) => (opts.keysOnly ? showBytes(kv.key) : `${showBytes(kv.key)}\t${showBytes(kv.value)}`));
          if (lines.length > 0) ctx.out(lines.join("\n") + "\n");
          if (r.more) ctx.err(`(${r.kvs.length} of ${r.count} matching keys shown)\n`);
        }
        return EXIT.OK;
      }),
    );

  program
    .command("cas")
    .description("compare-and-swap: set <key> to <new-value> only if its value or version is as expected")
    .argument("<key>", "the key")
    .argument("<new-value>", "the value to write")
    .addOption(new Option("--expect-value <value>", "write only if the current value is exactly this").conflicts("expectVersion"))
    .addOption(new Option("--expect-version <n>", "write only if the key's version is n (0: the key must not exist)").argParser(intOption("--expect-version", 0, Number.MAX_SAFE_INTEGER)))
    .addHelpText("after", "\nExactly one of --expect-value and --expect-version. Exit code 5 when the comparison fails (nothing is written).")
    .action(
      act(async (ctx, key: string, newValue: string, opts: { expectValue?: string; expectVersion?: number }) => {
        if (opts.expectValue === undefined && opts.expectVersion === undefined) throw new UsageError("cas: give --expect-value <value> or --expect-version <n>");
        const expect = opts.expectValue !== undefined ? { expectedValue: opts.expectValue } : { expectedVersion: opts.expectVersion! };
        const r = await ctx.client().compareAndSwap(key, expect, newValue);
        if (ctx.json) {
          ctx.out(json({ succeeded: r.succeeded, kv: r.kv ? kvJson(r.kv) : null, revision: r.header?.revision ?? 0 }));
        } else if (r.succeeded) {
          ctx.out(`OK (revision ${r.kv?.modRevision ?? r.header?.revision ?? 0}${r.kv ? `, version ${r.kv.version}` : ""})\n`);
        } else {
          const now = r.kv ? `is at version ${r.kv.version} with value ${short(r.kv.value)}` : "does not exist";
          ctx.err(`raftkv: compare failed, nothing written: key ${JSON.stringify(key)} ${now}\n`);
        }
        return r.succeeded ? EXIT.OK : EXIT.CAS_FAILED;
      }),
    );

  program
    .command("status")
    .description("every endpoint's status: id, role, term, leader, commit and applied index")
    .addHelpText("after", `\nEach endpoint is asked once, for up to ${STATUS_TIMEOUT_MS} ms unless --timeout is given. Exit code 3 when any endpoint did not answer.`)
    .action(
      act(async (ctx) => {
        const timeoutMs = ctx.explicitTimeout ? ctx.timeoutMs : Math.min(ctx.timeoutMs, STATUS_TIMEOUT_MS);
        const c = ctx.client();
        const answers = await Promise.allSettled(ctx.endpoints.map((e) => c.status(e, { timeoutMs })));
        const failed = answers.filter((a) => a.status === "rejected").length;
        if (ctx.json) {
          ctx.out(
            json(
              answers.map((a, i) =>
                a.status === "fulfilled" ? { endpoint: ctx.endpoints[i], ...a.value } : { endpoint: ctx.endpoints[i], error: errorJson(a.reason) },
              ),
            ),
          );
        } else {
          ctx.out(
            table(
              ["endpoint", "id", "role", "term", "leader", "commit", "applied"],
              answers.map((a, i) =>
                a.status === "fulfilled"
                  ? [ctx.endpoints[i]!, a.value.memberId, a.value.role, a.value.term, a.value.leaderId || "-", a.value.commitIndex, a.value.appliedIndex]
                  : [ctx.endpoints[i]!, "-", "unreachable", "-", "-", "-", "-"],
              ),
            ),
          );
          answers.forEach((a, i) => {
            if (a.status === "rejected") ctx.err(`raftkv: ${ctx.endpoints[i]}: ${errorText(a.reason)}\n`);
          });
        }
        return failed > 0 ? EXIT.UNAVAILABLE : EXIT.OK;
      }),
    );

  program
    .command("members")
    .description("the cluster's members as the leader (or else any node) sees them")
    .action(
      act(async (ctx) => {
        const r = await ctx.client().memberList();
        if (ctx.json) ctx.out(json(r));
        else {
          ctx.out(
            table(
              ["id", "peer address", "voter", "leader", "reachable", "match index"],
              r.members.map((m) => [m.id, m.peerAddress, m.isVoter ? "yes" : "no", m.isLeader ? "yes" : "no", m.reachable ? "yes" : "no", m.matchIndex]),
            ),
          );
          ctx.out(`(as seen by ${r.memberId})\n`);
        }
        return EXIT.OK;
      }),
    );

  const leader = program.command("leader").description("leadership operations");
  leader
    .command("transfer")
    .description("move leadership to [target-id] (default: the most caught-up follower) and wait until it has moved")
    .argument("[target-id]", "the member to lead, e.g. n2")
    .action(
      act(async (ctx, target: string | undefined) => {
        const r = await ctx.client().transferLeadership(target);
        if (ctx.json) ctx.out(json(r));
        else ctx.out(`leader is now ${r.leaderId} (term ${r.term})\n`);
        return EXIT.OK;
      }),
    );

  program
    .command("snapshot")
    .description("make every endpoint's node snapshot its state machine now (compacting its log)")
    .addHelpText("after", "\nExit code 3 when any endpoint did not answer. Use --endpoints to pick nodes.")
    .action(
      act(async (ctx) => {
        const c = ctx.client();
        const answers = await Promise.allSettled(ctx.endpoints.map((e) => c.snapshot(e)));
        const failed = answers.filter((a) => a.status === "rejected").length;
        if (ctx.json) {
          ctx.out(json(answers.map((a, i) => (a.status === "fulfilled" ? { endpoint: ctx.endpoints[i], ...a.value } : { endpoint: ctx.endpoints[i], error: errorJson(a.reason) }))));
        } else {
          ctx.out(
            table(
              ["endpoint", "index", "term", "size"],
              answers.map((a, i) => (a.status === "fulfilled" ? [ctx.endpoints[i]!, a.value.index, a.value.term, bytesText(a.value.sizeBytes)] : [ctx.endpoints[i]!, "-", "-", "failed"])),
            ),
          );
          answers.forEach((a, i) => {
            if (a.status === "rejected") ctx.err(`raftkv: ${ctx.endpoints[i]}: ${errorText(a.reason)}\n`);
          });
        }
        return failed > 0 ? EXIT.UNAVAILABLE : EXIT.OK;
      }),
    );

  const cluster = program.command("cluster").description("a local cluster for development");
  const D = CLUSTER_UP_DEFAULTS;
  cluster
    .command("up")
    .description(
      "start a cluster on this machine: nodes n1..nN (client ports from 9091, peer ports from 7001, HTTP /status from 8081) " +
        "with data under <data-dir>/<id>, and one metrics exporter per node (ports from 9101). Ctrl-C stops them all.",
    )
    .addOption(new Option("--nodes <n>", "number of nodes (3 or 5 for a real quorum)").argParser(intOption("--nodes", 1, 9)).default(D.nodes))
    .option("--data-dir <dir>", "data directory; each node uses <dir>/<id>", D.dataDir)
    .option("--no-exporters", "do not start the metrics exporters")
    .option("--host <address>", "address every process binds and is reached at", D.host)
    .addOption(new Option("--base-client-port <port>", "client (gRPC) port of n1; n2 the next, ...").argParser(intOption("--base-client-port", 1, 65535)).default(D.baseClientPort))
    .addOption(new Option("--base-peer-port <port>", "peer (Raft) port of n1").argParser(intOption("--base-peer-port", 1, 65535)).default(D.basePeerPort))
    .addOption(new Option("--base-http-port <port>", "HTTP /status port of n1").argParser(intOption("--base-http-port", 1, 65535)).default(D.baseHttpPort))
    .addOption(new Option("--base-exporter-port <port>", "metrics port of n1's exporter").argParser(intOption("--base-exporter-port", 1, 65535)).default(D.baseExporterPort))
    .addOption(new Option("--heartbeat-ms <ms>", "nodes' heartbeat interval (node default 100)").argParser(intOption("--heartbeat-ms", 1, 60_000)))
    .addOption(new Option("--election-ms <ms>", "nodes' election timeout (node default 1000)").argParser(intOption("--election-ms", 2, 600_000)))
    .addOption(new Option("--log-level <level>", "log level of every process").choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default(D.logLevel))
    .option("--raw-logs", "print the processes' JSON log lines as they are")
    .addOption(new Option("--grace-ms <ms>", "on Ctrl-C, how long processes get after SIGTERM before SIGKILL").argParser(intOption("--grace-ms", 0, 600_000)).default(D.graceMs))
    .addHelpText("after", "\nExit code 0 after Ctrl-C (SIGINT) or SIGTERM stopped everything; 1 when it cannot start (a port in use) or every node died.")
    .action(async (opts: Record<string, unknown>, cmd: Command) => {
      const g = cmd.optsWithGlobals<Globals>();
      if (g.endpoints !== undefined) throw new UsageError("cluster up: --endpoints does not apply (the cluster's ports come from --base-*-port)");
      const o: ClusterUpOptions = {
        ...D,
        nodes: opts.nodes as number,
        dataDir: opts.dataDir as string,
        exporters: opts.exporters !== false,
        host: opts.host as string,
        baseClientPort: opts.baseClientPort as number,
        basePeerPort: opts.basePeerPort as number,
        baseHttpPort: opts.baseHttpPort as number,
        baseExporterPort: opts.baseExporterPort as number,
        heartbeatMs: opts.heartbeatMs as number | undefined,
        electionMs: opts.electionMs as number | undefined,
        logLevel: opts.logLevel as string,
        rawLogs: opts.rawLogs === true,
        graceMs: opts.graceMs as number,
      };
      const runtime = detectRuntime(moduleUrl, (s) => import.meta.resolve(s));
      const cliName = runtime.kind === "ts" ? "npm run raftkv --" : "raftkv";
      setExit(await clusterUp(o, runtime, { out: (line) => io.stdout(line + "\n"), color: io.color === true, cliName }));
    });

  return program;
}

function errorText(e: unknown): string {
  return e instanceof RaftkvError ? e.message : e instanceof Error ? e.message : String(e);
}

function errorJson(e: unknown): { code: string; message: string } {
  return e instanceof RaftkvError ? { code: e.codeName, message: e.details } : { code: "UNKNOWN", message: errorText(e) };
}

function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Parses and runs one command line (without `node` and the script); returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    if (e instanceof UsageError) {
      io.stderr(`raftkv: ${e.message}\n(add --help for usage)\n`);
      return EXIT.USAGE;
    }
    if (e instanceof InvalidArgumentError) {
      io.stderr(`raftkv: ${e.message}\n`);
      return EXIT.USAGE;
    }
    if (e instanceof RaftkvError) {
      const json = program.opts<Globals>().json === true;
      if (json) io.stdout(`${JSON.stringify({ error: { code: e.codeName, message: e.details } }, null, 2)}\n`);
      io.stderr(`raftkv: ${e.message}\n`);
      return exitCodeOf(e);
    }
    io.stderr(`raftkv: unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT.ERROR;
  }
}
