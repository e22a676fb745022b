// Proves the acceptor's rules on a single replica fed messages by hand: it refuses lower
// ballots, refuses other candidates while a lease it granted runs and while it waits out a
// restart, and never answers before the state its answer vouches for is in Ready.persist
// (answers go in Ready.send, never in Ready.sendEarly).
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { DurableEntry } from '../../src/paxos/durable.ts';
import type { SlotValue } from '../../src/paxos/messages.ts';
import { drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const noop = (stampMs: number): SlotValue => ({ type: 'noop', stampMs });
const LATE = 10_000; // well past any restart wait or election timer in testConfig

describe('acceptor', () => {
  it('promises a higher ballot, persists the promise, and answers only after the persist', () => {
    const r = solo({ id: 2 });
    r.step(1, { type: 'prepare', ballot: b(1, 1), slotFirst: 1 }, 5);
    const ready = drain(r, 5);
    expect(ready.persist.promised).toEqual(b(1, 1));
    expect(ofType(ready.sendEarly, 'promise')).toEqual([]);
    expect(ofType(ready.send, 'promise')).toMatchObject([
      { to: 1, ballot: b(1, 1), slotFirst: 1, commit: 0 },
    ]);
    expect(r.status(5).ballot).toEqual(b(1, 1));
  });

  it('rejects Prepare with a lower ballot without changing its promise', () => {
    const r = solo({ id: 2, durable: { promised: b(5, 3) } });
    r.step(1, { type: 'prepare', ballot: b(4, 1), slotFirst: 1 }, 5);
    const ready = drain(r, 5);
    expect(ready.persist.promised).toBeNull();
    expect(ofType(ready.send, 'reject')).toEqual([
      { type: 'reject', to: 1, ballot: b(4, 1), promised: b(5, 3), reason: 'stale-ballot' },
    ]);
    expect(r.status(5).ballot).toEqual(b(5, 3));
  });

  it('rejects Accept with a lower ballot and does not accept the value', () => {
    const r = solo({ id: 2, durable: { promised: b(5, 3) } });
    r.step(1, { type: 'accept', ballot: b(4, 1), slot: 1, value: noop(1), commit: 0, round: 1 }, 5);
    const ready = drain(r, 5);
    expect(ready.persist.accepted).toEqual([]);
    expect(ofType(ready.send, 'reject')).toMatchObject([
      { to: 1, promised: b(5, 3), reason: 'stale-ballot' },
    ]);
    expect(ofType(ready.send, 'accepted')).toEqual([]);
  });

  it('accepts at a ballot >= its promise, persists it, and answers Accepted only in send', () => {
    const r = solo({ id: 2, durable: { promised: b(1, 1) } });
    r.step(1, { type: 'accept', ballot: b(2, 1), slot: 3, value: noop(7), commit: 0, round: 4 }, 5);
    const ready = drain(r, 5);
    expect(ready.persist.promised).toEqual(b(2, 1));
    expect(ready.persist.accepted).toEqual([{ slot: 3, ballot: b(2, 1), value: noop(7) }]);
    expect(ready.sendEarly).toEqual([]);
    expect(ofType(ready.send, 'accepted')).toEqual([
      { type: 'accepted', to: 1, ballot: b(2, 1), slot: 3, round: 4, diskId: 0 },
    ]);
    expect(r.status(5).masterId).toBe(1);
  });

  it('reports accepted and chosen values at or above slotFirst in its promise', () => {
    const entries: DurableEntry[] = [
      { slot: 1, ballot: b(1, 1), value: noop(1), isChosen: true },
      { slot: 2, ballot: b(1, 1), value: noop(2), isChosen: true },
      { slot: 3, ballot: b(1, 1), value: noop(3), isChosen: false },
      { slot: 5, ballot: b(2, 3), value: noop(5), isChosen: false },
    ];
    const r = solo({ id: 2, durable: { isFresh: false, promised: b(2, 3), entries, commit: 2 } });
    r.step(4, { type: 'prepare', ballot: b(3, 4), slotFirst: 2 }, LATE);
    const [promise] = ofType(drain(r, LATE).send, 'promise');
    expect(promise?.commit).toBe(2);
    expect(promise?.chosen).toEqual([{ slot: 2, value: noop(2) }]);
    expect(promise?.accepted).toEqual([
      { slot: 3, ballot: b(1, 1), value: noop(3) },
      { slot: 5, ballot: b(2, 3), value: noop(5) },
    ]);
  });

  it('refuses Prepares from other replicas while a lease it granted runs (lease-held)', () => {
    const r = solo({ id: 2 });
    // Acking master 1's heartbeat at t=100 grants it the lease until 100 + leaseMs (1000).
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'heartbeat-ack')).toHaveLength(1);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 1099);
    const refused = drain(r, 1099);
    expect(refused.persist.promised).toBeNull();
    expect(ofType(refused.send, 'reject')).toMatchObject([
      { to: 3, reason: 'lease-held', promised: b(1, 1) },
    ]);
    // The lease holder itself may still re-run Phase 1 with a higher ballot.
    r.step(1, { type: 'prepare', ballot: b(3, 1), slotFirst: 1 }, 1099);
    expect(ofType(drain(r, 1099).send, 'promise')).toHaveLength(1);
  });

  it('promises another candidate once the granted lease has run out', () => {
    const r = solo({ id: 2 });
    r.step(1, { type: 'heartbeat', ballot: b(1, 1), commit: 0, round: 1 }, 100);
    drain(r, 100);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 1100);
    const ready = drain(r, 1100);
    expect(ready.persist.promised).toEqual(b(2, 3));
    expect(ofType(ready.send, 'promise')).toHaveLength(1);
  });

  it('after a restart refuses to promise anyone for one lease (restart-wait)', () => {
    const r = solo({ id: 2, now: 500, durable: { isFresh: false, promised: b(1, 1) } });
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 1499);
    const waiting = drain(r, 1499);
    expect(waiting.persist.promised).toBeNull();
    expect(ofType(waiting.send, 'reject')).toMatchObject([{ to: 3, reason: 'restart-wait' }]);
    r.step(3, { type: 'prepare', ballot: b(2, 3), slotFirst: 1 }, 1500);
    expect(ofType(drain(r, 1500).send, 'promise')).toHaveLength(1);
  });

  it('does not run for master during its restart wait', () => {
    const r = solo({ id: 1, now: 0, durable: { isFresh: false, promised: b(1, 1) } });
    r.tick(999);
    expect(r.status(999).role).toBe('follower');
    r.tick(1000);
    expect(r.status(1000).role).toBe('candidate');
  });

  it('answers a repeated Accept again without persisting it twice', () => {
    const r = solo({ id: 2 });
    const accept = {
      type: 'accept',
      ballot: b(1, 1),
      slot: 1,
      value: noop(1),
      commit: 0,
      round: 1,
    } as const;
    r.step(1, accept, 5);
    expect(drain(r, 5).persist.accepted).toHaveLength(1);
    r.step(1, accept, 6);
    const again = drain(r, 6);
    expect(again.persist.accepted).toEqual([]);
    expect(ofType(again.send, 'accepted')).toHaveLength(1);
  });

  it('answers an Accept at a slot it knows chosen with the chosen value, not a false vote', () => {
    const chosen: DurableEntry = { slot: 1, ballot: b(1, 1), value: noop(1), isChosen: true };
    const r = solo({
      id: 2,
      durable: { promised: b(1, 1), entries: [chosen], commit: 1 },
      applied: 1,
    });
    r.step(
      3,
      { type: 'accept', ballot: b(2, 3), slot: 1, value: noop(99), commit: 0, round: 1 },
      5,
    );
    const ready = drain(r, 5);
    expect(ofType(ready.send, 'accepted')).toEqual([]);
    expect(ready.persist.accepted).toEqual([]);
    expect(ofType(ready.send, 'catch-up')).toEqual([
      {
        type: 'catch-up',
        to: 3,
        entries: [{ slot: 1, value: noop(1) }],
        commit: 1,
        compactedBelow: 1,
      },
    ]);
  });

  it('ignores messages from replicas outside the configuration', () => {
    const r = solo({ id: 2 });
    r.step(9, { type: 'prepare', ballot: b(9, 9), slotFirst: 1 }, 5);
    expect(r.hasReady()).toBe(false);
    expect(r.status(5).ballot).toEqual(b(0, 0));
  });
});
