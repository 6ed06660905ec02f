// Errors that stop start-up. Each names the file and byte offset so an operator can look, and
// says what to do next: the node refuses to run on a log it cannot trust.

export class CorruptWalError extends Error {
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(
      `WAL corrupt in ${file} at byte offset ${offset}: ${reason}. ` +
        `The node will not start on a damaged log. Inspect the file, restore this member from a peer, ` +
        `or open the storage in repair mode (repair: true) to truncate the log here and discard everything after it.`,
    );
    this.name = "CorruptWalError";
  }
}

/** The WAL and the snapshots on disk do not fit together (missing entries, missing snapshot). */
export class InconsistentStorageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InconsistentStorageError";
  }
}

export class CorruptSnapshotError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`snapshot ${file} is corrupt: ${reason}`);
    this.name = "CorruptSnapshotError";
  }
}

/** A write or fdatasync failed: what reached the disk is unknown, so the storage stops (fail-stop). */
export class StorageFailedError extends Error {
  constructor(cause: unknown) {
    super(`storage failed and accepts no more writes: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = "StorageFailedError";
  }
}
