// The acceptor's log as the core holds it in memory: one entry per slot (the value accepted
// there, the ballot it was accepted in, and whether it is known chosen), the contiguous chosen
// prefix `commit`, and the compaction point. Lookups are by slot in a Map, so no handler scans
// the whole log; the only ranges walked are the unchosen tail above `commit` (bounded by the
// master's window and recent elections) and explicitly bounded catch-up batches.
//
// Invariants: every slot <= commit and >= compactedBelow holds a chosen entry; a chosen entry
// never changes value; compactedBelow <= commit + 1 (Paxos Made Live 5.4, snapshots).

import { assert } from '@paxlock/shared';
import type { Ballot } from './ballot.ts';
import type { Command, SlotValue } from './messages.ts';
import type { DurableState } from './durable.ts';

export interface SlotEntry {
  ballot: Ballot;
  value: SlotValue;
  isChosen: boolean;
}

export class SlotLog {
  readonly #entries = new Map<number, SlotEntry>();
  #commit: number;
  #compactedBelow: number;
  /** The highest slot with an entry (0 when empty); never scanned past. */
  #highestSlot = 0;

  constructor(durable: DurableState) {
    assert(
      durable.commit >= 0 && durable.compactedBelow >= 1,
      'durable state: bad commit or compaction point',
    );
    this.#commit = Math.max(durable.commit, durable.compactedBelow - 1);
    this.#compactedBelow = durable.compactedBelow;
    let previous = 0;
    for (const entry of durable.entries) {
      assert(entry.slot > previous, 'durable state: entries out of slot order');
      assert(
        entry.slot >= durable.compactedBelow,
        'durable state: entry below the compaction point',
      );
      previous = entry.slot;
      this.#entries.set(entry.slot, {
        ballot: entry.ballot,
        value: entry.value,
        isChosen: entry.isChosen,
      });
      this.#highestSlot = entry.slot;
    }
    for (let slot = Math.max(durable.compactedBelow, 1); slot <= durable.commit; slot++) {
      assert(
        this.#entries.get(slot)?.isChosen === true,
        `durable state: slot ${slot} <= commit is not chosen`,
      );
    }
  }

  get commit(): number {
    return this.#commit;
  }

  get compactedBelow(): number {
    return this.#compactedBelow;
  }

  get highestSlot(): number {
    return Math.max(this.#highestSlot, this.#commit);
  }

  get(slot: number): SlotEntry | undefined {
    return this.#entries.get(slot);
  }

  isChosen(slot: number): boolean {
    return slot <= this.#commit || this.#entries.get(slot)?.isChosen === true;
  }

  /** Record an acceptance. Returns false (and changes nothing) if the slot is already chosen. */
  accept(slot: number, ballot: Ballot, value: SlotValue): boolean {
    assert(slot >= 1, 'accept at slot < 1');
    if (this.isChosen(slot)) return false;
    const entry = this.#entries.get(slot);
    if (entry === undefined) {
      this.#entries.set(slot, { ballot, value, isChosen: false });
      if (slot > this.#highestSlot) this.#highestSlot = slot;
    } else {
      entry.ballot = ballot;
      entry.value = value;
    }
    return true;
  }

  /**
   * Record that `value` is chosen at `slot`. Returns false if it was already known chosen (or
   * compacted), true if this is news that must be persisted.
   */
  markChosen(slot: number, value: SlotValue): boolean {
    assert(slot >= 1, 'chosen at slot < 1');
    if (slot < this.#compactedBelow) return false;
    const entry = this.#entries.get(slot);
    if (entry?.isChosen === true) {
      assert(areValuesEqual(entry.value, value), `slot ${slot}: two different chosen values`);
      return false;
    }
    if (entry === undefined) {
      this.#entries.set(slot, { ballot: { round: 0, replica: 0 }, value, isChosen: true });
      if (slot > this.#highestSlot) this.#highestSlot = slot;
    } else {
      entry.value = value;
      entry.isChosen = true;
    }
    return true;
  }

  /** Extend `commit` over chosen entries; returns true if it moved. */
  advanceCommit(): boolean {
    const before = this.#commit;
    while (this.#entries.get(this.#commit + 1)?.isChosen === true) this.#commit += 1;
    return this.#commit !== before;
  }

  /** Drop entries below `slot` (a snapshot covers them). Returns true if the point moved. */
  compactBelow(slot: number): boolean {
    assert(slot <= this.#commit + 1, 'compaction above the chosen prefix');
    if (slot <= this.#compactedBelow) return false;
    if (slot - this.#compactedBelow <= this.#entries.size) {
      for (let s = this.#compactedBelow; s < slot; s++) this.#entries.delete(s);
    } else {
      for (const s of this.#entries.keys()) if (s < slot) this.#entries.delete(s);
    }
    this.#compactedBelow = slot;
    return true;
  }

  /**
   * A snapshot through `slot` was installed: everything <= slot is chosen and applied, and
   * the log restarts above it.
   */
  installSnapshot(slot: number): void {
    if (slot > this.#commit) this.#commit = slot;
    for (const s of this.#entries.keys()) if (s <= slot) this.#entries.delete(s);
    this.#compactedBelow = Math.max(this.#compactedBelow, slot + 1);
    this.advanceCommit();
  }

  /** The chosen value at `slot`, or undefined if it is not known chosen here (or compacted). */
  chosenValue(slot: number): SlotValue | undefined {
    if (slot < this.#compactedBelow) return undefined;
    const entry = this.#entries.get(slot);
    return entry?.isChosen === true ? entry.value : undefined;
  }

  /** Slots holding an entry at or above `slot`, in no particular order (walks the entries). */
  slotsAtOrAbove(slot: number): number[] {
    const slots: number[] = [];
    for (const s of this.#entries.keys()) if (s >= slot) slots.push(s);
    return slots;
  }

  get entryCount(): number {
    return this.#entries.size;
  }
}

/** The identity of a command, as a Map/Set key. */
export function commandKey(command: Pick<Command, 'clientId' | 'seq'>): string {
  return `${command.seq}\u0000${command.clientId}`;
}

/** Deep equality of slot values (payload bytes compared). Used on rare paths and in asserts. */
export function areValuesEqual(a: SlotValue, b: SlotValue): boolean {
  if (a === b) return true;
  if (a.type !== b.type || a.stampMs !== b.stampMs) return false;
  if (a.type === 'noop' || b.type === 'noop') return a.type === b.type;
  if (a.type === 'admit' || b.type === 'admit') {
    return (
      a.type === 'admit' && b.type === 'admit' && a.replica === b.replica && a.diskId === b.diskId
    );
  }
  if (a.commands.length !== b.commands.length) return false;
  for (let i = 0; i < a.commands.length; i++) {
    const x = a.commands[i];
    const y = b.commands[i];
    if (x === undefined || y === undefined) return false;
    if (x.clientId !== y.clientId || x.seq !== y.seq || x.payload.length !== y.payload.length)
      return false;
    for (let j = 0; j < x.payload.length; j++) if (x.payload[j] !== y.payload[j]) return false;
  }
  return true;
}
