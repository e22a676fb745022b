// The liveness phase (TigerBeetle's VOPR), shared by the KV mode (cluster.ts) and the cell mode
// (cell/cell-cluster.ts): at `healAt` every partition heals, links stop losing, duplicating and
// holding back messages, every crashed replica restarts and no more faults come. From then on
// the cell must make progress within stated bounds, derived here from the seed's configuration:
// a master must serve within `masterWithinMs` of the heal, every client operation pending after
// that must complete within `operationWithinMs`, and by the end every replica must have applied
// every acknowledged write and be a voter (a replacement disk left a learner means the master
// never admitted it). What counts as "a master serves" and as "an operation" is each mode's own;
// the bounds, the clock of the phase and the end-of-run checks are this file's. The cell mode
// keeps one or two replicas down past the heal in some seeds; it gives those seeds one election
// more (livenessBounds, extraElections) and hands the end-of-run checks only the replicas up.

import type { Config, ReplicaId } from '../src/paxos/ports.ts';

export interface LivenessBounds {
  /** After the heal, some replica must serve as master within this (global ms). */
  readonly masterWithinMs: number;
  /** From the master bound on, every client operation must complete within this. */
  readonly operationWithinMs: number;
}

/**
 * The liveness bounds, stated: after the heal, a restarted acceptor waits one lease before it
 * promises, a lease granted before the heal runs out within one lease, and an election may need
 * two rounds of timeout plus jitter (a split vote). Everything is stretched by the drift bound
 * and given half a second for messages and catch-up. An operation gets a second plus two client
 * time-outs (a retry at a replica that is not master, then at the master).
 *
 * `extraElections` (default 0) adds that many more rounds of timeout plus jitter: the cell mode
 * gives one to the seeds that keep one or two replicas down past the heal. With the master at
 * the heal among them, its lease runs out (the second lease above) and then only three or four
 * voters can elect its successor; with three, a candidate needs every one, so a split vote or a
 * candidacy that loses (its voters bound to it until it withdraws) costs a round more often.
 */
export function livenessBounds(options: {
  readonly config: Pick<
    Config,
    'leaseMs' | 'electionTimeoutMs' | 'electionJitterMs' | 'maxDriftRate'
  >;
  readonly clientTimeoutMs: number;
  readonly extraElections?: number;
}): LivenessBounds {
  const c = options.config;
  const elections = 2 + (options.extraElections ?? 0);
  const masterWithinMs =
    (2 * c.leaseMs + elections * (c.electionTimeoutMs + c.electionJitterMs) + 500) *
    (1 + c.maxDriftRate);
  return { masterWithinMs, operationWithinMs: 1000 + options.clientTimeoutMs * 2 };
}

/** The cell mode's bounds on what a live client must be told after the heal (cell/cell-cluster.ts). */
export interface NotificationBounds {
  /** From the later of the master bound and an event's commit: delivered, or the client told of a gap. */
  readonly eventWithinMs: number;
  /** From the later of the master bound and a queued Acquire's grant: the waiter knows it holds. */
  readonly grantWithinMs: number;
  /** From the later of the master bound and its lock-delay falling due: a free lock's waiter granted. */
  readonly freeLockWithinMs: number;
}

/**
 * The notification bounds, stated. A session's KeepAlive falls due a quarter session lease after
 * the last ack, and its ack comes within the operation bound (from the master bound on); every
 * ack tells the client either that it has every event the master numbered (the events of the
 * entries it applied) or that it may have missed some (isEventGap, or a new epoch), so an event
 * is delivered or its loss told within `sessionLeaseMs / 4 + operationWithinMs`. A grant's push
 * is such an event; a waiter told of a gap asks the master whether it holds the lock (ListLocks,
 * as the client's LockState does after a reread), and that read is one more operation. A lock
 * that has waiters and no holder (only under lock-delay: every other release grants in the same
 * entry) is granted by the master's LockDelayEnd once the delay falls due on the master's clock
 * (the service's rule): one proposal, one operation.
 */
export function notificationBounds(options: {
  readonly operationWithinMs: number;
  readonly sessionLeaseMs: number;
}): NotificationBounds {
  const keepAliveMs = options.sessionLeaseMs / 4 + options.operationWithinMs;
  return {
    eventWithinMs: keepAliveMs,
    grantWithinMs: keepAliveMs + options.operationWithinMs,
    freeLockWithinMs: options.operationWithinMs,
  };
}

