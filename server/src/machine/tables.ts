// Every SQL statement the state machine runs, prepared once per database and typed here, so the
// command code reads as logic and SQLite does no parsing on the hot path. Rows are returned as
// plain objects with SQLite's column names; booleans are 0/1 integers, as SQLite stores them.
// All ordering that reaches a result or an event is explicit (ORDER BY), never rowid luck.
//
// Hot-path reads use better-sqlite3's raw mode (arrays) and build the row objects here: the
// driver spends about 250 ns per column building a row object, several times what an object
// literal costs, and those reads run several times per command (see scripts/bench-machine.ts).
// For the same reason the hottest commands (SetContents, Acquire, Release) read their handle and
// node through one join that selects only the columns they use (contentsTarget, lockTarget,
// livePath), and yes/no or single-value reads use pluck mode, which builds no row at all.

import type Database from 'better-sqlite3';
import { assert } from '@paxlock/shared';
import type { LockMode } from '@paxlock/shared';

export interface MachineRow {
  cell: string;
  applied_index: number;
  time_ms: number;
}

export interface NodeRow {
  path: string;
  parent: string | null;
  is_directory: number;
  is_ephemeral: number;
  instance: number;
  content_generation: number;
  lock_generation: number;
  acl_generation: number;
  checksum: string;
  acl_read: string;
  acl_write: string;
  acl_change: string;
  created_ms: number;
  modified_ms: number;
  size_bytes: number;
}

export interface NewNode {
  path: string;
  parent: string;
  is_directory: number;
  is_ephemeral: number;
  contents: Uint8Array;
  instance: number;
  checksum: string;
  acl_read: string;
  acl_write: string;
  acl_change: string;
  now_ms: number;
}

export interface SessionRow {
  id: number;
  client_name: string;
  lease_ms: number;
  created_ms: number;
  last_seq: number;
  last_result: string | null;
  handle_count: number;
  nonce: string | null;
}

export interface HandleRow {
  id: number;
  session: number;
  path: string;
  instance: number;
  event_mask: number;
  lock_delay_ms: number;
}

export interface HolderRow {
  handle: number;
  path: string;
  session: number;
  mode: LockMode;
  since_ms: number;
}

export interface WaiterRow {
  id: number;
  handle: number;
  path: string;
  session: number;
  mode: LockMode;
  since_ms: number;
}

export interface DelayRow {
  path: string;
  ends_ms: number;
}

/**
 * What SetContents needs of a live handle's node, read in one join: the node and its parent's
 * instance (null only for the cell root, which is a directory and so never written).
 */
export interface ContentsTarget {
  path: string;
  parent: string | null;
  parent_instance: number | null;
  instance: number;
  is_directory: number;
  content_generation: number;
}

/** What Acquire needs of a live handle's node. */
export interface LockTarget {
  path: string;
  instance: number;
  lock_generation: number;
}

export interface WatcherRow {
  id: number;
  session: number;
}

const NODE_COLUMNS = `path, parent, is_directory, is_ephemeral, instance, content_generation, lock_generation,
  acl_generation, checksum, acl_read, acl_write, acl_change, created_ms, modified_ms, length(contents) AS size_bytes`;

type Counter = 'next_session' | 'next_handle' | 'next_instance' | 'next_waiter';

/** A row in raw mode: the columns in SELECT order. */
type Raw = unknown[];

const HANDLE_COLUMNS = 'id, session, path, instance, event_mask, lock_delay_ms';
const HOLDER_COLUMNS = 'handle, path, session, mode, since_ms';
const WAITER_COLUMNS = 'id, handle, path, session, mode, since_ms';

function nodeOf(r: Raw): NodeRow {
  return {
    path: r[0] as string,
    parent: r[1] as string | null,
    is_directory: r[2] as number,
    is_ephemeral: r[3] as number,
    instance: r[4] as number,
    content_generation: r[5] as number,
    lock_generation: r[6] as number,
    acl_generation: r[7] as number,
    checksum: r[8] as string,
    acl_read: r[9] as string,
    acl_write: r[10] as string,
    acl_change: r[11] as string,
    created_ms: r[12] as number,
    modified_ms: r[13] as number,
    size_bytes: r[14] as number,
  };
}

