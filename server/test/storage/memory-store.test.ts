// Proves the in-memory acceptor store keeps store.ts's prose contract, the same one the SQLite
// store keeps: the simulator's crash-restart is only as honest as this twin.
import { describe, expect, it } from 'vitest';
import { AssertionError } from '@paxlock/shared';
import type { Ballot } from '../../src/paxos/ballot.ts';
import type { SlotValue } from '../../src/paxos/messages.ts';
import type { PersistBatch } from '../../src/paxos/ready.ts';
import { isSlotValueEqual, MemoryStore } from '../../src/storage/memory-store.ts';

const b = (round: number, replica: number): Ballot => ({ round, replica });
const noop = (stampMs: number): SlotValue => ({ type: 'noop', stampMs });
const batchOf = (seq: number, bytes: number[] = [1, 2, 3]): SlotValue => ({
  type: 'batch',
  stampMs: 7,
  commands: [{ clientId: 'c1', seq, payload: new Uint8Array(bytes) }],
});

function batch(parts: Partial<PersistBatch>): PersistBatch {
  return {
    promised: null,
    accepted: [],
    chosen: [],
    commit: null,
    compactBelow: null,
    admitted: [],
    ...parts,
  };
}

describe('MemoryStore', () => {
  it('starts fresh and empty', () => {
    const store = new MemoryStore();
    expect(store.load()).toEqual({
      isFresh: true,
      promised: b(0, 0),
      entries: [],
      commit: 0,
      compactedBelow: 1,
      admitted: [],
    });
  });

  it('is no longer fresh after any non-empty persist, and an empty batch writes nothing', () => {
    const store = new MemoryStore();
    store.persist(batch({}));
    expect(store.load().isFresh).toBe(true);
    expect(store.stats.persists).toBe(0);
    store.persist(batch({ promised: b(1, 2) }));
    expect(store.load()).toMatchObject({ isFresh: false, promised: b(1, 2) });
  });

  it('keeps acceptances in slot order and replaces an earlier acceptance at the same slot', () => {
    const store = new MemoryStore();
    store.persist(
      batch({
        promised: b(2, 1),
        accepted: [
          { slot: 3, ballot: b(1, 1), value: noop(1) },
          { slot: 1, ballot: b(1, 1), value: batchOf(1) },
        ],
      }),
    );
    store.persist(batch({ accepted: [{ slot: 3, ballot: b(2, 1), value: batchOf(9) }] }));
    const state = store.load();
    expect(state.entries.map((e) => [e.slot, e.ballot.round, e.isChosen])).toEqual([
      [1, 1, false],
      [3, 2, false],
    ]);
    expect(state.entries[1]?.value).toEqual(batchOf(9));
  });

  it('refuses a promise that decreases', () => {
    const store = new MemoryStore();
    store.persist(batch({ promised: b(3, 2) }));
    expect(() => store.persist(batch({ promised: b(3, 1) }))).toThrow(AssertionError);
    expect(store.load().promised).toEqual(b(3, 2));
  });

  it('never replaces a chosen value with a different one, by acceptance or by learning', () => {
    const store = new MemoryStore();
    store.persist(batch({ chosen: [{ slot: 1, value: batchOf(1) }], commit: 1 }));
    // Re-accepting the chosen value in a later ballot is allowed and keeps the entry chosen.
    store.persist(
      batch({ promised: b(5, 1), accepted: [{ slot: 1, ballot: b(5, 1), value: batchOf(1) }] }),
    );
    expect(store.load().entries[0]).toMatchObject({ slot: 1, isChosen: true });
    expect(() =>
      store.persist(batch({ accepted: [{ slot: 1, ballot: b(5, 1), value: batchOf(2) }] })),
    ).toThrow(AssertionError);
    expect(() => store.persist(batch({ chosen: [{ slot: 1, value: noop(1) }] }))).toThrow(
      AssertionError,
    );
    expect(store.load().entries[0]?.value).toEqual(batchOf(1));
  });

  it('keeps the acceptance ballot of a value learned chosen, and ZERO_BALLOT for one learned by catch-up', () => {
    const store = new MemoryStore();
    store.persist(
      batch({
        promised: b(2, 3),
        accepted: [
          { slot: 1, ballot: b(2, 3), value: batchOf(1) },
          { slot: 2, ballot: b(2, 3), value: noop(4) },
        ],
      }),
    );
    store.persist(
      batch({
        chosen: [
          { slot: 1, value: batchOf(1) },
          { slot: 2, value: batchOf(2) },
        ],
        commit: 2,
      }),
    );
    const [first, second] = store.load().entries;
    expect(first).toMatchObject({ ballot: b(2, 3), isChosen: true });
    expect(second).toMatchObject({ ballot: b(0, 0), isChosen: true, value: batchOf(2) });
  });

  it('refuses a commit that decreases, and a commit over a slot not chosen here', () => {
    const store = new MemoryStore();
    store.persist(
      batch({
        chosen: [
          { slot: 1, value: noop(1) },
          { slot: 2, value: noop(2) },
        ],
        commit: 2,
      }),
    );
    expect(() => store.persist(batch({ commit: 1 }))).toThrow(AssertionError);
    expect(() => store.persist(batch({ commit: 3 }))).toThrow(AssertionError);
    expect(store.load().commit).toBe(2);
  });

  it('is atomic: a batch that breaks a rule leaves nothing of itself behind', () => {
    const store = new MemoryStore();
    store.persist(batch({ promised: b(1, 1), chosen: [{ slot: 1, value: noop(1) }], commit: 1 }));
    expect(() =>
      store.persist(
        batch({
          promised: b(4, 4),
          accepted: [{ slot: 2, ballot: b(4, 4), value: noop(2) }],
          commit: 0,
        }),
      ),
    ).toThrow(AssertionError);
    const state = store.load();
    expect(state.promised).toEqual(b(1, 1));
    expect(state.entries.map((e) => e.slot)).toEqual([1]);
  });

  it('compacts below a slot, never moves the compaction point back, and refuses writes below it', () => {
    const store = new MemoryStore();
    store.persist(
      batch({ chosen: [1, 2, 3].map((slot) => ({ slot, value: noop(slot) })), commit: 3 }),
    );
    store.persist(batch({ compactBelow: 3 }));
    store.persist(batch({ compactBelow: 2 }));
    const state = store.load();
    expect(state.compactedBelow).toBe(3);
    expect(state.entries.map((e) => e.slot)).toEqual([3]);
    expect(() =>
      store.persist(batch({ accepted: [{ slot: 2, ballot: b(1, 1), value: noop(9) }] })),
    ).toThrow(AssertionError);
  });

  it('hands out deep copies: mutating what load() returned does not reach the store', () => {
    const store = new MemoryStore();
    store.persist(
      batch({
        promised: b(1, 1),
        accepted: [{ slot: 1, ballot: b(1, 1), value: batchOf(1, [5, 6]) }],
      }),
    );
    const loaded = store.load();
    const entry = loaded.entries[0];
    if (entry?.value.type === 'batch') entry.value.commands[0]?.payload.fill(9);
    (loaded.promised as { round: number }).round = 99;
    const again = store.load();
    expect(again.promised).toEqual(b(1, 1));
    expect(again.entries[0]?.value).toEqual(batchOf(1, [5, 6]));
  });

  it('compares slot values by content', () => {
    expect(isSlotValueEqual(batchOf(1), batchOf(1))).toBe(true);
    expect(isSlotValueEqual(batchOf(1), batchOf(1, [1, 2, 4]))).toBe(false);
    expect(isSlotValueEqual(noop(1), noop(1))).toBe(true);
    expect(isSlotValueEqual(noop(1), noop(2))).toBe(false);
    expect(isSlotValueEqual(noop(7), batchOf(1))).toBe(false);
  });

  it('keeps admissions through compaction and refuses two different ones at a slot', () => {
    const store = new MemoryStore();
    const admission = { slot: 1, replica: 4, diskId: 99 };
    store.persist(
      batch({ chosen: [{ slot: 1, value: noop(1) }], commit: 1, admitted: [admission] }),
    );
    store.persist(batch({ chosen: [{ slot: 2, value: noop(2) }], commit: 2, compactBelow: 2 }));
    expect(() => store.persist(batch({ admitted: [{ ...admission, diskId: 5 }] }))).toThrow(
      /two different disks/,
    );
    const state = store.load();
    expect(state.entries.map((e) => e.slot)).toEqual([2]);
    expect(state.admitted).toEqual([admission]);
  });
});
