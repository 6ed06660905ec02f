// What applying a committed entry produces, and the compact encoding a client session keeps of
// it so a retried request is answered with the first result (Raft thesis §6.3).

import {
  CompareAndSwapResponse,
  DeleteRangeResponse,
  DeleteResponse,
  PutResponse,
  type RequestId,
} from "../../common/gen/raftkv/v1/kv.js";

/**
 * A write that was refused. INVALID_ARGUMENT: the command itself is bad (garbage entry data, an
 * empty key, ...). FAILED_PRECONDITION: the client session cannot answer it (request superseded,
 * session expired). The gRPC layer maps `code` to the status code of the same name.
 */
export interface ApplyError {
  code: "INVALID_ARGUMENT" | "FAILED_PRECONDITION";
  message: string;
}

/** The outcome of one operation. Responses carry no header: the server fills it in. */
export type OpResult =
  | { type: "put"; response: PutResponse }
  | { type: "delete"; response: DeleteResponse }
  | { type: "deleteRange"; response: DeleteRangeResponse }
  | { type: "cas"; response: CompareAndSwapResponse }
  | { type: "error"; error: ApplyError };

/**
 * What KvStore.apply returns for the entry at `index`.
 *  - put/delete/deleteRange/cas/error: a command's outcome. `requestId` (when the command had
 *    one) lets the node wake the client waiting for it; `duplicate` is true when this entry was
 *    a retry answered from the session table without being applied again.
 *  - noop: an empty entry (a new leader's no-op) or anything the node applies with applyNoop
 *    (conf changes): appliedIndex advanced, nothing else changed.
 *  - skipped: index <= appliedIndex, already reflected in the state (e.g. replay after a
 *    snapshot restore); nothing changed.
 */
export type ApplyResult =
  | (OpResult & { index: number; requestId: RequestId | undefined; duplicate: boolean })
  | { type: "noop"; index: number }
  | { type: "skipped"; index: number };

enum Tag {
  Put = 1,
  Delete = 2,
  DeleteRange = 3,
  Cas = 4,
  InvalidArgument = 16,
  FailedPrecondition = 17,
}

/** Encodes an operation's result for the session table: [tag u8][protobuf or UTF-8 message]. */
export function encodeOpResult(r: OpResult): Uint8Array {
  let tag: Tag;
  let body: Uint8Array;
  switch (r.type) {
    case "put":
      tag = Tag.Put;
      body = PutResponse.encode(r.response).finish();
      break;
    case "delete":
      tag = Tag.Delete;
      body = DeleteResponse.encode(r.response).finish();
      break;
    case "deleteRange":
      tag = Tag.DeleteRange;
      body = DeleteRangeResponse.encode(r.response).finish();
      break;
    case "cas":
      tag = Tag.Cas;
      body = CompareAndSwapResponse.encode(r.response).finish();
      break;
    case "error":
      tag = r.error.code === "INVALID_ARGUMENT" ? Tag.InvalidArgument : Tag.FailedPrecondition;
      body = Buffer.from(r.error.message, "utf8");
      break;
  }
  const out = new Uint8Array(1 + body.length);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

/** Inverse of encodeOpResult. Throws a plain Error on bytes it did not produce. */
export function decodeOpResult(bytes: Uint8Array): OpResult {
  if (bytes.length === 0) throw new Error("empty session result");
  const body = bytes.subarray(1);
  switch (bytes[0]) {
    case Tag.Put:
      return { type: "put", response: PutResponse.decode(body) };
    case Tag.Delete:
      return { type: "delete", response: DeleteResponse.decode(body) };
    case Tag.DeleteRange:
      return { type: "deleteRange", response: DeleteRangeResponse.decode(body) };
    case Tag.Cas:
      return { type: "cas", response: CompareAndSwapResponse.decode(body) };
    case Tag.InvalidArgument:
      return { type: "error", error: { code: "INVALID_ARGUMENT", message: utf8(body) } };
    case Tag.FailedPrecondition:
      return { type: "error", error: { code: "FAILED_PRECONDITION", message: utf8(body) } };
    default:
      throw new Error(`unknown session result tag ${bytes[0]}`);
  }
}

function utf8(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8");
}
