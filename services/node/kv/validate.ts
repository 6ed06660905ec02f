// Request validation. Two layers, on purpose:
//  - Before proposing, the server calls validateCommand / validateRange / validateKey with the
//    node's configured Limits; a bad request never reaches the log and the client gets
//    INVALID_ARGUMENT with the reason (InvalidArgumentError.message).
//  - At apply time the store re-checks only what does not depend on configuration (structure:
//    a key is there, a range is not reversed, ...). Limits are config, and two nodes with
//    different limits must still apply the same log to the same state, so a size limit is
//    never enforced on a committed entry.

import type { Command, RequestId } from "../../common/gen/raftkv/v1/kv.js";

export interface Limits {
  /** Largest key (and range bound, prefix) accepted, in bytes. */
  maxKeyBytes: number;
  /** Largest value accepted, in bytes. */
  maxValueBytes: number;
  /** A range answer stops adding pairs past this many key+value bytes (it sets `more`). */
  maxResponseBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxKeyBytes: 4096,
  maxValueBytes: 1024 * 1024,
  // Below gRPC's default 4 MiB receive limit, leaving room for framing and revisions.
  maxResponseBytes: 3 * 1024 * 1024,
});

/** Longest client id in a RequestId, in UTF-8 bytes (a constant, not config: checked at apply). */
export const MAX_CLIENT_ID_BYTES = 256;

/** A bad request. The gRPC layer answers INVALID_ARGUMENT with `message`. */
export class InvalidArgumentError extends Error {
  readonly code = "INVALID_ARGUMENT" as const;
  constructor(message: string) {
    super(message);
    this.name = "InvalidArgumentError";
  }
}

/** Fills in defaults and checks a Partial<Limits> (e.g. from config). */
export function resolveLimits(partial: Partial<Limits> = {}): Limits {
  const out: Limits = { ...DEFAULT_LIMITS };
  for (const name of Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>) {
    const v = partial[name];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`limit ${name} must be a positive integer, got ${String(v)}`);
    out[name] = v;
  }
  return out;
}

function tooBig(what: string, len: number, max: number): string {
  return `${what} is ${len} bytes, over the limit of ${max} bytes`;
}

/** Problems with a key that must name one key. limits null: structural checks only. */
function keyProblem(what: string, key: Uint8Array | undefined, limits: Limits | null): string | undefined {
  if (key === undefined || key.length === 0) return `${what} must not be empty`;
  if (limits !== null && key.length > limits.maxKeyBytes) return tooBig(what, key.length, limits.maxKeyBytes);
  return undefined;
}

function valueProblem(what: string, value: Uint8Array | undefined, limits: Limits | null): string | undefined {
  if (limits !== null && value !== undefined && value.length > limits.maxValueBytes) return tooBig(what, value.length, limits.maxValueBytes);
  return undefined;
}

/** Problems with a range given as [start, end) or a prefix (RangeRequest and DeleteRangeRequest). */
export function rangeProblem(
  r: { start?: Uint8Array; end?: Uint8Array; prefix?: Uint8Array | undefined },
  limits: Limits | null,
): string | undefined {
  const start = r.start ?? EMPTY;
  const end = r.end ?? EMPTY;
  if (r.prefix !== undefined) {
    if (start.length > 0 || end.length > 0) return "set either prefix or start/end, not both";
    if (limits !== null && r.prefix.length > limits.maxKeyBytes) return tooBig("prefix", r.prefix.length, limits.maxKeyBytes);
    return undefined;
  }
  if (limits !== null && start.length > limits.maxKeyBytes) return tooBig("range start", start.length, limits.maxKeyBytes);
  if (limits !== null && end.length > limits.maxKeyBytes) return tooBig("range end", end.length, limits.maxKeyBytes);
  if (end.length > 0 && Buffer.compare(start, end) > 0) return "range start is after range end";
  return undefined;
}

const EMPTY = new Uint8Array(0);

