// Proves the learner's rules on a single replica: a value accepted in the master's current
// ballot is learned as chosen from the commit index, a value from an older ballot is not
// trusted and is fetched by catch-up (retried on tick), chosen values are handed out in slot
// order exactly once (including the replay after a restart), and the compaction hooks:
// snapshotTaken compacts with a tail margin, a request below the compaction point yields
// snapshotFor on the sender and needSnapshot on the asker, installSnapshot moves commit/applied.
import { describe, expect, it } from 'vitest';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { DurableEntry } from '../../src/paxos/durable.ts';
import type { SlotValue } from '../../src/paxos/messages.ts';
import { MAX_COMMIT_PER_READY } from '../../src/paxos/replica.ts';
import { batchValue, command, drain, ofType, solo } from './harness.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const T = 10_000;

function chosenEntries(count: number): DurableEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    slot: i + 1,
    ballot: b(1, 1),
    value: batchValue(i, command('c', i + 1)),
    isChosen: true,
  }));
}

describe('learning chosen values', () => {
  const oldValue: SlotValue = batchValue(1, command('old', 1));
  const newValue: SlotValue = batchValue(2, command('new', 1));

  it('learns a value accepted in the master current ballot from the commit index', () => {
    const r = solo({ id: 2 });
    r.step(
      3,
      { type: 'accept', ballot: b(2, 3), slot: 1, value: newValue, commit: 0, round: 1 },
      5,
    );
    drain(r, 5);
    r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 1, round: 2 }, 6);
    const ready = drain(r, 6);
    expect(ready.persist.chosen).toEqual([{ slot: 1, value: newValue }]);
    expect(ready.persist.commit).toBe(1);
    expect(ready.commit).toEqual([{ slot: 1, value: newValue }]);
    expect(ofType(ready.send, 'catch-up-request')).toEqual([]);
  });

  it('does not trust a value accepted in an older ballot: it fetches the chosen one', () => {
    const r = solo({
      id: 2,
      now: 0,
      durable: {
        isFresh: false,
        promised: b(1, 1),
        entries: [{ slot: 1, ballot: b(1, 1), value: oldValue, isChosen: false }],
      },
    });
    r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 1, round: 1 }, T);
    const ready = drain(r, T);
    expect(ready.commit).toEqual([]);
    expect(ready.persist.chosen).toEqual([]);
    expect(r.status(T).commit).toBe(0);
    expect(ofType(ready.send, 'catch-up-request')).toEqual([
      { type: 'catch-up-request', to: 3, slotFirst: 1, slotLast: 1 },
    ]);
    r.step(
      3,
      { type: 'catch-up', entries: [{ slot: 1, value: newValue }], commit: 1, compactedBelow: 1 },
      T + 1,
    );
    const learned = drain(r, T + 1);
    expect(learned.persist.chosen).toEqual([{ slot: 1, value: newValue }]);
    expect(learned.commit).toEqual([{ slot: 1, value: newValue }]);
    expect(r.status(T + 1)).toMatchObject({ commit: 1, applied: 1 });
  });

  it('retries an unanswered catch-up request on tick', () => {
    const r = solo({ id: 2 });
    r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 4, round: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'catch-up-request')).toHaveLength(1);
    r.tick(150);
    expect(r.hasReady()).toBe(false);
    r.tick(300);
    expect(ofType(drain(r, 300).send, 'catch-up-request')).toEqual([
      { type: 'catch-up-request', to: 3, slotFirst: 1, slotLast: 4 },
    ]);
  });

  it('does not answer an unhelpful catch-up reply with an immediate new request', () => {
    const r = solo({ id: 2 });
    // The master claimed commit 5 in memory, then crashed before that was durable.
    r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 5, round: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'catch-up-request')).toHaveLength(1);
    r.step(3, { type: 'catch-up', entries: [], commit: 0, compactedBelow: 1 }, 101);
    expect(ofType(drain(r, 101).send, 'catch-up-request')).toEqual([]);
    r.tick(301);
    expect(ofType(drain(r, 301).send, 'catch-up-request')).toHaveLength(1);
  });

  it('asks for at most catchUpBatchSlots slots at a time and keeps asking until caught up', () => {
    const r = solo({ id: 2, config: { catchUpBatchSlots: 4 } });
    r.step(3, { type: 'heartbeat', ballot: b(2, 3), commit: 10, round: 1 }, 100);
    const [first] = ofType(drain(r, 100).send, 'catch-up-request');
    expect(first).toMatchObject({ slotFirst: 1, slotLast: 4 });
    const entries = [1, 2, 3, 4].map((slot) => ({
      slot,
      value: batchValue(slot, command('c', slot)),
    }));
    r.step(3, { type: 'catch-up', entries, commit: 10, compactedBelow: 1 }, 101);
    const second = drain(r, 101);
    expect(second.commit.map((e) => e.slot)).toEqual([1, 2, 3, 4]);
    expect(ofType(second.send, 'catch-up-request')).toMatchObject([{ slotFirst: 5, slotLast: 8 }]);
  });

  it('asks the peer whose reply helped for the next batch, not the next peer ahead in turn', () => {
    // Peers 3 and 4 both reported commit 12; only 4 answers (3 may be down). Each batch must go
    // to 4: rotating would send every other request to 3 and wait out a retry each time.
    const r = solo({ id: 2, config: { catchUpBatchSlots: 2 } });
    r.step(4, { type: 'catch-up', entries: [], commit: 12, compactedBelow: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'catch-up-request')).toMatchObject([
      { to: 4, slotFirst: 1, slotLast: 2 },
    ]);
    r.step(3, { type: 'catch-up', entries: [], commit: 12, compactedBelow: 1 }, 101);
    expect(ofType(drain(r, 101).send, 'catch-up-request')).toEqual([]);
    const targets: number[] = [];
    for (let first = 1; first < 9; first += 2) {
      const entries = [first, first + 1].map((slot) => ({
        slot,
        value: batchValue(slot, command('c', slot)),
      }));
      r.step(4, { type: 'catch-up', entries, commit: 12, compactedBelow: 1 }, 102 + first);
      const [next] = ofType(drain(r, 102 + first).send, 'catch-up-request');
      expect(next).toMatchObject({ slotFirst: first + 2, slotLast: first + 3 });
      targets.push(next?.to ?? 0);
    }
    expect(targets).toEqual([4, 4, 4, 4]);
  });

  it('retries a catch-up with a peer heard from lately before peers that have gone quiet', () => {
    // Peers 1, 3, 4 and 5 all reported commit 12 at first; then only 5 is heard from (any
    // message will do). The retry of the unanswered request to 1 goes to 5, not to 3 or 4
    // (down, for all this replica knows); taking them in turn would ask 4.
    const r = solo({ id: 2 });
    for (const peer of [1, 3, 4, 5])
      r.step(peer, { type: 'catch-up', entries: [], commit: 12, compactedBelow: 1 }, 100);
    expect(ofType(drain(r, 100).send, 'catch-up-request')).toMatchObject([{ to: 1 }]);
    r.step(5, { type: 'withdraw', ballot: b(9, 5) }, 1_900);
    r.tick(2_000);
    expect(ofType(drain(r, 2_000).send, 'catch-up-request')).toMatchObject([
      { to: 5, slotFirst: 1 },
    ]);
  });

  it('serves catch-up requests from its chosen prefix, at most catchUpBatchSlots entries', () => {
    const r = solo({
      id: 2,
      config: { catchUpBatchSlots: 3 },
      durable: { entries: chosenEntries(10), commit: 10 },
      applied: 10,
    });
    r.step(4, { type: 'catch-up-request', slotFirst: 2, slotLast: 50 }, 5);
    const [reply] = ofType(drain(r, 5).send, 'catch-up');
    expect(reply?.entries.map((e) => e.slot)).toEqual([2, 3, 4]);
    expect(reply).toMatchObject({ commit: 10, compactedBelow: 1 });
  });

  it('splits a long replay over several Readies, contiguous and each entry once', () => {
    const total = MAX_COMMIT_PER_READY * 2 + 5;
    const r = solo({
      id: 2,
      durable: { isFresh: false, entries: chosenEntries(total), commit: total },
      applied: 0,
    });
    const slots: number[] = [];
    let readies = 0;
    while (r.hasReady()) {
      slots.push(...drain(r, 1).commit.map((e) => e.slot));
      readies += 1;
    }
    expect(readies).toBe(3);
    expect(slots).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  });

  it('replays chosen entries above the applied slot after a restart, in order, once', () => {
    const r = solo({
      id: 2,
      durable: { isFresh: false, entries: chosenEntries(5), commit: 5 },
      applied: 2,
    });
    const ready = drain(r, 1);
    expect(ready.commit.map((e) => e.slot)).toEqual([3, 4, 5]);
    expect(r.hasReady()).toBe(false);
    expect(r.status(1)).toMatchObject({ commit: 5, applied: 5 });
  });
});

