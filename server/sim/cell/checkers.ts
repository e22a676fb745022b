// The cell mode's invariants (issue 4, "What done looks like" item 9): what a lock service must
// never do, checked after every step of a cell simulation (cell-cluster.ts). Each check is sound:
// it flags only what the design forbids, whatever the faults, so a violation is always a bug.
//
// - exclusive-lock: no replica's machine, at its applied state, shows two holders of a lock one
//   of which is exclusive; and no two sessions BELIEVE at one instant that they hold
//   conflicting locks on one path (a belief runs from the client receiving `acquired` or
//   `lock-granted` until it sends Release/Close, or until the session's ExpireSession is first
//   applied anywhere).
// - sequencer-order: on every replica, the grants of one path (from `acquired` results and
//   `lock-granted` events, in slot order) carry lock generations that never go back, and an
//   exclusive grant always starts a new generation.
// - session-lease: no ExpireSession takes effect whose (latest) proposal came less than
//   leaseMs/(1+x) of global time after a master acknowledged the session's KeepAlive while
//   holding a valid master lease (x: the clock-rate spread). Judged when the expiry is first
//   applied, not when proposed: a deposed master that still believes it is master may propose
//   expiries that can never be chosen. Why that bound is sound: the ack set the session's expiry to t + leaseMs
//   on the acking master's clock, which runs at most 1+x times global time; a later master can
//   only serve after the acker's lease ran out (single master lease), hence after the ack, and
//   it gives every session a full lease from its takeover.
// - digest: every replica that applied a sampled slot has the same machine digest there.

import { parseSequencer, type LockInfo, type LockMode } from '@paxlock/shared';

export interface CellViolation {
  readonly invariant:
    | 'exclusive-lock'
    | 'sequencer-order'
    | 'session-lease'
    | 'digest'
    | 'diverged'
    | 'replica-assertion';
  readonly atMs: number;
  readonly detail: string;
}

/** A lock a client believes it holds. */
export interface Belief {
  readonly session: number;
  readonly handle: number;
  readonly path: string;
  readonly mode: LockMode;
}

function conflicts(a: LockMode, b: LockMode): boolean {
  return a === 'exclusive' || b === 'exclusive';
}

export class CellCheckers {
  readonly violations: CellViolation[] = [];
  /** Per replica, per path: the last grant's generation and mode. */
  readonly #grants = new Map<number, Map<string, { generation: number; mode: LockMode }>>();
  /** Per session: global time of the last KeepAlive ack sent by a master holding its lease. */
  readonly #leasedAckAt = new Map<number, number>();
  readonly #answered = new Set<string>();
  readonly #expireProposed = new Map<
    number,
    { replica: number; atMs: number; ackAtMs: number | null }
  >();
  readonly #digestAt = new Map<number, { digest: string; replica: number }>();
  readonly #leaseFloorFactor: number;
  grantsChecked = 0;
  expiriesChecked = 0;
  digestsCompared = 0;
  /** KeepAlive acks sent by a master whose lease had run out (allowed; reported in figures). */
  unleasedAcks = 0;

  constructor(options: { readonly clockSpread: number }) {
    this.#leaseFloorFactor = 1 / (1 + options.clockSpread);
  }

