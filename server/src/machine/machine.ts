// The replicated state machine (Burrows 2006, sections 2.3-2.8; DESIGN.md, Storage): Chubby's
// files, locks and sessions in one SQLite database (state.db), changed only by applying chosen
// log entries in slot order. Pure and synchronous: it reads nothing but the entry and the
// database, never a clock, randomness or the process (the lint fence enforces this), so every
// replica that applies the same log holds the same state, which digest() lets them check.
//
// API
//   const machine = StateMachine.open(db, { cell });    // creates the schema in a new database
//   StateMachine.createInMemory({ cell });               // the same on ':memory:' (simulator)
//   const { results, events } = machine.apply({ slot, stampMs, commands });
//   machine.query(q);                                    // read-only; q is `unknown`, validated
//   machine.appliedIndex; machine.timeMs;                // the last applied slot and its time
//   machine.digest();                                    // 16 hex digits, see digest.ts
//   machine.pendingLockDelays();                         // when to propose LockDelayEnd
//   const bytes = machine.snapshot();                    // the whole database, serialized (tests,
//                                                        //   the simulator; a replica copies state.db
//                                                        //   with the backup API: runtime/state-copy.ts)
//   StateMachine.appliedIndexOf(copyDb, { cell });       // the slot of a copy of state.db
//   StateMachine.restore(bytes, { cell });               // an in-memory machine from a snapshot
//   StateMachine.restoreToFile(bytes, path);             // writes a snapshot as a database file
//
// The caller owns the database: it opens it, sets pragmas (state.db: WAL, synchronous=NORMAL)
// and closes it. The machine works the same on ':memory:' and on a file.
//
// apply(entry) rules:
// - entry.slot must be appliedIndex + 1 (asserted: the caller applies each slot once, in order).
// - One SQLite transaction covers the whole entry and the new applied_index, so a crash leaves
//   the database at an entry boundary; a replica replays the log from applied_index + 1.
// - Time is max(previous entry's time, entry.stampMs): the master's stamp, never going back.
// - Each command is `unknown` until validateCommand accepts it; an invalid one gets an error
//   result and changes nothing. A failing valid command changes nothing and emits no events:
//   each runs in its own SAVEPOINT, which a failure rolls back, except the commands in
//   NO_SAVEPOINT, which fail only before their first write. results[i] answers commands[i].
// - Exactly-once: a session command whose seq is at or below the session's last applied seq is
//   not applied again. The same seq as the last gets the recorded result; an older one gets
//   STALE_SEQ. Only successes are recorded: a failed command changed nothing, so applying its
//   retry afresh is indistinguishable from the first attempt never having reached the log.
// - Events are in the order the commands caused them, each addressed to one (session, handle);
//   the caller delivers them after the entry is committed.

import Database from 'better-sqlite3';
import {
  assert,
  assertNever,
  ErrorCode,
  isValidationError,
  LIMITS,
  validateCommand,
  validateQuery,
} from '@paxlock/shared';
import type {
  Acquire,
  CommandResult,
  MachineCommand,
  MachineEvent,
  QueryResult,
  SessionCommand,
} from '@paxlock/shared';
import { CommandFailure, type Context } from './context.ts';
import { computeDigest, prepareDigest, type DigestStatements } from './digest.ts';
import { close, deleteThroughHandle, open, setAcl, setContents } from './files.ts';
import { acquire, cancelWait, lockDelayEnd, release, wouldQueue } from './locks.ts';
import { invariantViolations, prepareInvariants, type InvariantStatements } from './invariants.ts';
import { errorResult, runQuery } from './queries.ts';
import { ensureSchema, SCHEMA_VERSION } from './schema.ts';
import { createSession, endSession } from './sessions.ts';
import { Tables } from './tables.ts';

export interface Entry {
  readonly slot: number;
  /** The master's clock when it built the entry. */
  readonly stampMs: number;
  /** Decoded command payloads, still unvalidated. A no-op entry has none. */
  readonly commands: readonly unknown[];
}

export interface ApplyOutcome {
  readonly results: readonly CommandResult[];
  readonly events: readonly MachineEvent[];
}

export interface MachineOptions {
  /** The cell's name: the root is `/ls/<cell>`. A database belongs to one cell for life. */
  readonly cell: string;
}

export interface PendingLockDelay {
  readonly path: string;
  readonly endsMs: number;
}

/** SQLite's header bytes 18 and 19: 2 means WAL, which an in-memory database cannot open. */
const HEADER_WRITE_VERSION = 18;
const HEADER_READ_VERSION = 19;

function error(code: ErrorCode, message: string): CommandResult {
  return { type: 'error', code, message };
}

/**
 * Commands whose handler has every failure (every fail()) before its first write, as each one's
 * doc comment says: a failure leaves nothing to roll back, so they skip their own SAVEPOINT and
 * its RELEASE, two statements that are a tenth of these hot commands' cost. #applyCommand asserts
 * it (Tables.writeCount): such a command that fails after writing is a bug and aborts the entry.
 * Anything else thrown (a bug, a SQLite error) aborts the whole entry either way.
 */
