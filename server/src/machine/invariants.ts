// The state machine's invariants (schema.ts lists them), checked with SQL over the whole
// database. The machine checks them when it opens a database, so a state.db broken on disk or by
// a bad snapshot crashes the replica at startup instead of being served (STYLE.md: check state
// after reading it). Tests run them after every entry. Each check counts violating rows; one
// that is not zero is a bug, reported by name.

import type Database from 'better-sqlite3';

const CHECKS: readonly { readonly name: string; readonly sql: string }[] = [
  {
    name: 'exactly one node without a parent, and it is a permanent directory',
    sql: `SELECT (SELECT count(*) FROM nodes WHERE parent IS NULL) != 1
            OR (SELECT count(*) FROM nodes WHERE parent IS NULL AND is_directory = 1 AND is_ephemeral = 0) != 1`,
  },
  {
    name: 'every node has a parent directory',
    sql: `SELECT count(*) FROM nodes n WHERE n.parent IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM nodes p WHERE p.path = n.parent AND p.is_directory = 1)`,
  },
  {
    name: 'every ephemeral node is kept alive by a live handle or (a directory) a child',
    sql: `SELECT count(*) FROM nodes n WHERE n.is_ephemeral = 1
            AND NOT EXISTS (SELECT 1 FROM handles h WHERE h.path = n.path AND h.instance = n.instance)
            AND NOT (n.is_directory = 1 AND EXISTS (SELECT 1 FROM nodes c WHERE c.parent = n.path))`,
  },
  {
    name: 'every handle belongs to a session',
    sql: `SELECT count(*) FROM handles h WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = h.session)`,
  },
  {
    name: "sessions.handle_count is the session's number of handles",
    sql: `SELECT count(*) FROM sessions s
            WHERE s.handle_count != (SELECT count(*) FROM handles h WHERE h.session = s.id)`,
  },
  {
    name: 'every holder is a live handle of its session on that node',
    sql: `SELECT count(*) FROM lock_holders l
            LEFT JOIN handles h ON h.id = l.handle
            LEFT JOIN nodes n ON n.path = h.path AND n.instance = h.instance
            WHERE n.path IS NULL OR h.path != l.path OR h.session != l.session
              OR l.mode NOT IN ('exclusive', 'shared')`,
  },
  {
    name: 'every waiter is a live handle of its session on that node',
    sql: `SELECT count(*) FROM lock_waiters w
            LEFT JOIN handles h ON h.id = w.handle
            LEFT JOIN nodes n ON n.path = h.path AND n.instance = h.instance
            WHERE n.path IS NULL OR h.path != w.path OR h.session != w.session
              OR w.mode NOT IN ('exclusive', 'shared')`,
  },
  {
    name: 'no handle both holds and waits',
    sql: `SELECT count(*) FROM lock_holders l JOIN lock_waiters w ON w.handle = l.handle`,
  },
  {
    name: 'an exclusive holder holds alone',
    sql: `SELECT count(*) FROM (SELECT path FROM lock_holders GROUP BY path
            HAVING sum(mode = 'exclusive') > 0 AND count(*) > 1)`,
  },
  {
    name: 'a held lock has a lock generation',
    sql: `SELECT count(*) FROM lock_holders l JOIN nodes n ON n.path = l.path WHERE n.lock_generation < 1`,
  },
  {
    // The queue only stands still behind a conflicting holder or a lock-delay not yet ended by
    // LockDelayEnd: otherwise some grant was missed.
    name: 'a queue without a lock-delay waits behind a conflicting holder',
    sql: `SELECT count(*) FROM lock_waiters w
            WHERE w.id = (SELECT min(id) FROM lock_waiters w2 WHERE w2.path = w.path)
              AND NOT EXISTS (SELECT 1 FROM lock_delays d WHERE d.path = w.path)
              AND NOT EXISTS (SELECT 1 FROM lock_holders l WHERE l.path = w.path
                                AND (w.mode = 'exclusive' OR l.mode = 'exclusive'))`,
  },
  {
    name: 'every counter is past the ids it has handed out',
    sql: `SELECT count(*) FROM machine m WHERE
            m.next_session <= (SELECT coalesce(max(id), 0) FROM sessions)
            OR m.next_handle <= (SELECT coalesce(max(id), 0) FROM handles)
            OR m.next_instance <= (SELECT coalesce(max(instance), 0) FROM nodes)
            OR m.next_waiter <= (SELECT coalesce(max(id), 0) FROM lock_waiters)
            OR (SELECT count(*) FROM machine) != 1`,
  },
];

export type InvariantStatements = readonly {
  readonly name: string;
  readonly statement: Database.Statement<[], number>;
}[];

export function prepareInvariants(db: Database.Database): InvariantStatements {
  return CHECKS.map(({ name, sql }) => ({
    name,
    statement: db.prepare<[], number>(sql).pluck(true),
  }));
}

/** The names of the invariants the database breaks; empty when it is sound. */
export function invariantViolations(statements: InvariantStatements): string[] {
  return statements.filter(({ statement }) => (statement.get() ?? 0) !== 0).map(({ name }) => name);
}
