// The shape of what an acceptor keeps on disk, as the core sees it: what it persists through
// Ready.persist and what it restarts from. The stores (storage/) implement it.

import type { Ballot } from './ballot.ts';
import type { Admission, SlotValue } from './messages.ts';

export interface DurableEntry {
  readonly slot: number;
  /** The ballot the value was accepted in; for a value learned by catch-up, ZERO_BALLOT. */
  readonly ballot: Ballot;
  readonly value: SlotValue;
  readonly isChosen: boolean;
}

export interface DurableState {
  /** True if nothing was ever persisted here: a brand-new replica, not a restarted one. */
  readonly isFresh: boolean;
  readonly promised: Ballot;
  /** Entries at or above compactedBelow, in slot order. */
  readonly entries: readonly DurableEntry[];
  /** Every slot <= commit is chosen and stored (or compacted). 0 when nothing is chosen. */
  readonly commit: number;
  /** Slots below this were compacted away behind a snapshot. 1 when nothing was compacted. */
  readonly compactedBelow: number;
  /** Every admission known chosen, in slot order (the seats' history; survives compaction). */
  readonly admitted: readonly Admission[];
}
