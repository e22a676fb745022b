// paxlock-server --restore (runtime/restore.ts): a backup becomes state.db only in an empty data
// directory and only if it is a paxlock state of this cell with at least one applied entry; then
// the installed file opens as the same state, at the same slot.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { StateMachine } from '../../src/machine/index.ts';
import { incarnationOf, RestoreError, restoreBackup } from '../../src/runtime/restore.ts';
import { SqliteStore } from '../../src/storage/sqlite-store.ts';
import { bytes, CELL, Harness, ROOT } from '../machine/harness.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'paxlock-restore-test-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A backup as GET /backup serves it: the serialized state of a machine with a file in it. */
function backupFile(): { file: string; slot: number; digest: string } {
  const h = new Harness();
  const s = h.session();
  h.handle(s, `${ROOT}/kept`, { contents: bytes('kept across the restore') });
  const file = join(dir, 'backup.db');
  writeFileSync(file, h.machine.snapshot());
  return { file, slot: h.machine.appliedIndex, digest: h.machine.digest() };
}

describe('restoreBackup', () => {
  test('installs the backup as state.db, which opens at the same slot with the same state', () => {
    const { file, slot, digest } = backupFile();
    const dataDir = join(dir, 'r1');
    const restored = restoreBackup({ file, dataDir, cell: CELL });
    expect(restored.slot).toBe(slot);
    expect(readdirSync(dataDir).sort()).toEqual(['paxos.db', 'state.db']);
    // paxos.db is fresh (no restart wait, no log) but records the backup's history.
    const store = new SqliteStore({ path: join(dataDir, 'paxos.db') });
    expect(store.load()).toMatchObject({ isFresh: true, commit: 0, entries: [] });
    expect(store.incarnation).toBe(restored.incarnation);
    store.close();
    // The same file gives every replica the same history; another backup another one.
    expect(restoreBackup({ file, dataDir: join(dir, 'r2'), cell: CELL }).incarnation).toBe(restored.incarnation);
    expect(incarnationOf(Buffer.from('another backup'))).not.toBe(restored.incarnation);
    const db = new Database(join(dataDir, 'state.db'));
    const machine = StateMachine.open(db, { cell: CELL });
    expect(machine.appliedIndex).toBe(slot);
    expect(machine.digest()).toBe(digest);
    db.close();
  });

  test('refuses a data directory with a state of its own, WAL leftovers included, writing nothing', () => {
    const { file } = backupFile();
    for (const existing of ['paxos.db', 'state.db', 'state.db-wal', 'state.db-shm', 'paxos.db-wal', 'paxos.db-shm']) {
      const dataDir = join(dir, `has-${existing}`);
      mkdirSync(dataDir);
      writeFileSync(join(dataDir, existing), 'x');
      expect(() => restoreBackup({ file, dataDir, cell: CELL })).toThrow(new RegExp(`already holds ${existing.replace(/\./g, '\\.')}`));
      expect(readdirSync(dataDir)).toEqual([existing]);
    }
    // A paxos.db of the cell's original history (written, no incarnation recorded).
    const used = join(dir, 'used');
    mkdirSync(used);
    const store = new SqliteStore({ path: join(used, 'paxos.db') });
    store.persist({ promised: { round: 1, replica: 1 }, accepted: [], chosen: [], commit: null, compactBelow: null, admitted: [] });
    store.close();
    expect(() => restoreBackup({ file, dataDir: used, cell: CELL })).toThrow(/already holds paxos\.db \(not restored from this backup\)/);
    expect(readdirSync(used)).toEqual(['paxos.db']);
  });

  test('restoring again from the same backup leaves the directory alone; from another backup is refused', () => {
    const { file } = backupFile();
    const dataDir = join(dir, 'r1');
    expect(restoreBackup({ file, dataDir, cell: CELL }).isAlreadyRestored).toBe(false);
    // The replica ran a while: its state moved on past the backup.
    const db = new Database(join(dataDir, 'state.db'));
    const h = new Harness(StateMachine.open(db, { cell: CELL }));
    h.session();
    const moved = h.machine.appliedIndex;
    db.close();
    const again = restoreBackup({ file, dataDir, cell: CELL });
    expect(again.isAlreadyRestored).toBe(true);
    const reopened = new Database(join(dataDir, 'state.db'));
    expect(StateMachine.open(reopened, { cell: CELL }).appliedIndex).toBe(moved);
    reopened.close();
    const other = join(dir, 'other.db');
    const h2 = new Harness();
    h2.session();
    h2.session();
    writeFileSync(other, h2.machine.snapshot());
    expect(() => restoreBackup({ file: other, dataDir, cell: CELL })).toThrow(/not restored from this backup/);
  });

  test('refuses a backup of another cell, a file that is not a database, a missing file and an empty state', () => {
    const { file } = backupFile();
    const dataDir = join(dir, 'r1');
    expect(() => restoreBackup({ file, dataDir, cell: 'other' })).toThrow(/belongs to cell c, not other/);
    const text = join(dir, 'notes.txt');
    writeFileSync(text, 'not a database at all, just some words long enough to fill a header page');
    expect(() => restoreBackup({ file: text, dataDir, cell: CELL })).toThrow(RestoreError);
    expect(() => restoreBackup({ file: join(dir, 'missing.db'), dataDir, cell: CELL })).toThrow(/cannot read/);
    const empty = join(dir, 'empty.db');
    writeFileSync(empty, StateMachine.createInMemory({ cell: CELL }).snapshot());
    expect(() => restoreBackup({ file: empty, dataDir, cell: CELL })).toThrow(/no applied log entry/);
    expect(existsSync(join(dataDir, 'state.db'))).toBe(false);
  });
});
