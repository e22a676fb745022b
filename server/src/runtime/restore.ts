// `paxlock-server --restore FILE`: installs a backup (GET /backup on the master's client port,
// which `paxlock backup FILE` saves) as this replica's state.db, before the replica starts.
//
// A cell is restored by starting every replica on an empty data directory with the same FILE.
// Each then opens a state.db at the backup's slot beside a fresh paxos.db, and the core takes
// the state.db as a snapshot it installed (replica.ts: applied above commit), so the log goes on
// from the slot after the backup's. Sessions in the backup are extended by a full lease by the
// new master, as after any fail-over, and expire unless their clients keep them alive; their
// locks are released after their lock-delay, their ephemeral files deleted.
//
// The restored replica's paxos.db records the backup's incarnation (the first 48 bits of its
// sha256): replicas restored from the same file share it, and peers.ts refuses a peer with
// another (one restored from another backup, or one left with the old state), as etcd refuses a
// member with another cluster ID. A replica started on an empty directory without --restore
// takes the history of the first peer it meets.
//
// Refused, with nothing written: a data directory that already holds a state of its own (paxos.db
// not restored from this backup, state.db, or either's WAL files, which SQLite would replay over
// the backup), a file that is not a paxlock state database of this cell, or one that holds no
// applied entry (not a backup of a running cell). Restoring again from the same backup into a
// directory restored from it is a no-op, so the flag can stay in a service file.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StateMachine } from '../machine/machine.ts';
import { SqliteStore } from '../storage/sqlite-store.ts';
import { renameDurably, writeStateFile } from './state-file.ts';

export class RestoreError extends Error {
  override readonly name = 'RestoreError';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The history a backup starts: replicas restored from the same bytes share it; never 0 (the original). */
export function incarnationOf(bytes: Uint8Array): number {
  return Math.max(1, Number.parseInt(createHash('sha256').update(bytes).digest('hex').slice(0, 12), 16));
}

/** The files a data directory must not hold for a restore (WAL leftovers would be replayed over it). */
const EXISTING_STATE = ['state.db', 'state.db-wal', 'state.db-shm', 'paxos.db-wal', 'paxos.db-shm'];

/** What restoreBackup did: installed the backup, or found it installed already and left all alone. */
export interface Restored {
  readonly slot: number;
  readonly sizeBytes: number;
  readonly incarnation: number;
  readonly isAlreadyRestored: boolean;
}

/** The incarnation paxos.db records; null if it records none or cannot be read. */
function recordedIncarnation(path: string): number | null {
  try {
    const store = new SqliteStore({ path });
    try {
      return store.incarnation;
    } finally {
      store.close();
    }
  } catch {
    return null;
  }
}

/**
 * Checks `file` and installs it: first a fresh paxos.db that records the backup's incarnation,
 * then the backup as state.db, each durably. A data directory that already holds a paxos.db
 * recording this very backup's incarnation was restored from it before (the flag left in a
 * service file, a crash between the two steps): it is left as it is and the replica starts
 * normally, catching up from its peers. Anything else already there is refused.
 */
export function restoreBackup(options: { readonly file: string; readonly dataDir: string; readonly cell: string }): Restored {
  const { file, dataDir, cell } = options;
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err: unknown) {
    throw new RestoreError(`cannot read ${file}: ${messageOf(err)}`);
  }
  let slot: number;
  try {
    const machine = StateMachine.restore(bytes, { cell }); // checks the schema, the cell and the invariants
    slot = machine.appliedIndex;
    machine.database.close();
  } catch (err: unknown) {
    throw new RestoreError(`${file} is not a paxlock state database of cell ${cell}: ${messageOf(err)}`);
  }
  if (slot < 1) throw new RestoreError(`${file} holds no applied log entry: it is not a backup of a running cell`);
  const incarnation = incarnationOf(bytes);
  const restored = { slot, sizeBytes: bytes.byteLength, incarnation };

  const paxosPath = join(dataDir, 'paxos.db');
  if (existsSync(paxosPath)) {
    if (recordedIncarnation(paxosPath) === incarnation) return { ...restored, isAlreadyRestored: true };
    throw new RestoreError(`${dataDir} already holds paxos.db (not restored from this backup): restore only into an empty data directory (every replica of the cell, from the same backup)`);
  }
  for (const name of EXISTING_STATE) {
    if (existsSync(join(dataDir, name)))
      throw new RestoreError(`${dataDir} already holds ${name}: restore only into an empty data directory (every replica of the cell, from the same backup)`);
  }

  mkdirSync(dataDir, { recursive: true });
  const store = new SqliteStore({ path: paxosPath });
  store.setIncarnation(incarnation);
  store.close();
  const temporary = join(dataDir, 'state.db.restoring');
  writeStateFile(bytes, temporary);
  renameDurably(temporary, join(dataDir, 'state.db'));
  return { ...restored, isAlreadyRestored: false };
}
