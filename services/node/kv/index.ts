// The state machine's public surface, for the node (server/, main.ts) and tests.
export { KvStore, ApplyGapError, DEFAULT_SNAPSHOT_CHUNK_BYTES, type KvStoreOptions, type KeyRecord, type RangeResult } from "./store.js";
export { type ApplyResult, type ApplyError, type OpResult } from "./results.js";
export {
  DEFAULT_LIMITS,
  InvalidArgumentError,
  resolveLimits,
  validateCommand,
  validateKey,
  validateRange,
  type Limits,
  type RangeQuery,
} from "./validate.js";
export { DEFAULT_MAX_SESSIONS, DEFAULT_MAX_SESSION_BYTES } from "./sessions.js";
export { SnapshotFormatError, SNAPSHOT_FORMAT_VERSION } from "./snapshot.js";
