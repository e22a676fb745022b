// The SQLite acceptor store keeps store.ts's contract on a real file: what persist() wrote is
// what load() returns after the database is closed and reopened (a restart), a batch is
// atomic, and the invariants (promise and commit never decrease, a chosen value is never
// replaced) are enforced before anything is written.
import { mkdtempSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PersistBatch } from '../../src/paxos/ready.ts';
import type { SlotValue } from '../../src/paxos/messages.ts';
import { SqliteStore } from '../../src/storage/sqlite-store.ts';

const empty: PersistBatch = { promised: null, accepted: [], chosen: [], commit: null, compactBelow: null, admitted: [] };

function batchValue(stampMs: number, clientId: string, seq: number): SlotValue {
  return { type: 'batch', stampMs, commands: [{ clientId, seq, payload: new Uint8Array([seq, 1, 2]) }] };
}

describe('SqliteStore', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'paxlock-store-'));
    path = join(dir, 'paxos.db');
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('reports a brand-new store as fresh and a reopened one as not', () => {
    const store = new SqliteStore({ path });
    expect(store.load()).toEqual({ isFresh: true, promised: { round: 0, replica: 0 }, entries: [], commit: 0, compactedBelow: 1, admitted: [] });
    store.persist({ ...empty, promised: { round: 1, replica: 2 } });
    store.close();
    const reopened = new SqliteStore({ path });
    expect(reopened.load().isFresh).toBe(false);
    reopened.close();
  });

  it('keeps the incarnation: null while fresh, 0 once written without one, the recorded one otherwise', () => {
    const store = new SqliteStore({ path });
    expect(store.incarnation).toBeNull();
    store.setIncarnation(42);
    expect(store.load().isFresh).toBe(true); // recording it does not make the store booted
    store.close();
    const reopened = new SqliteStore({ path });
    expect(reopened.incarnation).toBe(42);
    reopened.close();
    const other = new SqliteStore({ path: path + '-2' });
    other.persist({ ...empty, promised: { round: 1, replica: 1 } });
    expect(other.incarnation).toBe(0);
    other.close();
  });

  it('fsyncs a batch with a promise or an acceptance, and not one that only marks chosen', () => {
    const store = new SqliteStore({ path });
    const v1 = batchValue(10, 'c1', 1);
    store.persist({ ...empty, promised: { round: 1, replica: 1 } });
    expect(store.syncLevel()).toBe(2);
    store.persist({ ...empty, accepted: [{ slot: 1, ballot: { round: 1, replica: 1 }, value: v1 }] });
    expect(store.syncLevel()).toBe(2);
    store.persist({ ...empty, chosen: [{ slot: 1, value: v1 }], commit: 1 });
    expect(store.syncLevel()).toBe(0);
    store.persist({ ...empty, accepted: [{ slot: 2, ballot: { round: 1, replica: 1 }, value: v1 }] });
    expect(store.syncLevel()).toBe(2);
    expect(store.stats).toMatchObject({ commits: 4, syncedCommits: 3 });
    store.close();
  });

  it('with deferUnsynced, keeps chosen marks and the commit index back until the next fsynced batch, a flush or close', () => {
    const store = new SqliteStore({ path, deferUnsynced: true });
    // What another connection (a restart) would find on disk now.
    const onDisk = (): { commit: number; chosen: number[]; slots: number[]; compactedBelow: number } => {
      const peek = new SqliteStore({ path });
      const state = peek.load();
      peek.close();
      return { commit: state.commit, chosen: state.entries.filter((e) => e.isChosen).map((e) => e.slot), slots: state.entries.map((e) => e.slot), compactedBelow: state.compactedBelow };
    };
    const ballot = { round: 1, replica: 1 };
    const v = [0, 1, 2, 3, 4].map((slot) => batchValue(slot, 'c', slot));
    store.persist({ ...empty, promised: ballot, accepted: [1, 2].map((slot) => ({ slot, ballot, value: v[slot]! })) });
    store.persist({ ...empty, chosen: [{ slot: 1, value: v[1]! }], commit: 1 });
    store.persist({ ...empty, chosen: [{ slot: 2, value: v[2]! }], commit: 2, compactBelow: 2 });
    expect(onDisk()).toEqual({ commit: 0, chosen: [], slots: [1, 2], compactedBelow: 1 });
    expect(store.stats).toMatchObject({ commits: 1, syncedCommits: 1 });

    // The next acceptance carries both deferred batches in its one transaction.
    store.persist({ ...empty, accepted: [{ slot: 3, ballot, value: v[3]! }] });
    expect(onDisk()).toEqual({ commit: 2, chosen: [2], slots: [2, 3], compactedBelow: 2 });
    expect(store.stats).toMatchObject({ commits: 2, syncedCommits: 2 });
    expect(store.syncLevel()).toBe(2);

    store.persist({ ...empty, chosen: [{ slot: 3, value: v[3]! }], commit: 3 });
    store.flushDeferred();
    expect(onDisk()).toMatchObject({ commit: 3, chosen: [2, 3] });
    expect(store.stats).toMatchObject({ commits: 3, syncedCommits: 2 });
    store.flushDeferred(); // nothing left: no transaction
    expect(store.stats.commits).toBe(3);

    store.persist({ ...empty, chosen: [{ slot: 4, value: v[4]! }], commit: 4 });
    store.close();
    expect(onDisk()).toMatchObject({ commit: 4, chosen: [2, 3, 4] });
  });

  it('returns after a reopen exactly what was persisted', () => {
    const store = new SqliteStore({ path });
    const v1 = batchValue(10, 'c1', 1);
    const v2: SlotValue = { type: 'noop', stampMs: 11 };
    store.persist({
      ...empty,
      promised: { round: 3, replica: 1 },
      accepted: [
        { slot: 1, ballot: { round: 3, replica: 1 }, value: v1 },
        { slot: 2, ballot: { round: 3, replica: 1 }, value: v2 },
      ],
    });
    store.persist({ ...empty, chosen: [{ slot: 1, value: v1 }], commit: 1 });
    store.close();

    const state = new SqliteStore({ path }).load();
    expect(state.promised).toEqual({ round: 3, replica: 1 });
    expect(state.commit).toBe(1);
    expect(state.entries).toHaveLength(2);
    expect(state.entries[0]).toMatchObject({ slot: 1, ballot: { round: 3, replica: 1 }, isChosen: true });
    expect(state.entries[1]).toMatchObject({ slot: 2, isChosen: false, value: v2 });
    const first = state.entries[0]!.value;
    expect(first.type).toBe('batch');
    if (first.type === 'batch') {
      expect(first.commands[0]!.clientId).toBe('c1');
      expect(Array.from(first.commands[0]!.payload)).toEqual([1, 1, 2]);
    }
  });

  it('replaces an earlier acceptance at the same slot with a later one', () => {
    const store = new SqliteStore({ path });
    store.persist({ ...empty, accepted: [{ slot: 5, ballot: { round: 1, replica: 1 }, value: batchValue(1, 'a', 1) }] });
    store.persist({ ...empty, accepted: [{ slot: 5, ballot: { round: 2, replica: 3 }, value: batchValue(2, 'b', 1) }] });
    const [entry] = store.load().entries;
    expect(entry?.ballot).toEqual({ round: 2, replica: 3 });
    store.close();
  });

  it('refuses to lower the promise and leaves the batch unwritten', () => {
    const store = new SqliteStore({ path });
    store.persist({ ...empty, promised: { round: 5, replica: 2 } });
    expect(() =>
      store.persist({
        ...empty,
        accepted: [{ slot: 1, ballot: { round: 4, replica: 1 }, value: batchValue(1, 'a', 1) }],
        promised: { round: 4, replica: 1 },
      }),
    ).toThrow(/promise would decrease/);
    const state = store.load();
    expect(state.promised).toEqual({ round: 5, replica: 2 });
    expect(state.entries).toEqual([]);
    store.close();
  });

  it('refuses two different chosen values for one slot, atomically', () => {
    const store = new SqliteStore({ path });
    store.persist({ ...empty, chosen: [{ slot: 1, value: batchValue(1, 'a', 1) }], commit: 1 });
    expect(() =>
      store.persist({ ...empty, chosen: [{ slot: 2, value: batchValue(2, 'x', 1) }, { slot: 1, value: batchValue(1, 'b', 1) }], commit: 2 }),
    ).toThrow(/two different chosen values/);
    const state = store.load();
    expect(state.commit).toBe(1);
    expect(state.entries.map((e) => e.slot)).toEqual([1]);
    store.close();
  });

  it('keeps a chosen row when the same value is accepted again in a later ballot', () => {
    const store = new SqliteStore({ path });
    const v = batchValue(1, 'a', 1);
    store.persist({ ...empty, chosen: [{ slot: 1, value: v }], commit: 1 });
    store.persist({ ...empty, accepted: [{ slot: 1, ballot: { round: 9, replica: 1 }, value: v }] });
    expect(store.load().entries[0]?.isChosen).toBe(true);
    store.close();
  });

  it('refuses to lower the commit index', () => {
    const store = new SqliteStore({ path });
    store.persist({ ...empty, chosen: [{ slot: 1, value: batchValue(1, 'a', 1) }, { slot: 2, value: batchValue(1, 'a', 2) }], commit: 2 });
    expect(() => store.persist({ ...empty, commit: 1 })).toThrow(/commit would decrease/);
    store.close();
  });

  it('leaves a stored acceptance unmarked when the commit index covers it, and loads it as chosen', () => {
    const store = new SqliteStore({ path });
    const ballot = { round: 2, replica: 1 };
    const [v1, v2, v3] = [batchValue(1, 'a', 1), batchValue(2, 'a', 2), batchValue(3, 'a', 3)];
    store.persist({ ...empty, accepted: [1, 2, 3].map((slot, i) => ({ slot, ballot, value: [v1, v2, v3][i]! })) });
    // Slots 1 and 3 learned chosen, commit 1: slot 3 is past the gap at 2 and needs its flag.
    store.persist({ ...empty, chosen: [{ slot: 1, value: v1 }, { slot: 3, value: v3 }], commit: 1 });
    store.close();
    const raw = new Database(path, { readonly: true });
    const flags = raw.prepare('SELECT slot, is_chosen, ballot_round FROM entries ORDER BY slot').all();
    raw.close();
    expect(flags).toEqual([
      { slot: 1, is_chosen: 0, ballot_round: 2 },
      { slot: 2, is_chosen: 0, ballot_round: 2 },
      { slot: 3, is_chosen: 1, ballot_round: 2 },
    ]);
    const reopened = new SqliteStore({ path });
    expect(reopened.load().entries.map((e) => [e.slot, e.isChosen, e.ballot.round])).toEqual([
      [1, true, 2],
      [2, false, 2],
      [3, true, 2],
    ]);
    // Chosen through the commit index alone, slot 1 still refuses another value, after a reopen too.
    expect(() => reopened.persist({ ...empty, accepted: [{ slot: 1, ballot: { round: 3, replica: 2 }, value: v2 }] })).toThrow(
      /accept differs from chosen value/,
    );
    expect(() => reopened.persist({ ...empty, chosen: [{ slot: 1, value: v3 }] })).toThrow(/two different chosen values/);
    reopened.persist({ ...empty, accepted: [{ slot: 1, ballot: { round: 3, replica: 2 }, value: batchValue(1, 'a', 1) }] });
    expect(reopened.load().entries[0]).toMatchObject({ slot: 1, isChosen: true, ballot: { round: 2, replica: 1 } });
    reopened.close();
  });

  it('replaces an acceptance from an earlier ballot by the different value chosen at its slot', () => {
    const store = new SqliteStore({ path });
    store.persist({ ...empty, accepted: [{ slot: 1, ballot: { round: 1, replica: 3 }, value: batchValue(1, 'old', 1) }] });
    store.persist({ ...empty, chosen: [{ slot: 1, value: batchValue(1, 'new', 1) }], commit: 1 });
    store.close();
    const [entry] = new SqliteStore({ path }).load().entries;
    expect(entry).toMatchObject({ slot: 1, ballot: { round: 0, replica: 0 }, isChosen: true });
    expect(entry?.value.type === 'batch' && entry.value.commands[0]?.clientId).toBe('new');
  });

  it('drops entries below the compaction point and remembers it', () => {
    const store = new SqliteStore({ path });
    const chosen = [1, 2, 3, 4].map((slot) => ({ slot, value: batchValue(slot, 'c', slot) }));
    store.persist({ ...empty, chosen, commit: 4 });
    store.persist({ ...empty, compactBelow: 3 });
    store.persist({ ...empty, compactBelow: 2 }); // never moves back
    store.close();
    const state = new SqliteStore({ path }).load();
    expect(state.compactedBelow).toBe(3);
    expect(state.entries.map((e) => e.slot)).toEqual([3, 4]);
  });

  it('keeps admissions apart from the log: through compaction, across a reopen, never two at a slot', () => {
    const store = new SqliteStore({ path });
    const admit: SlotValue = { type: 'admit', stampMs: 3, replica: 4, diskId: 2 ** 40 + 7 };
    store.persist({ ...empty, chosen: [{ slot: 1, value: admit }], commit: 1, admitted: [{ slot: 1, replica: 4, diskId: 2 ** 40 + 7 }] });
    store.persist({ ...empty, chosen: [{ slot: 2, value: batchValue(2, 'c', 2) }], commit: 2, compactBelow: 2 });
    expect(() => store.persist({ ...empty, admitted: [{ slot: 1, replica: 4, diskId: 9 }] })).toThrow(/two different admissions/);
    store.persist({ ...empty, admitted: [{ slot: 1, replica: 4, diskId: 2 ** 40 + 7 }] }); // the same again: nothing
    store.close();
    const state = new SqliteStore({ path }).load();
    expect(state.entries.map((e) => e.slot)).toEqual([2]);
    expect(state.admitted).toEqual([{ slot: 1, replica: 4, diskId: 2 ** 40 + 7 }]);
  });

  it('keeps the disk id: null while fresh, 0 once written without one, the recorded one otherwise', () => {
    const fresh = new SqliteStore({ path });
    expect(fresh.diskId).toBeNull();
    fresh.setDiskId(12345);
    expect(fresh.load().isFresh).toBe(true); // recording the disk writes nothing of the acceptor's
    expect(() => fresh.setDiskId(6)).toThrow(/another disk id/);
    fresh.close();
    expect(new SqliteStore({ path }).diskId).toBe(12345);
    const old = new SqliteStore({ path: join(dir, 'old.db') });
    old.persist({ ...empty, promised: { round: 1, replica: 1 } });
    expect(old.diskId).toBe(0);
    old.close();
  });

  it('keeps when its history began: null while fresh, the wall clock of the first persist, 0 if unknown', () => {
    let wall = 1_800_000_000_000;
    const store = new SqliteStore({ path, wallClockMs: () => wall });
    expect(store.bootedAtMs).toBeNull();
    store.setDiskId(0);
    store.setIncarnation(0);
    expect(store.bootedAtMs).toBeNull(); // neither is acceptor state
    store.persist({ ...empty, promised: { round: 1, replica: 2 } });
    expect(store.bootedAtMs).toBe(1_800_000_000_000);
    wall += 60_000;
    store.persist({ ...empty, promised: { round: 2, replica: 2 } });
    expect(store.bootedAtMs).toBe(1_800_000_000_000); // the first persist's, kept
    store.close();
    expect(new SqliteStore({ path }).bootedAtMs).toBe(1_800_000_000_000);
    // A paxos.db from before the time was kept holds booted = 1: a history of unknown start.
    const oldPath = join(dir, 'old.db');
    const old = new SqliteStore({ path: oldPath });
    old.persist({ ...empty, promised: { round: 1, replica: 1 } });
    old.close();
    const raw = new Database(oldPath);
    raw.prepare("UPDATE meta SET value = 1 WHERE key = 'booted'").run();
    raw.close();
    const reopened = new SqliteStore({ path: oldPath });
    expect(reopened.bootedAtMs).toBe(0);
    expect(reopened.load().isFresh).toBe(false);
    reopened.close();
  });
});
