// A tiny synchronous network of cores for unit tests (in the spirit of etcd-io/raft's
// newNetwork): each node has a MemoryStorage; a driver loop persists each Ready, then delivers
// its messages, until the network is quiet. Links can be cut and message types dropped.

import { Prng } from "./prng.js";
import { RawNode } from "./rawnode.js";
import { MemoryStorage } from "./storage.js";
import { type Entry, type Message, MessageType, type NodeId, type ReadState } from "./types.js";
import { type RaftConfig } from "./raft.js";

export interface TestNode {
  node: RawNode;
  storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
}

export function newTestNode(
  id: NodeId,
  voters: NodeId[],
  opts: Partial<RaftConfig> & { storage?: MemoryStorage; seed?: number } = {},
): TestNode {
  const storage = opts.storage ?? new MemoryStorage(voters);
  const prng = new Prng(opts.seed ?? hash(id));
  const node = new RawNode({
    id,
    electionTick: 10,
    heartbeatTick: 1,
    rand: () => prng.next(),
    preVote: false,
    checkQuorum: false,
    ...opts,
    storage,
  });
  return { node, storage, applied: [], readStates: [] };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** Handles one Ready the way a real driver does: persist, then collect messages, then apply. */
export function drainReady(t: TestNode): Message[] {
  const out: Message[] = [];
  while (t.node.hasReady()) {
    const rd = t.node.ready();
    if (rd.snapshot) t.storage.applySnapshot(rd.snapshot);
    t.storage.append(rd.entries);
    if (rd.hardState) t.storage.setHardState(rd.hardState);
    out.push(...rd.messages);
    t.applied.push(...rd.committedEntries);
    t.readStates.push(...rd.readStates);
    t.node.advance(rd);
  }
  return out;
}

export class Network {
  readonly nodes = new Map<NodeId, TestNode>();
  private cut = new Set<string>();
  private dropTypes = new Set<MessageType>();
  /** Messages for which this returns true are dropped. */
  dropIf: ((m: Message) => boolean) | undefined;
  /** Every message that was delivered, in order (for assertions). */
  delivered: Message[] = [];

  constructor(nodes: TestNode[]) {
    for (const n of nodes) this.nodes.set(n.node.id, n);
  }

  static of(ids: NodeId[], opts: Partial<Omit<RaftConfig, "storage">> = {}): Network {
    return new Network(ids.map((id) => newTestNode(id, ids, opts)));
  }

  get(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  heal(): void {
    this.cut.clear();
    this.dropTypes.clear();
    this.dropIf = undefined;
  }

  drop(t: MessageType): void {
    this.dropTypes.add(t);
  }

  /** Runs a function on a node, then delivers everything until quiet. */
  act(id: NodeId, f: (n: RawNode) => void): void {
    f(this.get(id).node);
    this.settle();
  }

  /** Delivers pending messages (and those they cause) until no node has anything to say. */
  settle(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      const msgs: Message[] = [];
      for (const n of this.nodes.values()) msgs.push(...drainReady(n));
      if (msgs.length === 0) return;
      for (const m of msgs) this.deliver(m);
    }
    throw new Error("network did not settle");
  }

  private deliver(m: Message): void {
    if (this.cut.has(`${m.from}>${m.to}`) || this.dropTypes.has(m.type) || this.dropIf?.(m)) return;
    const n = this.nodes.get(m.to);
    if (!n) return;
    this.delivered.push(m);
    n.node.step(m);
  }

  campaign(id: NodeId): void {
    this.act(id, (n) => n.campaign());
  }

  propose(id: NodeId, data: string): void {
    this.act(id, (n) => n.propose(new TextEncoder().encode(data)));
  }

  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) n.node.tick();
      this.settle();
    }
  }

  leader(): NodeId | undefined {
    for (const [id, n] of this.nodes) if (n.node.raft.role === "leader") return id;
    return undefined;
  }
}

export function text(e: Entry): string {
  return new TextDecoder().decode(e.data);
}
