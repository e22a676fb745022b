// Proves each planted-bug switch (Config.bugs, ports.ts) changes behaviour exactly as its comment
// says, on the smallest scenario that shows it, so the simulator's checkers have a real bug to
// catch; and that the random-fault runner in this folder catches the ones it can see.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { SlotValue } from '../../src/paxos/messages.ts';
import type { PlantedBugs } from '../../src/paxos/ports.ts';
import { runSeed } from './fault-run.ts';
import { batchValue, command, drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const T = 10_000;

describe('planted bugs', () => {
  it('answerBeforePersist: promises and acceptances leave in sendEarly, before the fsync', () => {
    for (const bugs of [{}, { answerBeforePersist: true }] as PlantedBugs[]) {
      const r = solo({ id: 2, bugs });
      r.step(1, { type: 'prepare', ballot: b(1, 1), slotFirst: 1 }, 5);
      r.step(
        1,
        {
          type: 'accept',
          ballot: b(1, 1),
          slot: 1,
          value: { type: 'noop', stampMs: 1 },
          commit: 0,
          round: 1,
        },
        5,
      );
      const ready = drain(r, 5);
      const early = bugs.answerBeforePersist === true;
      expect(ofType(ready.sendEarly, 'promise')).toHaveLength(early ? 1 : 0);
      expect(ofType(ready.sendEarly, 'accepted')).toHaveLength(early ? 1 : 0);
      expect(ofType(ready.send, 'promise')).toHaveLength(early ? 0 : 1);
      expect(ready.persist.promised).toEqual(b(1, 1));
    }
  });

  it('skipLeaseCheckInPrepare: promises a candidate while a lease granted to another master runs', () => {
    for (const bugs of [{}, { skipLeaseCheckInPrepare: true }] as PlantedBugs[]) {
      const r = solo({ id: 2, bugs });
      r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
      drain(r, 100);
      r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 500);
      const ready = drain(r, 500);
      const skip = bugs.skipLeaseCheckInPrepare === true;
      expect(ofType(ready.send, 'promise')).toHaveLength(skip ? 1 : 0);
      expect(ofType(ready.send, 'reject')).toHaveLength(skip ? 0 : 1);
    }
  });

  it('trustOldBallotAsChosen: takes a value accepted in an older ballot as chosen', () => {
    const old: SlotValue = batchValue(1, command('old', 1));
    for (const bugs of [{}, { trustOldBallotAsChosen: true }] as PlantedBugs[]) {
      const r = solo({
        id: 2,
        bugs,
        durable: {
          isFresh: false,
          promised: b(1, 1),
          entries: [{ slot: 1, ballot: b(1, 1), value: old, isChosen: false }],
        },
      });
      r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 1, round: 1 }, T);
      const ready = drain(r, T);
      const trusts = bugs.trustOldBallotAsChosen === true;
      expect(ready.commit).toEqual(trusts ? [{ slot: 1, value: old }] : []);
      expect(ofType(ready.send, 'catch-up-request')).toHaveLength(trusts ? 0 : 1);
    }
  });

  it('reproposeLowestBallot: a new master re-proposes the lowest-ballot value reported', () => {
    const low = batchValue(1, command('low', 1));
    const high = batchValue(2, command('high', 1));
    for (const bugs of [{}, { reproposeLowestBallot: true }] as PlantedBugs[]) {
      const r = solo({ id: 1, bugs, durable: { isFresh: false, promised: b(5, 5) } });
      r.tick(T);
      drain(r, T);
      const ballot = b(6, 1);
      r.step(
        2,
        {
          type: 'promise',
          ballot,
          slotFirst: 1,
          accepted: [{ slot: 1, ballot: b(2, 2), value: low }],
          chosen: [],
          commit: 0,
          diskId: 0,
        },
        T,
      );
      r.step(
        3,
        {
          type: 'promise',
          ballot,
          slotFirst: 1,
          accepted: [{ slot: 1, ballot: b(4, 3), value: high }],
          chosen: [],
          commit: 0,
          diskId: 0,
        },
        T,
      );
      const [accept] = ofType(drain(r, T).sendEarly, 'accept');
      expect(accept?.value).toEqual(bugs.reproposeLowestBallot === true ? low : high);
    }
  });

  it('ignoreLeaseForReads: the master serves reads after its lease has lapsed', () => {
    for (const bugs of [{}, { ignoreLeaseForReads: true }] as PlantedBugs[]) {
      const r = solo({ id: 1, bugs, durable: { isFresh: false, promised: b(5, 5) } });
      r.tick(T);
      drain(r, T);
      for (const from of [2, 3]) {
        r.step(
          from,
          {
            type: 'promise',
            ballot: b(6, 1),
            slotFirst: 1,
            accepted: [],
            chosen: [],
            commit: 0,
            diskId: 0,
          },
          T,
        );
      }
      const accepts = ofType(drain(r, T).sendEarly, 'accept');
      for (const a of accepts)
        for (const from of [2, 3])
          r.step(
            from,
            { type: 'accepted', ballot: b(6, 1), slot: a.slot, round: a.round, diskId: 0 },
            T + 1,
          );
      while (r.hasReady()) drain(r, T + 1);
      expect(r.canServeReads(T + 1)).toBe(true);
      expect(r.canServeReads(T + 1000)).toBe(bugs.ignoreLeaseForReads === true);
    }
  });

  // The fast-election configuration lets a new master appear while the old one still believes
  // it holds a lease, which is when lease bugs show.
  const fast = { electionTimeoutMs: 300, electionJitterMs: 200 };
  const catchable: [keyof PlantedBugs, number][] = [
    ['skipLeaseCheckInPrepare', 40],
    ['trustOldBallotAsChosen', 60],
    ['ignoreLeaseForReads', 60],
  ];

  it.each(catchable)('the random-fault runner catches %s within %i seeds', (bug, seeds) => {
    let caughtAt = 0;
    for (let seed = 1; seed <= seeds && caughtAt === 0; seed++) {
      let violations: string[];
      try {
        violations = runSeed(seed, {
          bugs: { [bug]: true },
          config: fast,
          faultMs: 10_000,
        }).violations;
      } catch (err: unknown) {
        // A broken invariant may also trip an assertion inside the core: that is caught too.
        violations = [String(err)];
      }
      if (violations.length > 0) caughtAt = seed;
    }
    expect(caughtAt).toBeGreaterThan(0);
  });
});
