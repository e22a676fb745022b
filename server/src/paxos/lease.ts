// Master leases on both sides (Paxos Made Live 5.2; Chubby 2.8; DESIGN.md, Master lease).
//
// Acceptor side (LeaseGrant): an acceptor that acks a master (promise, accepted, heartbeat-ack)
// at its local time t grants that replica a lease to t + leaseMs, and refuses Prepares from any
// other replica until then.
//
// Master side (LeaseRounds): every Accept and heartbeat carries a lease `round`; the master
// remembers the local time it first sent each round. When a majority (itself included) has
// acked round r, its lease runs to sendTime(r) + leaseMs * (1 - rho) / (1 + rho). Each acceptor
// granted at a receipt time >= the send time, and with clock rates in [1 - rho, 1 + rho] the
// acceptor's leaseMs lasts at least leaseMs / (1 + rho) real time, while the master's shortened
// lease lasts at most leaseMs * (1 - rho) / (1 + rho) / (1 - rho) = leaseMs / (1 + rho): the
// master's lease ends, in real time, no later than the first acceptor's grant.

import { assert } from '@paxlock/shared';
import type { Membership } from './quorum.ts';
import type { ReplicaId } from './ports.ts';

/** The master-side lease length, in the master's clock, for a round sent at `sentAtMs`. */
export function masterLeaseUntil(options: {
  readonly sentAtMs: number;
  readonly leaseMs: number;
  readonly maxDriftRate: number;
}): number {
  const { sentAtMs, leaseMs, maxDriftRate } = options;
  assert(maxDriftRate >= 0 && maxDriftRate < 1, 'maxDriftRate must be in [0, 1)');
  return sentAtMs + (leaseMs * (1 - maxDriftRate)) / (1 + maxDriftRate);
}

/** What an acceptor granted: which replica it refuses other candidates for, and until when. */
export class LeaseGrant {
  #holder: ReplicaId | null = null;
  #untilMs = -Infinity;

  /** Acked `holder` at local time `nowMs`: grant (or extend) its lease. */
  grant(holder: ReplicaId, nowMs: number, leaseMs: number): void {
    if (this.#holder !== holder) {
      // A new holder only gets a grant once the previous one has expired (the Prepare check
      // guarantees it); the new grant starts from now.
      this.#holder = holder;
      this.#untilMs = nowMs + leaseMs;
      return;
    }
    this.#untilMs = Math.max(this.#untilMs, nowMs + leaseMs);
  }

  /** `holder` gave its lease up (it resigned): forget the grant, if it is the one held. */
  release(holder: ReplicaId): void {
    if (this.#holder !== holder) return;
    this.#holder = null;
    this.#untilMs = -Infinity;
  }

  /** True if a lease granted to a replica other than `candidate` is still running at `nowMs`. */
  isHeldAgainst(candidate: ReplicaId, nowMs: number): boolean {
    return this.#holder !== null && this.#holder !== candidate && nowMs < this.#untilMs;
  }

  /** The local time until which a replica other than `self` holds a grant here, or -Infinity. */
  heldByOtherUntil(self: ReplicaId): number {
    return this.#holder !== null && this.#holder !== self ? this.#untilMs : -Infinity;
  }

  get holder(): ReplicaId | null {
    return this.#holder;
  }

  get untilMs(): number {
    return this.#untilMs;
  }
}

interface Round {
  readonly sentAtMs: number;
  votes: number;
}

/** The master's lease rounds: send times and acks, and the lease they add up to. */
export class LeaseRounds {
  readonly #membership: Membership;
  readonly #rounds = new Map<number, Round>();
  #current = 0;
  /** The highest round a majority acked; older rounds can no longer extend the lease. */
  #highestMajorityRound = 0;

  constructor(membership: Membership) {
    this.#membership = membership;
  }

  /** Begin a new round sent at `nowMs`; the master votes for it itself. */
  start(nowMs: number, self: ReplicaId): number {
    this.#current += 1;
    this.#rounds.set(this.#current, { sentAtMs: nowMs, votes: this.#membership.addVote(0, self) });
    return this.#current;
  }

  get current(): number {
    return this.#current;
  }

  /**
   * Record that `from` acked `round`. Returns the round's send time if the ack completed a
   * majority for a round newer than any before, else null.
   */
  ack(round: number, from: ReplicaId): number | null {
    if (round <= this.#highestMajorityRound) return null;
    const r = this.#rounds.get(round);
    if (r === undefined) return null;
    r.votes = this.#membership.addVote(r.votes, from);
    if (!this.#membership.isMajority(r.votes)) return null;
    this.#highestMajorityRound = round;
    // Rounds up to this one can never extend the lease further: forget them.
    for (const key of this.#rounds.keys()) {
      if (key <= round) this.#rounds.delete(key);
    }
    return r.sentAtMs;
  }

  /** Forget rounds sent before `beforeMs` (they could not give a lease still in the future). */
  prune(beforeMs: number): void {
    for (const [key, r] of this.#rounds) {
      if (r.sentAtMs < beforeMs && key !== this.#current) this.#rounds.delete(key);
    }
  }

  get size(): number {
    return this.#rounds.size;
  }
}
