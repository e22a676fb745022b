// How fresh a follower's state is, for stale reads (issue 6): pure, times passed in.
//
// A follower probes the master now and then: it sends a status request at local time `sentAt`,
// and a master that answers while holding its lease reports its commit index C. The master
// answered after `sentAt`, and under its lease no other master can have committed anything, so
// the committed state at that moment was state C. Once the follower has applied C (or more), its
// state was the current one at some moment no earlier than `sentAt`:
//   - applied = C: state C was current when the master answered (it had committed C, not C+1);
//   - applied > C: slot `applied` was committed after the master answered.
// So a follower that has applied at least C can promise that its state is at most
// `(now - sentAt) / (1 - maxDriftRate)` stale: its own monotonic clock measured the elapsed time,
// and a clock running as slow as the cell's drift bound allows (rate 1 - maxDriftRate, the same
// bound the leases use) has measured at least that fraction of the real time. That is an upper
// bound with no assumption about message delays.

/** The drift bound when the cell does not say (the replica's default, docs/cell.md). */
export const DEFAULT_MAX_DRIFT_RATE = 0.01;

interface Mark {
  /** Local time the probe was sent. */
  readonly asOf: number;
  /** The master's commit index in its answer. */
  readonly commit: number;
}

export class Freshness {
  readonly #maxDriftRate: number;
  /** Answered probes, oldest first; only the newest one already applied matters, and newer ones. */
  #marks: Mark[] = [];

  constructor(maxDriftRate = DEFAULT_MAX_DRIFT_RATE) {
    if (!(maxDriftRate >= 0 && maxDriftRate < 1)) throw new RangeError('maxDriftRate must be in [0, 1)');
    this.#maxDriftRate = maxDriftRate;
  }

  /** A leased master answered a probe sent at `sentAt` with commit index `commit`. */
  onMasterCommit(sentAt: number, commit: number): void {
    const last = this.#marks[this.#marks.length - 1];
    if (last !== undefined && last.asOf >= sentAt) return; // answers can arrive out of order
    this.#marks.push({ asOf: sentAt, commit });
    if (this.#marks.length > 64) this.#marks.shift();
  }

  /**
   * An upper bound on how stale the state at `applied` is at `now`, in ms; null if this
   * replica cannot promise any bound (no probe answered, or not caught up with one).
   */
  bound(now: number, applied: number): number | null {
    let best: Mark | undefined;
    for (const mark of this.#marks) if (mark.commit <= applied) best = mark;
    if (best === undefined) return null;
    // Keep the newest applied mark and everything after it: older marks can never be best again.
    this.#marks = this.#marks.slice(this.#marks.indexOf(best));
    // (A mark stays a true statement whatever happens later: a new master, a snapshot install.)
    return Math.max(0, now - best.asOf) / (1 - this.#maxDriftRate);
  }
}
