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
// Refused, with nothing written: a data directory that already holds paxos.db or state.db (a
// replica with a log of its own must not be given another state), a file that is not a paxlock
// state database of this cell, or one that holds no applied entry (not a backup of a running cell).

import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { StateMachine } from '../machine/machine.ts';
import { SqliteStore } from '../storage/sqlite-store.ts';

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

/**
 * Checks `file` and writes it as `dataDir`/state.db, durably, beside a fresh paxos.db that
 * records the backup's incarnation; returns the backup's slot and incarnation.
 */
export function restoreBackup(options: { readonly file: string; readonly dataDir: string; readonly cell: string }): { slot: number; sizeBytes: number; incarnation: number } {
  const { file, dataDir, cell } = options;
  for (const name of ['paxos.db', 'state.db']) {
    if (existsSync(join(dataDir, name)))
      throw new RestoreError(`${dataDir} already holds ${name}: restore only into an empty data directory (every replica of the cell, from the same backup)`);
  }
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

  mkdirSync(dataDir, { recursive: true });
  const target = join(dataDir, 'state.db');
  const temporary = join(dataDir, 'state.db.restoring');
  rmSync(temporary, { force: true });
  StateMachine.restoreToFile(bytes, temporary);
  const fd = openSync(temporary, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(temporary, target);
  const incarnation = incarnationOf(bytes);
  const store = new SqliteStore({ path: join(dataDir, 'paxos.db') });
  store.setIncarnation(incarnation);
  store.close();
  const dirFd = openSync(dataDir, 'r');
  fsyncSync(dirFd);
  closeSync(dirFd);
  return { slot, sizeBytes: bytes.byteLength, incarnation };
}
