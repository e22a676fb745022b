// The durable acceptor state contract (DESIGN.md, Storage). Two implementations keep it: the
// SQLite store (paxos.db, WAL, synchronous=FULL) in the process, and the in-memory twin in the
// simulator, which keeps exactly what was persisted across a simulated crash.
//
// The contract, in prose (hashicorp/raft's LogStore style):
// - persist(batch) is atomic and durable when it returns: after a crash, load() returns either
//   the state before the batch or the state after it, never a mix.
// - An acceptance replaces any earlier acceptance at the same slot; a chosen value replaces the
//   acceptance at its slot and is never replaced afterwards.
// - The promise never decreases; commit never decreases; compactBelow never decreases and drops
//   every entry below it.
// - load() after a restart returns what the last persist left, with isFresh false if anything
//   was ever persisted.

import type { DurableState } from '../paxos/durable.ts';
import type { PersistBatch } from '../paxos/ready.ts';

export type { DurableEntry, DurableState } from '../paxos/durable.ts';

export interface AcceptorStore {
  load(): DurableState;
  /** One transaction, durable on return. A no-op for an empty batch. */
  persist(batch: PersistBatch): void;
  close(): void;
}

export function isPersistBatchEmpty(batch: PersistBatch): boolean {
  return (
    batch.promised === null &&
    batch.accepted.length === 0 &&
    batch.chosen.length === 0 &&
    batch.commit === null &&
    batch.compactBelow === null &&
    batch.admitted.length === 0
  );
}
