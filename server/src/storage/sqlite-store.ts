// The durable acceptor store of a replica process: paxos.db (DESIGN.md, Storage). It keeps the
// promise, every accepted value with its ballot, the values known chosen, the commit index and
// the compaction point. WAL mode with synchronous=FULL: persist() returns only after the batch
// is on disk, because the acceptor's answers (promises, acceptances) go out right after it.
// One persist() is one transaction, so one turn costs one fsync (group commit).
//
// Only promises and acceptances need the fsync before anything is sent: they are what the
// acceptor vouches for. A batch that holds neither (values learned chosen, the commit index, a
// compaction point) is committed without an fsync: these are facts the replica can learn again
// from its peers, and WAL keeps transactions in order, so a crash loses a suffix of such batches
// and never a promise or acceptance that a later fsync'd batch made durable. This takes the
// master's third fsync (marking a slot chosen) off the write path.
//
// Every slot at or below the durable commit index is chosen (store.ts), so a row there needs no
// mark of its own: when a value learned chosen is the one already stored and the same batch's
// commit covers its slot, the row is left as it is (no second copy of the value in the WAL);
// load() reads `is_chosen` as "marked, or at or below commit". Only values chosen above the
// commit index (past a gap) or different from the stored acceptance are written again.
//
// The prose contract is in store.ts. This file checks it on both sides of the disk: before a
// write (a promise never decreases, a chosen value is never replaced by another) and after a
// read (the loaded state is well formed), and crashes on a violation, as STYLE.md asks.

import Database from 'better-sqlite3';
import { Packr } from 'msgpackr';
import { assert } from '@paxlock/shared';
import { compareBallots, ZERO_BALLOT, type Ballot } from '../paxos/ballot.ts';
import type { SlotValue } from '../paxos/messages.ts';
import { validateSlotValue } from '../paxos/validate.ts';
import type { PersistBatch } from '../paxos/ready.ts';
import { isPersistBatchEmpty, type AcceptorStore, type DurableEntry, type DurableState } from './store.ts';

const SCHEMA_VERSION = 1;

/** Slot values are stored as msgpack; plain maps (no records) so the format is self-describing. */
const packr = new Packr({ useRecords: false, moreTypes: false });

interface EntryRow {
  slot: number;
  ballot_round: number;
  ballot_replica: number;
  value: Buffer;
  is_chosen: number;
}

interface AdmissionRow {
  slot: number;
  replica: number;
  disk_id: number;
}

interface MetaRow {
  key: string;
  value: number;
}

/** The stored row at a slot, as a chosen value is checked against it. */
interface StoredRow {
  is_chosen: number;
  /** 1 when the stored value is byte for byte the one being checked. */
  same: number;
}

export interface SqliteStoreOptions {
  /** Path of paxos.db. */
  readonly path: string;
  /**
   * FULL (the default) is what the design requires. NORMAL exists only for benchmarks that
   * want to see the cost of fsync; the replica process never sets it.
   */
  readonly synchronous?: 'FULL' | 'NORMAL';
  /**
   * The wall clock (ms since the epoch), read once: when this store first persists anything, the
   * start of its history (bootedAtMs; bootstrap-guard.ts). Date.now unless a test injects one.
   */
  readonly wallClockMs?: () => number;
  /**
   * Batches that need no fsync (learned chosen values, the commit index, admissions,
   * compaction: facts a restarted replica learns again) wait, merged, for the next batch that
   * does, or for flushDeferred() (the replica calls it every tick) or close(). The master then
   * writes one transaction per slot, not two, and none between its quorum and its apply.
   * Off by default: a store's tests see each batch on disk when persist() returns.
   */
  readonly deferUnsynced?: boolean;
}

export class SqliteStore implements AcceptorStore {
  readonly #db: Database.Database;
  readonly #getStored: Database.Statement<[Buffer, number], StoredRow>;
  readonly #markChosen: Database.Statement<[number]>;
  readonly #upsertAccepted: Database.Statement<[number, number, number, Buffer]>;
  readonly #upsertChosen: Database.Statement<[number, number, number, Buffer]>;
  readonly #setMeta: Database.Statement<[string, number]>;
  readonly #getMeta: Database.Statement<[string], MetaRow>;
  readonly #compact: Database.Statement<[number]>;
  readonly #getAdmission: Database.Statement<[number], AdmissionRow>;
  readonly #insertAdmission: Database.Statement<[number, number, number]>;
  readonly #persistTx: (batch: PersistBatch) => void;
  /** Transactions committed, those that were fsynced, and the time those took (for /metrics). */
  readonly stats = { commits: 0, syncedCommits: 0, syncedSeconds: 0 };
  readonly #synchronous: 'FULL' | 'NORMAL';
  readonly #wallClockMs: () => number;
  readonly #deferUnsynced: boolean;
  /** An unsynced batch waiting for the next transaction (deferUnsynced), or null. */
  #deferred: PersistBatch | null = null;
  #isSyncOff = false;
  /** What is on disk, kept in step after each committed transaction. */
  #isBooted: boolean;
  #commit: number;
  /**
   * The encoding of each value accepted above the commit index, by slot: a value is immutable,
   * and the same object comes back when it is learned chosen, so it is not encoded twice. Entries
   * leave as the commit index passes them (the map holds only what is in flight).
   */
  readonly #encoded = new Map<number, { value: SlotValue; bytes: Buffer }>();

