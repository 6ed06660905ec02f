// ReadIndex (thesis §6.4): a linearizable read without writing to the log. The leader records
// its commit index as the read index, confirms it is still the leader by a round of heartbeats
// acknowledged by a majority, and the read is served once the state machine has applied up to
// the read index.

import { type Message, type NodeId } from "./types.js";

export interface ReadIndexStatus {
  req: Message;
  index: number;
  acks: Map<NodeId, boolean>;
}

function key(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString("latin1");
}

export class ReadOnly {
  private pending = new Map<string, ReadIndexStatus>();
  private queue: string[] = [];

  /** Records a read request with the commit index at the time it arrived. */
  addRequest(index: number, m: Message): void {
    const k = key(m.context);
    if (this.pending.has(k)) return;
    this.pending.set(k, { req: m, index, acks: new Map() });
    this.queue.push(k);
  }

  /** A heartbeat response carrying ctx arrived from id; returns the acks for that request. */
  recvAck(id: NodeId, ctx: Uint8Array): Map<NodeId, boolean> {
    const rs = this.pending.get(key(ctx));
    if (!rs) return new Map();
    rs.acks.set(id, true);
    return rs.acks;
  }

  /**
   * The request with ctx was confirmed by a quorum. It and every request queued before it are
   * now safe (a later heartbeat round confirms leadership for earlier reads too).
   */
  advance(ctx: Uint8Array): ReadIndexStatus[] {
    const k = key(ctx);
    const i = this.queue.indexOf(k);
    if (i < 0) return [];
    const done = this.queue.slice(0, i + 1);
    this.queue = this.queue.slice(i + 1);
    const out: ReadIndexStatus[] = [];
    for (const d of done) {
      const rs = this.pending.get(d);
      if (rs) out.push(rs);
      this.pending.delete(d);
    }
    return out;
  }

  /** Context of the newest pending request: heartbeats carry it so their acks confirm it. */
  lastPendingRequestCtx(): Uint8Array | undefined {
    if (this.queue.length === 0) return undefined;
    return this.pending.get(this.queue[this.queue.length - 1])!.req.context;
  }
}
