// The values the core agrees on and the messages replicas exchange. Every field is readonly:
// a message is a fact about the past. Messages from the network are `unknown` until
// validateMessage (in this folder) has checked them; the core's handlers only see typed,
// in-range values (DESIGN.md, Multi-Paxos and Wire protocol).

import type { Ballot } from './ballot.ts';
import type { ReplicaId } from './ports.ts';

/**
 * A client command as the core sees it: opaque bytes with an identity. (clientId, seq) names
 * the command, so a retry of the same command is recognised: the core does not batch the same
 * identity twice while it is in flight, and the apply layer answers a repeated identity from its
 * record instead of applying it again.
 */
export interface Command {
  readonly clientId: string;
  readonly seq: number;
  readonly payload: Uint8Array;
}

/**
 * What one slot holds. A batch carries every command that arrived while earlier slots were in
 * flight, and the master's clock reading when it built the batch (`stampMs`), which is the only
 * time the state machine ever uses. A no-op fills holes and asserts a new master's ballot.
 */
export type SlotValue =
  | { readonly type: 'noop'; readonly stampMs: number }
  | { readonly type: 'batch'; readonly stampMs: number; readonly commands: readonly Command[] }
  /**
   * Membership: from the next slot on, replica `replica`'s votes count only from the acceptor
   * whose disk is `diskId` (a replacement disk, admitted once it has caught up). Votes of the
   * disk it replaces still count for every slot up to this one (docs/consensus.md, Replacing a
   * disk).
   */
  | {
      readonly type: 'admit';
      readonly stampMs: number;
      readonly replica: ReplicaId;
      readonly diskId: number;
    };

/**
 * A chosen admission: from slot + 1 on, `replica` votes with disk `diskId`. Every replica starts
 * with every founding replica on disk 0.
 */
export interface Admission {
  readonly slot: number;
  readonly replica: ReplicaId;
  readonly diskId: number;
}

/** An accepted (or chosen) value at a slot, with the ballot it was accepted in. */
export interface AcceptedEntry {
  readonly slot: number;
  readonly ballot: Ballot;
  readonly value: SlotValue;
}

/** A value known to be chosen at a slot. */
export interface ChosenEntry {
  readonly slot: number;
  readonly value: SlotValue;
}

export type Message =
  /** Phase 1a: a candidate asks for promises covering every slot from slotFirst on. */
  | { readonly type: 'prepare'; readonly ballot: Ballot; readonly slotFirst: number }
  /**
   * Phase 1b: the acceptor promised `ballot`, and reports every value it accepted at or above
   * slotFirst, plus the values it knows are chosen there (so the candidate adopts them).
   */
  | {
      readonly type: 'promise';
      readonly ballot: Ballot;
      readonly slotFirst: number;
      readonly accepted: readonly AcceptedEntry[];
      readonly chosen: readonly ChosenEntry[];
      /** The acceptor's own contiguous chosen prefix, so the candidate knows who can serve catch-up. */
      readonly commit: number;
      /** The disk the promise comes from: it counts only if that disk holds the seat. */
      readonly diskId: number;
    }
  /**
   * Refusal of a Prepare or Accept: the acceptor has promised a higher ballot, or holds an
   * unexpired lease granted to another master, or (after a restart) is still waiting out one
   * lease. `promised` tells the sender the ballot to beat.
   */
  | {
      readonly type: 'reject';
      readonly ballot: Ballot;
      readonly promised: Ballot;
      readonly reason: 'stale-ballot' | 'lease-held' | 'restart-wait';
    }
  /**
   * Phase 2a: the master asks acceptors to accept `value` at `slot` in `ballot`. `commit` is the
   * master's chosen prefix; `round` names the lease round this message belongs to.
   */
  | {
      readonly type: 'accept';
      readonly ballot: Ballot;
      readonly slot: number;
      readonly value: SlotValue;
      readonly commit: number;
      readonly round: number;
    }
  /** Phase 2b: the acceptor accepted `slot` in `ballot`; it also acks lease round `round`. */
  | {
      readonly type: 'accepted';
      readonly ballot: Ballot;
      readonly slot: number;
      readonly round: number;
      /** The disk that accepted: the vote counts only if that disk holds the seat at `slot`. */
      readonly diskId: number;
    }
  /** The master's periodic assertion of its ballot: commit index and lease renewal. */
  | {
      readonly type: 'heartbeat';
      readonly ballot: Ballot;
      readonly commit: number;
      readonly round: number;
    }
  /**
   * A follower's answer to a heartbeat: it granted the lease for `round`; `commit` is its own
   * prefix. A learner (a disk not yet admitted) answers too, so the master sees it catch up and
   * admits it; its grant does not count.
   */
  | {
      readonly type: 'heartbeat-ack';
      readonly ballot: Ballot;
      readonly round: number;
      readonly commit: number;
      readonly diskId: number;
      /**
       * How much longer the follower is in its restart wait (it may not run for master before),
       * so a resigning master names a successor that can run at once. Absent from replicas that
       * predate it: the master then judges by how long the follower has acked without a gap.
       */
      readonly restartWaitMs?: number;
    }
  /**
   * The master of `ballot` gives up mastership (a graceful stop): it no longer serves, so every
   * acceptor may drop the lease it granted it, and `successor` should run for master at once
   * rather than wait out the lease and an election timeout.
   */
  | { readonly type: 'resign'; readonly ballot: Ballot; readonly successor: ReplicaId }
  /**
   * A candidate gave up its candidacy for `ballot` (outbid, or it saw a master): it will never
   * be master in that ballot, so an acceptor that promised it may drop the lease it granted with
   * the promise, which would otherwise refuse every other candidate until it ran out.
   */
  | { readonly type: 'withdraw'; readonly ballot: Ballot }
  /** A lagging replica asks for the chosen values of slots [slotFirst, slotLast]. */
  | { readonly type: 'catch-up-request'; readonly slotFirst: number; readonly slotLast: number }
  /**
   * Chosen values in answer to a catch-up request. `compactedBelow` > the asked slotFirst means
   * the sender no longer has those slots: the asker needs a snapshot.
   */
  | {
      readonly type: 'catch-up';
      readonly entries: readonly ChosenEntry[];
      readonly commit: number;
      readonly compactedBelow: number;
    };

export type MessageType = Message['type'];

/** A message with its destination, as the core hands it to the transport. */
export interface Envelope {
  readonly to: ReplicaId;
  readonly message: Message;
}
