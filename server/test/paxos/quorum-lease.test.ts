// Proves the pure helpers the safety argument rests on: any two majorities of a configuration
// intersect and vote sets count correctly (quorum.ts); the master's lease, run at the slowest
// allowed clock rate, ends in real time no later than an acceptor's grant run at the fastest
// (lease.ts), and lease rounds only extend the lease for the newest round a majority acked.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LeaseGrant, LeaseRounds, masterLeaseUntil } from '../../src/paxos/lease.ts';
import { countVotes, majority, Membership } from '../../src/paxos/quorum.ts';

describe('quorums', () => {
  it('any two majorities of the same configuration share a replica', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.nat(), fc.nat(), (n, a, b) => {
        const ids = Array.from({ length: n }, (_, i) => i + 1);
        const membership = new Membership(ids);
        const pick = (seed: number): number => {
          let votes = 0;
          for (const id of ids)
            if (((seed >>> id) & 1) === 1) votes = membership.addVote(votes, id);
          return votes;
        };
        const x = pick(a);
        const y = pick(b);
        if (membership.isMajority(x) && membership.isMajority(y)) expect(x & y).not.toBe(0);
      }),
    );
  });

  it('counts votes as the number of distinct voters and ignores strangers', () => {
    const membership = new Membership([1, 2, 3, 4, 5]);
    let votes = 0;
    for (const id of [1, 3, 3, 9, 5]) votes = membership.addVote(votes, id);
    expect(countVotes(votes)).toBe(3);
    expect(membership.isMajority(votes)).toBe(true);
    expect(majority(5)).toBe(3);
    expect(majority(4)).toBe(3);
    expect(membership.rankOf(1)).toBe(0);
  });
});

describe('leases', () => {
  it('the master lease ends in real time before any acceptor grant, for every drift within the bound', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 0.2, noNaN: true }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (rho, leaseMs, masterRateFrac, acceptorRateFrac) => {
          // Clock rates (local ms per real ms) anywhere in [1 - rho, 1 + rho].
          const masterRate = 1 - rho + 2 * rho * masterRateFrac;
          const acceptorRate = 1 - rho + 2 * rho * acceptorRateFrac;
          const masterLocalMs = masterLeaseUntil({ sentAtMs: 0, leaseMs, maxDriftRate: rho });
          const masterRealMs = masterLocalMs / masterRate;
          // The acceptor granted at the earliest possible instant: the send instant.
          const acceptorRealMs = leaseMs / acceptorRate;
          expect(masterRealMs).toBeLessThanOrEqual(acceptorRealMs * (1 + 1e-12));
        },
      ),
    );
  });

  it('an acceptor grant refuses others until it ends, and never the holder', () => {
    const grant = new LeaseGrant();
    grant.grant(1, 100, 1000);
    expect(grant.isHeldAgainst(2, 1099)).toBe(true);
    expect(grant.isHeldAgainst(1, 500)).toBe(false);
    expect(grant.isHeldAgainst(2, 1100)).toBe(false);
    expect(grant.heldByOtherUntil(2)).toBe(1100);
    expect(grant.heldByOtherUntil(1)).toBe(Number.NEGATIVE_INFINITY);
  });

  it('a round extends the lease once, when a majority (the master included) acks it', () => {
    const rounds = new LeaseRounds(new Membership([1, 2, 3, 4, 5]));
    const r1 = rounds.start(10, 1);
    const r2 = rounds.start(20, 1);
    expect(rounds.ack(r1, 2)).toBeNull();
    expect(rounds.ack(r2, 2)).toBeNull();
    expect(rounds.ack(r2, 3)).toBe(20);
    // An older round completing later cannot move the lease any more.
    expect(rounds.ack(r1, 3)).toBeNull();
    expect(rounds.ack(r2, 4)).toBeNull();
  });
});
