// The leader's view of each follower (Figure 2, "Volatile state on leaders": nextIndex and
// matchIndex), plus flow control: a follower is probed until its log matches, then entries are
// pipelined to it with a bounded window of messages in flight (etcd-io/raft's Progress).

export enum ProgressState {
  /** Sending one append per heartbeat interval until nextIndex is found (§5.3). */
  Probe = "probe",
  /** Log matches: entries are streamed optimistically, up to the in-flight window. */
  Replicate = "replicate",
  /** The follower needs a snapshot; appends pause until it is installed. */
  Snapshot = "snapshot",
}

/** A ring of the last index of each MsgApp in flight, to bound the pipeline. */
export class Inflights {
  private buffer: Array<{ index: number; bytes: number }> = [];
  private bytes = 0;
  constructor(
    readonly maxMessages: number,
    readonly maxBytes: number,
  ) {}

  add(index: number, bytes: number): void {
    this.buffer.push({ index, bytes });
    this.bytes += bytes;
  }

  /** Frees the messages up to and including index (acknowledged). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.buffer.length && this.buffer[n].index <= index) {
      this.bytes -= this.buffer[n].bytes;
      n++;
    }
    if (n > 0) this.buffer = this.buffer.slice(n);
  }

  /** Frees the oldest message in flight (it was probably lost). */
  freeFirstOne(): void {
    const first = this.buffer.shift();
    if (first) this.bytes -= first.bytes;
  }

  full(): boolean {
    return this.buffer.length >= this.maxMessages || (this.maxBytes > 0 && this.bytes >= this.maxBytes);
  }

  count(): number {
    return this.buffer.length;
  }

  reset(): void {
    this.buffer = [];
    this.bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = ProgressState.Probe;
  /** In Snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from since the last CheckQuorum round (thesis §9.6). */
  recentActive = false;
  /** In Probe state: an append is outstanding, wait for its answer or the next heartbeat. */
  msgAppFlowPaused = false;
  /**
   * The last index of entries this follower forwarded to us (its clients' proposals): it
   * answers them once it has applied them, so it is told of commits at once while this is
   * ahead of what it was last told. 0 when it waits for nothing.
   */
  commitWanted = 0;
  readonly inflights: Inflights;
  isLearner: boolean;

  constructor(next: number, maxInflight: number, maxInflightBytes: number, isLearner = false) {
    this.next = next;
    this.inflights = new Inflights(maxInflight, maxInflightBytes);
    this.isLearner = isLearner;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    // After a snapshot, probe from just past it (or past match, whichever is later).
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot;
      this.resetState(ProgressState.Probe);
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState(ProgressState.Probe);
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate);
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot);
    this.pendingSnapshot = snapshotIndex;
  }

  /** An append of `entries` entries starting at nextIndex was sent. */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === ProgressState.Replicate) {
      if (entries > 0) {
        const last = this.next + entries - 1;
        this.next = last + 1;
        this.inflights.add(last, bytes);
      }
    } else if (this.state === ProgressState.Probe) {
      // Any append in Probe is a probe: one at a time.
      this.msgAppFlowPaused = true;
    } else {
      throw new Error(`sending append in unhandled state ${this.state}`);
    }
  }

  /** An acknowledgement of index n arrived. Returns false if it is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.msgAppFlowPaused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append at `rejected`; `matchHint` is the follower's (or the leader's, via
   * the conflict term) guess of the last matching index. Returns false if the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      // Out of order rejections of appends sent before the follower matched are stale.
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    // In Probe, only the answer to the latest probe (at next - 1) counts.
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.msgAppFlowPaused;
      case ProgressState.Replicate:
        return this.inflights.full();
      case ProgressState.Snapshot:
        return true;
    }
  }
}
