// The state machine's tables in state.db (DESIGN.md, Storage). Everything a replica needs to
// answer any command or query identically to every other replica lives here, including the
// counters that hand out session, handle, node-instance and waiter ids, so that ids are
// deterministic and survive snapshots. Nothing here depends on the local clock or on rowid
// allocation: every id is taken from the `machine` row.
//
// Invariants (checked where they are relied on):
// - The cell root `/ls/<cell>` always exists and is a permanent directory; every other node's
//   parent exists and is a directory.
// - A handle names (path, instance); it is live while a node with that path and instance exists.
//   Handles of a deleted node stay until closed (they are dead: every use is BAD_HANDLE).
// - lock_holders and lock_waiters rows belong to live handles; a handle holds or waits, not both.
// - Holders of one lock are one exclusive holder or any number of shared holders.
// - sessions.nonce (CreateSession's retry token, NULL if none) is unique among live sessions.
// - sessions.handle_count is the number of handles rows of that session (kept so that the
//   per-session handle limit costs one lookup, not a count).

import type Database from 'better-sqlite3';
import { assert, cellRoot, EMPTY_CHECKSUM } from '@paxlock/shared';

/**
 * Bumped whenever a table changes shape (2: sessions.nonce), so an old state.db fails at open
 * with a clear message instead of a missing-column error on the first command.
 */
export const SCHEMA_VERSION = 2;

const DDL = `
CREATE TABLE machine (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  schema_version INTEGER NOT NULL,
  cell TEXT NOT NULL,
  applied_index INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  next_session INTEGER NOT NULL,
  next_handle INTEGER NOT NULL,
  next_instance INTEGER NOT NULL,
  next_waiter INTEGER NOT NULL
) STRICT;

CREATE TABLE nodes (
  path TEXT PRIMARY KEY,
  parent TEXT,
  is_directory INTEGER NOT NULL,
  is_ephemeral INTEGER NOT NULL,
  contents BLOB NOT NULL,
  instance INTEGER NOT NULL,
  content_generation INTEGER NOT NULL,
  lock_generation INTEGER NOT NULL,
  acl_generation INTEGER NOT NULL,
  checksum TEXT NOT NULL,
  acl_read TEXT NOT NULL,
  acl_write TEXT NOT NULL,
  acl_change TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  modified_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX nodes_by_parent ON nodes (parent, path);

CREATE TABLE sessions (
  id INTEGER PRIMARY KEY,
  client_name TEXT NOT NULL,
  lease_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  last_result TEXT,
  handle_count INTEGER NOT NULL,
  nonce TEXT
) STRICT;
CREATE UNIQUE INDEX sessions_by_nonce ON sessions (nonce);

CREATE TABLE handles (
  id INTEGER PRIMARY KEY,
  session INTEGER NOT NULL,
  path TEXT NOT NULL,
  instance INTEGER NOT NULL,
  event_mask INTEGER NOT NULL,
  lock_delay_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX handles_by_node ON handles (path, instance, id);
CREATE INDEX handles_by_session ON handles (session, id);

CREATE TABLE lock_holders (
  handle INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  session INTEGER NOT NULL,
  mode TEXT NOT NULL,
  since_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX lock_holders_by_path ON lock_holders (path, handle);

CREATE TABLE lock_waiters (
  id INTEGER PRIMARY KEY,
  handle INTEGER NOT NULL UNIQUE,
  path TEXT NOT NULL,
  session INTEGER NOT NULL,
  mode TEXT NOT NULL,
  since_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX lock_waiters_by_path ON lock_waiters (path, id);

CREATE TABLE lock_delays (
  path TEXT PRIMARY KEY,
  ends_ms INTEGER NOT NULL
) STRICT;
`;

/** The tables in the order the digest walks them, each with its canonical (primary-key) order. */
export const DIGEST_TABLES = [
  { table: 'machine', orderBy: 'id' },
  { table: 'nodes', orderBy: 'path' },
  { table: 'sessions', orderBy: 'id' },
  { table: 'handles', orderBy: 'id' },
  { table: 'lock_holders', orderBy: 'handle' },
  { table: 'lock_waiters', orderBy: 'id' },
  { table: 'lock_delays', orderBy: 'path' },
] as const;

function hasSchema(db: Database.Database): boolean {
  const row = db
    .prepare("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'machine'")
    .get();
  return row !== undefined;
}

/**
 * Creates the tables and the cell root in a new database, or checks an existing one belongs to
 * this cell and schema. A mismatch is a deployment bug (the wrong state.db), so it asserts.
 */
export function ensureSchema(db: Database.Database, cell: string): void {
  if (hasSchema(db)) {
    const row = db.prepare('SELECT schema_version, cell FROM machine WHERE id = 1').get() as
      { schema_version: number; cell: string } | undefined;
    assert(row !== undefined, 'state.db has a machine table but no machine row');
    assert(
      row.schema_version === SCHEMA_VERSION,
      `state.db schema ${row.schema_version} is not ${SCHEMA_VERSION}: it was written by another version of paxlock`,
    );
    assert(row.cell === cell, `state.db belongs to cell ${row.cell}, not ${cell}`);
    return;
  }
  db.transaction(() => {
    db.exec(DDL);
    // The cell root is instance 1, created at time 0: before any entry, so identical everywhere.
    db.prepare(
      `INSERT INTO machine (id, schema_version, cell, applied_index, time_ms, next_session, next_handle,
         next_instance, next_waiter) VALUES (1, ?, ?, 0, 0, 1, 1, 2, 1)`,
    ).run(SCHEMA_VERSION, cell);
    db.prepare(
      `INSERT INTO nodes (path, parent, is_directory, is_ephemeral, contents, instance, content_generation,
         lock_generation, acl_generation, checksum, acl_read, acl_write, acl_change, created_ms, modified_ms)
       VALUES (?, NULL, 1, 0, X'', 1, 1, 0, 1, ?, '', '', '', 0, 0)`,
    ).run(cellRoot(cell), EMPTY_CHECKSUM);
  })();
}
