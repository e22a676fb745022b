// Quorums over a static membership (DESIGN.md, Membership; Lamport, "Paxos Made Simple" 2.1:
// any two majorities intersect, which is all Paxos safety rests on). A vote set is a bitmask
// over each replica's position in Config.replicas, so counting votes for a slot or a lease
// round is a couple of integer operations and never allocates.

import { assert } from '@paxlock/shared';
import type { ReplicaId } from './ports.ts';

/** The most replicas a bitmask vote set can hold (31 bits stay a positive small integer). */
export const MAX_REPLICAS = 30;

/** The smallest number of replicas that forms a majority of `replicaCount`. */
export function majority(replicaCount: number): number {
  assert(Number.isInteger(replicaCount) && replicaCount >= 1, 'majority of a non-positive count');
  return Math.floor(replicaCount / 2) + 1;
}

/** Number of set bits in a vote set. */
export function countVotes(votes: number): number {
  let v = votes - ((votes >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Maps replica ids to their bit in a vote set, and says when a vote set is a majority. */
export class Membership {
  readonly replicas: readonly ReplicaId[];
  readonly majority: number;
  readonly #bitOf = new Map<ReplicaId, number>();

  constructor(replicas: readonly ReplicaId[]) {
    assert(replicas.length >= 1 && replicas.length <= MAX_REPLICAS, 'membership size out of range');
    this.replicas = replicas;
    this.majority = majority(replicas.length);
    replicas.forEach((id, index) => {
      assert(Number.isInteger(id) && id >= 1, `replica id ${id} is not a positive integer`);
      assert(!this.#bitOf.has(id), `replica id ${id} appears twice`);
      this.#bitOf.set(id, 1 << index);
    });
  }

  isMember(id: ReplicaId): boolean {
    return this.#bitOf.has(id);
  }

  /** The vote set with `id` added; unchanged if `id` is not a member. */
  addVote(votes: number, id: ReplicaId): number {
    const bit = this.#bitOf.get(id);
    return bit === undefined ? votes : votes | bit;
  }

  /** The vote set with `id` taken out. */
  removeVote(votes: number, id: ReplicaId): number {
    const bit = this.#bitOf.get(id);
    return bit === undefined ? votes : votes & ~bit;
  }

  hasVoted(votes: number, id: ReplicaId): boolean {
    const bit = this.#bitOf.get(id);
    return bit !== undefined && (votes & bit) !== 0;
  }

  isMajority(votes: number): boolean {
    return countVotes(votes) >= this.majority;
  }

  /** Position of `id` in the configuration (0 for the first), used to stagger startup. */
  rankOf(id: ReplicaId): number {
    const sorted = [...this.replicas].sort((a, b) => a - b);
    return sorted.indexOf(id);
  }
}