/** A replica as the end-of-run check sees it. */
export interface ReplicaProgress {
  readonly id: ReplicaId;
  /** The highest slot its state machine has applied. */
  readonly applied: number;
  /** Up and not a voter: a replacement disk the log has not admitted. */
  readonly isLearner: boolean;
  readonly diskId: number;
}

/** The liveness phase of one seed: its clock, its bounds, and when a master first served. */
export class LivenessPhase {
  readonly healAt: number;
  readonly bounds: LivenessBounds;
  #masterAt: number | null = null;

  constructor(options: { readonly healAt: number; readonly bounds: LivenessBounds }) {
    this.healAt = options.healAt;
    this.bounds = options.bounds;
  }

  /** When the first master served after the heal; null until then. */
  get masterAt(): number | null {
    return this.#masterAt;
  }

  /** By when a master must have served. */
  get masterDeadlineAt(): number {
    return this.healAt + this.bounds.masterWithinMs;
  }

  /** Notes that a master serves at `now` (in the liveness phase); true the first time. */
  onMasterServes(now: number): boolean {
    if (this.#masterAt !== null || now < this.healAt) return false;
    this.#masterAt = now;
    return true;
  }

  /** At the master deadline: what broke if no master served, else null. */
  masterMissed(serving: string): string | null {
    if (this.#masterAt !== null) return null;
    return `no replica could ${serving} within ${this.bounds.masterWithinMs.toFixed(0)} ms of the heal at ${(this.healAt / 1000).toFixed(3)}s`;
  }

  /**
   * How far past its bound an operation started at `startedAt` is at `now`: operations are
   * judged from the later of their start and the master bound. Null while within the bound.
   */
  operationOverdueMs(startedAt: number, now: number): number | null {
    if (now < this.healAt) return null;
    const since = Math.max(startedAt, this.masterDeadlineAt);
    return now - since > this.bounds.operationWithinMs ? now - since : null;
  }

  /**
   * How far past `boundMs` something owed since `owedSinceMs` is at `now`, judged from the later
   * of that and the master bound; null while within it (or before the heal).
   */
  overdueMs(owedSinceMs: number, boundMs: number, now: number): number | null {
    if (now < this.healAt) return null;
    const since = Math.max(owedSinceMs, this.masterDeadlineAt);
    return now - since > boundMs ? now - since : null;
  }

  /** The start of an overdue operation's detail: how long it waited, and the bound. */
  describeOverdue(overdueMs: number): string {
    return `${overdueMs.toFixed(0)} ms after the master bound, over ${this.bounds.operationWithinMs} ms`;
  }
}

/**
 * The highest slot acknowledged to any client, over time. A replica learns that a slot is chosen
 * from the master's next message, up to a heartbeat after the client's answer, so the end of the
 * run judges catch-up against what was acknowledged a while before it (`highestBy`).
 */
export class AckedSlots {
  /** (time, slot) at each rise of the highest acknowledged slot, in time order. */
  readonly #rises: { readonly atMs: number; readonly slot: number }[] = [];

  /** The highest slot acknowledged so far. */
  get highest(): number {
    return this.#rises.at(-1)?.slot ?? 0;
  }

  onAcknowledged(slot: number, atMs: number): void {
    if (slot > this.highest) this.#rises.push({ atMs, slot });
  }

  /** The highest slot acknowledged at or before `atMs`. */
  highestBy(atMs: number): number {
    for (let i = this.#rises.length - 1; i >= 0; i--) {
      const rise = this.#rises[i];
      if (rise !== undefined && rise.atMs <= atMs) return rise.slot;
    }
    return 0;
  }
}

/** True once every replica has applied `ackedSlot` and none is a learner. */
export function isCaughtUp(replicas: readonly ReplicaProgress[], ackedSlot: number): boolean {
  return replicas.every((r) => r.applied >= ackedSlot && !r.isLearner);
}

/**
 * The end of the liveness phase: every replica must have applied every acknowledged write's slot
 * and be a voter. One detail per replica that is not, the furthest behind first.
 */
export function catchUpFailures(replicas: readonly ReplicaProgress[], ackedSlot: number): string[] {
  const failures: string[] = [];
  for (const r of [...replicas].sort((a, b) => a.applied - b.applied)) {
    if (r.applied < ackedSlot)
      failures.push(
        `r${r.id} applied only through slot ${r.applied}, behind acknowledged slot ${ackedSlot}, at the end of the liveness phase`,
      );
    if (r.isLearner)
      failures.push(
        `r${r.id} is still a learner (disk ${r.diskId}) at the end of the liveness phase: the master never admitted it`,
      );
  }
  return failures;
}
