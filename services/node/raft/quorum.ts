// Majority quorums over a voter set that is data (the configuration), not a constant. Joint
// consensus (§6) would combine two of these; nothing else needs to change for it.

import { type NodeId } from "./types.js";

export enum VoteResult {
  Pending = "pending",
  Lost = "lost",
  Won = "won",
}

export class MajorityConfig {
  readonly voters: ReadonlySet<NodeId>;

  constructor(voters: Iterable<NodeId>) {
    this.voters = new Set(voters);
  }

  get size(): number {
    return this.voters.size;
  }

  quorum(): number {
    return Math.floor(this.voters.size / 2) + 1;
  }

  /**
   * The largest index that a majority of voters has acknowledged (the leader's commit candidate,
   * §5.3: "a majority of matchIndex[i] >= N").
   */
  committedIndex(matchOf: (id: NodeId) => number | undefined): number {
    const n = this.voters.size;
    if (n === 0) return Number.MAX_SAFE_INTEGER; // an empty config commits everything (joint-config convention)
    const matches: number[] = [];
    for (const id of this.voters) matches.push(matchOf(id) ?? 0);
    matches.sort((a, b) => b - a);
    return matches[this.quorum() - 1];
  }

  /** Outcome of an election given the votes received so far (true = granted). */
  voteResult(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    if (this.voters.size === 0) return VoteResult.Won;
    let granted = 0;
    let missing = 0;
    for (const id of this.voters) {
      const v = votes.get(id);
      if (v === undefined) missing++;
      else if (v) granted++;
    }
    const q = this.quorum();
    if (granted >= q) return VoteResult.Won;
    if (granted + missing >= q) return VoteResult.Pending;
    return VoteResult.Lost;
  }

  /** Whether a majority of voters is in `active` (CheckQuorum, thesis §9.6). */
  isActive(active: (id: NodeId) => boolean): boolean {
    let n = 0;
    for (const id of this.voters) if (active(id)) n++;
    return n >= this.quorum();
  }
}
