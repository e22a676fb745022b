// Proves apply()'s contract: slots in order, one transaction per entry, entry time that never
// goes back, every bad input rejected with a typed error and the state unchanged (digest equal to
// a twin that applied an empty entry), a failing command rolls back whatever it did, and
// snapshots restore to an identical machine in memory and on a WAL file.
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { AssertionError, isErrorCode, LIMITS } from '@paxlock/shared';
import { StateMachine } from '../../src/machine/index.ts';
import { bytes, CELL, errorCode, Harness, ROOT } from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'paxlock-machine-test-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A machine with a little of everything: sessions, files, a lock, a waiter, a lock-delay. */
function populated(): Harness {
  const h = new Harness();
  const s = h.session();
  const t = h.session();
  const f = h.handle(s, `${ROOT}/f`, { contents: bytes('hello'), lockDelayMs: 9_000 });
  h.handle(t, `${ROOT}/d`, { directory: true, ephemeral: true });
  h.acquire(s, f);
  h.acquire(t, h.handle(t, `${ROOT}/f`), 'shared', true);
  const g = h.handle(s, `${ROOT}/g`, { lockDelayMs: 9_000 });
  h.acquire(s, g);
  h.send('Release', s, { handle: g });
  return h;
}

describe('apply', () => {
  test('asserts that slots come in order', () => {
    const h = new Harness();
    expect(() => h.machine.apply({ slot: 2, stampMs: 0, commands: [] })).toThrow(AssertionError);
    h.machine.apply({ slot: 1, stampMs: 0, commands: [] });
    expect(() => h.machine.apply({ slot: 1, stampMs: 0, commands: [] })).toThrow(AssertionError);
    expect(h.machine.appliedIndex).toBe(1);
  });

  test('time is the entry stamp and never goes back', () => {
    const h = new Harness();
    h.machine.apply({ slot: 1, stampMs: 5_000, commands: [] });
    expect(h.machine.timeMs).toBe(5_000);
    h.machine.apply({
      slot: 2,
      stampMs: 3_000,
      commands: [{ type: 'CreateSession', clientName: 'x', leaseMs: 12_000 }],
    });
    expect(h.machine.timeMs).toBe(5_000);
    expect(h.query({ type: 'ListSessions' })).toMatchObject({ sessions: [{ createdMs: 5_000 }] });
  });

  test('applied index and time survive reopening the database', () => {
    const path = join(dir, 'reopen.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    const machine = StateMachine.open(db, { cell: CELL });
    machine.apply({
      slot: 1,
      stampMs: 7,
      commands: [{ type: 'CreateSession', clientName: 'x', leaseMs: 12_000 }],
    });
    const digest = machine.digest();
    db.close();
    const again = StateMachine.open(new Database(path), { cell: CELL });
    expect(again.appliedIndex).toBe(1);
    expect(again.timeMs).toBe(7);
    expect(again.digest()).toBe(digest);
    expect(() => StateMachine.open(new Database(path), { cell: 'other' })).toThrow(AssertionError);
    again.database.close();
  });

  test.each([
    [
      'a holder without a handle',
      "INSERT INTO lock_holders VALUES (99, '/ls/c/f', 1, 'exclusive', 0)",
    ],
    ['an orphan node', "UPDATE nodes SET parent = '/ls/c/gone' WHERE path = '/ls/c/f'"],
    ['a wrong handle count', 'UPDATE sessions SET handle_count = 7'],
    ['a counter behind its ids', 'UPDATE machine SET next_handle = 1'],
    ['an ephemeral node nobody keeps', "UPDATE nodes SET is_ephemeral = 1 WHERE path = '/ls/c/g'"],
  ])('opening a database with %s asserts', (_what, sql) => {
    const h = new Harness();
    const s = h.session();
    h.handle(s, `${ROOT}/f`);
    h.send('Close', s, { handle: h.handle(s, `${ROOT}/g`) });
    const db = h.machine.database;
    db.exec(sql);
    expect(() => StateMachine.open(db, { cell: CELL })).toThrow(AssertionError);
  });

  test('a bug part-way through an entry rolls the whole entry back', () => {
    const h = new Harness();
    const s = h.session();
    const f = h.handle(s, `${ROOT}/f`);
    const digest = h.machine.digest();
    const applied = h.machine.appliedIndex;
    // Break an invariant behind the machine's back: the file loses its parent row, so the
    // SetContents below writes the contents and then trips an assertion looking for the parent.
    h.machine.database
      .prepare("UPDATE nodes SET parent = '/ls/c/gone' WHERE path = ?")
      .run(`${ROOT}/f`);
    const broken = h.machine.digest();
    const entry = {
      slot: applied + 1,
      stampMs: 5_000,
      commands: [
        { type: 'CreateSession', clientName: 'y', leaseMs: 12_000 },
        { type: 'SetContents', session: s, seq: h.nextSeq(s), handle: f, contents: bytes('x') },
      ],
    };
    expect(() => h.machine.apply(entry)).toThrow(AssertionError);
    expect(h.machine.appliedIndex).toBe(applied);
    expect(h.machine.timeMs).toBe(1_000);
    expect(h.machine.digest()).toBe(broken);
    expect(broken).not.toBe(digest);
  });

  test('SetContents, Acquire and Release, run without a savepoint, change nothing when they fail', () => {
    // Two twins with subscribers on the file and on its parent; one applies an entry with every
    // failure these three commands have between good commands, the other only the good ones.
    const twin = (): { h: Harness; s: number; t: number; f: number; g: number; d: number } => {
      const h = new Harness();
      const s = h.session();
      const t = h.session();
      h.handle(t, ROOT, { directory: true, eventMask: 63 });
      const f = h.handle(s, `${ROOT}/f`, { contents: bytes('one') });
      h.handle(t, `${ROOT}/f`, { eventMask: 63 });
      const g = h.handle(t, `${ROOT}/f`);
      h.acquire(t, g);
      const d = h.handle(s, `${ROOT}/d`, { directory: true });
      return { h, s, t, f, g, d };
    };
    const a = twin();
    const b = twin();
    expect(a.h.machine.digest()).toBe(b.h.machine.digest());
    const { s, t, f, g, d } = a;
    const seq = 100;
    const good = [
      { type: 'SetContents', session: s, seq, handle: f, contents: bytes('two') },
      { type: 'Release', session: t, seq, handle: g },
      { type: 'Acquire', session: s, seq: seq + 9, handle: f, mode: 'exclusive', wait: false },
    ];
    const failing = [
      {
        type: 'SetContents',
        session: s,
        seq: seq + 1,
        handle: f,
        contents: bytes('x'),
        ifGeneration: 1,
      },
      { type: 'SetContents', session: s, seq: seq + 2, handle: d, contents: bytes('x') },
      { type: 'SetContents', session: t, seq: seq + 1, handle: f, contents: bytes('x') },
      { type: 'Acquire', session: s, seq: seq + 3, handle: f, mode: 'shared', wait: false },
      { type: 'Acquire', session: t, seq: seq + 2, handle: g, mode: 'exclusive', wait: true },
      { type: 'Acquire', session: s, seq: seq + 4, handle: d + 1, mode: 'exclusive', wait: false },
      { type: 'Release', session: s, seq: seq + 5, handle: f },
      { type: 'Release', session: t, seq: seq + 3, handle: g },
    ];
    const [first, second, third] = good;
    const withFailures = a.h.entry(
      first,
      ...failing.slice(0, 5),
      second,
      ...failing.slice(5),
      third,
    );
    const withoutFailures = b.h.entry(...good);
    expect(
      withFailures.results.map((result) => (result.type === 'error' ? result.code : result.type)),
    ).toEqual([
      'contents-set',
      'CAS_MISMATCH',
      'IS_A_DIRECTORY',
      'BAD_HANDLE',
      'LOCK_HELD',
      'LOCK_ALREADY_OWNED',
      'released',
      'BAD_HANDLE',
      'LOCK_NOT_HELD',
      'LOCK_NOT_HELD',
      'acquired',
    ]);
    const kept = [0, 6, 10].map((index) => withFailures.results[index]);
    expect(kept).toEqual(withoutFailures.results);
    expect(withFailures.events).toEqual(withoutFailures.events);
    expect(withFailures.events.length).toBeGreaterThan(0);
    expect(a.h.machine.digest()).toBe(b.h.machine.digest());
  });

  test('results answer commands one to one, and later commands see earlier ones in the entry', () => {
    const h = new Harness();
    const { results } = h.entry(
      { type: 'CreateSession', clientName: 'x', leaseMs: 12_000 },
      {
        type: 'Open',
        session: 1,
        seq: 1,
        path: `${ROOT}/f`,
        create: 'must',
        ephemeral: false,
        directory: false,
        eventMask: 0,
        lockDelayMs: 0,
      },
      {
        type: 'Open',
        session: 1,
        seq: 2,
        path: `${ROOT}/f`,
        create: 'must',
        ephemeral: false,
        directory: false,
        eventMask: 0,
        lockDelayMs: 0,
      },
      { type: 'Close', session: 1, seq: 3, handle: 1 },
    );
    expect(results.map((result) => (result.type === 'error' ? result.code : result.type))).toEqual([
      'session-created',
      'opened',
      'EXISTS',
      'closed',
    ]);
  });

  test('commands beyond the per-entry cap are refused with TOO_MANY', () => {
    const h = new Harness();
    const commands = Array.from({ length: LIMITS.commandsPerEntryMax + 2 }, () => ({
      type: 'Nope',
    }));
    const { results } = h.entry(...commands);
    expect(results).toHaveLength(commands.length);
    expect(errorCode(results.at(-1)!)).toBe('TOO_MANY');
    expect(errorCode(results[0]!)).toBe('BAD_REQUEST');
  });
});

describe('bad input', () => {
  const huge = `${ROOT}/${'a'.repeat(LIMITS.pathMaxBytes * 4)}`;
  const cases: [string, unknown, string][] = [
    ['not an object', 42, 'BAD_REQUEST'],
    ['null', null, 'BAD_REQUEST'],
    ['a string', 'Open', 'BAD_REQUEST'],
    ['an unknown type', { type: 'Rename', session: 1, seq: 9 }, 'BAD_REQUEST'],
    ['a missing field', { type: 'SetContents', session: 1, seq: 9, handle: 1 }, 'BAD_REQUEST'],
    [
      'a wrong type',
      { type: 'Acquire', session: 1, seq: 9, handle: '1', mode: 'exclusive', wait: false },
      'BAD_REQUEST',
    ],
    ['a negative handle', { type: 'Close', session: 1, seq: 9, handle: -1 }, 'BAD_REQUEST'],
    ['NaN seq', { type: 'Close', session: 1, seq: Number.NaN, handle: 1 }, 'BAD_REQUEST'],
    [
      'a huge path',
      {
        type: 'Open',
        session: 1,
        seq: 9,
        path: huge,
        create: 'may',
        ephemeral: false,
        directory: false,
        eventMask: 0,
        lockDelayMs: 0,
      },
      'BAD_PATH',
    ],
    [
      'a malformed path',
      {
        type: 'Open',
        session: 1,
        seq: 9,
        path: '/ls/c/a//b',
        create: 'may',
        ephemeral: false,
        directory: false,
        eventMask: 0,
        lockDelayMs: 0,
      },
      'BAD_PATH',
    ],
    [
      'another cell',
      {
        type: 'Open',
        session: 1,
        seq: 9,
        path: '/ls/d/a',
        create: 'may',
        ephemeral: false,
        directory: false,
        eventMask: 0,
        lockDelayMs: 0,
      },
      'BAD_PATH',
    ],
    [
      'too-large contents',
      {
        type: 'SetContents',
        session: 1,
        seq: 9,
        handle: 1,
        contents: new Uint8Array(LIMITS.fileContentsMaxBytes + 1),
      },
      'TOO_LARGE',
    ],
    ['an unknown session', { type: 'Close', session: 77, seq: 9, handle: 1 }, 'SESSION_EXPIRED'],
    [
      'an unknown handle',
      { type: 'SetContents', session: 1, seq: 9, handle: 999, contents: new Uint8Array(1) },
      'BAD_HANDLE',
    ],
    ["another session's handle", { type: 'Release', session: 1, seq: 9, handle: 2 }, 'BAD_HANDLE'],
    ['expiring an unknown session', { type: 'ExpireSession', session: 77 }, 'SESSION_EXPIRED'],
    [
      'a prototype-polluting object',
      JSON.parse('{"type":"Close","session":1,"seq":9,"handle":1,"__proto__":{"x":1}}'),
      'BAD_REQUEST',
    ],
  ];

  test.each(cases)(
    '%s is rejected with a typed error and leaves the digest unchanged',
    (_what, command, code) => {
      const h = populated();
      const twin = new Harness(StateMachine.restore(h.machine.snapshot(), { cell: CELL }));
      const { results, events } = h.machine.apply({
        slot: h.machine.appliedIndex + 1,
        stampMs: h.nowMs,
        commands: [command],
      });
      twin.machine.apply({ slot: twin.machine.appliedIndex + 1, stampMs: h.nowMs, commands: [] });
      expect(errorCode(results[0]!)).toBe(code);
      expect(events).toEqual([]);
      expect(h.machine.digest()).toBe(twin.machine.digest());
    },
  );

  test('queries with bad input get typed errors', () => {
    const h = populated();
    for (const query of [
      null,
      { type: 'GetStat' },
      { type: 'Drop' },
      { type: 'GetStat', session: 1, handle: 999 },
      { type: 'ReadDir', session: 99, handle: 1 },
    ]) {
      const result = h.query(query);
      expect(result.type).toBe('error');
      if (result.type === 'error') expect(isErrorCode(result.code)).toBe(true);
    }
  });
});

describe('digest and snapshots', () => {
  test('equal states give equal digests; any change moves it', () => {
    const a = populated();
    const b = populated();
    expect(a.machine.digest()).toBe(b.machine.digest());
    a.setContents(1, 1, 'changed');
    expect(a.machine.digest()).not.toBe(b.machine.digest());
  });

  test('a restored snapshot has the same digest and carries on identically', () => {
    const h = populated();
    const restored = new Harness(StateMachine.restore(h.machine.snapshot(), { cell: CELL }));
    restored.nowMs = h.nowMs;
    expect(restored.machine.appliedIndex).toBe(h.machine.appliedIndex);
    expect(restored.machine.digest()).toBe(h.machine.digest());
    const next = { type: 'ExpireSession', session: 1 };
    expect(restored.run(next)).toEqual(h.run(next));
    expect(restored.machine.digest()).toBe(h.machine.digest());
  });

  test('a WAL file database snapshots and restores to a file and to memory', () => {
    const db = new Database(join(dir, 'wal.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    const h = new Harness(StateMachine.open(db, { cell: CELL }));
    const s = h.session();
    h.handle(s, `${ROOT}/f`, { contents: bytes('on disk') });
    const snapshot = h.machine.snapshot();
    const inMemory = StateMachine.restore(snapshot, { cell: CELL });
    expect(inMemory.digest()).toBe(h.machine.digest());
    const path = join(dir, 'restored.db');
    StateMachine.restoreToFile(snapshot, path);
    const fileDb = new Database(path);
    fileDb.pragma('journal_mode = WAL');
    const fromFile = StateMachine.open(fileDb, { cell: CELL });
    expect(fromFile.digest()).toBe(h.machine.digest());
    expect(fromFile.appliedIndex).toBe(h.machine.appliedIndex);
    const entry = {
      slot: h.machine.appliedIndex + 1,
      stampMs: 9_000,
      commands: [{ type: 'ExpireSession', session: s }],
    };
    expect(fromFile.apply(entry)).toEqual(h.machine.apply(entry));
    expect(fromFile.digest()).toBe(h.machine.digest());
    fileDb.close();
    db.close();
  });

  test('a snapshot of a node-less machine is only the schema and cell root', () => {
    const h = new Harness();
    const restored = StateMachine.restore(h.machine.snapshot(), { cell: CELL });
    expect(restored.digest()).toBe(h.machine.digest());
    expect(restored.appliedIndex).toBe(0);
  });
});