function handleOf(r: Raw): HandleRow {
  return {
    id: r[0] as number,
    session: r[1] as number,
    path: r[2] as string,
    instance: r[3] as number,
    event_mask: r[4] as number,
    lock_delay_ms: r[5] as number,
  };
}

function holderOf(r: Raw): HolderRow {
  return {
    handle: r[0] as number,
    path: r[1] as string,
    session: r[2] as number,
    mode: r[3] as LockMode,
    since_ms: r[4] as number,
  };
}

function waiterOf(r: Raw): WaiterRow {
  return {
    id: r[0] as number,
    handle: r[1] as number,
    path: r[2] as string,
    session: r[3] as number,
    mode: r[4] as LockMode,
    since_ms: r[5] as number,
  };
}

function contentsTargetOf(r: Raw): ContentsTarget {
  return {
    path: r[0] as string,
    parent: r[1] as string | null,
    parent_instance: r[2] as number | null,
    instance: r[3] as number,
    is_directory: r[4] as number,
    content_generation: r[5] as number,
  };
}

function lockTargetOf(r: Raw): LockTarget {
  return { path: r[0] as string, instance: r[1] as number, lock_generation: r[2] as number };
}

function watcherOf(r: Raw): WatcherRow {
  return { id: r[0] as number, session: r[1] as number };
}

export class Tables {
  readonly db: Database.Database;
  readonly #machine: Database.Statement<[], MachineRow>;
  readonly #setProgress: Database.Statement<[number, number]>;
  readonly #counters: Record<Counter, Database.Statement<[], number>>;

  readonly #node: Database.Statement<[string], Raw>;
  readonly #contents: Database.Statement<[string], { contents: Uint8Array }>;
  readonly #insertNode: Database.Statement<[NewNode]>;
  readonly #deleteNode: Database.Statement<[string]>;
  readonly #setContents: Database.Statement<[Uint8Array, string, number, string]>;
  readonly #setAcl: Database.Statement<[string, string, string, string]>;
  readonly #bumpLockGeneration: Database.Statement<[number, string, number]>;
  readonly #hasChild: Database.Statement<[string], number>;
  readonly #children: Database.Statement<
    [string],
    { path: string; is_directory: number; is_ephemeral: number }
  >;

  readonly #lastSeq: Database.Statement<[number], number>;
  readonly #lastResult: Database.Statement<[number], string | null>;
  readonly #sessions: Database.Statement<[], SessionRow>;
  readonly #insertSession: Database.Statement<[number, string, number, number, string | null]>;
  readonly #sessionByNonce: Database.Statement<[string], number>;
  readonly #deleteSession: Database.Statement<[number]>;
  readonly #recordReply: Database.Statement<[number, string, number]>;

  readonly #handle: Database.Statement<[number], Raw>;
  readonly #contentsTarget: Database.Statement<[number, number], Raw>;
  readonly #lockTarget: Database.Statement<[number, number], Raw>;
  readonly #livePath: Database.Statement<[number, number], string>;
  readonly #handlesOfSession: Database.Statement<[number], Raw>;
  readonly #handleCount: Database.Statement<[number], number>;
  readonly #countHandle: Database.Statement<[number, number]>;
  readonly #liveHandleCount: Database.Statement<[string, number], { count: number }>;
  readonly #liveHandles: Database.Statement<[string, number], Raw>;
  readonly #watchers: Database.Statement<[string, number, number, number], Raw>;
  readonly #insertHandle: Database.Statement<[number, number, string, number, number, number]>;
  readonly #deleteHandle: Database.Statement<[number]>;

