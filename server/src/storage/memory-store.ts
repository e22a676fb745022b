// The in-memory twin of the durable acceptor store (hashicorp/raft keeps one beside every real
// store). The simulator gives each simulated replica one of these; a simulated crash throws the
// Replica object away and keeps the store, so a restart sees exactly what was persisted and
// nothing else — which is what paxos.db gives a real process after kill -9.
//
// It honours every rule of store.ts's prose contract, and asserts the acceptor invariants on
// both sides of the "disk" (STYLE.md, Errors): before a write, the promise never decreases, a
// chosen value is never replaced by a different one, the commit index never decreases, the
// compaction point never decreases, nothing is written below the compaction point, and every
// slot <= commit is chosen and stored; after a read, load() hands out deep copies, so nothing
// the core does to what it loaded can reach back into the store (the real store re-reads disk),
// and a restarted replica shares no object with its previous incarnation. Slot values are kept
// by reference on the way in: they are readonly facts (messages.ts), and copying every command of
// every batch on every write would make the store, not the core, the cost the benchmark measures.
//
// persist() is atomic by construction: it stages the batch's changes and checks all of them
// before applying any, so an assertion part-way through leaves the previous state intact.

import { assert } from '@paxlock/shared';
import { compareBallots, ZERO_BALLOT, type Ballot } from '../paxos/ballot.ts';
import type { Admission, Command, SlotValue } from '../paxos/messages.ts';
import type { PersistBatch } from '../paxos/ready.ts';
import {
  isPersistBatchEmpty,
  type AcceptorStore,
  type DurableEntry,
  type DurableState,
} from './store.ts';

interface StoredState {
  readonly promised: Ballot;
  /** Slot -> entry. Kept as a map because acceptances arrive out of slot order. */
  readonly entries: Map<number, DurableEntry>;
  readonly commit: number;
  readonly compactedBelow: number;
  readonly admitted: readonly Admission[];
}

/** How many durable writes the store has taken; the simulator reports them. */
export interface MemoryStoreStats {
  persists: number;
}

