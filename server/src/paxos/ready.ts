// The Ready batch: everything one turn of the core asks its wiring to do, in the order it must
// be done (etcd raft's Ready). runtime/turn.ts executes it, the same code in the process and in
// the simulator:
//
//   1. sendEarly  — the master's own Accepts; safe before its own acceptance is durable, since
//                   the master counts its own vote only after advance() (Paxos Made Live: the
//                   master writes its own log in parallel with sending).
//   2. persist    — ONE durable write (one transaction, one fsync): promise, acceptances,
//                   learned chosen values, commit index. Nothing in `send` may leave the
//                   process before this is on disk, because promises and acceptances in it are
//                   answers to those messages.
//   3. send       — every other message.
//   4. commit     — newly chosen values, in slot order, contiguous from the last applied slot;
//                   the state machine applies each exactly once.
//   5. advance(ready) — tells the core all of the above happened.

import type { Ballot } from './ballot.ts';
import type { AcceptedEntry, Admission, ChosenEntry, Envelope } from './messages.ts';
import type { ReplicaId } from './ports.ts';

/** What must be durable before `send` goes out. Empty fields mean nothing to write. */
export interface PersistBatch {
  /** A new highest promise, if it rose this turn. */
  readonly promised: Ballot | null;
  /** Newly accepted values (replace any earlier acceptance at the same slot). */
  readonly accepted: readonly AcceptedEntry[];
  /** Values learned as chosen this turn (by the learning rule or by catch-up). */
  readonly chosen: readonly ChosenEntry[];
  /** The new contiguous chosen prefix: every slot <= commit is chosen and stored. Null if unchanged. */
  readonly commit: number | null;
  /** Drop log entries below this slot (a snapshot covers them). Null if no compaction. */
  readonly compactBelow: number | null;
  /**
   * Admissions newly known chosen (from the log or with a snapshot), kept apart from the log so
   * compaction never loses who holds which seat. Facts the replica can learn again: no fsync.
   */
  readonly admitted: readonly Admission[];
}

/** The core's view of its role, for the wiring, the front end and the simulator's checkers. */
export interface Status {
  readonly id: ReplicaId;
  readonly role: 'follower' | 'candidate' | 'master';
  /** The highest ballot promised; when master, the master's ballot, the cell's epoch. */
  readonly ballot: Ballot;
  /** The replica this one believes is master, if any. */
  readonly masterId: ReplicaId | null;
  /** The local time until which this replica holds the master lease (master only, else null). */
  readonly leaseUntil: number | null;
  /** Every slot <= commit is chosen and known here. */
  readonly commit: number;
  /** Every slot <= applied has been applied (as reported by advance()). */
  readonly applied: number;
  /**
   * False while this replica's disk does not hold its seat: a replacement disk not yet admitted
   * (a learner: it follows and catches up, but never promises, votes or runs for master).
   */
  readonly isVoter: boolean;
  /** This replica's disk: 0 for a founding disk, else the replacement's random id. */
  readonly diskId: number;
}

export interface Ready {
  readonly sendEarly: readonly Envelope[];
  readonly persist: PersistBatch;
  readonly send: readonly Envelope[];
  readonly commit: readonly ChosenEntry[];
  /**
   * Set when a peer asked for slots this replica has compacted away: the wiring sends that
   * peer a snapshot at or above `slot` out of band (in chunks), then the peer calls
   * installSnapshot.
   */
  readonly snapshotFor: readonly { readonly to: ReplicaId; readonly slot: number }[];
  /** This replica learned it is behind the compaction point of its peers: it needs a snapshot. */
  readonly needSnapshot: { readonly from: ReplicaId; readonly slotAtLeast: number } | null;
  readonly status: Status;
}