export function requestIdProblem(rid: RequestId): string | undefined {
  if (rid.clientId.length === 0) return "request_id.client_id must not be empty";
  const bytes = Buffer.byteLength(rid.clientId, "utf8");
  if (bytes > MAX_CLIENT_ID_BYTES) return tooBig("request_id.client_id", bytes, MAX_CLIENT_ID_BYTES);
  if (!Number.isSafeInteger(rid.seq) || rid.seq < 1) return `request_id.seq must be a positive integer (a client's first request is seq 1), got ${rid.seq}`;
  return undefined;
}

/**
 * The RequestId that identifies a command: Command.request_id, or the op's own request_id.
 * Returns a problem string if both are set and differ.
 */
export function effectiveRequestId(cmd: Command): { requestId?: RequestId; problem?: string } {
  const outer = cmd.requestId;
  const inner = cmd.op?.value.requestId;
  if (outer !== undefined && inner !== undefined && (outer.clientId !== inner.clientId || outer.seq !== inner.seq)) {
    return { requestId: outer, problem: "request_id is set in both the command and its operation, with different values" };
  }
  return { requestId: outer ?? inner };
}

/**
 * Every problem of a command, or undefined when it is fine. limits null: only the checks that
 * do not depend on configuration (what apply enforces).
 */
export function commandProblem(cmd: Command, limits: Limits | null): string | undefined {
  const { requestId, problem } = effectiveRequestId(cmd);
  if (problem !== undefined) return problem;
  if (requestId !== undefined) {
    const p = requestIdProblem(requestId);
    if (p !== undefined) return p;
  }
  const op = cmd.op;
  if (op === undefined) return "command has no operation (put, delete, delete_range or cas)";
  switch (op.$case) {
    case "put":
      return keyProblem("key", op.value.key, limits) ?? valueProblem("value", op.value.value, limits);
    case "delete":
      return keyProblem("key", op.value.key, limits);
    case "deleteRange":
      return rangeProblem(op.value, limits);
    case "cas": {
      const c = op.value;
      const p = keyProblem("key", c.key, limits);
      if (p !== undefined) return p;
      if ((c.expectedValue === undefined) === (c.expectedVersion === undefined)) {
        return "compare-and-swap needs exactly one of expected_value and expected_version";
      }
      if (c.expectedVersion !== undefined && (!Number.isSafeInteger(c.expectedVersion) || c.expectedVersion < 0)) {
        return `expected_version must be a non-negative integer, got ${c.expectedVersion}`;
      }
      return valueProblem("expected_value", c.expectedValue, limits) ?? valueProblem("new_value", c.newValue, limits);
    }
    default:
      return `unknown operation ${(op as { $case: string }).$case}`;
  }
}

/** Throws InvalidArgumentError if the command must not be proposed. The server calls this first. */
export function validateCommand(cmd: Command, limits: Limits = DEFAULT_LIMITS): void {
  const p = commandProblem(cmd, limits);
  if (p !== undefined) throw new InvalidArgumentError(p);
}

/** Throws InvalidArgumentError for a bad Get key. */
export function validateKey(key: Uint8Array, limits: Limits = DEFAULT_LIMITS): void {
  const p = keyProblem("key", key, limits);
  if (p !== undefined) throw new InvalidArgumentError(p);
}

/** What a range read needs: RangeRequest's fields, all optional (a RangeRequest is one). */
export interface RangeQuery {
  start?: Uint8Array;
  /** Empty or absent: to the end of the key space. */
  end?: Uint8Array;
  /** When set (even empty), every key with this prefix; start and end must then be empty. */
  prefix?: Uint8Array | undefined;
  /** 0 or absent: no limit (maxResponseBytes still caps the answer). */
  limit?: number;
  keysOnly?: boolean;
}

/** Throws InvalidArgumentError for a bad range read. */
export function validateRange(req: RangeQuery, limits: Limits = DEFAULT_LIMITS): void {
  const p = rangeProblem(req, limits);
  if (p !== undefined) throw new InvalidArgumentError(p);
  const limit = req.limit ?? 0;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new InvalidArgumentError(`limit must be a non-negative integer, got ${limit}`);
}