describe('compaction and snapshot hooks', () => {
  it('compacts below a snapshot, keeping a tail of catchUpBatchSlots entries', () => {
    const r = solo({
      id: 2,
      config: { catchUpBatchSlots: 16 },
      durable: { entries: chosenEntries(100), commit: 100 },
      applied: 100,
    });
    r.snapshotTaken(100);
    expect(drain(r, 1).persist.compactBelow).toBe(85);
    // A request below the compaction point: the sender ships a snapshot and the tail it kept.
    r.step(4, { type: 'catch-up-request', slotFirst: 10, slotLast: 200 }, 2);
    const ready = drain(r, 2);
    expect(ready.snapshotFor).toEqual([{ to: 4, slot: 100 }]);
    const [reply] = ofType(ready.send, 'catch-up');
    expect(reply).toMatchObject({ compactedBelow: 85, commit: 100 });
    expect(reply?.entries[0]?.slot).toBe(85);
  });

  it('says it needs a snapshot when a catch-up reply starts above what it asked', () => {
    const r = solo({ id: 5 });
    r.step(2, { type: 'heartbeat', ballot: b(1, 2), commit: 100, round: 1 }, 5);
    drain(r, 5);
    r.step(2, { type: 'catch-up', entries: [], commit: 100, compactedBelow: 85 }, 6);
    const ready = drain(r, 6);
    expect(ready.needSnapshot).toEqual({ from: 2, slotAtLeast: 84 });
    // It stops asking for log entries that are gone while it waits for the snapshot.
    r.tick(500);
    expect(r.hasReady()).toBe(false);
  });

  it('finishes a snapshot install the machine made before a crash: applied above commit', () => {
    const r = solo({
      id: 1,
      durable: { isFresh: false, entries: chosenEntries(16), commit: 16 },
      applied: 20,
    });
    const ready = drain(r, 1);
    expect(ready.persist).toMatchObject({ commit: 20, compactBelow: 21 });
    expect(ready.commit).toEqual([]);
    expect(r.status(1)).toMatchObject({ commit: 20, applied: 20 });
  });

  it('moves commit and applied to the installed snapshot and persists the new compaction point', () => {
    const r = solo({ id: 5 });
    r.step(2, { type: 'heartbeat', ballot: b(1, 2), commit: 100, round: 1 }, 5);
    drain(r, 5);
    r.installSnapshot(90, 7);
    const ready = drain(r, 7);
    expect(ready.persist).toMatchObject({ commit: 90, compactBelow: 91 });
    expect(ready.commit).toEqual([]);
    expect(r.status(7)).toMatchObject({ commit: 90, applied: 90 });
    expect(ofType(ready.send, 'catch-up-request')).toMatchObject([{ to: 2, slotFirst: 91 }]);
  });
});