  constructor(options: SqliteStoreOptions) {
    this.#db = new Database(options.path);
    this.#db.pragma('journal_mode = WAL');
    this.#synchronous = options.synchronous ?? 'FULL';
    this.#wallClockMs = options.wallClockMs ?? Date.now;
    this.#deferUnsynced = options.deferUnsynced === true;
    this.#db.pragma(`synchronous = ${this.#synchronous}`);
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
      CREATE TABLE IF NOT EXISTS entries (
        slot INTEGER PRIMARY KEY,
        ballot_round INTEGER NOT NULL,
        ballot_replica INTEGER NOT NULL,
        value BLOB NOT NULL,
        is_chosen INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE IF NOT EXISTS admissions (
        slot INTEGER PRIMARY KEY,
        replica INTEGER NOT NULL,
        disk_id INTEGER NOT NULL
      ) STRICT;
    `);
    this.#getMeta = this.#db.prepare<[string], MetaRow>('SELECT key, value FROM meta WHERE key = ?');
    this.#setMeta = this.#db.prepare<[string, number]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    );
    const version = this.#getMeta.get('schema_version');
    if (version === undefined) {
      this.#setMeta.run('schema_version', SCHEMA_VERSION);
    } else {
      assert(version.value === SCHEMA_VERSION, `paxos.db schema ${version.value} is not ${SCHEMA_VERSION}`);
    }
    this.#getStored = this.#db.prepare<[Buffer, number], StoredRow>(
      'SELECT is_chosen, value = ? AS same FROM entries WHERE slot = ?',
    );
    this.#markChosen = this.#db.prepare<[number]>('UPDATE entries SET is_chosen = 1 WHERE slot = ?');
    this.#upsertAccepted = this.#db.prepare<[number, number, number, Buffer]>(
      `INSERT INTO entries (slot, ballot_round, ballot_replica, value, is_chosen) VALUES (?, ?, ?, ?, 0)
       ON CONFLICT (slot) DO UPDATE SET ballot_round = excluded.ballot_round,
         ballot_replica = excluded.ballot_replica, value = excluded.value`,
    );
    this.#upsertChosen = this.#db.prepare<[number, number, number, Buffer]>(
      `INSERT INTO entries (slot, ballot_round, ballot_replica, value, is_chosen) VALUES (?, ?, ?, ?, 1)
       ON CONFLICT (slot) DO UPDATE SET ballot_round = excluded.ballot_round,
         ballot_replica = excluded.ballot_replica, value = excluded.value, is_chosen = 1`,
    );
    this.#compact = this.#db.prepare<[number]>('DELETE FROM entries WHERE slot < ?');
    this.#getAdmission = this.#db.prepare<[number], AdmissionRow>(
      'SELECT slot, replica, disk_id FROM admissions WHERE slot = ?',
    );
    this.#insertAdmission = this.#db.prepare<[number, number, number]>(
      'INSERT INTO admissions (slot, replica, disk_id) VALUES (?, ?, ?)',
    );
    this.#persistTx = this.#db.transaction((batch: PersistBatch) => {
      this.#persistInTransaction(batch);
    });
    this.#isBooted = this.#getMeta.get('booted') !== undefined;
    this.#commit = this.#meta('commit', 0);
  }

  load(): DurableState {
    const booted = this.#getMeta.get('booted');
    const promised: Ballot = {
      round: this.#meta('promised_round', 0),
      replica: this.#meta('promised_replica', 0),
    };
    const commit = this.#meta('commit', 0);
    const compactedBelow = this.#meta('compacted_below', 1);
    const rows = this.#db
      .prepare<[], EntryRow>(
        'SELECT slot, ballot_round, ballot_replica, value, is_chosen FROM entries ORDER BY slot',
      )
      .all();
    const entries: DurableEntry[] = rows.map((row) => {
      // Checks after reading: what came back from disk must be what the contract allows.
      assert(Number.isSafeInteger(row.slot) && row.slot >= compactedBelow, 'paxos.db: entry below the compaction point');
      const ballot = { round: row.ballot_round, replica: row.ballot_replica };
      return { slot: row.slot, ballot, value: decodeValue(row.value), isChosen: row.is_chosen === 1 || row.slot <= commit };
    });
    assert(commit >= 0 && compactedBelow >= 1, 'paxos.db: negative commit or compaction point');
    const admitted = this.#db
      .prepare<[], AdmissionRow>('SELECT slot, replica, disk_id FROM admissions ORDER BY slot')
      .all()
      .map((row) => ({ slot: row.slot, replica: row.replica, diskId: row.disk_id }));
    return { isFresh: booted === undefined, promised, entries, commit, compactedBelow, admitted };
  }

  /**
   * This replica's disk (docs/consensus.md, Replacing a disk): 0 for a founding disk (and for a
   * paxos.db written before disks had ids), the number setDiskId() recorded for a replacement;
   * null while fresh and not yet given one.
   */
  get diskId(): number | null {
    const row = this.#getMeta.get('disk_id');
    if (row !== undefined) return row.value;
    return this.#getMeta.get('booted') === undefined ? null : 0;
  }

  /**
   * When this replica's acceptor state began (its first persist, by the wall clock of that
   * moment): null while fresh, 0 if unknown (a paxos.db written before this was recorded, so
   * older than any cell started since). Peers report it in GET /health, and a fresh replica told
   * to --bootstrap uses it to tell a cell being founded from one long running (bootstrap-guard.ts).
   */
  get bootedAtMs(): number | null {
    const row = this.#getMeta.get('booted');
    if (row === undefined) return null;
    // Before the time was kept, 'booted' held 1.
    return row.value > 1 ? row.value : 0;
  }

  /** Records this replica's disk id, durably, once (does not make the store booted). */
  setDiskId(diskId: number): void {
    assert(Number.isSafeInteger(diskId) && diskId >= 0, `bad disk id ${String(diskId)}`);
    const known = this.#getMeta.get('disk_id');
    assert(known === undefined || known.value === diskId, 'paxos.db already has another disk id');
    this.#setSyncOff(false);
    this.#setMeta.run('disk_id', diskId);
  }

  /**
   * Which history of the cell this replica's state belongs to (peers.ts refuses a peer of
   * another): the number restore.ts wrote for a restored replica, or one adopted from the peers
   * by a fresh one; 0 for a replica that has written without either (the cell's original
   * history); null while fresh (it may join any).
   */
  get incarnation(): number | null {
    const row = this.#getMeta.get('incarnation');
    if (row !== undefined) return row.value;
    return this.#getMeta.get('booted') === undefined ? null : 0;
  }

  /** Records the history this replica belongs to (durably; does not make the store booted). */
  setIncarnation(incarnation: number): void {
    assert(Number.isSafeInteger(incarnation) && incarnation >= 0, `bad incarnation ${String(incarnation)}`);
    this.#setSyncOff(false);
    this.#setMeta.run('incarnation', incarnation);
  }

  persist(batch: PersistBatch): void {
    if (isPersistBatchEmpty(batch)) return;
    const needsFsync = batch.promised !== null || batch.accepted.length > 0;
    if (this.#deferred !== null) {
      batch = mergePersistBatches(this.#deferred, batch);
      this.#deferred = null;
    }
    if (!needsFsync && this.#deferUnsynced) {
      this.#deferred = batch;
      return;
    }
    this.#write(batch, needsFsync);
  }

  /** Writes the batch persist() deferred, if any (deferUnsynced). */
  flushDeferred(): void {
    const batch = this.#deferred;
    if (batch === null) return;
    this.#deferred = null;
    this.#write(batch, false);
  }

  #write(batch: PersistBatch, needsFsync: boolean): void {
    this.#setSyncOff(!needsFsync);
    const started = process.hrtime.bigint();
    this.#persistTx(batch);
    // Only after the commit: a batch refused by a check above leaves these as they were.
    this.#isBooted = true;
    if (batch.commit !== null) {
      this.#commit = batch.commit;
      for (const slot of this.#encoded.keys()) if (slot <= batch.commit) this.#encoded.delete(slot);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.stats.commits++;
    if (needsFsync) {
      this.stats.syncedCommits++;
      this.stats.syncedSeconds += seconds;
    }
  }

  /** The connection's sync level now (PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL); for tests. */
  syncLevel(): number {
    return this.#db.pragma('synchronous', { simple: true }) as number;
  }

  /** Switches the connection between the configured sync level and OFF (no fsync). */
  #setSyncOff(isOff: boolean): void {
    if (isOff === this.#isSyncOff) return;
    // Not a statement prepared once: SQLite applies this pragma when it compiles it, so running
    // a prepared copy again changes nothing (the store's test checks the level).
    // exec, not pragma(): no statement object or result rows, a fifth of the cost.
    this.#db.exec(`PRAGMA synchronous = ${isOff ? 'OFF' : this.#synchronous}`);
    this.#isSyncOff = isOff;
  }

  close(): void {
    this.flushDeferred();
    this.#db.close();
  }

  #persistInTransaction(batch: PersistBatch): void {
    if (!this.#isBooted) this.#setMeta.run('booted', Math.max(2, Math.round(this.#wallClockMs())));
    if (batch.promised !== null) {
      const current = { round: this.#meta('promised_round', 0), replica: this.#meta('promised_replica', 0) };
      assert(compareBallots(batch.promised, current) >= 0, 'promise would decrease');
      this.#setMeta.run('promised_round', batch.promised.round);
      this.#setMeta.run('promised_replica', batch.promised.replica);
    }
    // Chosen on disk: marked, or at or below the commit index (durable before this batch).
    const isChosen = (slot: number, row: StoredRow): boolean => row.is_chosen === 1 || slot <= this.#commit;
    for (const entry of batch.accepted) {
      const encoded = this.#encode(entry.slot, entry.value);
      const existing = this.#getStored.get(encoded, entry.slot);
      if (existing !== undefined && isChosen(entry.slot, existing)) {
        // A later ballot can only re-accept the chosen value (Paxos safety); keep the chosen row.
        assert(existing.same === 1, `slot ${entry.slot}: accept differs from chosen value`);
        continue;
      }
      this.#upsertAccepted.run(entry.slot, entry.ballot.round, entry.ballot.replica, encoded);
    }
    const commit = batch.commit ?? this.#commit;
    for (const entry of batch.chosen) {
      const encoded = this.#encode(entry.slot, entry.value);
      const existing = this.#getStored.get(encoded, entry.slot);
      if (existing !== undefined && isChosen(entry.slot, existing)) {
        assert(existing.same === 1, `slot ${entry.slot}: two different chosen values`);
        continue;
      }
      if (existing?.same === 1) {
        // The stored acceptance is the chosen value: the commit index below marks it, or a flag.
        if (entry.slot > commit) this.#markChosen.run(entry.slot);
        continue;
      }
      // Not stored, or another value accepted in an earlier ballot: store the chosen one.
      this.#upsertChosen.run(entry.slot, ZERO_BALLOT.round, ZERO_BALLOT.replica, encoded);
    }
    if (batch.commit !== null) {
      assert(batch.commit >= this.#commit, 'commit would decrease');
      this.#setMeta.run('commit', batch.commit);
    }
    for (const a of batch.admitted) {
      const known = this.#getAdmission.get(a.slot);
      if (known !== undefined) {
        assert(known.replica === a.replica && known.disk_id === a.diskId, `slot ${a.slot}: two different admissions`);
        continue;
      }
      this.#insertAdmission.run(a.slot, a.replica, a.diskId);
    }
    if (batch.compactBelow !== null) {
      const current = this.#meta('compacted_below', 1);
      if (batch.compactBelow > current) {
        this.#compact.run(batch.compactBelow);
        this.#setMeta.run('compacted_below', batch.compactBelow);
      }
    }
  }

  /** The stored form of `value` at `slot`, encoded once per value object while in flight. */
  #encode(slot: number, value: SlotValue): Buffer {
    const known = this.#encoded.get(slot);
    if (known?.value === value) return known.bytes;
    // A copy: msgpackr's result may share its working buffer with the next encoding.
    const bytes = Buffer.from(encodeValue(value));
    if (slot > this.#commit) this.#encoded.set(slot, { value, bytes });
    return bytes;
  }

  #meta(key: string, fallback: number): number {
    return this.#getMeta.get(key)?.value ?? fallback;
  }
}

/**
 * One batch that leaves paxos.db as `first` then `second` would, where `first` needs no fsync
 * (it promises and accepts nothing). What `second` accepts is written before `first`'s chosen
 * marks, and that is the same: an acceptor accepts at a chosen slot only the chosen value, and
 * marking a stored acceptance chosen keeps it.
 */
export function mergePersistBatches(first: PersistBatch, second: PersistBatch): PersistBatch {
  const max = (a: number | null, b: number | null): number | null =>
    a === null ? b : b === null ? a : Math.max(a, b);
  return {
    promised: second.promised ?? first.promised,
    accepted: [...first.accepted, ...second.accepted],
    chosen: [...first.chosen, ...second.chosen],
    commit: max(first.commit, second.commit),
    compactBelow: max(first.compactBelow, second.compactBelow),
    admitted: [...first.admitted, ...second.admitted],
  };
}

export function encodeValue(value: SlotValue): Buffer {
  return packr.pack(value);
}

export function decodeValue(bytes: Buffer): SlotValue {
  // The same door as values from the network: what comes back from disk is checked too.
  const value = validateSlotValue(packr.unpack(bytes));
  assert(value !== null, 'paxos.db: stored slot value is malformed');
  return value;
}