  #fail(invariant: CellViolation['invariant'], atMs: number, detail: string): void {
    this.violations.push({ invariant, atMs, detail });
  }

  onReplicaLocks(replica: number, atMs: number, locks: readonly LockInfo[]): void {
    for (const lock of locks) {
      const exclusive = lock.holders.filter((h) => h.mode === 'exclusive');
      if (exclusive.length > 0 && lock.holders.length > 1) {
        const who = lock.holders.map((h) => `${h.session}/${h.handle}:${h.mode}`).join(', ');
        this.#fail('exclusive-lock', atMs, `replica ${replica}: ${lock.path} held by ${who}`);
      }
    }
  }

  onBeliefs(atMs: number, beliefs: readonly Belief[]): void {
    for (let i = 0; i < beliefs.length; i++) {
      for (let j = i + 1; j < beliefs.length; j++) {
        const a = beliefs[i];
        const b = beliefs[j];
        if (a === undefined || b === undefined) continue;
        if (a.path !== b.path || a.session === b.session || !conflicts(a.mode, b.mode)) continue;
        this.#fail(
          'exclusive-lock',
          atMs,
          `sessions ${a.session} (${a.mode}) and ${b.session} (${b.mode}) both believe they hold ${a.path}`,
        );
      }
    }
  }

  /** A grant seen in a replica's apply output, in slot order. */
  onGrant(options: {
    readonly replica: number;
    readonly slot: number;
    readonly atMs: number;
    readonly sequencer: string;
    /** `session#seq` of an Acquire answered `acquired`; absent for a lock-granted event. */
    readonly request?: string;
  }): void {
    if (options.request !== undefined) {
      // A retried Acquire is answered from the session's record with the sequencer of the
      // original grant: a replayed answer, not a new grant.
      const key = `${options.replica}:${options.request}`;
      if (this.#answered.has(key)) return;
      this.#answered.add(key);
    }
    this.grantsChecked++;
    const parsed = parseSequencer(options.sequencer);
    if (parsed === undefined) {
      this.#fail(
        'sequencer-order',
        options.atMs,
        `replica ${options.replica} slot ${options.slot}: malformed sequencer ${options.sequencer}`,
      );
      return;
    }
    let perPath = this.#grants.get(options.replica);
    if (perPath === undefined) {
      perPath = new Map();
      this.#grants.set(options.replica, perPath);
    }
    const last = perPath.get(parsed.path);
    if (last !== undefined) {
      // Shared holders join one generation; anything else must open a new one.
      const isJoin =
        parsed.lockGeneration === last.generation &&
        parsed.mode === 'shared' &&
        last.mode === 'shared';
      if (
        parsed.lockGeneration < last.generation ||
        (parsed.lockGeneration === last.generation && !isJoin)
      ) {
        this.#fail(
          'sequencer-order',
          options.atMs,
          `replica ${options.replica} slot ${options.slot}: ${parsed.path} granted ${parsed.mode} generation ${parsed.lockGeneration} after ${last.mode} generation ${last.generation}`,
        );
      }
    }
    perPath.set(parsed.path, { generation: parsed.lockGeneration, mode: parsed.mode });
  }

  onKeepAliveAck(options: {
    readonly session: number;
    readonly atMs: number;
    readonly hasLease: boolean;
  }): void {
    if (!options.hasLease) {
      this.unleasedAcks++;
      return;
    }
    this.#leasedAckAt.set(options.session, options.atMs);
  }

  /**
   * A master proposed ExpireSession. Not judged yet: a deposed master that still thinks itself
   * master may propose one that can never be chosen (its ballot is below every promise).
   */
  onExpireProposed(options: {
    readonly session: number;
    readonly replica: number;
    readonly atMs: number;
  }): void {
    this.#expireProposed.set(options.session, {
      replica: options.replica,
      atMs: options.atMs,
      ackAtMs: this.#leasedAckAt.get(options.session) ?? null,
    });
  }

  /** ExpireSession took effect (first apply anywhere); judged against its latest proposal. */
  onExpireApplied(options: {
    readonly session: number;
    readonly atMs: number;
    readonly leaseMs: number;
  }): void {
    this.expiriesChecked++;
    const proposal = this.#expireProposed.get(options.session);
    if (proposal === undefined || proposal.ackAtMs === null) return;
    // The latest proposal is the one most favourable to the cell (an earlier one may be what was
    // chosen), so flagging only it keeps the check sound. 1 ms of slack for turn timing.
    const floor = proposal.ackAtMs + options.leaseMs * this.#leaseFloorFactor - 1;
    if (proposal.atMs < floor) {
      this.#fail(
        'session-lease',
        options.atMs,
        `session ${options.session} expired by replica ${proposal.replica}'s proposal ${(proposal.atMs - proposal.ackAtMs).toFixed(1)} ms after a leased KeepAlive ack (lease ${options.leaseMs} ms)`,
      );
    }
  }

  onDigest(options: {
    readonly replica: number;
    readonly slot: number;
    readonly atMs: number;
    readonly digest: string;
  }): void {
    const seen = this.#digestAt.get(options.slot);
    if (seen === undefined) {
      this.#digestAt.set(options.slot, { digest: options.digest, replica: options.replica });
      return;
    }
    this.digestsCompared++;
    if (seen.digest !== options.digest) {
      this.#fail(
        'digest',
        options.atMs,
        `slot ${options.slot}: replica ${options.replica} digest ${options.digest} != replica ${seen.replica} ${seen.digest}`,
      );
    }
  }

  fail(invariant: CellViolation['invariant'], atMs: number, detail: string): void {
    this.#fail(invariant, atMs, detail);
  }
}