  readonly #holder: Database.Statement<[number], Raw>;
  readonly #holderPath: Database.Statement<[number], string>;
  readonly #holdsOrWaits: Database.Statement<[number, number], number>;
  readonly #holders: Database.Statement<[string], Raw>;
  readonly #insertHolder: Database.Statement<[number, string, number, LockMode, number]>;
  readonly #deleteHolder: Database.Statement<[number]>;
  readonly #deleteHoldersOf: Database.Statement<[string]>;
  readonly #waiter: Database.Statement<[number], Raw>;
  readonly #waiters: Database.Statement<[string], Raw>;
  readonly #nextWaiter: Database.Statement<[string, number], Raw>;
  readonly #hasWaiter: Database.Statement<[string], number>;
  readonly #insertWaiter: Database.Statement<[number, number, string, number, LockMode, number]>;
  readonly #deleteWaiter: Database.Statement<[number]>;
  readonly #deleteWaitersOf: Database.Statement<[string]>;
  readonly #delay: Database.Statement<[string], DelayRow>;
  readonly #delayEndsMs: Database.Statement<[string], number>;
  readonly #delays: Database.Statement<[], DelayRow>;
  readonly #extendDelay: Database.Statement<[string, number]>;
  readonly #deleteDelay: Database.Statement<[string]>;
  #delaysCache: readonly DelayRow[] | null = null;
  /**
   * How many writing statements have run, so machine.ts can assert that a command it runs
   * without a SAVEPOINT failed before writing anything. Every method that writes counts itself.
   */
  #writeCount = 0;
  readonly #lockPaths: Database.Statement<[], { path: string }>;