export class MemoryStore implements AcceptorStore {
  #state: StoredState = {
    promised: ZERO_BALLOT,
    entries: new Map(),
    commit: 0,
    compactedBelow: 1,
    admitted: [],
  };
  #isFresh = true;
  #isClosed = false;
  readonly stats: MemoryStoreStats = { persists: 0 };

  load(): DurableState {
    assert(!this.#isClosed, 'memory store: load after close');
    const state = this.#state;
    const entries = [...state.entries.values()].sort((a, b) => a.slot - b.slot).map(copyEntry);
    // Checks after reading, as the SQLite store does: the state must be one the contract allows.
    for (const entry of entries) {
      assert(
        entry.slot >= state.compactedBelow,
        `memory store: slot ${entry.slot} below the compaction point`,
      );
      if (entry.slot <= state.commit)
        assert(entry.isChosen, `memory store: slot ${entry.slot} <= commit is not chosen`);
    }
    return {
      isFresh: this.#isFresh,
      promised: copyBallot(state.promised),
      entries,
      commit: state.commit,
      compactedBelow: state.compactedBelow,
      admitted: state.admitted.map((a) => ({ ...a })),
    };
  }

  persist(batch: PersistBatch): void {
    assert(!this.#isClosed, 'memory store: persist after close');
    if (isPersistBatchEmpty(batch)) return;
    const current = this.#state;
    // Changes are staged over the current entries and swapped in only once the whole batch has
    // passed its checks: atomic without copying the whole log on every write.
    const staged = new Map<number, DurableEntry>();
    const lookup = (slot: number): DurableEntry | undefined =>
      staged.get(slot) ?? current.entries.get(slot);
    let promised = current.promised;
    let commit = current.commit;
    let compactedBelow = current.compactedBelow;

    if (batch.promised !== null) {
      assert(compareBallots(batch.promised, promised) >= 0, 'memory store: promise would decrease');
      promised = copyBallot(batch.promised);
    }
    for (const accepted of batch.accepted) {
      assert(
        isSlotNumber(accepted.slot),
        `memory store: accepted slot ${accepted.slot} is not a slot number`,
      );
      assert(
        accepted.slot >= compactedBelow,
        `memory store: accept at slot ${accepted.slot} below the compaction point`,
      );
      const existing = lookup(accepted.slot);
      if (existing?.isChosen === true) {
        // A later ballot can only re-accept the chosen value (Paxos safety); keep the chosen entry.
        assert(
          isSlotValueEqual(existing.value, accepted.value),
          `memory store: slot ${accepted.slot} accept differs from chosen value`,
        );
        continue;
      }
      staged.set(accepted.slot, {
        slot: accepted.slot,
        ballot: copyBallot(accepted.ballot),
        value: accepted.value,
        isChosen: false,
      });
    }
    for (const chosen of batch.chosen) {
      assert(
        isSlotNumber(chosen.slot),
        `memory store: chosen slot ${chosen.slot} is not a slot number`,
      );
      if (chosen.slot < compactedBelow) continue; // Already covered by a snapshot.
      const existing = lookup(chosen.slot);
      if (existing?.isChosen === true) {
        assert(
          isSlotValueEqual(existing.value, chosen.value),
          `memory store: slot ${chosen.slot} has two different chosen values`,
        );
        continue;
      }
      // Keep the acceptance ballot when the chosen value is the one accepted here; a value learned
      // by catch-up carries ZERO_BALLOT (durable.ts).
      const ballot =
        existing !== undefined && isSlotValueEqual(existing.value, chosen.value)
          ? existing.ballot
          : ZERO_BALLOT;
      staged.set(chosen.slot, { slot: chosen.slot, ballot, value: chosen.value, isChosen: true });
    }
    if (batch.commit !== null) {
      assert(
        batch.commit >= commit,
        `memory store: commit would decrease from ${commit} to ${batch.commit}`,
      );
      commit = batch.commit;
    }
    if (batch.compactBelow !== null && batch.compactBelow > compactedBelow)
      compactedBelow = batch.compactBelow;
    // Every slot <= commit must be chosen and stored here, or compacted away behind a snapshot.
    // Checked only over the newly committed range: older slots were checked when they committed.
    for (let slot = Math.max(current.commit + 1, compactedBelow); slot <= commit; slot++) {
      assert(
        lookup(slot)?.isChosen === true,
        `memory store: commit ${commit} covers slot ${slot}, which is not chosen here`,
      );
    }

    let admitted = current.admitted;
    if (batch.admitted.length > 0) {
      const bySlot = new Map(admitted.map((a) => [a.slot, a]));
      for (const a of batch.admitted) {
        const known = bySlot.get(a.slot);
        assert(
          known === undefined || (known.replica === a.replica && known.diskId === a.diskId),
          `memory store: slot ${a.slot} admitted two different disks`,
        );
        bySlot.set(a.slot, { ...a });
      }
      admitted = [...bySlot.values()].sort((a, b) => a.slot - b.slot);
    }

    // Every check passed: apply.
    const entries = current.entries;
    for (const [slot, entry] of staged) entries.set(slot, entry);
    if (compactedBelow > current.compactedBelow) {
      for (const slot of [...entries.keys()]) if (slot < compactedBelow) entries.delete(slot);
    }
    this.#state = { promised, entries, commit, compactedBelow, admitted };
    this.#isFresh = false;
    this.stats.persists++;
  }

  close(): void {
    this.#isClosed = true;
  }

  /**
   * Simulator access to what is durable right now, without a copy: the highest promise, and the
   * entry at a slot. The simulator checks every promise and acceptance on the wire against them.
   */
  durablePromise(): Ballot {
    return this.#state.promised;
  }

  durableEntry(slot: number): DurableEntry | undefined {
    return this.#state.entries.get(slot);
  }

  durableCompactedBelow(): number {
    return this.#state.compactedBelow;
  }

  /** Test and simulator access: reopen after close (a process restart opens paxos.db again). */
  reopen(): void {
    this.#isClosed = false;
  }
}

function isSlotNumber(slot: number): boolean {
  return Number.isSafeInteger(slot) && slot >= 1;
}

export function isSlotValueEqual(a: SlotValue, b: SlotValue): boolean {
  if (a === b) return true;
  if (a.stampMs !== b.stampMs) return false;
  if (a.type === 'noop' || b.type === 'noop') return a.type === b.type;
  if (a.type === 'admit' || b.type === 'admit') {
    return (
      a.type === 'admit' && b.type === 'admit' && a.replica === b.replica && a.diskId === b.diskId
    );
  }
  if (a.commands.length !== b.commands.length) return false;
  return a.commands.every((command, i) => {
    const other = b.commands[i];
    return other !== undefined && isCommandEqual(command, other);
  });
}

function isCommandEqual(a: Command, b: Command): boolean {
  if (a.clientId !== b.clientId || a.seq !== b.seq || a.payload.length !== b.payload.length)
    return false;
  for (let i = 0; i < a.payload.length; i++) if (a.payload[i] !== b.payload[i]) return false;
  return true;
}

function copyBallot(b: Ballot): Ballot {
  return { round: b.round, replica: b.replica };
}

function copyValue(value: SlotValue): SlotValue {
  if (value.type === 'noop') return { type: 'noop', stampMs: value.stampMs };
  if (value.type === 'admit') return { ...value };
  return {
    type: 'batch',
    stampMs: value.stampMs,
    commands: value.commands.map((c) => ({
      clientId: c.clientId,
      seq: c.seq,
      payload: c.payload.slice(),
    })),
  };
}

function copyEntry(entry: DurableEntry): DurableEntry {
  return {
    slot: entry.slot,
    ballot: copyBallot(entry.ballot),
    value: copyValue(entry.value),
    isChosen: entry.isChosen,
  };
}
