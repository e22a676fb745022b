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
// `(now - sentAt) * (1 + drift)` stale, by its own monotonic clock with the drift bound the cell
// assumes. That is an upper bound with no assumption about message delays.

/** The clock-rate drift bound the cell assumes between replicas (docs/consensus.md). */
export const FRESHNESS_DRIFT = 0.01;

interface Mark {
  /** Local time the probe was sent. */
  readonly asOf: number;
  /** The master's commit index in its answer. */
  readonly commit: number;
}

export class Freshness {
  /** Answered probes, oldest first; only the newest one already applied matters, and newer ones. */
  #marks: Mark[] = [];

  /** A leased master answered a probe sent at `sentAt` with commit index `commit`. */
  onMasterCommit(sentAt: number, commit: number): void {
    const last = this.#marks[this.#marks.length - 1];
    if (last !== undefined && last.asOf >= sentAt) return; // answers can arrive out of order
    this.#marks.push({ asOf: sentAt, commit });
    if (this.#marks.length > 64) this.#marks.shift();
  }

  /** Forget everything (a new master, a snapshot install): freshness must be proved again. */
  reset(): void {
    this.#marks = [];
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
    return Math.max(0, now - best.asOf) * (1 + FRESHNESS_DRIFT);
  }
}