  constructor(db: Database.Database) {
    this.db = db;
    this.#machine = db.prepare('SELECT cell, applied_index, time_ms FROM machine WHERE id = 1');
    this.#setProgress = db.prepare(
      'UPDATE machine SET applied_index = ?, time_ms = ? WHERE id = 1',
    );
    const counter = (name: Counter): Database.Statement<[], number> =>
      db
        .prepare<[], number>(
          `UPDATE machine SET ${name} = ${name} + 1 WHERE id = 1 RETURNING ${name} - 1 AS id`,
        )
        .pluck(true);
    this.#counters = {
      next_session: counter('next_session'),
      next_handle: counter('next_handle'),
      next_instance: counter('next_instance'),
      next_waiter: counter('next_waiter'),
    };

    this.#node = db
      .prepare<[string], Raw>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE path = ?`)
      .raw(true);
    this.#contents = db.prepare('SELECT contents FROM nodes WHERE path = ?');
    this.#insertNode = db.prepare(
      `INSERT INTO nodes (path, parent, is_directory, is_ephemeral, contents, instance, content_generation,
         lock_generation, acl_generation, checksum, acl_read, acl_write, acl_change, created_ms, modified_ms)
       VALUES (@path, @parent, @is_directory, @is_ephemeral, @contents, @instance, 1, 0, 1, @checksum,
         @acl_read, @acl_write, @acl_change, @now_ms, @now_ms)`,
    );
    this.#deleteNode = db.prepare('DELETE FROM nodes WHERE path = ?');
    this.#setContents = db.prepare(
      `UPDATE nodes SET contents = ?, checksum = ?, content_generation = content_generation + 1, modified_ms = ?
       WHERE path = ?`,
    );
    this.#setAcl = db.prepare(
      'UPDATE nodes SET acl_read = ?, acl_write = ?, acl_change = ?, acl_generation = acl_generation + 1 WHERE path = ?',
    );
    // Not RETURNING, which costs half as much again: the caller knows the generation it bumps.
    this.#bumpLockGeneration = db.prepare<[number, string, number]>(
      'UPDATE nodes SET lock_generation = ? WHERE path = ? AND lock_generation = ?',
    );
    this.#hasChild = db
      .prepare<[string], number>('SELECT 1 FROM nodes WHERE parent = ? LIMIT 1')
      .pluck(true);
    this.#children = db.prepare(
      'SELECT path, is_directory, is_ephemeral FROM nodes WHERE parent = ? ORDER BY path',
    );

    this.#lastSeq = db
      .prepare<[number], number>('SELECT last_seq FROM sessions WHERE id = ?')
      .pluck(true);
    this.#lastResult = db
      .prepare<[number], string | null>('SELECT last_result FROM sessions WHERE id = ?')
      .pluck(true);
    this.#sessions = db.prepare('SELECT * FROM sessions ORDER BY id');
    this.#insertSession = db.prepare(
      `INSERT INTO sessions (id, client_name, lease_ms, created_ms, last_seq, last_result, handle_count, nonce)
       VALUES (?, ?, ?, ?, 0, NULL, 0, ?)`,
    );
    this.#sessionByNonce = db
      .prepare<[string], number>('SELECT id FROM sessions WHERE nonce = ?')
      .pluck(true);
    this.#deleteSession = db.prepare('DELETE FROM sessions WHERE id = ?');
    this.#recordReply = db.prepare(
      'UPDATE sessions SET last_seq = ?, last_result = ? WHERE id = ?',
    );

    this.#handle = db
      .prepare<[number], Raw>(`SELECT ${HANDLE_COLUMNS} FROM handles WHERE id = ?`)
      .raw(true);
    // A handle is live when a node with its path and instance exists (schema.ts); these joins find
    // nothing for a handle that is absent, another session's or dead, and liveHandle says which.
    this.#contentsTarget = db
      .prepare<[number, number], Raw>(
        `SELECT n.path, n.parent, p.instance, n.instance, n.is_directory, n.content_generation
         FROM handles h JOIN nodes n ON n.path = h.path AND n.instance = h.instance
         LEFT JOIN nodes p ON p.path = n.parent
         WHERE h.id = ? AND h.session = ?`,
      )
      .raw(true);
    this.#lockTarget = db
      .prepare<[number, number], Raw>(
        `SELECT n.path, n.instance, n.lock_generation
         FROM handles h JOIN nodes n ON n.path = h.path AND n.instance = h.instance
         WHERE h.id = ? AND h.session = ?`,
      )
      .raw(true);
    this.#livePath = db
      .prepare<[number, number], string>(
        `SELECT n.path FROM handles h JOIN nodes n ON n.path = h.path AND n.instance = h.instance
         WHERE h.id = ? AND h.session = ?`,
      )
      .pluck(true);
    this.#handlesOfSession = db
      .prepare<[number], Raw>(`SELECT ${HANDLE_COLUMNS} FROM handles WHERE session = ? ORDER BY id`)
      .raw(true);
    this.#handleCount = db
      .prepare<[number], number>('SELECT handle_count FROM sessions WHERE id = ?')
      .pluck(true);
    this.#countHandle = db.prepare<[number, number]>(
      'UPDATE sessions SET handle_count = handle_count + ? WHERE id = ?',
    );
    this.#liveHandleCount = db.prepare(
      'SELECT count(*) AS count FROM handles WHERE path = ? AND instance = ?',
    );
    this.#liveHandles = db
      .prepare<[string, number], Raw>(
        `SELECT ${HANDLE_COLUMNS} FROM handles WHERE path = ? AND instance = ? ORDER BY id`,
      )
      .raw(true);
    this.#watchers = db
      .prepare<[string, number, number, number], Raw>(
        `SELECT id, session FROM handles WHERE path = ? AND instance = ? AND (event_mask & ?) != 0 AND id != ?
         ORDER BY id`,
      )
      .raw(true);
    this.#insertHandle = db.prepare(
      'INSERT INTO handles (id, session, path, instance, event_mask, lock_delay_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#deleteHandle = db.prepare('DELETE FROM handles WHERE id = ?');

    this.#holder = db
      .prepare<[number], Raw>(`SELECT ${HOLDER_COLUMNS} FROM lock_holders WHERE handle = ?`)
      .raw(true);
    this.#holders = db
      .prepare<[string], Raw>(
        `SELECT ${HOLDER_COLUMNS} FROM lock_holders WHERE path = ? ORDER BY handle`,
      )
      .raw(true);
    this.#holderPath = db
      .prepare<[number], string>('SELECT path FROM lock_holders WHERE handle = ?')
      .pluck(true);
    this.#holdsOrWaits = db
      .prepare<[number, number], number>(
        `SELECT EXISTS (SELECT 1 FROM lock_holders WHERE handle = ?)
           OR EXISTS (SELECT 1 FROM lock_waiters WHERE handle = ?)`,
      )
      .pluck(true);
    this.#insertHolder = db.prepare(
      'INSERT INTO lock_holders (handle, path, session, mode, since_ms) VALUES (?, ?, ?, ?, ?)',
    );
    this.#deleteHolder = db.prepare('DELETE FROM lock_holders WHERE handle = ?');
    this.#deleteHoldersOf = db.prepare('DELETE FROM lock_holders WHERE path = ?');
    this.#waiter = db
      .prepare<[number], Raw>(`SELECT ${WAITER_COLUMNS} FROM lock_waiters WHERE handle = ?`)
      .raw(true);
    this.#waiters = db
      .prepare<[string], Raw>(
        `SELECT ${WAITER_COLUMNS} FROM lock_waiters WHERE path = ? ORDER BY id`,
      )
      .raw(true);
    this.#nextWaiter = db
      .prepare<[string, number], Raw>(
        `SELECT ${WAITER_COLUMNS} FROM lock_waiters WHERE path = ? AND id > ? ORDER BY id LIMIT 1`,
      )
      .raw(true);
    this.#hasWaiter = db
      .prepare<[string], number>('SELECT 1 FROM lock_waiters WHERE path = ? LIMIT 1')
      .pluck(true);
    this.#insertWaiter = db.prepare(
      'INSERT INTO lock_waiters (id, handle, path, session, mode, since_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#deleteWaiter = db.prepare('DELETE FROM lock_waiters WHERE handle = ?');
    this.#deleteWaitersOf = db.prepare('DELETE FROM lock_waiters WHERE path = ?');
    this.#delay = db.prepare('SELECT * FROM lock_delays WHERE path = ?');
    this.#delayEndsMs = db
      .prepare<[string], number>('SELECT ends_ms FROM lock_delays WHERE path = ?')
      .pluck(true);
    this.#delays = db.prepare('SELECT * FROM lock_delays ORDER BY ends_ms, path');
    this.#extendDelay = db.prepare(
      `INSERT INTO lock_delays (path, ends_ms) VALUES (?, ?)
       ON CONFLICT (path) DO UPDATE SET ends_ms = max(ends_ms, excluded.ends_ms)`,
    );
    this.#deleteDelay = db.prepare('DELETE FROM lock_delays WHERE path = ?');
    this.#lockPaths = db.prepare(
      `SELECT path FROM lock_holders UNION SELECT path FROM lock_waiters UNION SELECT path FROM lock_delays
       ORDER BY path`,
    );
  }

  get writeCount(): number {
    return this.#writeCount;
  }

  // --- machine row

  machine(): MachineRow {
    const row = this.#machine.get();
    assert(row !== undefined, 'the machine row is missing');
    return row;
  }
  setProgress(appliedIndex: number, timeMs: number): void {
    this.#writeCount++;
    this.#setProgress.run(appliedIndex, timeMs);
  }
  /** Takes the next id from a counter kept in the database. */
  nextId(counter: Counter): number {
    this.#writeCount++;
    const id = this.#counters[counter].get();
    assert(id !== undefined, `counter ${counter} is missing`);
    return id;
  }

  // --- nodes

  node(path: string): NodeRow | undefined {
    const row = this.#node.get(path);
    return row === undefined ? undefined : nodeOf(row);
  }
  contents(path: string): Uint8Array {
    const row = this.#contents.get(path);
    assert(row !== undefined, `contents of missing node ${path}`);
    return row.contents;
  }
  insertNode(node: NewNode): void {
    this.#writeCount++;
    this.#insertNode.run(node);
  }
  deleteNode(path: string): void {
    this.#writeCount++;
    this.#deleteNode.run(path);
  }
  setContents(path: string, contents: Uint8Array, checksum: string, nowMs: number): void {
    this.#writeCount++;
    this.#setContents.run(contents, checksum, nowMs, path);
  }
  setAcl(path: string, read: string, write: string, changeAcl: string): void {
    this.#writeCount++;
    this.#setAcl.run(read, write, changeAcl, path);
  }
  /** Moves the node's lock generation on from `lockGeneration`, which must be its current one. */
  bumpLockGeneration(path: string, lockGeneration: number): number {
    this.#writeCount++;
    const { changes } = this.#bumpLockGeneration.run(lockGeneration + 1, path, lockGeneration);
    assert(changes === 1, `lock generation of ${path} is not ${lockGeneration} or it is missing`);
    return lockGeneration + 1;
  }
  hasChild(path: string): boolean {
    return this.#hasChild.get(path) !== undefined;
  }
  children(path: string): { path: string; is_directory: number; is_ephemeral: number }[] {
    return this.#children.all(path);
  }

  // --- sessions

  /** The session's last applied seq, or undefined if the session does not exist. */
  lastSeq(id: number): number | undefined {
    return this.#lastSeq.get(id);
  }
  /** The recorded result (JSON) of the session's last applied seq. */
  lastResult(id: number): string | null {
    const result = this.#lastResult.get(id);
    assert(result !== undefined, `lastResult of missing session ${id}`);
    return result;
  }
  sessions(): SessionRow[] {
    return this.#sessions.all();
  }
  insertSession(
    id: number,
    options: { clientName: string; leaseMs: number; nowMs: number; nonce: string | null },
  ): void {
    this.#writeCount++;
    this.#insertSession.run(id, options.clientName, options.leaseMs, options.nowMs, options.nonce);
  }
  /** The live session created with this nonce, if any. */
  sessionByNonce(nonce: string): number | undefined {
    return this.#sessionByNonce.get(nonce);
  }
  deleteSession(id: number): void {
    this.#writeCount++;
    this.#deleteSession.run(id);
  }
  recordReply(session: number, seq: number, resultJson: string): void {
    this.#writeCount++;
    this.#recordReply.run(seq, resultJson, session);
  }

  // --- handles

  handle(id: number): HandleRow | undefined {
    const row = this.#handle.get(id);
    return row === undefined ? undefined : handleOf(row);
  }
  /** The node of the session's live handle, as SetContents needs it; undefined if not live. */
  contentsTarget(session: number, handleId: number): ContentsTarget | undefined {
    const row = this.#contentsTarget.get(handleId, session);
    return row === undefined ? undefined : contentsTargetOf(row);
  }
  /** The node of the session's live handle, as Acquire needs it; undefined if not live. */
  lockTarget(session: number, handleId: number): LockTarget | undefined {
    const row = this.#lockTarget.get(handleId, session);
    return row === undefined ? undefined : lockTargetOf(row);
  }
  /** The path of the session's live handle; undefined if not live. */
  livePath(session: number, handleId: number): string | undefined {
    return this.#livePath.get(handleId, session);
  }
  handlesOfSession(session: number): HandleRow[] {
    return this.#handlesOfSession.all(session).map(handleOf);
  }
  handleCount(session: number): number {
    return this.#handleCount.get(session) ?? 0;
  }
  liveHandleCount(path: string, instance: number): number {
    return this.#liveHandleCount.get(path, instance)?.count ?? 0;
  }
  liveHandles(path: string, instance: number): HandleRow[] {
    return this.#liveHandles.all(path, instance).map(handleOf);
  }
  /** Live handles on a node subscribed to `bit`, except `exceptHandle` (0 excludes none). */
  watchers(path: string, instance: number, bit: number, exceptHandle: number): WatcherRow[] {
    return this.#watchers.all(path, instance, bit, exceptHandle).map(watcherOf);
  }
  insertHandle(handle: HandleRow): void {
    this.#writeCount++;
    this.#insertHandle.run(
      handle.id,
      handle.session,
      handle.path,
      handle.instance,
      handle.event_mask,
      handle.lock_delay_ms,
    );
    this.#writeCount++;
    this.#countHandle.run(1, handle.session);
  }
  deleteHandle(handle: HandleRow): void {
    this.#writeCount++;
    this.#deleteHandle.run(handle.id);
    this.#writeCount++;
    this.#countHandle.run(-1, handle.session);
  }

  // --- locks

  holder(handle: number): HolderRow | undefined {
    const row = this.#holder.get(handle);
    return row === undefined ? undefined : holderOf(row);
  }
  /** The path whose lock the handle holds, if it holds one. */
  holderPath(handle: number): string | undefined {
    return this.#holderPath.get(handle);
  }
  /** Whether the handle holds its node's lock or waits for it. */
  holdsOrWaits(handle: number): boolean {
    return this.#holdsOrWaits.get(handle, handle) === 1;
  }
  holders(path: string): HolderRow[] {
    return this.#holders.all(path).map(holderOf);
  }
  insertHolder(holder: HolderRow): void {
    this.#writeCount++;
    this.#insertHolder.run(
      holder.handle,
      holder.path,
      holder.session,
      holder.mode,
      holder.since_ms,
    );
  }
  deleteHolder(handle: number): void {
    this.#writeCount++;
    this.#deleteHolder.run(handle);
  }
  deleteHoldersOf(path: string): void {
    this.#writeCount++;
    this.#deleteHoldersOf.run(path);
  }
  waiter(handle: number): WaiterRow | undefined {
    const row = this.#waiter.get(handle);
    return row === undefined ? undefined : waiterOf(row);
  }
  waiters(path: string): WaiterRow[] {
    return this.#waiters.all(path).map(waiterOf);
  }
  /** The waiter for `path` queued next after waiter `afterId` (0: the head of the queue). */
  nextWaiter(path: string, afterId: number): WaiterRow | undefined {
    const row = this.#nextWaiter.get(path, afterId);
    return row === undefined ? undefined : waiterOf(row);
  }
  hasWaiter(path: string): boolean {
    return this.#hasWaiter.get(path) !== undefined;
  }
  insertWaiter(waiter: WaiterRow): void {
    this.#writeCount++;
    this.#insertWaiter.run(
      waiter.id,
      waiter.handle,
      waiter.path,
      waiter.session,
      waiter.mode,
      waiter.since_ms,
    );
  }
  deleteWaiter(handle: number): void {
    this.#writeCount++;
    this.#deleteWaiter.run(handle);
  }
  deleteWaitersOf(path: string): void {
    this.#writeCount++;
    this.#deleteWaitersOf.run(path);
  }
  delay(path: string): DelayRow | undefined {
    return this.#delay.get(path);
  }
  /** When the path's pending lock-delay ends, if it has one. */
  delayEndsMs(path: string): number | undefined {
    return this.#delayEndsMs.get(path);
  }
  /**
   * Every pending lock-delay, earliest end first. The master asks after every turn, and the
   * table changes only through extendDelay and deleteDelay, so the rows are read again only
   * after one of those ran (a rolled-back change just costs one more read).
   */
  delays(): readonly DelayRow[] {
    this.#delaysCache ??= this.#delays.all();
    return this.#delaysCache;
  }
  /** Sets a lock-delay on a path, never shortening one already pending. */
  extendDelay(path: string, endsMs: number): void {
    this.#delaysCache = null;
    this.#writeCount++;
    this.#extendDelay.run(path, endsMs);
  }
  deleteDelay(path: string): void {
    this.#delaysCache = null;
    this.#writeCount++;
    this.#deleteDelay.run(path);
  }
  /** Paths with a holder, a waiter or a lock-delay, sorted. */
  lockPaths(): string[] {
    return this.#lockPaths.all().map((row) => row.path);
  }
}
