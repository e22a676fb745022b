// Proves a lost candidacy gives back the leases its promises granted: a candidate that steps
// down tells every peer it withdraws its ballot, and an acceptor that promised that ballot drops
// the grant at once, so the next candidate is not refused for a whole lease; a withdrawal of any
// other ballot, or from anyone but that ballot's candidate, changes nothing.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import { validateMessage } from '../../src/paxos/validate.ts';
import { drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });

describe('withdraw', () => {
  it('lets an acceptor promise the next candidate at once once the one it promised withdraws', () => {
    const r = solo({ id: 2 });
    r.step(4, { type: 'prepare', ballot: b(1, 4), slotFirst: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'promise')).toHaveLength(1);
    // The promise granted 4 a lease (1000 ms in testConfig): candidate 3 is refused meanwhile.
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 200);
    expect(ofType(drain(r, 200).send, 'reject')).toMatchObject([{ to: 3, reason: 'lease-held' }]);
    // Stale or forged withdrawals change nothing: another ballot, or not from its candidate.
    r.step(4, { type: 'withdraw', ballot: b(0, 4) }, 300);
    r.step(3, { type: 'withdraw', ballot: b(1, 4) }, 300);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 300);
    expect(ofType(drain(r, 300).send, 'reject')).toMatchObject([{ to: 3, reason: 'lease-held' }]);
    // The real thing, well inside the lease.
    r.step(4, { type: 'withdraw', ballot: b(1, 4) }, 400);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 400);
    const ready = drain(r, 400);
    expect(ready.persist.promised).toEqual(b(2, 3));
    expect(ofType(ready.send, 'promise')).toMatchObject([{ to: 3, ballot: b(2, 3) }]);
  });

  it('does not let a withdrawal drop a lease granted to a later ballot', () => {
    const r = solo({ id: 2 });
    r.step(4, { type: 'prepare', ballot: b(1, 4), slotFirst: 1 }, 100);
    r.step(4, { type: 'prepare', ballot: b(2, 4), slotFirst: 1 }, 150);
    drain(r, 150);
    // The withdrawal of 1.4 arrives late: 4 is running again, in ballot 2.4.
    r.step(4, { type: 'withdraw', ballot: b(1, 4) }, 200);
    r.step(3, { type: 'prepare', ballot: b(3, 3), slotFirst: 1 }, 200);
    expect(ofType(drain(r, 200).send, 'reject')).toMatchObject([{ to: 3, reason: 'lease-held' }]);
  });

  it('is sent to every peer by a candidate that is outbid, for the ballot it gives up', () => {
    const r = solo({ id: 3 });
    r.tick(60_000); // past any election timeout: it runs
    const running = drain(r, 60_000);
    const prepares = ofType(running.send, 'prepare');
    expect(prepares).toHaveLength(4);
    const ballot = prepares[0]?.ballot;
    if (ballot === undefined) throw new Error('no ballot');
    expect(r.status(60_000).role).toBe('candidate');
    r.step(
      4,
      { type: 'reject', ballot, promised: b(ballot.round + 1, 5), reason: 'stale-ballot' },
      60_010,
    );
    expect(r.status(60_010).role).toBe('follower');
    const withdrawals = ofType(drain(r, 60_010).send, 'withdraw');
    expect(withdrawals.map((w) => w.to).sort()).toEqual([1, 2, 4, 5]);
    for (const w of withdrawals) expect(w.ballot).toEqual(ballot);
  });

  it('is not sent by a master that steps down: its lease is given up by resign, not here', () => {
    const r = solo({ id: 3 });
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
    drain(r, 100);
    // A follower that was never a candidate sends nothing when a higher master appears.
    r.step(2, { type: 'heartbeat', ballot: b(2, 2), commit: 0, round: 1 }, 200);
    expect(ofType(drain(r, 200).send, 'withdraw')).toEqual([]);
  });

  it('validates the withdraw message from the wire', () => {
    expect(validateMessage({ type: 'withdraw', ballot: { round: 2, replica: 1 } })).toEqual({
      type: 'withdraw',
      ballot: { round: 2, replica: 1 },
    });
    for (const ballot of [7, null, { round: -1, replica: 1 }, { round: 1, replica: 256 }])
      expect(validateMessage({ type: 'withdraw', ballot })).toBeNull();
    expect(validateMessage({ type: 'withdraw' })).toBeNull();
  });
});