const NO_SAVEPOINT: ReadonlySet<MachineCommand['type']> = new Set([
  'SetContents',
  'Acquire',
  'Release',
]);

function hasSeq(command: MachineCommand): command is SessionCommand {
  return 'seq' in command;
}

export class StateMachine {
  readonly #db: Database.Database;
  readonly #t: Tables;
  readonly #cell: string;
  readonly #digest: DigestStatements;
  readonly #invariants: InvariantStatements;
  readonly #applyTx: (entry: Entry, nowMs: number) => ApplyOutcome;
  readonly #commandTx: (ctx: Context, command: MachineCommand) => CommandResult;
  #appliedIndex: number;
  #timeMs: number;

  private constructor(db: Database.Database, options: MachineOptions) {
    ensureSchema(db, options.cell);
    this.#db = db;
    this.#cell = options.cell;
    this.#t = new Tables(db);
    this.#digest = prepareDigest(db);
    this.#invariants = prepareInvariants(db);
    // Check the state after reading it: a broken state.db crashes here, before it is served.
    this.checkInvariants();
    const row = this.#t.machine();
    this.#appliedIndex = row.applied_index;
    this.#timeMs = row.time_ms;
    this.#applyTx = db.transaction((entry: Entry, nowMs: number) =>
      this.#applyInTransaction(entry, nowMs),
    );
    // Nested inside #applyTx, better-sqlite3 runs this as a SAVEPOINT and rolls it back on throw.
    this.#commandTx = db.transaction((ctx: Context, command: MachineCommand) =>
      execute(ctx, command),
    );
  }

  /** Opens (and if new, initialises) the machine in a database the caller has opened. */
  static open(db: Database.Database, options: MachineOptions): StateMachine {
    return new StateMachine(db, options);
  }

  /** A machine on a new in-memory database: for the simulator and tests. */
  static createInMemory(options: MachineOptions): StateMachine {
    return new StateMachine(new Database(':memory:'), options);
  }

  /** A machine on a fresh in-memory database holding a snapshot. */
  static restore(bytes: Uint8Array, options: MachineOptions): StateMachine {
    return new StateMachine(new Database(snapshotImage(bytes)), options);
  }

  /**
   * Writes a snapshot as a standalone database file at `path`, which must not exist (VACUUM INTO
   * refuses to overwrite). The caller writes to a temporary name and renames it into place, then
   * opens it, sets its pragmas and calls open().
   */
  static restoreToFile(bytes: Uint8Array, path: string): void {
    const memory = new Database(snapshotImage(bytes));
    try {
      memory.prepare('VACUUM INTO ?').run(path);
    } finally {
      memory.close();
    }
  }

  /**
   * The applied index recorded in a state database that is only read, not served (a copy of
   * state.db taken for a snapshot or a backup): that copy's slot. It checks the schema and the
   * cell as open() does, but reads no table beyond the machine row (open() checks every
   * invariant, a pass over the whole database).
   */
  static appliedIndexOf(db: Database.Database, options: MachineOptions): number {
    const row = db.prepare('SELECT schema_version, cell, applied_index FROM machine WHERE id = 1').get() as
      { schema_version: number; cell: string; applied_index: number } | undefined;
    assert(row !== undefined, 'state copy has no machine row');
    assert(row.schema_version === SCHEMA_VERSION, `state copy schema ${row.schema_version} is not ${SCHEMA_VERSION}`);
    assert(row.cell === options.cell, `state copy belongs to cell ${row.cell}, not ${options.cell}`);
    return row.applied_index;
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  /** The time of the last applied entry (0 before any). */
  get timeMs(): number {
    return this.#timeMs;
  }

  get cell(): string {
    return this.#cell;
  }

  get database(): Database.Database {
    return this.#db;
  }

  apply(entry: Entry): ApplyOutcome {
    assert(Array.isArray(entry.commands), 'apply: commands is not an array');
    assert(
      entry.slot === this.#appliedIndex + 1,
      `apply: slot ${entry.slot} after ${this.#appliedIndex}`,
    );
    assert(
      Number.isSafeInteger(entry.stampMs) && entry.stampMs >= 0,
      `apply: bad stamp ${entry.stampMs}`,
    );
    const nowMs = Math.max(this.#timeMs, entry.stampMs);
    const outcome = this.#applyTx(entry, nowMs);
    // Only after the commit: a throw above leaves both the database and these untouched.
    this.#appliedIndex = entry.slot;
    this.#timeMs = nowMs;
    return outcome;
  }

  #applyInTransaction(entry: Entry, nowMs: number): ApplyOutcome {
    const results: CommandResult[] = [];
    const events: MachineEvent[] = [];
    entry.commands.forEach((raw, index) => {
      if (index >= LIMITS.commandsPerEntryMax) {
        results.push(
          error(
            ErrorCode.TOO_MANY,
            `more than ${LIMITS.commandsPerEntryMax} commands in one entry`,
          ),
        );
        return;
      }
      results.push(this.#applyCommand(raw, nowMs, events));
    });
    this.#t.setProgress(entry.slot, nowMs);
    return { results, events };
  }

  #applyCommand(raw: unknown, nowMs: number, events: MachineEvent[]): CommandResult {
    const command = validateCommand(raw);
    if (isValidationError(command)) return error(command.error, command.message);
    if (hasSeq(command)) {
      const lastSeq = this.#t.lastSeq(command.session);
      if (lastSeq === undefined) {
        return error(ErrorCode.SESSION_EXPIRED, `session ${command.session} does not exist`);
      }
      if (command.seq < lastSeq) {
        return error(ErrorCode.STALE_SEQ, `seq ${command.seq} is older than ${lastSeq}`);
      }
      if (command.seq === lastSeq) {
        const recorded = this.#t.lastResult(command.session);
        assert(recorded !== null, `session ${command.session} has seq ${lastSeq} but no result`);
        return JSON.parse(recorded) as CommandResult;
      }
    }
    const ctx: Context = { t: this.#t, cell: this.#cell, nowMs, events: [] };
    let result: CommandResult;
    const isBare = NO_SAVEPOINT.has(command.type);
    const writeCountBefore = this.#t.writeCount;
    try {
      result = isBare ? execute(ctx, command) : this.#commandTx(ctx, command);
    } catch (err: unknown) {
      if (err instanceof CommandFailure) {
        assert(
          !isBare || this.#t.writeCount === writeCountBefore,
          `${command.type} failed after its first write, without a savepoint to undo it`,
        );
        return errorResult(err);
      }
      throw err;
    }
    // A loop, not push(...spread): one command can cause more events than a call takes arguments.
    for (const event of ctx.events) events.push(event);
    // A closed session has no record left to keep; a retry of CloseSession gets SESSION_EXPIRED.
    if (hasSeq(command) && command.type !== 'CloseSession') {
      this.#t.recordReply(command.session, command.seq, JSON.stringify(result));
    }
    return result;
  }

  /** Answers a query from the local database. `query` is validated first. */
  query(query: unknown): QueryResult {
    const valid = validateQuery(query);
    if (isValidationError(valid))
      return { type: 'error', code: valid.error, message: valid.message };
    return runQuery(this.#t, valid, this.#timeMs);
  }

  /**
   * Whether `command`, applied now, would only join a lock's queue (read-only). The master holds
   * such commands back a little to share a log entry with the next (machine.ts is silent on
   * when commands are proposed; this only answers the question).
   */
  wouldQueue(command: Acquire): boolean {
    return wouldQueue({ t: this.#t, cell: this.#cell, nowMs: this.#timeMs, events: [] }, command);
  }

  /** Asserts the invariants in invariants.ts over the whole database (cost: O(state)). */
  checkInvariants(): void {
    const broken = invariantViolations(this.#invariants);
    assert(broken.length === 0, `state machine invariants broken: ${broken.join('; ')}`);
  }

  /** The checksum of the whole state (see digest.ts for what it covers). */
  digest(): string {
    return computeDigest(this.#digest);
  }

  /** Every lock-delay not yet ended by LockDelayEnd, earliest first; the master schedules these. */
  pendingLockDelays(): PendingLockDelay[] {
    return this.#t.delays().map((row) => ({ path: row.path, endsMs: row.ends_ms }));
  }

  /** The whole database as bytes, at appliedIndex. Restore with restore() or restoreToFile(). */
  snapshot(): Uint8Array {
    return this.#db.serialize();
  }
}

/**
 * A copy of the snapshot that SQLite can open in memory: a file in WAL mode serializes with the
 * WAL marker in its header, which an in-memory database refuses, so the copy says rollback
 * journal instead. The pages themselves are complete (serialize reads through the WAL).
 */
function snapshotImage(bytes: Uint8Array): Buffer {
  const image = Buffer.from(bytes);
  if (image[HEADER_WRITE_VERSION] === 2) image[HEADER_WRITE_VERSION] = 1;
  if (image[HEADER_READ_VERSION] === 2) image[HEADER_READ_VERSION] = 1;
  return image;
}

function execute(ctx: Context, command: MachineCommand): CommandResult {
  switch (command.type) {
    case 'CreateSession':
      return createSession(ctx, command);
    case 'CloseSession':
      endSession(ctx, command.session, false);
      return { type: 'session-closed' };
    case 'ExpireSession':
      endSession(ctx, command.session, true);
      return { type: 'session-expired' };
    case 'Open':
      return open(ctx, command);
    case 'Close':
      close(ctx, command.session, command.handle);
      return { type: 'closed' };
    case 'SetContents':
      return setContents(ctx, command);
    case 'Delete':
      deleteThroughHandle(ctx, command.session, command.handle);
      return { type: 'deleted' };
    case 'SetACL':
      return setAcl(ctx, command);
    case 'Acquire':
      return acquire(ctx, command);
    case 'Release':
      release(ctx, command.session, command.handle);
      return { type: 'released' };
    case 'CancelWait':
      cancelWait(ctx, command.session, command.handle);
      return { type: 'wait-cancelled' };
    case 'LockDelayEnd':
      return lockDelayEnd(ctx, command);
    default:
      return assertNever(command);
  }
}
